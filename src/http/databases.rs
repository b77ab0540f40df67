//! `/api/v1/databases`: register, list, read, edit, remove and test database connections of a
//! space. Each handler parses, calls the [`crate::registry`] use case and shapes the answer.

mod dto;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::dto::{DatabaseList, DatabaseRecord, TestResult};
use super::AppState;
use super::context::Space;
use super::extract::{JsonBody, Path, Query};
use super::layers::Deadline;
use super::paging::{Paging, paging};
use super::problems::{Body, Standard};
use crate::error::{ApiError, ApiResult};
use crate::registry::{CheckOutcome, DatabaseInput, TestInput};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(test_unsaved))
        .routes(routes!(read, update, remove))
        .routes(routes!(test_saved))
}

/// List the space's databases, newest first: without `page` and `page_size` all of them (at most
/// 1000; `total` tells whether there are more), otherwise the requested page.
#[utoipa::path(get, operation_id = "listDatabases", path = "/api/v1/databases", tag = "databases",
    params(Paging, Space), security(("bearer" = [])),
    responses((status = 200, description = "The space's databases (all, or the requested page)", body = DatabaseList), Standard))]
async fn list(
    State(state): State<AppState>,
    Space(caller): Space,
    Query(p): Query<Paging>,
) -> ApiResult<Json<DatabaseList>> {
    let (page, page_size) = paging(&p)?;
    let found = state
        .registry
        .list(&caller, (page - 1) * page_size, page_size)
        .await?;
    Ok(Json(DatabaseList {
        databases: found.items.into_iter().map(Into::into).collect(),
        total: found.total,
        page,
        page_size,
    }))
}

/// One database of the space.
#[utoipa::path(get, operation_id = "getDatabase", path = "/api/v1/databases/{id}", tag = "databases",
    params(("id" = String, Path, description = "Database id"), Space), security(("bearer" = [])),
    responses((status = 200, description = "The record", body = DatabaseRecord), Standard))]
async fn read(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
) -> ApiResult<Json<DatabaseRecord>> {
    Ok(Json(state.registry.get(&caller, &id).await?.into()))
}

/// Register a database: a Secret with its credentials, a Database CR, then the record (status
/// `Pending` until the operator's first check); a failed step undoes the earlier ones.
/// `ssl_mode` `prefer` (the default) and `allow` mean what they mean in libpq: each check tries
/// both, TLS first for `prefer`, and `effective_ssl_mode` on the record says which one was used
/// (DBHub gets that mode).
#[utoipa::path(post, operation_id = "createDatabase", path = "/api/v1/databases", tag = "databases", request_body = DatabaseInput,
    params(Space), security(("bearer" = [])),
    responses((status = 201, description = "Registered (status Pending); Location names it", body = DatabaseRecord),
        (status = 409, description = "The name is taken in this space", body = crate::error::Problem, content_type = "application/problem+json"),
        Standard, Body))]
async fn create(
    State(state): State<AppState>,
    Space(caller): Space,
    JsonBody(input): JsonBody<DatabaseInput>,
) -> ApiResult<(StatusCode, HeaderMap, Json<DatabaseRecord>)> {
    let saved = state.registry.create(&caller, &input).await?;
    let mut headers = HeaderMap::new();
    let location = format!("/api/v1/databases/{}", saved.id);
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ascii"),
    );
    Ok((StatusCode::CREATED, headers, Json(saved.into())))
}

/// Edit a database: a tolerant partial update (unknown and read-only fields are ignored, as
/// the edit form echoes the record back; a missing password keeps the old one).
#[utoipa::path(put, operation_id = "updateDatabase", path = "/api/v1/databases/{id}", tag = "databases", request_body = DatabaseInput,
    params(("id" = String, Path, description = "Database id"), Space), security(("bearer" = [])),
    responses((status = 200, description = "The updated record", body = DatabaseRecord),
        (status = 409, description = "The new name is taken in this space", body = crate::error::Problem, content_type = "application/problem+json"),
        Standard, Body))]
async fn update(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<DatabaseInput>,
) -> ApiResult<Json<DatabaseRecord>> {
    Ok(Json(
        state.registry.update(&caller, &id, &input).await?.into(),
    ))
}

/// Remove a database: its record, Database CR, Secret, query history and saved queries.
#[utoipa::path(delete, operation_id = "deleteDatabase", path = "/api/v1/databases/{id}", tag = "databases",
    params(("id" = String, Path, description = "Database id"), Space), security(("bearer" = [])),
    responses((status = 204, description = "Removed"), Standard))]
async fn remove(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
    deadline: Deadline,
) -> ApiResult<StatusCode> {
    // A long history is deleted in chunks; each one done gives the request another timeout, so
    // only a stalled deletion is answered 504 (it goes on to the end in its task either way).
    let timeout = state.limits.request_timeout;
    state
        .registry
        .delete(&caller, &id, move || deadline.extend(timeout))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Test a connection without saving anything (the connection form's "Test" button). With the
/// `id` of a record of the space and no password, the stored credentials are used (the edit
/// form; needs the permission to edit).
#[utoipa::path(post, operation_id = "testNewConnection", path = "/api/v1/databases/test", tag = "databases", request_body = TestInput,
    params(Space), security(("bearer" = [])),
    responses((status = 200, description = "Connected (`status: connected`)", body = TestResult),
        (status = 502, description = "The connection failed: `status: failed` with the reason in `message` (nothing was saved)", body = crate::error::Problem, content_type = "application/problem+json"),
        Standard, Body))]
async fn test_unsaved(
    State(state): State<AppState>,
    Space(caller): Space,
    JsonBody(t): JsonBody<TestInput>,
) -> ApiResult<Json<TestResult>> {
    answer(state.registry.test_unsaved(&caller, &t).await?)
}

/// A connected test is 200; a failed one a 502 problem that still says `status: failed` and
/// why (the frontend treats any 2xx as success).
fn answer(outcome: CheckOutcome) -> ApiResult<Json<TestResult>> {
    if outcome.connected {
        Ok(Json(outcome.into()))
    } else {
        Err(ApiError::ConnectionTestFailed(outcome.message))
    }
}

/// Re-check a registered database now; the outcome shows on its record.
#[utoipa::path(post, operation_id = "testConnection", path = "/api/v1/databases/{id}/test", tag = "databases",
    params(("id" = String, Path, description = "Database id"), Space), security(("bearer" = [])),
    responses((status = 200, description = "Connected; the record shows it", body = TestResult),
        (status = 502, description = "The connection failed: `status: failed` with the reason in `message`; the record shows it", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The database's Kubernetes resource is missing", body = crate::error::Problem, content_type = "application/problem+json"),
        Standard))]
async fn test_saved(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResult>> {
    answer(state.registry.test_saved(&caller, &id).await?)
}
