//! `/api/v1/saved-queries`: save, list, read, edit, remove, run and copy queries, in the
//! shapes Aether's query console reads. Handlers parse, call [`crate::saved`], shape.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::context::Space;
use super::extract::{JsonBody, OptionalJsonBody, Path, Query};
use super::layers::Deadline;
use super::paging::{Paging, paging};
use super::problems::{Body, Standard, Upstream};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::model::Listed;
use crate::model::forms::stored_time;
use crate::model::saved::{Filter, Sort, SortBy};
use crate::queries::QueryOutput;
use crate::saved::ExecuteInput;
use crate::saved::input::{DuplicateInput, SavedQueryInput};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
        .routes(routes!(execute))
        .routes(routes!(duplicate))
}

/// A saved query as the console reads it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SavedQueryRecord {
    /// Id (a UUID).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The SQL.
    pub query: String,
    /// The database it runs on.
    pub database_id: String,
    /// That database's current name.
    pub database_name: String,
    /// The space's tenant.
    pub tenant_id: String,
    /// The space it belongs to.
    pub space_id: String,
    /// Who saved it (the only one who may change or delete it).
    pub owner_id: String,
    /// The owner's name in Aether, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
    /// `private`, `shared` or `public`.
    pub visibility: String,
    /// Teams that see it when `shared`.
    pub shared_with_teams: Vec<String>,
    /// Free labels.
    pub tags: Vec<String>,
    /// Folder ("" for none).
    pub folder: String,
    /// When it last ran successfully (RFC 3339); null before.
    pub last_executed_at: Option<String>,
    /// Who ran it last (a user id); null before.
    pub last_executed_by: Option<String>,
    /// Successful runs.
    pub execution_count: i64,
    /// Their mean wall time in milliseconds.
    pub avg_duration_ms: f64,
    /// Rows the last run returned.
    pub last_row_count: i64,
    /// When it was saved (RFC 3339).
    pub created_at: String,
    /// When its definition last changed (RFC 3339).
    pub updated_at: String,
}

impl From<Listed> for SavedQueryRecord {
    fn from(l: Listed) -> Self {
        let q = l.query;
        let d = q.definition;
        Self {
            id: q.id,
            name: d.name,
            description: d.description,
            query: d.query,
            database_id: d.database_id,
            database_name: l.database_name,
            tenant_id: q.scope.tenant_id,
            space_id: q.scope.space_id,
            owner_id: q.owner_id,
            owner_name: Some(l.owner_name).filter(|n| !n.is_empty()),
            visibility: d.visibility.as_str().into(),
            shared_with_teams: d.shared_with_teams,
            tags: d.tags,
            folder: d.folder,
            last_executed_at: q.stats.last_executed_at.map(stored_time),
            last_executed_by: Some(q.stats.last_executed_by).filter(|b| !b.is_empty()),
            execution_count: q.stats.execution_count,
            avg_duration_ms: q.stats.avg_duration_ms,
            last_row_count: q.stats.last_row_count,
            created_at: stored_time(q.created_at),
            updated_at: stored_time(q.updated_at),
        }
    }
}

/// `{queries, total, page, page_size}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SavedQueryList {
    /// The queries on this page.
    pub queries: Vec<SavedQueryRecord>,
    /// How many the caller sees with these filters.
    pub total: i64,
    /// The page number, from 1.
    pub page: i64,
    /// Queries per page.
    pub page_size: i64,
}

/// What a run of a saved query returned.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecuteOutput {
    /// The saved query's id.
    pub query_id: String,
    /// Its name.
    pub query_name: String,
    /// When the run started (RFC 3339; also in the caller's history).
    pub executed_at: String,
    /// The result, as `POST /databases/{id}/query` answers it.
    #[serde(flatten)]
    pub result: QueryOutput,
}

/// `?database_id=&visibility=&folder=&tags=&owner_id=&search=&sort_by=&sort_order=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only queries on this database.
    database_id: Option<String>,
    /// Only `private`, `shared` or `public` ones.
    visibility: Option<String>,
    /// Only this folder.
    folder: Option<String>,
    /// Comma-separated: only queries carrying any of these tags.
    tags: Option<String>,
    /// Only this owner's.
    owner_id: Option<String>,
    /// Only those whose name, description or SQL contains this text (case-insensitive).
    search: Option<String>,
    /// `name`, `created_at` (default), `updated_at`, `execution_count` or `last_executed_at`.
    sort_by: Option<String>,
    /// `asc` or `desc` (default).
    sort_order: Option<String>,
}

fn parse_list(p: &ListParams) -> ApiResult<(Filter, Sort)> {
    let mut errs = Vec::new();
    let by = match p.sort_by.as_deref().map(str::trim) {
        None | Some("") | Some("created_at") => SortBy::CreatedAt,
        Some("name") => SortBy::Name,
        Some("updated_at") => SortBy::UpdatedAt,
        Some("execution_count") => SortBy::ExecutionCount,
        Some("last_executed_at") => SortBy::LastExecutedAt,
        Some(_) => {
            errs.push(FieldError::new(
                "sort_by",
                "one of name, created_at, updated_at, execution_count, last_executed_at",
            ));
            SortBy::CreatedAt
        }
    };
    let ascending = match p
        .sort_order
        .as_deref()
        .map(|s| s.trim().to_ascii_lowercase())
    {
        None => false,
        Some(o) if o.is_empty() || o == "desc" => false,
        Some(o) if o == "asc" => true,
        Some(_) => {
            errs.push(FieldError::new("sort_order", "asc or desc"));
            false
        }
    };
    let visibility = p.visibility.as_deref().map(str::trim).unwrap_or_default();
    if !visibility.is_empty() && crate::model::Visibility::parse(visibility).is_none() {
        errs.push(FieldError::new(
            "visibility",
            "one of private, shared, public",
        ));
    }
    let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or_default().to_string();
    let filter = Filter {
        database_id: text(&p.database_id),
        visibility: visibility.to_ascii_lowercase(),
        folder: text(&p.folder),
        tags: text(&p.tags)
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        owner_id: text(&p.owner_id),
        search: text(&p.search),
    };
    if errs.is_empty() {
        Ok((filter, Sort { by, ascending }))
    } else {
        Err(ApiError::Validation(errs))
    }
}

/// The saved queries the caller sees: their own, the space's `public` ones and `shared` ones of
/// their teams; filtered, ordered (ties by id) and paged (without `page`/`page_size`, all of
/// them up to 1000).
#[utoipa::path(get, operation_id = "listSavedQueries", path = "/api/v1/saved-queries", tag = "saved-queries",
    params(Paging, ListParams, Space), security(("bearer" = [])),
    responses((status = 200, description = "The saved queries the caller sees", body = SavedQueryList), Standard))]
async fn list(
    State(state): State<AppState>,
    Space(caller): Space,
    Query(p): Query<Paging>,
    Query(l): Query<ListParams>,
) -> ApiResult<Json<SavedQueryList>> {
    let (page, page_size) = paging(&p)?;
    let (filter, sort) = parse_list(&l)?;
    let found = state
        .saved
        .list(&caller, &filter, sort, (page - 1) * page_size, page_size)
        .await?;
    Ok(Json(SavedQueryList {
        queries: found.items.into_iter().map(Into::into).collect(),
        total: found.total,
        page,
        page_size,
    }))
}

/// Save a query on a database of the space (private unless `visibility` says otherwise).
#[utoipa::path(post, operation_id = "createSavedQuery", path = "/api/v1/saved-queries", tag = "saved-queries",
    request_body = SavedQueryInput, params(Space), security(("bearer" = [])),
    responses((status = 201, description = "Saved; Location names it", body = SavedQueryRecord), Standard, Body))]
async fn create(
    State(state): State<AppState>,
    Space(caller): Space,
    JsonBody(input): JsonBody<SavedQueryInput>,
) -> ApiResult<(StatusCode, HeaderMap, Json<SavedQueryRecord>)> {
    let saved = state.saved.create(&caller, &input).await?;
    let mut headers = HeaderMap::new();
    let location = format!("/api/v1/saved-queries/{}", saved.query.id);
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ascii"),
    );
    Ok((StatusCode::CREATED, headers, Json(saved.into())))
}

/// One saved query the caller sees (404 otherwise).
#[utoipa::path(get, operation_id = "getSavedQuery", path = "/api/v1/saved-queries/{id}", tag = "saved-queries",
    params(("id" = String, Path, description = "Saved query id"), Space), security(("bearer" = [])),
    responses((status = 200, description = "The saved query", body = SavedQueryRecord), Standard))]
async fn read(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
) -> ApiResult<Json<SavedQueryRecord>> {
    Ok(Json(state.saved.get(&caller, &id).await?.into()))
}

/// Edit a saved query: a partial update by its owner (others who see it get 403). Unknown and
/// read-only fields are ignored.
#[utoipa::path(put, operation_id = "updateSavedQuery", path = "/api/v1/saved-queries/{id}", tag = "saved-queries",
    request_body = SavedQueryInput,
    params(("id" = String, Path, description = "Saved query id"), Space), security(("bearer" = [])),
    responses((status = 200, description = "The updated saved query", body = SavedQueryRecord), Standard, Body))]
async fn update(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SavedQueryInput>,
) -> ApiResult<Json<SavedQueryRecord>> {
    Ok(Json(state.saved.update(&caller, &id, &input).await?.into()))
}

/// Delete a saved query (its owner only). Saved queries also go when their database is
/// deleted; their runs stay in their users' history.
#[utoipa::path(delete, operation_id = "deleteSavedQuery", path = "/api/v1/saved-queries/{id}", tag = "saved-queries",
    params(("id" = String, Path, description = "Saved query id"), Space), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), Standard))]
async fn remove(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.saved.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run a saved query exactly as `POST /databases/{id}/query` runs SQL for the caller (role,
/// read-only routing, limits; 409 when its database is not Connected), record it in the
/// caller's history linked to the saved query, and count it into the query's statistics.
#[utoipa::path(post, operation_id = "executeSavedQuery", path = "/api/v1/saved-queries/{id}/execute", tag = "saved-queries",
    request_body(content = Option<ExecuteInput>, description = "Optional: `{parameters: []}` as the console sends it"),
    params(("id" = String, Path, description = "Saved query id"), Space), security(("bearer" = [])),
    responses((status = 200, description = "The result", body = ExecuteOutput), Standard, Body, Upstream))]
async fn execute(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
    deadline: Deadline,
    OptionalJsonBody(input): OptionalJsonBody<ExecuteInput>,
) -> ApiResult<Json<ExecuteOutput>> {
    let (found, ran) = state
        .saved
        .execute(&caller, &id, &input, |budget| deadline.extend(budget))
        .await?;
    Ok(Json(ExecuteOutput {
        query_id: found.query.id,
        query_name: found.query.definition.name,
        executed_at: ran.executed_at,
        result: ran.output,
    }))
}

/// Copy a saved query the caller sees into a private one they own (named "<name> (copy)"
/// unless `name` is given).
#[utoipa::path(post, operation_id = "duplicateSavedQuery", path = "/api/v1/saved-queries/{id}/duplicate", tag = "saved-queries",
    request_body(content = Option<DuplicateInput>, description = "Optional: `{name}`"),
    params(("id" = String, Path, description = "Saved query id"), Space), security(("bearer" = [])),
    responses((status = 201, description = "The copy; Location names it", body = SavedQueryRecord), Standard, Body))]
async fn duplicate(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
    OptionalJsonBody(input): OptionalJsonBody<DuplicateInput>,
) -> ApiResult<(StatusCode, HeaderMap, Json<SavedQueryRecord>)> {
    let copy = state.saved.duplicate(&caller, &id, &input).await?;
    let mut headers = HeaderMap::new();
    let location = format!("/api/v1/saved-queries/{}", copy.query.id);
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ascii"),
    );
    Ok((StatusCode::CREATED, headers, Json(copy.into())))
}
