//! Bounded connection checks: at most `concurrency` checks connect at once, and at most
//! `per_server` of them to one server (host:port, or the file of a SQLite database), so however
//! many Databases point at one server the operator opens only a few connections to it at a
//! time. A check waits for its server's slot first, then for a global one (a crowd of checks
//! of one server never holds global slots it cannot use). What comes before connecting (name
//! resolution, the Secret read) is bounded by its own `concurrency` slots, so a burst of
//! thousands of reconciles is never thousands of DNS lookups and API reads at once. Waiting
//! shows up in `dbhub_operator_probes_waiting`, never as a failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many connection checks may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeLimits {
    /// At once, in all.
    pub concurrency: usize,
    /// At once, against one server.
    pub per_server: usize,
}

impl Default for ProbeLimits {
    fn default() -> Self {
        Self {
            concurrency: 32,
            per_server: 4,
        }
    }
}

/// The slots of the running checks.
pub struct Limiter {
    prepare: Arc<Semaphore>,
    all: Arc<Semaphore>,
    per_server: usize,
    servers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Leave to run one check; gives the slots back when dropped.
pub struct Permit<'a> {
    limiter: &'a Limiter,
    server: String,
    slot: Arc<Semaphore>,
    _held: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl Limiter {
    /// Slots for `limits` (each at least 1).
    pub fn new(limits: ProbeLimits) -> Self {
        Self {
            prepare: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            all: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            per_server: limits.per_server.max(1),
            servers: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot to prepare a check (resolve the host, read the Secret).
    pub async fn prepare(&self) -> OwnedSemaphorePermit {
        let _waiting = crate::metrics::Waiting::start();
        self.prepare
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open")
    }

    /// Waits for a slot to connect to `server`.
    pub async fn acquire(&self, server: &str) -> Permit<'_> {
        let slot = {
            let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
            servers
                .entry(server.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_server)))
                .clone()
        };
        let _waiting = crate::metrics::Waiting::start();
        // The semaphores are never closed.
        let own = slot.clone().acquire_owned().await.expect("semaphore open");
        let all = self
            .all
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        Permit {
            limiter: self,
            server: server.to_string(),
            slot,
            _held: (own, all),
        }
    }

    /// Servers with a check running or waiting.
    #[cfg(test)]
    fn servers(&self) -> usize {
        self.servers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // Forget the server when no other check holds or awaits its semaphore: the map holds
        // one reference and this permit two (`slot` and the owned permit); every other
        // holder cloned it under the same lock.
        let mut servers = self
            .limiter
            .servers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&self.slot) <= 3 {
            servers.remove(&self.server);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn checks_are_bounded_globally_and_per_server() {
        let limiter = Arc::new(Limiter::new(ProbeLimits {
            concurrency: 5,
            per_server: 2,
        }));
        let running: Arc<Vec<AtomicUsize>> =
            Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
        let (peak_all, peak_one) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let total = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..60 {
            let (limiter, running, total) = (limiter.clone(), running.clone(), total.clone());
            let (peak_all, peak_one) = (peak_all.clone(), peak_one.clone());
            tasks.push(tokio::spawn(async move {
                let server = i % 4;
                let _p = limiter.acquire(&format!("db{server}:5432")).await;
                let now_one = running[server].fetch_add(1, Ordering::SeqCst) + 1;
                let now_all = total.fetch_add(1, Ordering::SeqCst) + 1;
                peak_one.fetch_max(now_one, Ordering::SeqCst);
                peak_all.fetch_max(now_all, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running[server].fetch_sub(1, Ordering::SeqCst);
                total.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak_one.load(Ordering::SeqCst), 2, "per server");
        assert_eq!(peak_all.load(Ordering::SeqCst), 5, "in all");
        assert_eq!(limiter.servers(), 0, "idle servers are forgotten");
    }
}
