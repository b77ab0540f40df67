//! `/api/v1/databases`: register, list, read, edit, remove and test database connections of a
//! space. Each handler parses, calls the [`crate::registry`] use case and shapes the answer.

mod dto;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::dto::{DatabaseList, DatabaseRecord, TestResult};
use super::AppState;
use super::context::Space;
use super::extract::{JsonBody, Path, Query};
use super::problems::{Body, Standard};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::registry::{DatabaseInput, TestInput};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(test_unsaved))
        .routes(routes!(read, update, remove))
        .routes(routes!(test_saved))
}

/// `?page=1&page_size=20`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Paging {
    /// 1-based page (default 1).
    #[param(value_type = Option<i64>)]
    page: Option<String>,
    /// Records per page, 1-100 (default 20).
    #[param(value_type = Option<i64>)]
    page_size: Option<String>,
}

fn paging(p: &Paging) -> ApiResult<(i64, i64)> {
    let mut errs = Vec::new();
    let parse =
        |v: &Option<String>, d: i64| v.as_deref().map_or(Some(d), |s| s.trim().parse().ok());
    let page = parse(&p.page, 1).filter(|n| *n >= 1);
    let size = parse(&p.page_size, 20).filter(|n| (1..=100).contains(n));
    if page.is_none() {
        errs.push(FieldError::new("page", "a whole number from 1"));
    }
    if size.is_none() {
        errs.push(FieldError::new("page_size", "a whole number from 1 to 100"));
    }
    match (page, size) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(ApiError::Validation(errs)),
    }
}

/// List the space's databases, newest first.
#[utoipa::path(get, path = "/api/v1/databases", tag = "databases",
    params(Paging, Space), security(("bearer" = [])),
    responses((status = 200, description = "A page of the space's databases", body = DatabaseList), Standard))]
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
#[utoipa::path(get, path = "/api/v1/databases/{id}", tag = "databases",
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
/// `ssl_mode` `allow` is stored as `disable`, `prefer` as `require`.
#[utoipa::path(post, path = "/api/v1/databases", tag = "databases", request_body = DatabaseInput,
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
#[utoipa::path(put, path = "/api/v1/databases/{id}", tag = "databases", request_body = DatabaseInput,
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

/// Remove a database: its record, Database CR, Secret and query history.
#[utoipa::path(delete, path = "/api/v1/databases/{id}", tag = "databases",
    params(("id" = String, Path, description = "Database id"), Space), security(("bearer" = [])),
    responses((status = 204, description = "Removed"), Standard))]
async fn remove(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.registry.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Test a connection without saving anything (the connection form's "Test" button).
#[utoipa::path(post, path = "/api/v1/databases/test", tag = "databases", request_body = TestInput,
    params(Space), security(("bearer" = [])),
    responses((status = 200, description = "Checked (a failed connection is status `failed`)", body = TestResult), Standard, Body))]
async fn test_unsaved(
    State(state): State<AppState>,
    Space(caller): Space,
    JsonBody(t): JsonBody<TestInput>,
) -> ApiResult<Json<TestResult>> {
    Ok(Json(state.registry.test_unsaved(&caller, &t).await?.into()))
}

/// Re-check a registered database now; the outcome shows on its record.
#[utoipa::path(post, path = "/api/v1/databases/{id}/test", tag = "databases",
    params(("id" = String, Path, description = "Database id"), Space), security(("bearer" = [])),
    responses((status = 200, description = "Checked", body = TestResult),
        (status = 409, description = "The database's Kubernetes resource is missing", body = crate::error::Problem, content_type = "application/problem+json"),
        Standard))]
async fn test_saved(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResult>> {
    Ok(Json(state.registry.test_saved(&caller, &id).await?.into()))
}
