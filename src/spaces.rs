//! Resolving the caller's space on every request, without a graph round trip on most of them:
//! a caller's membership (user, space, tenant, role) is remembered for `--space-cache-ttl`
//! seconds (default 5). So a member removed from a space, or whose role changed, keeps the old
//! standing for at most that long on each replica; a new member is seen at once (refusals are
//! never cached). The service itself never changes memberships, so nothing else invalidates.

use std::time::Duration;

use crate::model::Caller;
use crate::storage::spaces::{Resolution, SpaceType};
use crate::storage::{Result, Store};
use crate::ttl::TtlMap;

type Key = (String, SpaceType, String);

/// Space resolution with a short cache of memberships.
pub struct Spaces {
    store: Store,
    cache: TtlMap<Key, Caller>,
}

impl Spaces {
    /// Resolves through `store`, remembering memberships for `ttl` (zero: never).
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            cache: TtlMap::new(ttl),
        }
    }

    /// The caller `sub` in `space_id` of `kind`.
    pub async fn resolve(&self, sub: &str, kind: SpaceType, space_id: &str) -> Result<Resolution> {
        let key = (sub.to_string(), kind, space_id.to_string());
        if let Some(caller) = self.cache.get(&key) {
            return Ok(Resolution::Member(caller));
        }
        let found = self.store.resolve_space(sub, kind, space_id).await?;
        if let Resolution::Member(caller) = &found {
            self.cache.insert(key, caller.clone());
        }
        Ok(found)
    }
}
