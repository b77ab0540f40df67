//! Kubernetes writes on behalf of REST calls: the space's DBHubInstance, the credentials Secret
//! and the Database CR (each step undone when a later one fails), spec and credential changes,
//! and removal. The use-case layer decides the order across Kubernetes and the graph.

use std::collections::BTreeMap;

use dbhub_operator::crd::{CredentialsRef, DBHubInstance, Database, DatabaseSpec};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{
    Cluster, DATABASE_ID_LABEL, Error, InstanceMode, MANAGED_BY, MANAGER, SPACE_LABEL,
    TENANT_LABEL, instance_name, secret_name,
};
use crate::model::Scope;

type Result<T> = std::result::Result<T, Error>;

fn labels(id: &str, scope: &Scope) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.into(), MANAGER.into()),
        (SPACE_LABEL.into(), scope.space_id.clone()),
        (TENANT_LABEL.into(), scope.tenant_id.clone()),
        (DATABASE_ID_LABEL.into(), id.into()),
    ])
}

/// Keys of the read-only login in a credentials Secret.
const READONLY_USER_KEY: &str = "readonly_username";
const READONLY_PASSWORD_KEY: &str = "readonly_password";

/// `credentialsRef` pointing at the CR's own Secret (with the read-only login's keys when the
/// record has one).
pub fn credentials_ref(cr: &str, readonly_login: bool) -> CredentialsRef {
    CredentialsRef {
        name: secret_name(cr),
        namespace: None,
        user_key: "username".into(),
        password_key: "password".into(),
        readonly_user_key: readonly_login.then(|| READONLY_USER_KEY.into()),
        readonly_password_key: readonly_login.then(|| READONLY_PASSWORD_KEY.into()),
    }
}

/// What a credentials Secret holds: the main login and, optionally, a read-only one. A
/// password of `None` keeps the stored one (on update).
pub struct SecretLogins<'a> {
    /// User name of the main login.
    pub user: &'a str,
    /// Its password.
    pub password: Option<&'a str>,
    /// The read-only login's user name and password, if the record has one.
    pub readonly: Option<(&'a str, Option<&'a str>)>,
}

impl SecretLogins<'_> {
    /// The Secret's `stringData` (and, on update, `data` keys to remove).
    fn patch(&self) -> serde_json::Value {
        let mut string = serde_json::Map::new();
        string.insert("username".into(), json!(self.user));
        if let Some(p) = self.password {
            string.insert("password".into(), json!(p));
        }
        let mut removed = serde_json::Map::new();
        match self.readonly {
            Some((user, password)) => {
                string.insert(READONLY_USER_KEY.into(), json!(user));
                if let Some(p) = password {
                    string.insert(READONLY_PASSWORD_KEY.into(), json!(p));
                }
            }
            None => {
                removed.insert(READONLY_USER_KEY.into(), serde_json::Value::Null);
                removed.insert(READONLY_PASSWORD_KEY.into(), serde_json::Value::Null);
            }
        }
        json!({"stringData": string, "data": removed})
    }
}

fn not_found_is_ok(r: std::result::Result<(), kube::Error>) -> Result<()> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => Ok(other?),
    }
}

impl Cluster {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn crs(&self) -> Api<Database> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn instance_api(&self) -> Api<DBHubInstance> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Makes sure the DBHubInstance that serves `scope`'s space exists (idempotent server-side
    /// apply): per space it selects that space's Databases; shared, every managed Database.
    pub async fn ensure_instance(&self, scope: &Scope) -> Result<String> {
        let name = instance_name(self.mode, &scope.space_id);
        let (labels, selector) = match self.mode {
            InstanceMode::PerSpace => (
                json!({MANAGED_BY: MANAGER, SPACE_LABEL: scope.space_id, TENANT_LABEL: scope.tenant_id}),
                json!({SPACE_LABEL: scope.space_id}),
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
        self.instance_api()
            .patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&obj))
            .await?;
        Ok(name)
    }

    /// Removes the space's DBHubInstance once no Database of the space is left (per-space mode;
    /// the shared instance stays).
    pub async fn remove_instance_if_unused(&self, space_id: &str) -> Result<()> {
        if self.mode == InstanceMode::Shared {
            return Ok(());
        }
        let selector = format!("{SPACE_LABEL}={space_id},{MANAGED_BY}={MANAGER}");
        let left = self
            .crs()
            .list_metadata(&ListParams::default().labels(&selector).limit(1))
            .await?;
        if left.items.is_empty() {
            let name = instance_name(self.mode, space_id);
            let gone = self
                .instance_api()
                .delete(&name, &DeleteParams::default())
                .await;
            not_found_is_ok(gone.map(|_| ()))?;
        }
        Ok(())
    }

    /// Creates Secret `<cr>-credentials` (when credentials are given), then the CR, then makes
    /// the CR own the Secret. Any failure undoes the earlier steps.
    pub async fn create_database(
        &self,
        cr: &str,
        id: &str,
        scope: &Scope,
        mut spec: DatabaseSpec,
        creds: Option<SecretLogins<'_>>,
    ) -> Result<()> {
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        if let Some(logins) = &creds {
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {"name": secret_name(cr), "labels": labels(id, scope)},
                "type": "Opaque",
                "stringData": logins.patch()["stringData"],
            }))
            .expect("a valid Secret");
            self.secrets().create(&pp, &secret).await?;
            spec.credentials_ref = Some(credentials_ref(cr, logins.readonly.is_some()));
        }
        let mut db = Database::new(cr, spec);
        db.metadata.labels = Some(labels(id, scope));
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
            let owned = self
                .secrets()
                .patch(
                    &secret_name(cr),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
            if let Err(e) = owned {
                self.delete_database(cr).await.ok();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Replaces the CR's spec.
    pub async fn update_spec(&self, cr: &str, spec: &DatabaseSpec) -> Result<()> {
        let patch = json!({"spec": spec});
        self.crs()
            .patch(cr, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Rewrites the credentials (only the Secret is touched).
    pub async fn update_credentials(&self, cr: &str, logins: &SecretLogins<'_>) -> Result<()> {
        let patch = logins.patch();
        self.secrets()
            .patch(
                &secret_name(cr),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// The credentials Secret's data as it is now (to put back if an edit fails halfway).
    pub async fn read_credentials(&self, cr: &str) -> Result<BTreeMap<String, ByteString>> {
        let secret = self.secrets().get(&secret_name(cr)).await?;
        Ok(secret.data.unwrap_or_default())
    }

    /// Puts back data read with [`Cluster::read_credentials`].
    pub async fn restore_credentials(
        &self,
        cr: &str,
        data: &BTreeMap<String, ByteString>,
    ) -> Result<()> {
        let patch = json!({"data": data});
        self.secrets()
            .patch(
                &secret_name(cr),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// Deletes the CR and its Secret (the Secret explicitly too: no garbage collector is
    /// assumed to run).
    pub async fn delete_database(&self, cr: &str) -> Result<()> {
        let gone = self.crs().delete(cr, &DeleteParams::default()).await;
        not_found_is_ok(gone.map(|_| ()))?;
        self.delete_secret(cr).await;
        Ok(())
    }

    async fn delete_secret(&self, cr: &str) {
        let gone = self
            .secrets()
            .delete(&secret_name(cr), &DeleteParams::default())
            .await;
        if let Err(e) = not_found_is_ok(gone.map(|_| ())) {
            tracing::error!(cr, error = %e, "could not delete a credentials Secret; it is orphaned");
        }
    }

    /// The CR as the apiserver has it now (for an on-demand check), None when it is gone.
    pub async fn fresh_database(&self, cr: &str) -> Result<Option<Database>> {
        Ok(self.crs().get_opt(cr).await?)
    }

    /// The credentials `db` references, read as the operator reads them.
    pub async fn credentials(
        &self,
        db: &Database,
    ) -> std::result::Result<Option<dbhub_operator::dsn::Logins>, CredentialsProblem> {
        use dbhub_operator::controller::credentials::{CredentialsError, resolve};
        match resolve(&self.client, db).await {
            Ok(c) => Ok(c),
            Err(CredentialsError::Kube(e)) => Err(CredentialsProblem::Unreachable(Error(e))),
            Err(other) => Err(CredentialsProblem::Unusable(other.to_string())),
        }
    }
}

/// Why a Database's credentials could not be read for a check.
#[derive(Debug)]
pub enum CredentialsProblem {
    /// Kubernetes did not answer.
    Unreachable(Error),
    /// The Secret or a key is missing, or the reference is not allowed (the message says which).
    Unusable(String),
}
