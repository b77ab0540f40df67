//! The error responses the OpenAPI document lists, shared by the operations (every one is
//! RFC 9457 problem+json, see [`crate::error::Problem`]).

use crate::error::Problem;

/// What any operation of the API can answer besides its success.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only
pub enum Standard {
    /// Invalid input (`details.validation_errors` names each field) or missing space headers
    /// (the text contains "Space context required").
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No valid bearer token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The caller is not a member of the space, or its role does not allow this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such space, or no such record in it.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// A dependency (Neo4j, Kubernetes, DBHub) is unavailable; nothing was changed. Retry after
    /// `Retry-After` seconds.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
    /// The request did not finish in time.
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(Problem),
}

/// What operations with a JSON body can answer besides [`Standard`].
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only
pub enum Body {
    /// The body is larger than the service accepts.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    NotJson(Problem),
}

/// What operations that go through DBHub can answer besides [`Standard`].
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only
pub enum Upstream {
    /// The database is not Connected (`details.status` and `details.status_message` say why).
    #[response(status = 409, content_type = "application/problem+json")]
    NotReady(Problem),
    /// The database ran the statement and reported an error (its message).
    #[response(status = 422, content_type = "application/problem+json")]
    QueryFailed(Problem),
    /// DBHub could not reach the database.
    #[response(status = 502, content_type = "application/problem+json")]
    BadGateway(Problem),
}
