//! A registered database: who it belongs to ([`Scope`], owner), what its users set
//! ([`Settings`], the editable part, from which the Database CR's spec is derived) and what the
//! operator last saw of it ([`Observed`]).

use std::collections::BTreeMap;

use dbhub_operator::crd::{CredentialsRef, DatabasePhase, DatabaseSpec, DatabaseType, SslMode};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::forms::{empty_as_none, json_text, optional_time, time};

/// The space a record lives in, and its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Tenant of the space.
    pub tenant_id: String,
    /// The space that owns the record.
    pub space_id: String,
}

/// A registered database connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    /// Record id (a UUID).
    pub id: String,
    /// Its space and tenant.
    #[serde(flatten)]
    pub scope: Scope,
    /// The user who registered it.
    pub owner_id: String,
    /// Name of its Database CR (`db-<id without dashes>`); its Secret is `<cr>-credentials`.
    pub cr_name: String,
    /// What its users set.
    #[serde(flatten)]
    pub settings: Settings,
    /// What the operator last saw (from the CR's status).
    #[serde(flatten)]
    pub observed: Observed,
    /// When it was registered.
    #[serde(with = "time")]
    pub created_at: Timestamp,
    /// When its settings last changed.
    #[serde(with = "time")]
    pub updated_at: Timestamp,
}

/// The editable part of a record. The Database CR's spec is derived from it, so "did the
/// connection change" is a comparison of derived specs, never a list of fields to keep in step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Display name, unique in the space.
    pub name: String,
    /// The engine (fixed at registration: changing it means registering anew).
    #[serde(rename = "type")]
    pub engine: DatabaseType,
    /// Server host (empty for sqlite).
    pub host: String,
    /// Server port (0 for sqlite).
    pub port: u16,
    /// Database name, or the sqlite file path.
    pub database: String,
    /// User name (empty for sqlite).
    pub username: String,
    /// Whether a password is kept in the credentials Secret.
    pub has_password: bool,
    /// A read-only login for DBHub's read-only source (empty: reads use the main login).
    #[serde(default)]
    pub readonly_username: String,
    /// Whether the read-only login's password is kept in the credentials Secret.
    #[serde(default)]
    pub has_readonly_password: bool,
    /// TLS mode; none for sqlite (and for servers where the driver's default applies).
    #[serde(with = "empty_as_none")]
    pub ssl_mode: Option<SslMode>,
    /// Only reads may run.
    pub readonly: bool,
    /// Most rows one query returns.
    pub max_rows: u32,
    /// Seconds to wait for a connection.
    pub connection_timeout: u32,
    /// Seconds a query may run.
    pub query_timeout: u32,
    /// Free text shown to people and passed to DBHub as the source's description.
    pub description: String,
    /// String labels (stored as a JSON object in one property: Neo4j has no map properties).
    #[serde(with = "json_text")]
    pub labels: BTreeMap<String, String>,
}

impl Settings {
    /// The Database CR's spec for these settings; `credentials` names the Secret (None for
    /// sqlite, which needs none).
    pub fn cr_spec(&self, credentials: Option<CredentialsRef>) -> DatabaseSpec {
        let network = self.engine != DatabaseType::Sqlite;
        DatabaseSpec {
            db_type: self.engine,
            host: network.then(|| self.host.clone()),
            port: network.then_some(i32::from(self.port)),
            database: Some(self.database.clone()).filter(|d| !d.is_empty()),
            credentials_ref: credentials,
            connection_timeout: self.connection_timeout as i32,
            query_timeout: self.query_timeout as i32,
            ssl_mode: self.ssl_mode,
            readonly: Some(self.readonly),
            max_rows: Some(self.max_rows as i32),
            health_check_interval: dbhub_operator::crd::defaults::health_check_interval(),
            description: Some(self.description.clone()).filter(|d| !d.is_empty()),
        }
    }
}

/// What the operator last reported about a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Pending until first checked.
    #[serde(rename = "status")]
    pub phase: DatabasePhase,
    /// The last check's message (never a secret).
    #[serde(rename = "status_message")]
    pub message: String,
    /// When it was last checked.
    #[serde(with = "optional_time")]
    pub last_checked: Option<Timestamp>,
    /// The TLS mode the last successful check connected with (`allow`/`prefer` resolved).
    #[serde(default, with = "empty_as_none")]
    pub effective_ssl_mode: Option<SslMode>,
}

impl Observed {
    /// Not checked yet.
    pub fn pending() -> Self {
        Self {
            phase: DatabasePhase::Pending,
            message: String::new(),
            last_checked: None,
            effective_ssl_mode: None,
        }
    }
}

/// The Database CR name for a record id.
pub fn cr_name(id: &uuid::Uuid) -> String {
    format!("db-{}", id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_modes_round_trip_through_their_text() {
        for m in [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(m.to_string().parse::<SslMode>(), Ok(m));
        }
        assert_eq!(SslMode::VerifyCa.to_string(), "verify-ca");
        assert_eq!(SslMode::Prefer.to_string(), "prefer");
        assert!("preferred".parse::<SslMode>().is_err());
    }

    #[test]
    fn a_record_reads_back_from_its_graph_properties() {
        let props = serde_json::json!({
            "id": "i", "tenant_id": "t", "space_id": "s", "owner_id": "o", "cr_name": "db-i",
            "name": "n", "type": "postgres", "host": "h", "port": 5432, "database": "d",
            "username": "u", "has_password": true, "ssl_mode": "", "readonly": false,
            "readonly_username": "", "has_readonly_password": false,
            "max_rows": 10, "connection_timeout": 5, "query_timeout": 6, "description": "",
            "labels": "{\"a\":\"b\"}", "status": "Connected", "status_message": "ok",
            "last_checked": "", "created_at": "2026-12-01T08:00:00Z", "updated_at": "2026-12-01T08:00:00.5Z"
        });
        let db: Database = serde_json::from_value(props).unwrap();
        assert_eq!(db.settings.ssl_mode, None);
        assert_eq!(db.settings.labels["a"], "b");
        assert_eq!(db.observed.phase, DatabasePhase::Connected);
        assert_eq!(db.observed.last_checked, None);
        let spec = db.settings.cr_spec(None);
        assert_eq!((spec.readonly, spec.port), (Some(false), Some(5432)));
    }
}
