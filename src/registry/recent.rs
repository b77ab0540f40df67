//! The records the query path read lately, so that a query does not read its database's node
//! from the graph each time. A remembered record is used only while the watch cache holds its
//! Database CR, in the caller's space, with the spec the record derives — so an edit or a
//! delete made anywhere (it changes or removes the CR first) is seen as soon as the watch sees
//! it. What the CR does not carry (the display name, which only labels history entries) may be
//! up to [`TTL`] old on another replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::k8s::Cluster;
use crate::model::{Database, Scope};

/// How long a record is remembered.
pub const TTL: Duration = Duration::from_secs(30);
/// Records remembered at most (beyond, expired ones go, then all).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub(super) struct Recent {
    records: Mutex<HashMap<String, (Instant, Database)>>,
}

impl Recent {
    /// The record `id` of `scope`, if remembered and still what the cluster says.
    pub fn get(&self, scope: &Scope, id: &str, cluster: &Cluster) -> Option<Database> {
        let d = {
            let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
            let (at, d) = records.get(id)?;
            (at.elapsed() < TTL && &d.scope == scope).then(|| d.clone())?
        };
        cluster
            .holds_spec(&d.cr_name, &d.scope, &d.settings.cr_spec(None))
            .then_some(d)
    }

    pub fn keep(&self, d: &Database) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() >= MAX_ENTRIES {
            records.retain(|_, (at, _)| at.elapsed() < TTL);
            if records.len() >= MAX_ENTRIES {
                records.clear();
            }
        }
        records.insert(d.id.clone(), (Instant::now(), d.clone()));
    }

    pub fn forget(&self, id: &str) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}
