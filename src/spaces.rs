//! Resolving the caller's space on every request, without a graph round trip on most of them:
//! a caller's membership (user, space, tenant, role) is remembered for `--space-cache-ttl`
//! seconds (default 5). So a member removed from a space, or whose role changed, keeps the old
//! standing for at most that long on each replica; a new member is seen at once (refusals are
//! never cached). The service itself never changes memberships, so nothing else invalidates.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::Caller;
use crate::storage::spaces::{Resolution, SpaceType};
use crate::storage::{Result, Store};

/// Memberships remembered at most (beyond, expired ones go, then all).
const MAX_ENTRIES: usize = 10_000;

type Key = (String, SpaceType, String);

/// Space resolution with a short cache of memberships.
pub struct Spaces {
    store: Store,
    ttl: Duration,
    cache: Mutex<HashMap<Key, (Instant, Caller)>>,
}

impl Spaces {
    /// Resolves through `store`, remembering memberships for `ttl` (zero: never).
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller `sub` in `space_id` of `kind`.
    pub async fn resolve(&self, sub: &str, kind: SpaceType, space_id: &str) -> Result<Resolution> {
        let key = (sub.to_string(), kind, space_id.to_string());
        if let Some(caller) = self.cached(&key) {
            return Ok(Resolution::Member(caller));
        }
        let found = self.store.resolve_space(sub, kind, space_id).await?;
        if let Resolution::Member(caller) = &found {
            self.remember(key, caller.clone());
        }
        Ok(found)
    }

    fn cached(&self, key: &Key) -> Option<Caller> {
        if self.ttl.is_zero() {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, c)| c.clone())
    }

    fn remember(&self, key: Key, caller: Caller) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), caller));
    }
}
