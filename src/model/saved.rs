//! A saved query: SQL a user keeps for one database of a space, who may see it
//! ([`Visibility`]), and how it has run ([`Stats`]).

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Scope;
use super::forms::{optional_time, time};

/// Who besides the owner sees a saved query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// The owner only.
    Private,
    /// Members of a team in `shared_with_teams` (who are in the space).
    Shared,
    /// Everyone in the space.
    Public,
}

impl Visibility {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Shared => "shared",
            Self::Public => "public",
        }
    }

    /// Parses the wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "private" => Some(Self::Private),
            "shared" => Some(Self::Shared),
            "public" => Some(Self::Public),
            _ => None,
        }
    }
}

/// What its owner sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The SQL.
    pub query: String,
    /// The database it runs on (a record of the same space).
    pub database_id: String,
    /// Who sees it.
    pub visibility: Visibility,
    /// Teams that see it when `shared`.
    pub shared_with_teams: Vec<String>,
    /// Free labels (filterable).
    pub tags: Vec<String>,
    /// A folder name ("" for none).
    pub folder: String,
}

/// How it has run through `execute` (successful runs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Successful runs.
    #[serde(default)]
    pub execution_count: i64,
    /// Their mean wall time in milliseconds.
    #[serde(default)]
    pub avg_duration_ms: f64,
    /// Rows the last run returned.
    #[serde(default)]
    pub last_row_count: i64,
    /// When it last ran.
    #[serde(default, with = "optional_time")]
    pub last_executed_at: Option<Timestamp>,
    /// Who ran it last (a user id; "" before the first run).
    #[serde(default)]
    pub last_executed_by: String,
}

/// A saved query as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedQuery {
    /// Id (a UUID).
    pub id: String,
    /// Its space and tenant.
    #[serde(flatten)]
    pub scope: Scope,
    /// Who saved it (the only one who may change or delete it).
    pub owner_id: String,
    /// What the owner set.
    #[serde(flatten)]
    pub definition: Definition,
    /// How it has run.
    #[serde(flatten)]
    pub stats: Stats,
    /// When it was saved.
    #[serde(with = "time")]
    pub created_at: Timestamp,
    /// When its definition last changed.
    #[serde(with = "time")]
    pub updated_at: Timestamp,
}

/// A saved query with what is read alongside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The query.
    pub query: SavedQuery,
    /// Its database's current name.
    pub database_name: String,
    /// Its owner's name in Aether's graph ("" when unknown).
    pub owner_name: String,
}

/// How a list is ordered: a column and a direction (ties by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// The column.
    pub by: SortBy,
    /// Ascending when true.
    pub ascending: bool,
}

/// The columns a list may be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Name, case-insensitively.
    Name,
    /// When saved.
    CreatedAt,
    /// When last changed.
    UpdatedAt,
    /// Successful runs.
    ExecutionCount,
    /// When last run (never-run queries as the oldest).
    LastExecutedAt,
}

/// What a list keeps (empty strings and lists: no filter).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this database's.
    pub database_id: String,
    /// Only this visibility.
    pub visibility: String,
    /// Only this folder.
    pub folder: String,
    /// Only those carrying any of these tags.
    pub tags: Vec<String>,
    /// Only this owner's.
    pub owner_id: String,
    /// Only those whose name, description or SQL contains this (case-insensitive).
    pub search: String,
}
