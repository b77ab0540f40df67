//! `ApiError`: the one type that becomes an HTTP error response — RFC 9457
//! `application/problem+json` that also carries Aether's legacy members (`code`, `message`,
//! `error`, `details`, `request_id`) so today's frontend keeps working. A 5xx logs its detail
//! once here and tells the client nothing internal.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

tokio::task_local! {
    /// The current request's id, set by the request-id middleware for error bodies.
    pub static REQUEST_ID: String;
}

/// One invalid input field.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name as the client sent it.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// Shorthand.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The error document (RFC 9457 plus Aether's legacy members), for the OpenAPI description.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Problem type URI.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong.
    pub detail: String,
    /// VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, SERVICE_UNAVAILABLE, …
    pub code: String,
    /// Same as detail (legacy).
    pub message: String,
    /// Same as detail (legacy).
    pub error: String,
    /// `validation_errors: [{field, message}]` for validation problems.
    #[schema(value_type = Object)]
    pub details: Value,
    /// The request's X-Request-ID.
    pub request_id: Option<String>,
}

/// Every error an API call can end in.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Invalid input, field by field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Malformed request (not tied to one field).
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the service accepts (`--max-body-bytes`, the value).
    #[error(
        "the request body is larger than the {0} bytes this service accepts (--max-body-bytes)"
    )]
    PayloadTooLarge(usize),
    /// The body is not JSON.
    #[error("send the body as JSON with Content-Type: application/json")]
    UnsupportedMediaType,
    /// No route has this path.
    #[error("no such route: see the API's OpenAPI document at /api/v1/openapi.json")]
    NoRoute,
    /// The route exists but not with this method.
    #[error("this route does not accept that HTTP method: see the API's OpenAPI document")]
    MethodNotAllowed,
    /// Too many requests of one kind from one caller (`Retry-After` seconds).
    #[error("{message}")]
    TooManyRequests {
        /// Why, for people.
        message: String,
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// `X-Space-Type` / `X-Space-ID` missing or malformed.
    #[error("Space context required: send X-Space-Type (personal|organization) and X-Space-ID")]
    SpaceContextRequired,
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Not found (or not visible to the caller — indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// A dependency is down (answered with `Retry-After`).
    #[error("{0}")]
    Unavailable(String),
    /// The record is not in a state that allows the operation (409 with its status).
    #[error("{message}")]
    NotReady {
        /// Why, for people.
        message: String,
        /// The record's status (e.g. Pending, Failed).
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
    /// An upstream (DBHub or the database behind it) failed.
    #[error("{0}")]
    BadGateway(String),
    /// An upstream did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A bug or an unexpected dependency failure; the detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
    /// A handler panicked (already logged with the detail where it was caught).
    #[error("internal error")]
    Panicked,
}

/// Result with the API error.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Validation(_) => (
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "Validation failed",
            ),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Bad request"),
            Self::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "VALIDATION_ERROR",
                "Payload too large",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "VALIDATION_ERROR",
                "Unsupported media type",
            ),
            Self::NoRoute => (StatusCode::NOT_FOUND, "NOT_FOUND", "Not found"),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "VALIDATION_ERROR",
                "Method not allowed",
            ),
            Self::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                "Too many requests",
            ),
            Self::SpaceContextRequired => (
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "Space context required",
            ),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN", "Forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND", "Not found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT", "Conflict"),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service unavailable",
            ),
            Self::NotReady { .. } => (StatusCode::CONFLICT, "CONFLICT", "Not ready"),
            Self::ReadOnly(_) => (
                StatusCode::FORBIDDEN,
                "READONLY_VIOLATION",
                "Read-only database",
            ),
            Self::QueryFailed(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                "Query failed",
            ),
            Self::BadGateway(_) => (
                StatusCode::BAD_GATEWAY,
                "EXTERNAL_SERVICE_ERROR",
                "Upstream error",
            ),
            Self::GatewayTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "GATEWAY_TIMEOUT",
                "Upstream timeout",
            ),
            Self::Internal(_) | Self::Panicked => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "Internal server error",
            ),
        }
    }

    /// The problem document.
    pub fn body(&self, request_id: Option<&str>) -> Value {
        let (status, code, title) = self.parts();
        let detail = self.to_string();
        let details = match self {
            Self::Validation(errors) => json!({ "validation_errors": errors }),
            Self::NotReady {
                status,
                status_message,
                ..
            } => json!({ "status": status, "status_message": status_message }),
            _ => json!({}),
        };
        json!({
            "type": format!("https://aether.tas.io/problems/{}", code.to_ascii_lowercase().replace('_', "-")),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
            "message": detail,
            "error": detail,
            "details": details,
            "request_id": request_id,
        })
    }
}

/// Seconds a client is asked to wait (`Retry-After`) after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    /// `Retry-After` seconds for this error, if it has one.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Unavailable(_) => Some(RETRY_AFTER_SECS),
            Self::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let id = REQUEST_ID.try_with(Clone::clone).ok();
        let mut res = (status, axum::Json(self.body(id.as_deref()))).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<crate::storage::Error> for ApiError {
    fn from(e: crate::storage::Error) -> Self {
        match e {
            crate::storage::Error::Unavailable(detail) => {
                tracing::warn!(error = %detail, "the graph database is unavailable");
                Self::Unavailable("the graph database is unavailable or busy; retry shortly".into())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_lists_fields_and_legacy_members() {
        let b =
            ApiError::Validation(vec![FieldError::new("port", "must be 1-65535")]).body(Some("r1"));
        assert_eq!(b["status"], 400);
        assert_eq!(b["code"], "VALIDATION_ERROR");
        assert_eq!(b["details"]["validation_errors"][0]["field"], "port");
        assert_eq!(b["request_id"], "r1");
        assert_eq!(b["message"], b["detail"]);
        assert_eq!(b["error"], b["detail"]);
    }

    #[test]
    fn internal_problem_hides_the_detail() {
        let b = ApiError::Internal("neo4j: secret stuff".into()).body(None);
        assert_eq!(b["status"], 500);
        assert!(!b.to_string().contains("secret stuff"));
    }

    #[test]
    fn space_context_problem_has_the_text_the_frontend_looks_for() {
        assert!(
            ApiError::SpaceContextRequired.body(None)["detail"]
                .as_str()
                .unwrap()
                .contains("Space context required")
        );
    }
}
