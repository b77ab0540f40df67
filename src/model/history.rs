//! A query run as recorded in the caller's history.

use serde::{Deserialize, Serialize};

/// One query run through the API (refused, failed or not). Clients see it without its scope
/// and ordering key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Execution {
    /// Run id (UUID).
    pub id: String,
    /// Tenant of the space.
    #[serde(skip_serializing)]
    #[schema(ignore)]
    pub tenant_id: String,
    /// The space it ran in.
    #[serde(skip_serializing)]
    #[schema(ignore)]
    pub space_id: String,
    /// The database's record id.
    pub database_id: String,
    /// The database's name when the query ran.
    pub database_name: String,
    /// Who ran it (always the caller).
    pub user_id: String,
    /// The SQL as sent (capped at [`MAX_STATEMENT`] characters).
    pub statement: String,
    /// `success`, `error` or `rejected` (refused by the service before DBHub).
    pub status: String,
    /// Why it failed or was refused (never a secret).
    pub error: String,
    /// Rows returned or affected.
    pub row_count: i64,
    /// Whether the row limit cut the result.
    pub truncated: bool,
    /// Wall time in milliseconds.
    pub duration_ms: i64,
    /// When it ran (RFC 3339).
    pub executed_at: String,
    /// The saved query this was a run of, if any.
    #[serde(default, deserialize_with = "super::forms::empty_as_none::deserialize")]
    pub saved_query_id: Option<String>,
    /// Nanoseconds since the epoch (ordering and the history cursor).
    #[serde(skip_serializing)]
    #[schema(ignore)]
    pub executed_ns: i64,
}

/// Longest statement kept in history.
pub const MAX_STATEMENT: usize = 10_000;
