//! Connection checks on demand: an unsaved connection (the form's "Test" button; nothing is
//! kept) and a registered one (re-checked now; the outcome is stored on its node, and shows on
//! the record until the operator's next check is newer).

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
}

impl From<std::result::Result<probe::Probed, probe::ProbeError>> for CheckOutcome {
    fn from(r: std::result::Result<probe::Probed, probe::ProbeError>) -> Self {
        match r {
            Ok(p) => Self {
                connected: true,
                message: format!("connected: {}", p.server_version),
                latency_ms: Some(p.latency.as_millis() as i64),
            },
            Err(e) => Self::failed(e.to_string()),
        }
    }
}

impl CheckOutcome {
    fn failed(message: String) -> Self {
        Self {
            connected: false,
            message,
            latency_ms: None,
        }
    }
}

impl Registry {
    /// Checks a connection without saving anything.
    pub async fn test_unsaved(&self, caller: &Caller, t: &TestInput) -> Result<CheckOutcome> {
        caller.require(Permission::Create)?;
        let valid = validate(&t.as_database_input(), None).map_err(Error::Invalid)?;
        self.guard_host(&valid.settings).await?;
        let creds = valid.password.map(|password| Credentials {
            user: valid.settings.username.clone(),
            password,
        });
        Ok(probe::probe(&valid.settings.cr_spec(None), creds.as_ref())
            .await
            .into())
    }

    /// Re-checks a registered database now, with the credentials its CR references.
    pub async fn test_saved(&self, caller: &Caller, id: &str) -> Result<CheckOutcome> {
        caller.require(Permission::Update)?;
        let record = self.find(caller, id).await?;
        self.guard_host(&record.settings).await?;
        let cr = self
            .cluster
            .fresh_database(&record.cr_name)
            .await?
            .ok_or_else(|| {
                Error::Conflict(
                    "The database's Kubernetes resource is missing; register the database again."
                        .into(),
                )
            })?;
        let mut spec = cr.spec.clone();
        spec.connection_timeout = spec.connection_timeout.min(CHECK_TIMEOUT_SECS as i32);
        let outcome = match self.cluster.credentials(&cr).await {
            Ok(creds) => probe::probe(&spec, creds.as_ref()).await.into(),
            Err(CredentialsProblem::Unreachable(e)) => return Err(e.into()),
            Err(CredentialsProblem::Unusable(why)) => CheckOutcome::failed(why),
        };
        let observed = Observed {
            phase: if outcome.connected {
                DatabasePhase::Connected
            } else {
                DatabasePhase::Failed
            },
            message: outcome.message.clone(),
            last_checked: Some(Timestamp::now()),
        };
        self.store
            .mirror_status(&record.scope, &record.id, &observed)
            .await?;
        Ok(outcome)
    }
}
