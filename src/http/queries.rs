//! `POST /databases/{id}/query` and the caller's query history: parse, call the
//! [`crate::queries`] use case, answer.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::context::Space;
use super::extract::{JsonBody, Path, Query};
use super::layers::Deadline;
use super::problems::{Body, Standard, Upstream};
use crate::error::ApiResult;
use crate::queries::{HistoryPage, HistoryParams, QueryInput, QueryOutput};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run))
        .routes(routes!(database_history))
        .routes(routes!(space_history))
}

/// Run SQL on the database through DBHub. A read-only database refuses anything but plain
/// reads (403 READONLY_VIOLATION); writes need the `update` permission (403 FORBIDDEN).
#[utoipa::path(post, operation_id = "runQuery", path = "/api/v1/databases/{id}/query", tag = "queries", request_body = QueryInput,
    params(("id" = String, Path, description = "Database id"), Space), security(("bearer" = [])),
    responses((status = 200, description = "The result; columns in the database's order", body = QueryOutput),
        Standard, Body, Upstream))]
async fn run(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
    deadline: Deadline,
    JsonBody(input): JsonBody<QueryInput>,
) -> ApiResult<Json<QueryOutput>> {
    let out = state
        .queries
        .run(&caller, &id, &input, |budget| deadline.extend(budget))
        .await?;
    Ok(Json(out))
}

/// The caller's query history on one database, newest first.
#[utoipa::path(get, operation_id = "getDatabaseHistory", path = "/api/v1/databases/{id}/history", tag = "queries",
    params(("id" = String, Path, description = "Database id"), HistoryParams, Space), security(("bearer" = [])),
    responses((status = 200, description = "A page of the caller's runs", body = HistoryPage), Standard))]
async fn database_history(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
    Query(p): Query<HistoryParams>,
) -> ApiResult<Json<HistoryPage>> {
    Ok(Json(state.queries.history(&caller, Some(&id), &p).await?))
}

/// The caller's query history across the space, newest first.
#[utoipa::path(get, operation_id = "getQueryHistory", path = "/api/v1/query-history", tag = "queries",
    params(HistoryParams, Space), security(("bearer" = [])),
    responses((status = 200, description = "A page of the caller's runs", body = HistoryPage), Standard))]
async fn space_history(
    State(state): State<AppState>,
    Space(caller): Space,
    Query(p): Query<HistoryParams>,
) -> ApiResult<Json<HistoryPage>> {
    Ok(Json(state.queries.history(&caller, None, &p).await?))
}
