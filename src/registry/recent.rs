//! The records the query path read lately, so that a query does not read its database's node
//! from the graph each time. A remembered record is used only while the watch cache holds its
//! Database CR, in the caller's space, with the spec the record derives — so an edit or a
//! delete made anywhere (it changes or removes the CR first) is seen as soon as the watch sees
//! it. What the CR does not carry (the display name, which only labels history entries) may be
//! up to [`TTL`] old on another replica.

use std::time::Duration;

use crate::k8s::Cluster;
use crate::model::{Database, Scope};
use crate::ttl::TtlMap;

/// How long a record is remembered.
pub const TTL: Duration = Duration::from_secs(30);

pub(super) struct Recent {
    records: TtlMap<String, Database>,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            records: TtlMap::new(TTL),
        }
    }
}

impl Recent {
    /// The record `id` of `scope`, if remembered and still what the cluster says.
    pub fn get(&self, scope: &Scope, id: &str, cluster: &Cluster) -> Option<Database> {
        let d = self.records.get(id).filter(|d| &d.scope == scope)?;
        cluster
            .holds_spec(&d.cr_name, &d.scope, &d.settings.cr_spec(None))
            .then_some(d)
    }

    pub fn keep(&self, d: &Database) {
        self.records.insert(d.id.clone(), d.clone());
    }

    pub fn forget(&self, id: &str) {
        self.records.remove(id);
    }
}
