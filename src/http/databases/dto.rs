//! What `/databases` answers, in the snake_case shapes the Aether frontend reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// `disable`, `require`, `verify-ca`, `verify-full`, or empty for the driver's default.
    pub ssl_mode: String,
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

impl From<Database> for DatabaseRecord {
    fn from(d: Database) -> Self {
        let s = d.settings;
        Self {
            id: d.id,
            name: s.name,
            db_type: s.engine.to_string(),
            host: s.host,
            port: i64::from(s.port),
            database: s.database,
            username: s.username,
            has_password: s.has_password,
            ssl_mode: s.ssl_mode.map(|m| m.to_string()).unwrap_or_default(),
            readonly: s.readonly,
            max_rows: i64::from(s.max_rows),
            connection_timeout: i64::from(s.connection_timeout),
            query_timeout: i64::from(s.query_timeout),
            description: s.description,
            labels: s.labels,
            status: d.observed.phase.to_string(),
            status_message: d.observed.message,
            last_checked: d.observed.last_checked.map(stored_time),
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

/// `{status: connected|failed, message, latency_ms}`.
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
