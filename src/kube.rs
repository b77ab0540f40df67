//! Kubernetes writes on behalf of REST calls: the credentials Secret and the Database CR, in
//! that order, undone in reverse when a later step fails; plus the watch-backed cache the API
//! reads Database status from (never one API call per request).

use std::collections::BTreeMap;

use dbhub_operator::crd::{DBHubInstance, Database, DatabaseSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use serde_json::json;

/// Label: who manages an object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label: the Aether space.
pub const SPACE_LABEL: &str = "aether.tas.io/space-id";
/// Label: the Aether tenant.
pub const TENANT_LABEL: &str = "aether.tas.io/tenant-id";
/// Label: the record id.
pub const DATABASE_ID_LABEL: &str = "dbhub.tas.io/database-id";
/// The value of `MANAGED_BY` on what this service creates.
pub const MANAGER: &str = "aether-dbhub";

/// Errors writing to Kubernetes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// A short, secret-free reason for a Kubernetes failure (`403 Forbidden`, `API unreachable`).
pub fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason),
        _ => "API unreachable".into(),
    }
}

impl Error {
    /// See [`reason`].
    pub fn reason(&self) -> String {
        match self {
            Self::Kube(e) => reason(e),
        }
    }
}

/// Writes Secrets, Database CRs and DBHub instances in the service's namespace.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    namespace: String,
    mode: InstanceMode,
    default_policy: (bool, i32),
}

pub use crate::config::InstanceMode;

/// The DBHubInstance serving `space_id`: `dbhub-<space>` (DNS-1123, ≤ 63 characters; a digest
/// keeps long or unusual ids unique), or `dbhub` when shared.
pub fn instance_name(mode: InstanceMode, space_id: &str) -> String {
    if mode == InstanceMode::Shared {
        return "dbhub".into();
    }
    let clean: String = space_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let clean = clean.trim_matches('-').to_string();
    if !clean.is_empty() && clean.len() <= 57 && clean == space_id {
        return format!("dbhub-{clean}");
    }
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(space_id.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let head: String = clean.chars().take(48).collect();
    format!("dbhub-{}-{digest}", head.trim_matches('-'))
}

/// Who a record belongs to (for labels).
pub struct Owner<'a> {
    /// Record id.
    pub database_id: &'a str,
    /// Space.
    pub space_id: &'a str,
    /// Tenant.
    pub tenant_id: &'a str,
}

fn labels(o: &Owner<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.into(), MANAGER.into()),
        (SPACE_LABEL.into(), o.space_id.into()),
        (TENANT_LABEL.into(), o.tenant_id.into()),
        (DATABASE_ID_LABEL.into(), o.database_id.into()),
    ])
}

/// The Secret name of a CR.
pub fn secret_name(cr: &str) -> String {
    format!("{cr}-credentials")
}

impl Writer {
    /// A writer for `namespace`.
    pub fn new(client: Client, namespace: impl Into<String>, mode: InstanceMode) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            mode,
            default_policy: (
                dbhub_operator::crd::defaults::readonly(),
                dbhub_operator::crd::defaults::max_rows(),
            ),
        }
    }

    /// Sets `defaultPolicy` (readonly, maxRows) of the instances this writer creates.
    pub fn with_default_policy(mut self, readonly: bool, max_rows: i32) -> Self {
        self.default_policy = (readonly, max_rows);
        self
    }

    /// The instance mode.
    pub fn mode(&self) -> InstanceMode {
        self.mode
    }

    /// Makes sure the DBHubInstance that serves `space_id` exists (idempotent server-side
    /// apply): per space it selects that space's Databases; shared, every managed Database.
    pub async fn ensure_instance(&self, space_id: &str, tenant_id: &str) -> Result<String, Error> {
        let name = instance_name(self.mode, space_id);
        let (labels, selector) = match self.mode {
            InstanceMode::PerSpace => (
                json!({MANAGED_BY: MANAGER, SPACE_LABEL: space_id, TENANT_LABEL: tenant_id}),
                json!({SPACE_LABEL: space_id}),
            ),
            InstanceMode::Shared => (json!({MANAGED_BY: MANAGER}), json!({MANAGED_BY: MANAGER})),
        };
        let obj = json!({
            "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "DBHubInstance",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "databaseSelector": {"matchLabels": selector},
                "defaultPolicy": {"readonly": self.default_policy.0, "maxRows": self.default_policy.1},
            },
        });
        let api: Api<DBHubInstance> = Api::namespaced(self.client.clone(), &self.namespace);
        api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&obj))
            .await?;
        Ok(name)
    }

    /// Removes the space's DBHubInstance once no Database of the space is left (per-space mode;
    /// the shared instance stays).
    pub async fn remove_instance_if_unused(&self, space_id: &str) -> Result<(), Error> {
        if self.mode == InstanceMode::Shared {
            return Ok(());
        }
        let selector = format!("{SPACE_LABEL}={space_id},{MANAGED_BY}={MANAGER}");
        let left = self
            .crs()
            .list_metadata(&kube::api::ListParams::default().labels(&selector).limit(1))
            .await?;
        if left.items.is_empty() {
            let api: Api<DBHubInstance> = Api::namespaced(self.client.clone(), &self.namespace);
            match api
                .delete(
                    &instance_name(self.mode, space_id),
                    &DeleteParams::default(),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The namespace written to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn crs(&self) -> Api<Database> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates Secret `<cr>-credentials` (when credentials are given), then the CR, then makes
    /// the CR own the Secret. Any failure undoes the earlier steps.
    pub async fn create(
        &self,
        cr: &str,
        owner: &Owner<'_>,
        mut spec: DatabaseSpec,
        creds: Option<(&str, &str)>,
    ) -> Result<(), Error> {
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        if let Some((user, password)) = creds {
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {"name": secret_name(cr), "labels": labels(owner)},
                "type": "Opaque",
                "stringData": {"username": user, "password": password},
            }))
            .expect("a valid Secret");
            self.secrets().create(&pp, &secret).await?;
            spec.credentials_ref = Some(dbhub_operator::crd::CredentialsRef {
                name: secret_name(cr),
                namespace: None,
                user_key: "username".into(),
                password_key: "password".into(),
            });
        }
        let mut db = Database::new(cr, spec);
        db.metadata.labels = Some(labels(owner));
        let created = match self.crs().create(&pp, &db).await {
            Ok(c) => c,
            Err(e) => {
                self.delete_secret(cr).await;
                return Err(e.into());
            }
        };
        if creds.is_some() {
            let owner_ref = created
                .controller_owner_ref(&())
                .expect("created CRs have a uid");
            let patch = json!({"metadata": {"ownerReferences": [owner_ref]}});
            if let Err(e) = self
                .secrets()
                .patch(
                    &secret_name(cr),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                self.delete(cr).await.ok();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Replaces the CR's spec (credentialsRef kept).
    pub async fn update_spec(&self, cr: &str, spec: &DatabaseSpec) -> Result<(), Error> {
        let patch = json!({"spec": spec});
        self.crs()
            .patch(cr, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Rewrites the credentials (only the Secret is touched).
    pub async fn update_credentials(
        &self,
        cr: &str,
        user: &str,
        password: Option<&str>,
    ) -> Result<(), Error> {
        let mut data = serde_json::Map::new();
        data.insert("username".into(), json!(user));
        if let Some(p) = password {
            data.insert("password".into(), json!(p));
        }
        let patch = json!({"stringData": data});
        self.secrets()
            .patch(
                &secret_name(cr),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// Deletes the CR and its Secret (no garbage collector is assumed to run).
    pub async fn delete(&self, cr: &str) -> Result<(), Error> {
        match self.crs().delete(cr, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        self.delete_secret(cr).await;
        Ok(())
    }

    async fn delete_secret(&self, cr: &str) {
        match self
            .secrets()
            .delete(&secret_name(cr), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::error!(cr, error = %e, "could not delete a credentials Secret; it is orphaned")
            }
        }
    }
}

/// Status of a CR from the watch cache: (phase, message, lastChecked).
pub fn cached_status(
    cache: &Store<Database>,
    namespace: &str,
    cr: &str,
) -> Option<(String, String, String)> {
    let db = cache.get(&ObjectRef::new(cr).within(namespace))?;
    let s = db.status.clone()?;
    let phase = format!("{:?}", s.phase?);
    Some((
        phase,
        s.message.unwrap_or_default(),
        s.last_checked.unwrap_or_default(),
    ))
}

/// A reflector of the Database CRs in `namespace`, kept current by a background watch (the
/// API reads status from it instead of calling the apiserver per request).
pub fn status_cache(client: Client, namespace: &str) -> Store<Database> {
    watch_cache(client, namespace)
}

/// A reflector of the `K`s in `namespace`, kept current by a background watch.
pub fn watch_cache<K>(client: Client, namespace: &str) -> Store<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::namespaced(client, namespace);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(stream.for_each(|_| std::future::ready(())));
    reader
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_dns_labels_and_unique() {
        assert_eq!(
            instance_name(InstanceMode::PerSpace, "space-1"),
            "dbhub-space-1"
        );
        assert_eq!(instance_name(InstanceMode::Shared, "space-1"), "dbhub");
        let odd = instance_name(InstanceMode::PerSpace, "Space_1");
        let other = instance_name(InstanceMode::PerSpace, "space_1");
        assert_ne!(odd, other, "ids that clean up alike stay distinct");
        let long = instance_name(InstanceMode::PerSpace, &"x".repeat(200));
        for n in [odd, other, long] {
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.ends_with('-'));
        }
    }
}
