//! What `/databases` answers, in the snake_case shapes the Aether frontend reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use dbhub_operator::crd::{DatabasePhase, DatabaseType, SslMode};

use crate::model::Database;
use crate::model::forms::stored_time;
use crate::registry::CheckOutcome;

/// A registered database. Never a password, DSN or token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DatabaseRecord {
    /// Record id (a UUID).
    pub id: String,
    /// Display name, unique in the space.
    pub name: String,
    /// `postgres`, `mysql`, `mariadb`, `sqlserver` or `sqlite`.
    #[serde(rename = "type")]
    pub db_type: String,
    /// The frontend's type id: `postgresql`, `mysql` (also for MariaDB), `sqlserver` or `sqlite`.
    #[serde(rename = "databaseType")]
    pub database_type: String,
    /// The record id again (the edit form drops `id` from what it echoes into its "Test
    /// Connection", but keeps this).
    pub connection_id: String,
    /// Server host (empty for sqlite).
    pub host: String,
    /// Server port (0 for sqlite).
    pub port: i64,
    /// Database name, or the sqlite file path.
    pub database: String,
    /// User name the service connects as.
    pub username: String,
    /// Whether a password is stored (in a Kubernetes Secret).
    pub has_password: bool,
    /// The read-only login's user name (empty: reads use the main login).
    pub readonly_username: String,
    /// Whether the read-only login's password is stored.
    pub has_readonly_password: bool,
    /// `disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`, or empty for the
    /// driver's default.
    pub ssl_mode: String,
    /// The same (the PostgreSQL form's field name).
    #[serde(rename = "sslMode")]
    pub ssl_mode_form: String,
    /// The TLS mode the last successful check connected with (`allow`/`prefer` resolved to
    /// `disable` or `require`); null before it.
    pub effective_ssl_mode: Option<String>,
    /// MySQL/MariaDB: whether TLS is asked for (the form's "Use SSL").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl: Option<bool>,
    /// SQL Server: whether the connection is encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<bool>,
    /// SQL Server: whether the server certificate is trusted unverified (DBHub 1.4 cannot
    /// verify it).
    #[serde(
        rename = "trustServerCertificate",
        skip_serializing_if = "Option::is_none"
    )]
    pub trust_server_certificate: Option<bool>,
    /// Only reads may run.
    pub readonly: bool,
    /// Most rows one query returns.
    pub max_rows: i64,
    /// Seconds to wait for a connection.
    pub connection_timeout: i64,
    /// Seconds a query may run.
    pub query_timeout: i64,
    /// Free text shown to people.
    pub description: String,
    /// String labels set by the user.
    pub labels: BTreeMap<String, String>,
    /// `Pending` (not checked yet), `Connected`, `Degraded` or `Failed`.
    pub status: String,
    /// The last check's message (never a secret).
    pub status_message: String,
    /// When it was last checked (RFC 3339), null before the first check.
    pub last_checked: Option<String>,
    /// The connection card's reading of the last check: `success` (Connected) or `failed`
    /// (Degraded or Failed); absent before the first check.
    #[serde(rename = "lastTestStatus", skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub last_test_status: Option<String>,
    /// Same as last_checked (the card's "Connected 5m ago"); absent before the first check.
    #[serde(rename = "lastTestedAt", skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub last_tested_at: Option<String>,
    /// The space it belongs to.
    pub space_id: String,
    /// The space's tenant.
    pub tenant_id: String,
    /// The user who registered it.
    pub owner_id: String,
    /// When it was registered (RFC 3339).
    pub created_at: String,
    /// When its settings last changed (RFC 3339).
    pub updated_at: String,
}

/// The Aether frontend's id of an engine (its `databaseTypes.js`).
fn frontend_type(engine: DatabaseType) -> &'static str {
    match engine {
        DatabaseType::Postgres => "postgresql",
        DatabaseType::Mysql | DatabaseType::Mariadb => "mysql",
        DatabaseType::Sqlserver => "sqlserver",
        DatabaseType::Sqlite => "sqlite",
    }
}

/// What the connection card shows for a phase.
fn card_status(phase: DatabasePhase) -> Option<&'static str> {
    match phase {
        DatabasePhase::Connected => Some("success"),
        DatabasePhase::Degraded | DatabasePhase::Failed => Some("failed"),
        DatabasePhase::Pending => None,
    }
}

impl From<Database> for DatabaseRecord {
    fn from(d: Database) -> Self {
        let s = d.settings;
        let ssl_mode = s.ssl_mode.map(|m| m.to_string()).unwrap_or_default();
        let tls_on = s.ssl_mode.is_some_and(|m| m != SslMode::Disable);
        let (ssl, sqlserver) = match s.engine {
            DatabaseType::Mysql | DatabaseType::Mariadb => (Some(tls_on), false),
            DatabaseType::Sqlserver => (None, true),
            _ => (None, false),
        };
        Self {
            connection_id: d.id.clone(),
            id: d.id,
            name: s.name,
            db_type: s.engine.to_string(),
            database_type: frontend_type(s.engine).into(),
            ssl_mode_form: ssl_mode.clone(),
            ssl_mode,
            effective_ssl_mode: d.observed.effective_ssl_mode.map(|m| m.to_string()),
            ssl,
            encrypt: sqlserver.then_some(tls_on),
            trust_server_certificate: sqlserver.then_some(tls_on),
            readonly_username: s.readonly_username,
            has_readonly_password: s.has_readonly_password,
            host: s.host,
            port: i64::from(s.port),
            database: s.database,
            username: s.username,
            has_password: s.has_password,
            readonly: s.readonly,
            max_rows: i64::from(s.max_rows),
            connection_timeout: i64::from(s.connection_timeout),
            query_timeout: i64::from(s.query_timeout),
            description: s.description,
            labels: s.labels,
            status: d.observed.phase.to_string(),
            status_message: d.observed.message,
            last_checked: d.observed.last_checked.map(stored_time),
            last_test_status: card_status(d.observed.phase).map(Into::into),
            last_tested_at: d.observed.last_checked.map(stored_time),
            space_id: d.scope.space_id,
            tenant_id: d.scope.tenant_id,
            owner_id: d.owner_id,
            created_at: stored_time(d.created_at),
            updated_at: stored_time(d.updated_at),
        }
    }
}

/// `{databases, total, page, page_size}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatabaseList {
    /// The records on this page, newest first.
    pub databases: Vec<DatabaseRecord>,
    /// All records in the space.
    pub total: i64,
    /// The page number, from 1.
    pub page: i64,
    /// Records per page.
    pub page_size: i64,
}

/// `{status: connected, message, latency_ms}` (a failed test is a 502 problem whose
/// `details` carry `status: failed` and the message).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestResult {
    /// `connected` or `failed`.
    pub status: String,
    /// What happened (never a secret).
    pub message: String,
    /// Connect + query time in milliseconds when connected.
    pub latency_ms: Option<i64>,
}

impl From<CheckOutcome> for TestResult {
    fn from(c: CheckOutcome) -> Self {
        Self {
            status: if c.connected { "connected" } else { "failed" }.into(),
            message: c.message,
            latency_ms: c.latency_ms,
        }
    }
}
