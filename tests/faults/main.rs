//! Dependencies failing and coming back, against the real stack: Neo4j, the kube-apiserver and
//! a space's DBHub are each stopped for a while under a running API. While down, the affected
//! routes answer 503 problem+json quickly (no hang, no 500) and `/readyz` names what is down;
//! once back, the same requests succeed without restarting anything, and no request that failed
//! in between left a Secret, CR or graph node behind.
//!
//! These tests stop components of the shared stack, so they live in a binary of their own
//! (cargo runs test binaries one after another) and take a lock so they run one at a time.

#[path = "../support/mod.rs"]
mod support;

mod outages;
mod startup;

use tokio::sync::{Mutex, MutexGuard};

/// Held by each test of this binary: one outage at a time.
async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}
