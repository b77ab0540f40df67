//! The records every layer speaks: who is calling in which space ([`access`]), a registered
//! database ([`database`]), a recorded query run ([`history`]), a saved query ([`saved`]), and how a use case can fail
//! ([`Error`]). No I/O here; storage, Kubernetes and HTTP convert to and from these types.

pub mod access;
pub mod database;
pub mod forms;
pub mod history;
pub mod saved;

pub use access::{Caller, Permission, Role};
pub use database::{Database, Observed, Scope, Settings};
pub use history::Execution;
pub use saved::{Listed, SavedQuery, Visibility};

/// One invalid input field.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name as the client sent it.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How a use case can end other than in its result. `error.rs` turns each into an HTTP problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input, field by field.
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    /// No such record in the caller's space (or not visible to the caller: the two are never
    /// told apart).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller's role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// It conflicts with existing state (a name taken, a resource missing).
    #[error("{0}")]
    Conflict(String),
    /// The record is not in a state that allows it (e.g. a query on a database not Connected).
    #[error("{message}")]
    NotReady {
        /// Why, for people.
        message: String,
        /// The record's status (Pending, Failed, ...).
        status: String,
        /// The record's status message.
        status_message: String,
    },
    /// A statement was refused because the database is read-only.
    #[error("{0}")]
    ReadOnly(String),
    /// The database ran the query and reported an error (its message, secret-free).
    #[error("{0}")]
    QueryFailed(String),
    /// A dependency (Neo4j, Kubernetes, DBHub) is down or not ready; retrying later can work.
    #[error("{0}")]
    Unavailable(String),
    /// DBHub or the database behind it failed.
    #[error("{0}")]
    BadGateway(String),
    /// DBHub or the database did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// The caller started too many of these lately.
    #[error("{message}")]
    RateLimited {
        /// Why, for people.
        message: String,
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// A bug or an unexpected failure; the detail is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

/// Result of a use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::storage::Error> for Error {
    fn from(e: crate::storage::Error) -> Self {
        match e {
            crate::storage::Error::Unavailable(detail) => {
                tracing::warn!(error = %detail, "the graph database is unavailable");
                Self::Unavailable(
                    "The graph database is unavailable or busy; retry shortly.".into(),
                )
            }
            crate::storage::Error::Conflict(m) => Self::Conflict(m),
            other => Self::Internal(other.to_string()),
        }
    }
}
