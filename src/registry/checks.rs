//! Connection checks on demand: an unsaved connection (the form's "Test" button; nothing is
//! kept) and a registered one (re-checked now; the outcome is stored on its node, and shows on
//! the record until the operator's next check is newer).

use dbhub_operator::controller::database::phase_after_failure;
use dbhub_operator::crd::DatabasePhase;
use dbhub_operator::dsn::Credentials;
use dbhub_operator::probe;
use k8s_openapi::jiff::Timestamp;

use super::Registry;
use super::input::{CHECK_TIMEOUT_SECS, TestInput, validate};
use crate::k8s::writes::CredentialsProblem;
use crate::model::{Caller, Error, Observed, Permission, Result};

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Whether it connected and ran a query.
    pub connected: bool,
    /// What happened, for people (never a secret).
    pub message: String,
    /// Connect + query time, when it connected.
    pub latency_ms: Option<i64>,
    /// The TLS mode that connected (`allow`/`prefer` resolved).
    pub ssl_mode: Option<dbhub_operator::crd::SslMode>,
    /// A failure only a change of the settings or credentials can mend (not a busy or
    /// unreachable server).
    pub permanent: bool,
}

impl From<std::result::Result<probe::Probed, probe::ProbeError>> for CheckOutcome {
    fn from(r: std::result::Result<probe::Probed, probe::ProbeError>) -> Self {
        match r {
            Ok(p) => Self {
                connected: true,
                message: match p.ssl_mode {
                    Some(dbhub_operator::crd::SslMode::Disable) => {
                        format!("connected without TLS: {}", p.server_version)
                    }
                    Some(_) => format!("connected with TLS: {}", p.server_version),
                    None => format!("connected: {}", p.server_version),
                },
                latency_ms: Some(p.latency.as_millis() as i64),
                ssl_mode: p.ssl_mode,
                permanent: false,
            },
            Err(e) => Self {
                permanent: e.is_permanent(),
                ..Self::failed(e.to_string())
            },
        }
    }
}

impl CheckOutcome {
    /// A failure a user must mend (unusable credentials and the like).
    fn failed(message: String) -> Self {
        Self {
            connected: false,
            message,
            latency_ms: None,
            ssl_mode: None,
            permanent: true,
        }
    }
}

/// How many connection tests one user may start per minute (each opens a connection to a host
/// the user names: without a bound the API would be a free port scanner). Per replica.
pub(super) struct Limiter {
    per_minute: u32,
    windows: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
}

const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

impl Limiter {
    pub(super) fn per_minute(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: Default::default(),
        }
    }

    /// Counts one test by `user`, or refuses it with the seconds until the window ends.
    fn admit(&self, user: &str) -> Result<()> {
        let now = std::time::Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(user.to_string()).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *count) = (now, 0);
        }
        if *count >= self.per_minute {
            let retry_after = WINDOW
                .saturating_sub(now.duration_since(*start))
                .as_secs()
                .max(1);
            return Err(Error::RateLimited {
                message: format!(
                    "You started {} connection tests within a minute, the most this service allows; retry in {retry_after} s.",
                    self.per_minute
                ),
                retry_after,
            });
        }
        *count += 1;
        Ok(())
    }
}

impl Registry {
    /// Checks a connection without saving anything. The edit form's test names the record
    /// (`id`) and sends no password: then the record's stored password is used, with the
    /// edited connection details over the stored ones.
    pub async fn test_unsaved(&self, caller: &Caller, t: &TestInput) -> Result<CheckOutcome> {
        let record = match t.record_id() {
            Some(id) if t.password.as_deref().is_none_or(str::is_empty) => {
                caller.require(Permission::Update)?;
                Some(self.find(caller, id).await?)
            }
            _ => {
                caller.require(Permission::Create)?;
                None
            }
        };
        self.tests.admit(&caller.user_id)?;
        let base = record.as_ref().map(|r| &r.settings);
        let valid = validate(&t.as_database_input(), base).map_err(Error::Invalid)?;
        self.allowed(&valid.settings).await?;
        let password = match (valid.password, &record) {
            (Some(p), _) => Some(p),
            (None, Some(r)) => self.stored_password(r).await?,
            (None, None) => None,
        };
        let creds = password.map(|password| Credentials {
            user: valid.settings.username.clone(),
            password,
        });
        Ok(probe::probe(&valid.settings.cr_spec(None), creds.as_ref())
            .await
            .into())
    }

    /// The Database CR of `r`, read now.
    async fn resource_of(
        &self,
        r: &crate::model::Database,
    ) -> Result<dbhub_operator::crd::Database> {
        self.cluster
            .fresh_database(&r.cr_name)
            .await?
            .ok_or_else(|| {
                Error::Conflict(
                    "The database's Kubernetes resource is missing; register the database again."
                        .into(),
                )
            })
    }

    /// The password kept for `r` (read as the operator reads it).
    async fn stored_password(&self, r: &crate::model::Database) -> Result<Option<String>> {
        let cr = self.resource_of(r).await?;
        match self.cluster.credentials(&cr).await {
            Ok(logins) => Ok(logins.map(|l| l.main.password)),
            Err(CredentialsProblem::Unreachable(e)) => Err(e.into()),
            Err(CredentialsProblem::Unusable(why)) => Err(Error::Conflict(format!(
                "The stored credentials cannot be read ({why}); send the password."
            ))),
        }
    }

    /// Re-checks a registered database now, with the credentials its CR references.
    pub async fn test_saved(&self, caller: &Caller, id: &str) -> Result<CheckOutcome> {
        caller.require(Permission::Update)?;
        self.tests.admit(&caller.user_id)?;
        let record = self.find(caller, id).await?;
        self.allowed(&record.settings).await?;
        let cr = self.resource_of(&record).await?;
        let mut spec = cr.spec.clone();
        spec.connection_timeout = spec.connection_timeout.min(CHECK_TIMEOUT_SECS as i32);
        let outcome = match self.cluster.credentials(&cr).await {
            Ok(logins) => probe::probe(&spec, logins.as_ref().map(|l| &l.main))
                .await
                .into(),
            Err(CredentialsProblem::Unreachable(e)) => return Err(e.into()),
            Err(CredentialsProblem::Unusable(why)) => CheckOutcome::failed(why),
        };
        let observed = Observed {
            // Decided as the reconciler decides: a busy server is not a Failed database.
            phase: if outcome.connected {
                DatabasePhase::Connected
            } else {
                phase_after_failure(outcome.permanent, Some(record.observed.phase))
            },
            message: outcome.message.clone(),
            last_checked: Some(Timestamp::now()),
            effective_ssl_mode: outcome.ssl_mode,
        };
        self.store
            .mirror_status(&record.scope, &record.id, &observed)
            .await?;
        Ok(outcome)
    }
}
