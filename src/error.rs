//! `ApiError`: the one type that becomes an HTTP error response — RFC 9457
//! `application/problem+json` that also carries Aether's legacy members (`code`, `message`,
//! `error`, `details`, `request_id`) so today's frontend keeps working. Use-case errors
//! ([`crate::model::Error`]) arrive through `From`; the rest are the HTTP layer's own (bodies,
//! routes, tokens). An internal error logs its detail once here and tells the client nothing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::model::Error as Domain;
pub use crate::model::FieldError;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware for error bodies.
    pub static REQUEST_ID: String;
}

/// The error document (RFC 9457 plus Aether's legacy members), for the OpenAPI description.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong and what to do, as a sentence.
    pub detail: String,
    /// Aether's code: VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT,
    /// READONLY_VIOLATION, EXTERNAL_SERVICE_ERROR, SERVICE_UNAVAILABLE, GATEWAY_TIMEOUT, ...
    pub code: String,
    /// Same as `detail` (read by Aether's frontend and legacy clients).
    pub message: String,
    /// Same as `detail` (legacy).
    pub error: String,
    /// `validation_errors: [{field, message}]` for invalid input; `status`/`status_message` when
    /// a database is not Connected; empty otherwise.
    pub details: ProblemDetails,
    /// The request's X-Request-ID.
    pub request_id: Option<String>,
}

/// Machine-readable specifics of a problem.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ProblemDetails {
    /// Each invalid field and what is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_errors: Option<Vec<FieldError>>,
    /// The database's status (when it is not Connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The database's status message (when it is not Connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// A failed connection test's own message (with `status: failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Every error an API call can end in.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// What a use case refused or failed with.
    #[error(transparent)]
    Domain(#[from] Domain),
    /// A request parameter or body field the HTTP layer could not read.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// Malformed request (not tied to one field).
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the service accepts (`--max-body-bytes`, the value).
    #[error(
        "The request body is larger than the {0} bytes this service accepts (--max-body-bytes)."
    )]
    PayloadTooLarge(usize),
    /// The body is not JSON.
    #[error("Send the body as JSON with Content-Type: application/json.")]
    UnsupportedMediaType,
    /// No route has this path.
    #[error("No such route: see the API's OpenAPI document at /api/v1/openapi.json.")]
    NoRoute,
    /// The route exists but not with this method.
    #[error("This route does not accept that HTTP method: see the API's OpenAPI document.")]
    MethodNotAllowed,
    /// `X-Space-Type` / `X-Space-ID` missing or malformed.
    #[error("Space context required: send X-Space-Type (personal or organization) and X-Space-ID.")]
    SpaceContextRequired,
    /// No valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// A connection test ran and did not connect (the message says why; never a secret).
    #[error("The connection test failed: {0}")]
    ConnectionTestFailed(String),
    /// The request outlived its deadline.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A handler panicked (already logged with the detail where it was caught).
    #[error("internal error")]
    Panicked,
}

/// Result with the API error.
pub type ApiResult<T> = Result<T, ApiError>;

/// Seconds a client is asked to wait (`Retry-After`) after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

const INTERNAL: &str =
    "The service hit an unexpected error; retry, and report the request id if it persists.";

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Domain(d) => match d {
                Domain::Invalid(_) => (S::BAD_REQUEST, "VALIDATION_ERROR", "Validation failed"),
                Domain::NotFound(_) => (S::NOT_FOUND, "NOT_FOUND", "Not found"),
                Domain::Forbidden(_) => (S::FORBIDDEN, "FORBIDDEN", "Forbidden"),
                Domain::Conflict(_) => (S::CONFLICT, "CONFLICT", "Conflict"),
                Domain::NotReady { .. } => (S::CONFLICT, "CONFLICT", "Not ready"),
                Domain::ReadOnly(_) => (S::FORBIDDEN, "READONLY_VIOLATION", "Read-only database"),
                Domain::QueryFailed(_) => {
                    (S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", "Query failed")
                }
                Domain::Unavailable(_) => (
                    S::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    "Service unavailable",
                ),
                Domain::BadGateway(_) => {
                    (S::BAD_GATEWAY, "EXTERNAL_SERVICE_ERROR", "Upstream error")
                }
                Domain::Timeout(_) => (S::GATEWAY_TIMEOUT, "GATEWAY_TIMEOUT", "Upstream timeout"),
                Domain::RateLimited { .. } => (
                    S::TOO_MANY_REQUESTS,
                    "RATE_LIMIT_EXCEEDED",
                    "Too many requests",
                ),
                Domain::Internal(_) => (
                    S::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    "Internal server error",
                ),
            },
            Self::Validation(_) => (S::BAD_REQUEST, "VALIDATION_ERROR", "Validation failed"),
            Self::BadRequest(_) => (S::BAD_REQUEST, "VALIDATION_ERROR", "Bad request"),
            Self::PayloadTooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                "VALIDATION_ERROR",
                "Payload too large",
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "VALIDATION_ERROR",
                "Unsupported media type",
            ),
            Self::NoRoute => (S::NOT_FOUND, "NOT_FOUND", "Not found"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "VALIDATION_ERROR",
                "Method not allowed",
            ),
            Self::SpaceContextRequired => {
                (S::BAD_REQUEST, "VALIDATION_ERROR", "Space context required")
            }
            Self::Unauthorized(_) => (S::UNAUTHORIZED, "UNAUTHORIZED", "Unauthorized"),
            Self::ConnectionTestFailed(_) => (
                S::BAD_GATEWAY,
                "EXTERNAL_SERVICE_ERROR",
                "Connection test failed",
            ),
            Self::DeadlineExceeded(_) => (S::GATEWAY_TIMEOUT, "GATEWAY_TIMEOUT", "Request timeout"),
            Self::Panicked => (
                S::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "Internal server error",
            ),
        }
    }

    /// The human sentence clients show (`detail`, `message`, `error`): capitalised and ended,
    /// whatever the source of the text (a database's own message included).
    fn sentence(&self) -> String {
        let text = self.text();
        let mut chars = text.trim().chars();
        let mut out: String = match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => return "The request failed.".into(),
        };
        if !out.ends_with(['.', '!', '?']) {
            out.push('.');
        }
        out
    }

    fn text(&self) -> String {
        match self {
            Self::Domain(Domain::Invalid(errs)) | Self::Validation(errs) => invalid_sentence(errs),
            Self::Domain(Domain::NotFound(what)) => {
                format!("No {what} with this id exists in this space (or you cannot see it).")
            }
            Self::Domain(Domain::Internal(_)) | Self::Panicked => INTERNAL.into(),
            Self::Domain(Domain::QueryFailed(m)) => format!("The database reported an error: {m}"),
            other => other.to_string(),
        }
    }

    fn details(&self) -> ProblemDetails {
        match self {
            Self::Domain(Domain::Invalid(errs)) | Self::Validation(errs) => ProblemDetails {
                validation_errors: Some(errs.clone()),
                ..Default::default()
            },
            Self::Domain(Domain::NotReady {
                status,
                status_message,
                ..
            }) => ProblemDetails {
                status: Some(status.clone()),
                status_message: Some(status_message.clone()),
                ..Default::default()
            },
            Self::ConnectionTestFailed(message) => ProblemDetails {
                status: Some("failed".into()),
                message: Some(message.clone()),
                ..Default::default()
            },
            _ => ProblemDetails::default(),
        }
    }

    /// The problem document.
    pub fn body(&self, request_id: Option<&str>) -> Value {
        let (status, code, title) = self.parts();
        let detail = self.sentence();
        json!({
            "type": format!("https://aether.tas.io/problems/{}", code.to_ascii_lowercase().replace('_', "-")),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
            "message": detail,
            "error": detail,
            "details": self.details(),
            "request_id": request_id,
        })
    }

    /// `Retry-After` seconds for this error, if it has one.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Domain(Domain::Unavailable(_)) => Some(RETRY_AFTER_SECS),
            Self::Domain(Domain::RateLimited { retry_after, .. }) => Some(*retry_after),
            _ => None,
        }
    }
}

/// "The field `port` must be a number from 1 to 65535." — one sentence naming every field.
fn invalid_sentence(errs: &[FieldError]) -> String {
    let parts: Vec<String> = errs
        .iter()
        .map(|e| format!("`{}` {}", e.field, e.message.trim_end_matches('.')))
        .collect();
    match parts.as_slice() {
        [] => "The request is invalid.".into(),
        [one] => format!("The field {one}."),
        many => format!("Fix these fields: {}.", many.join("; ")),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        if let Self::Domain(Domain::Internal(detail)) = &self {
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
        assert_eq!(b["message"], "The field `port` must be 1-65535.");
        let q =
            ApiError::from(Domain::QueryFailed("relation \"x\" does not exist".into())).body(None);
        assert_eq!(
            q["message"],
            "The database reported an error: relation \"x\" does not exist."
        );
    }

    #[test]
    fn internal_problem_hides_the_detail() {
        let b = ApiError::from(Domain::Internal("neo4j: secret stuff".into())).body(None);
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
