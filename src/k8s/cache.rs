//! Watch-backed caches of the service's namespace: the API reads a Database's status from here
//! (never one API call per request), and status changes are passed on so the graph node can
//! mirror them off the request path.

use std::sync::Arc;

use dbhub_operator::crd::{DBHubInstance, Database};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};

use super::{Cluster, DATABASE_ID_LABEL, SPACE_LABEL, TENANT_LABEL};
use crate::model::{Observed, Scope};

/// A reflector of the `K`s in `namespace`, kept current by a background watch.
pub fn watch<K>(client: Client, namespace: &str) -> Store<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    watch_then(client, namespace, |_: K| {})
}

/// As [`watch`], handing every applied object to `each` as well.
pub fn watch_then<K>(client: Client, namespace: &str, each: impl Fn(K) + Send + 'static) -> Store<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::namespaced(client, namespace);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(stream.for_each(move |obj| {
        if let Ok(o) = obj {
            each(o);
        }
        std::future::ready(())
    }));
    reader
}

/// A Database's record id, scope and observed status, as its CR's labels and status say.
pub struct StatusChange {
    /// The record id.
    pub id: String,
    /// Its space and tenant.
    pub scope: Scope,
    /// What the reconciler reported.
    pub observed: Observed,
}

/// What the operator reported in `db`'s status.
pub fn observed(db: &Database) -> Option<Observed> {
    let s = db.status.as_ref()?;
    Some(Observed {
        phase: s.phase?,
        message: s.message.clone().unwrap_or_default(),
        last_checked: s
            .last_checked
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok()),
        effective_ssl_mode: s.effective_ssl_mode,
    })
}

/// The change `db` carries, when it is one of the service's records with a status.
pub fn status_change(db: &Database) -> Option<StatusChange> {
    let labels = db.metadata.labels.as_ref()?;
    Some(StatusChange {
        id: labels.get(DATABASE_ID_LABEL)?.clone(),
        scope: Scope {
            tenant_id: labels.get(TENANT_LABEL)?.clone(),
            space_id: labels.get(SPACE_LABEL)?.clone(),
        },
        observed: observed(db)?,
    })
}

impl Cluster {
    /// The status of Database CR `cr` from the watch cache, once the operator reported one.
    pub fn status(&self, cr: &str) -> Option<Observed> {
        observed(
            &*self
                .databases
                .get(&ObjectRef::new(cr).within(&self.namespace))?,
        )
    }

    /// Whether the watch cache holds Database CR `cr`, labelled for `scope`, whose spec (but
    /// the credentials reference) is `spec`.
    pub fn holds_spec(
        &self,
        cr: &str,
        scope: &Scope,
        spec: &dbhub_operator::crd::DatabaseSpec,
    ) -> bool {
        let Some(db) = self
            .databases
            .get(&ObjectRef::new(cr).within(&self.namespace))
        else {
            return false;
        };
        let labels = db.metadata.labels.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        let mut held = db.spec.clone();
        held.credentials_ref = None;
        label(TENANT_LABEL) == Some(scope.tenant_id.as_str())
            && label(SPACE_LABEL) == Some(scope.space_id.as_str())
            && &held == spec
    }

    /// DBHubInstance `name` from the watch cache.
    pub fn cached_instance(&self, name: &str) -> Option<Arc<DBHubInstance>> {
        self.instances
            .get(&ObjectRef::new(name).within(&self.namespace))
    }
}
