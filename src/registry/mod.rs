//! The databases of a space, as use cases: list, read, register, edit, remove, and check a
//! connection on demand. Each operation owns its steps and their order across Kubernetes and
//! the graph — register is DBHubInstance → Secret → Database CR → graph node, each undone when
//! a later one fails — and runs them in a task of its own, so a client that disconnects (or a
//! request deadline) can never leave a half-made Secret, CR or node behind.

mod checks;
pub mod input;
mod recent;

use std::sync::Arc;

use dbhub_operator::crd::DatabaseType;
use k8s_openapi::jiff::Timestamp;

pub use checks::CheckOutcome;
pub use input::{DatabaseInput, TestInput};

use crate::k8s::Cluster;
use crate::k8s::writes::{SecretLogins, credentials_ref};
use crate::model::{Caller, Database, Error, FieldError, Observed, Permission, Result, Settings};
use crate::storage::Store;
use dbhub_operator::policy::ConnectionPolicy;

/// The databases use cases.
pub struct Registry {
    store: Store,
    cluster: Cluster,
    policy: ConnectionPolicy,
    tests: checks::Limiter,
    recent: recent::Recent,
}

/// A page of a space's databases.
pub struct Listing {
    /// The records on this page, newest first.
    pub items: Vec<Database>,
    /// How many the space has.
    pub total: i64,
}

impl Registry {
    /// The use cases over these backends.
    pub fn new(
        store: Store,
        cluster: Cluster,
        policy: ConnectionPolicy,
        tests_per_minute: u32,
    ) -> Self {
        Self {
            store,
            cluster,
            policy,
            tests: checks::Limiter::per_minute(tests_per_minute),
            recent: recent::Recent::default(),
        }
    }

    /// The Kubernetes side (for the query path's DBHub lookup).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The record with the newest observation of its connection: the operator's (from the
    /// watch cache) or an on-demand check's (stored on the node), whichever is later.
    fn with_status(&self, mut d: Database) -> Database {
        if let Some(seen) = self.cluster.status(&d.cr_name)
            && seen.last_checked >= d.observed.last_checked
        {
            d.observed = seen;
        }
        d
    }

    /// `limit` records of the caller's space from `skip`, newest first.
    pub async fn list(&self, caller: &Caller, skip: i64, limit: i64) -> Result<Listing> {
        caller.require(Permission::Read)?;
        let page = self
            .store
            .list_databases(&caller.scope, skip, limit)
            .await?;
        Ok(Listing {
            items: page
                .items
                .into_iter()
                .map(|d| self.with_status(d))
                .collect(),
            total: page.total,
        })
    }

    /// One record of the caller's space.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Database> {
        caller.require(Permission::Read)?;
        self.find(caller, id).await
    }

    async fn find(&self, caller: &Caller, id: &str) -> Result<Database> {
        let d = self
            .store
            .get_database(&caller.scope, id)
            .await?
            .ok_or(Error::NotFound("database"))?;
        Ok(self.with_status(d))
    }

    /// A record the caller may query: it must be Connected (409 with its status otherwise).
    pub async fn connected(&self, caller: &Caller, id: &str) -> Result<Database> {
        caller.require(Permission::Read)?;
        let d = match self.recent.get(&caller.scope, id, &self.cluster) {
            Some(d) => self.with_status(d),
            None => {
                let d = self.find(caller, id).await?;
                self.recent.keep(&d);
                d
            }
        };
        if d.observed.phase != dbhub_operator::crd::DatabasePhase::Connected {
            let status = d.observed.phase.to_string();
            return Err(Error::NotReady {
                message: format!(
                    "The database is {status}, not Connected: fix its connection (or wait for its check) and retry."
                ),
                status,
                status_message: d.observed.message.clone(),
            });
        }
        Ok(d)
    }

    /// Refuses connections the policy does not allow: hosts inside the service's own network
    /// (the same answer as for unresolvable ones), SQLite files outside the allowed directories.
    async fn allowed(&self, s: &Settings) -> Result<()> {
        let field = if s.engine == DatabaseType::Sqlite {
            "path"
        } else {
            "host"
        };
        self.policy
            .check(&s.cr_spec(None))
            .await
            .map_err(|refused| Error::Invalid(vec![FieldError::new(field, refused.to_string())]))
    }

    async fn name_free(&self, caller: &Caller, name: &str, except: &str) -> Result<()> {
        if self.store.name_taken(&caller.scope, name, except).await? {
            return Err(Error::Conflict(format!(
                "A database named {name:?} already exists in this space; pick another name."
            )));
        }
        Ok(())
    }

    /// Registers a database: the space's DBHubInstance, the credentials Secret, the Database
    /// CR, then the graph node (status Pending).
    pub async fn create(
        self: &Arc<Self>,
        caller: &Caller,
        input: &DatabaseInput,
    ) -> Result<Database> {
        caller.require(Permission::Create)?;
        let valid = input::validate(input, None).map_err(Error::Invalid)?;
        self.allowed(&valid.settings).await?;
        self.name_free(caller, &valid.settings.name, "").await?;
        let id = uuid::Uuid::new_v4();
        let now = Timestamp::now();
        let record = Database {
            id: id.to_string(),
            scope: caller.scope.clone(),
            owner_id: caller.user_id.clone(),
            cr_name: crate::model::database::cr_name(&id),
            settings: valid.settings.clone(),
            observed: Observed::pending(),
            created_at: now,
            updated_at: now,
        };
        let this = self.clone();
        detached(async move { this.create_steps(record, valid).await }).await
    }

    async fn create_steps(&self, record: Database, valid: input::Valid) -> Result<Database> {
        let scope = &record.scope;
        self.cluster.ensure_instance(scope).await?;
        let creds = valid.password.as_deref().map(|p| {
            logins(
                &record.settings,
                Some(p),
                valid.readonly_password.as_deref(),
            )
        });
        let spec = record.settings.cr_spec(None);
        if let Err(e) = self
            .cluster
            .create_database(&record.cr_name, &record.id, scope, spec, creds)
            .await
        {
            self.release_instance(&scope.space_id).await;
            return Err(e.into());
        }
        match self.store.create_database(&record).await {
            Ok(saved) => {
                tracing::info!(db.id = %saved.id, space.id = %scope.space_id, "database registered");
                Ok(saved)
            }
            Err(e) => {
                if let Err(undo) = self.cluster.delete_database(&record.cr_name).await {
                    tracing::error!(error = %undo, cr = %record.cr_name, "could not undo a failed register");
                }
                self.release_instance(&scope.space_id).await;
                Err(e.into())
            }
        }
    }

    /// Edits a record: absent fields keep their values, a missing password keeps the old one.
    /// Kubernetes first (credentials, then the CR spec when the derived spec changed), the
    /// graph last; a failure puts back what was already changed.
    pub async fn update(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        input: &DatabaseInput,
    ) -> Result<Database> {
        caller.require(Permission::Update)?;
        self.recent.forget(id);
        let old = self.find(caller, id).await?;
        let valid = input::validate(input, Some(&old.settings)).map_err(Error::Invalid)?;
        let new = &valid.settings;
        if (&new.host, new.port, &new.database)
            != (
                &old.settings.host,
                old.settings.port,
                &old.settings.database,
            )
        {
            self.allowed(new).await?;
        }
        if new.engine != old.settings.engine {
            return Err(Error::Invalid(vec![FieldError::new(
                "type",
                "cannot change; register a new database instead",
            )]));
        }
        if new.name != old.settings.name {
            self.name_free(caller, &new.name, id).await?;
        }
        let this = self.clone();
        detached(async move { this.update_steps(old, valid).await }).await
    }

    async fn update_steps(&self, old: Database, valid: input::Valid) -> Result<Database> {
        let cr = &old.cr_name;
        let cref = |s: &Settings| {
            s.has_password
                .then(|| credentials_ref(cr, !s.readonly_username.is_empty()))
        };
        let new = &valid.settings;
        let (old_spec, new_spec) = (
            old.settings.cr_spec(cref(&old.settings)),
            new.cr_spec(cref(new)),
        );
        let creds_changed = valid.password.is_some()
            || valid.readonly_password.is_some()
            || (&new.username, &new.readonly_username)
                != (&old.settings.username, &old.settings.readonly_username);
        let restore = if creds_changed {
            let saved = self.cluster.read_credentials(cr).await?;
            let secret = logins(
                new,
                valid.password.as_deref(),
                valid.readonly_password.as_deref(),
            );
            self.cluster.update_credentials(cr, &secret).await?;
            Some(saved)
        } else {
            None
        };
        let spec_changed = new_spec != old_spec;
        let undo = |spec_changed: bool| async move {
            if spec_changed && let Err(e) = self.cluster.update_spec(cr, &old_spec).await {
                tracing::error!(error = %e, cr, "could not put back a Database spec after a failed edit");
            }
            if let Some(saved) = &restore
                && let Err(e) = self.cluster.restore_credentials(cr, saved).await
            {
                tracing::error!(error = %e, cr, "could not put back credentials after a failed edit");
            }
        };
        if spec_changed && let Err(e) = self.cluster.update_spec(cr, &new_spec).await {
            undo(false).await;
            return Err(e.into());
        }
        match self
            .store
            .update_settings(&old.scope, &old.id, &valid.settings, Timestamp::now())
            .await
        {
            Ok(Some(saved)) => Ok(self.with_status(saved)),
            Ok(None) => {
                undo(spec_changed).await;
                Err(Error::NotFound("database"))
            }
            Err(e) => {
                undo(spec_changed).await;
                Err(e.into())
            }
        }
    }

    /// Removes a record: its Database CR and Secret, then the node (with its history), then the
    /// space's DBHubInstance if nothing is left to serve.
    pub async fn delete(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        progress: impl Fn() + Send + 'static,
    ) -> Result<()> {
        caller.require(Permission::Delete)?;
        self.recent.forget(id);
        let d = self.find(caller, id).await?;
        let this = self.clone();
        detached(async move {
            this.cluster.delete_database(&d.cr_name).await?;
            this.store
                .delete_database(&d.scope, &d.id, progress)
                .await?;
            this.release_instance(&d.scope.space_id).await;
            tracing::info!(db.id = %d.id, space.id = %d.scope.space_id, "database removed");
            Ok(())
        })
        .await
    }

    /// Removes the space's DBHub instance when it serves nothing any more (best effort: a
    /// leftover instance with no Databases is scaled to zero by the reconciler).
    async fn release_instance(&self, space_id: &str) {
        if let Err(e) = self.cluster.remove_instance_if_unused(space_id).await {
            tracing::warn!(error = %e, space.id = %space_id, "could not remove the space's unused DBHub instance");
        }
    }

    /// Copies status changes of the service's Database CRs onto their graph nodes as the watch
    /// reports them (so readers of the graph see them; the API computes status on read).
    pub async fn mirror_status(&self) {
        let Some(mut changes) = self.cluster.take_status_changes() else {
            return;
        };
        while let Some(c) = changes.recv().await {
            if let Err(e) = self.store.mirror_status(&c.scope, &c.id, &c.observed).await {
                tracing::debug!(error = %e, db.id = %c.id, "could not mirror a status change onto the graph");
            }
        }
    }
}

/// What the credentials Secret of `s` holds (a `None` password keeps the stored one).
fn logins<'a>(
    s: &'a Settings,
    password: Option<&'a str>,
    readonly_password: Option<&'a str>,
) -> SecretLogins<'a> {
    SecretLogins {
        user: &s.username,
        password,
        readonly: (!s.readonly_username.is_empty())
            .then_some((s.readonly_username.as_str(), readonly_password)),
    }
}

/// Runs `work` to completion in a task of its own: dropping the returned future (a client gone,
/// a deadline) does not stop it halfway.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|e| Err(Error::Internal(format!("a registry task failed: {e}"))))
}
