//! `/api/v1/databases`: register, list, read, edit and remove database connections in a space.
//! Records live in Neo4j, credentials in a Kubernetes Secret, and each record has a Database CR
//! the operator checks; status is read from the operator's watch cache.

pub(super) mod check;
pub mod dto;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use self::dto::{DatabaseInput, DatabaseList, DatabaseRecord, validate};
use super::AppState;
use super::context::{Permission, SpaceContext};
use super::extract::{JsonBody, Path, Query};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::kube::{Owner, cached_status};
use crate::storage::databases::Record;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/databases", get(list).post(create))
        .route("/api/v1/databases/test", post(check::test_unsaved))
        .route(
            "/api/v1/databases/{id}",
            get(read).put(update).delete(remove),
        )
        .route("/api/v1/databases/{id}/test", post(check::test_saved))
}

/// `?page=1&page_size=20`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Paging {
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

/// The record with its status from the operator's cache (mirrored onto the graph node).
async fn with_status(state: &AppState, mut r: Record) -> DatabaseRecord {
    if let Some((phase, message, checked)) =
        cached_status(&state.cache, state.writer.namespace(), &r.cr_name)
        && (phase != r.status || message != r.status_message || checked != r.last_checked)
    {
        let scope = crate::storage::databases::Scope {
            tenant_id: &r.tenant_id,
            space_id: &r.space_id,
        };
        if let Err(e) = state
            .store
            .mirror_status(&scope, &r.id, &phase, &message, &checked)
            .await
        {
            tracing::warn!(error = %e, db.id = %r.id, "could not mirror status onto the graph");
        }
        (r.status, r.status_message, r.last_checked) = (phase, message, checked);
    }
    r.into()
}

/// List the databases of the space, newest first.
#[utoipa::path(get, path = "/api/v1/databases", tag = "databases",
    params(Paging, crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 200, description = "A page of the space's databases", body = DatabaseList), (status = 400, description = "Bad paging or missing space headers", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn list(
    State(state): State<AppState>,
    ctx: SpaceContext,
    Query(p): Query<Paging>,
) -> ApiResult<Json<DatabaseList>> {
    ctx.require(Permission::Read)?;
    let (page, page_size) = paging(&p)?;
    let found = state
        .store
        .list_databases(&ctx.scope(), (page - 1) * page_size, page_size)
        .await?;
    let mut databases = Vec::with_capacity(found.items.len());
    for r in found.items {
        databases.push(with_status(&state, r).await);
    }
    Ok(Json(DatabaseList {
        databases,
        total: found.total,
        page,
        page_size,
    }))
}

/// One database record.
#[utoipa::path(get, path = "/api/v1/databases/{id}", tag = "databases",
    params(("id" = String, Path, description = "Database id"), crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 200, description = "The record", body = DatabaseRecord), (status = 404, description = "No such database in this space", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn read(
    State(state): State<AppState>,
    ctx: SpaceContext,
    Path(id): Path<String>,
) -> ApiResult<Json<DatabaseRecord>> {
    ctx.require(Permission::Read)?;
    let r = state
        .store
        .get_database(&ctx.scope(), &id)
        .await?
        .ok_or(ApiError::NotFound("database"))?;
    Ok(Json(with_status(&state, r).await))
}

/// Register a database: Secret, then Database CR, then the record; undone on failure. `ssl_mode` allow → disable, prefer → require.
#[utoipa::path(post, path = "/api/v1/databases", tag = "databases", request_body = DatabaseInput,
    params(crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 201, description = "Registered (status Pending); Location names it", body = DatabaseRecord), (status = 400, description = "Invalid body, field by field", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The role may not create", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Name taken in this space", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "Kubernetes unavailable; nothing was kept", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn create(
    State(state): State<AppState>,
    ctx: SpaceContext,
    JsonBody(input): JsonBody<DatabaseInput>,
) -> ApiResult<(StatusCode, HeaderMap, Json<DatabaseRecord>)> {
    ctx.require(Permission::Create)?;
    let valid = validate(&input, None).map_err(ApiError::Validation)?;
    guard_host(&state, &valid.record).await?;
    let id = uuid::Uuid::new_v4();
    let now = Timestamp::now().to_string();
    let mut record = valid.record;
    record.id = id.to_string();
    record.cr_name = format!("db-{}", id.simple());
    (record.tenant_id, record.space_id, record.owner_id) = (
        ctx.tenant_id.clone(),
        ctx.space_id.clone(),
        ctx.user_id.clone(),
    );
    (record.created_at, record.updated_at) = (now.clone(), now);
    if state
        .store
        .name_taken(&ctx.scope(), &record.name, &record.id)
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "a database named {:?} already exists in this space",
            record.name
        )));
    }
    // The space's DBHub instance first (idempotent): a failure here leaves nothing of the record.
    state
        .writer
        .ensure_instance(&ctx.space_id, &ctx.tenant_id)
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "could not prepare the space's DBHub instance ({})",
                e.reason()
            ))
        })?;
    let owner = Owner {
        database_id: &record.id,
        space_id: &ctx.space_id,
        tenant_id: &ctx.tenant_id,
    };
    let creds = valid
        .password
        .as_deref()
        .map(|p| (record.username.as_str(), p));
    if let Err(e) = state
        .writer
        .create(&record.cr_name, &owner, valid.spec, creds)
        .await
    {
        release_instance(&state, &ctx.space_id).await;
        return Err(ApiError::Unavailable(format!(
            "could not register the database with Kubernetes ({})",
            e.reason()
        )));
    }
    let saved = match state.store.create_database(&record).await {
        Ok(r) => r,
        Err(e) => {
            // Undo the Kubernetes side: no orphan CR or Secret (or unused instance).
            if let Err(undo) = state.writer.delete(&record.cr_name).await {
                tracing::error!(error = %undo, cr = %record.cr_name, "could not undo a failed create");
            }
            release_instance(&state, &ctx.space_id).await;
            return Err(match e {
                crate::storage::Error::Conflict(m) => ApiError::Conflict(m),
                other => other.into(),
            });
        }
    };
    tracing::info!(db.id = %saved.id, space.id = %ctx.space_id, "database registered");
    let mut headers = HeaderMap::new();
    let location = format!("/api/v1/databases/{}", saved.id);
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ascii"),
    );
    Ok((StatusCode::CREATED, headers, Json(saved.into())))
}

/// Tolerant partial update: unknown and read-only fields are ignored; a missing password keeps the old one.
#[utoipa::path(put, path = "/api/v1/databases/{id}", tag = "databases", request_body = DatabaseInput,
    params(("id" = String, Path, description = "Database id"), crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 200, description = "Updated record", body = DatabaseRecord), (status = 400, description = "Invalid body", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such database in this space", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn update(
    State(state): State<AppState>,
    ctx: SpaceContext,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<DatabaseInput>,
) -> ApiResult<Json<DatabaseRecord>> {
    ctx.require(Permission::Update)?;
    let old = state
        .store
        .get_database(&ctx.scope(), &id)
        .await?
        .ok_or(ApiError::NotFound("database"))?;
    let valid = validate(&input, Some(&old)).map_err(ApiError::Validation)?;
    if (&valid.record.host, valid.record.port) != (&old.host, old.port) {
        guard_host(&state, &valid.record).await?;
    }
    if valid.record.db_type != old.db_type {
        return Err(ApiError::Validation(vec![FieldError::new(
            "type",
            "cannot change; register a new database instead",
        )]));
    }
    if valid.record.name != old.name
        && state
            .store
            .name_taken(&ctx.scope(), &valid.record.name, &id)
            .await?
    {
        return Err(ApiError::Conflict(format!(
            "a database named {:?} already exists in this space",
            valid.record.name
        )));
    }
    let mut record = Record {
        updated_at: Timestamp::now().to_string(),
        ..valid.record
    };
    (
        record.id,
        record.tenant_id,
        record.space_id,
        record.owner_id,
        record.cr_name,
        record.created_at,
    ) = (
        old.id.clone(),
        old.tenant_id.clone(),
        old.space_id.clone(),
        old.owner_id.clone(),
        old.cr_name.clone(),
        old.created_at.clone(),
    );
    (record.status, record.status_message, record.last_checked) = (
        old.status.clone(),
        old.status_message.clone(),
        old.last_checked.clone(),
    );
    let unavailable = |e: crate::kube::Error| {
        ApiError::Unavailable(format!("could not update Kubernetes ({})", e.reason()))
    };
    if valid.password.is_some() || record.username != old.username {
        state
            .writer
            .update_credentials(&old.cr_name, &record.username, valid.password.as_deref())
            .await
            .map_err(unavailable)?;
    }
    let mut spec = valid.spec;
    spec.credentials_ref =
        (!record.username.is_empty()).then(|| dbhub_operator::crd::CredentialsRef {
            name: crate::kube::secret_name(&old.cr_name),
            namespace: None,
            user_key: "username".into(),
            password_key: "password".into(),
        });
    let spec_changed = (
        &record.host,
        record.port,
        &record.database,
        &record.ssl_mode,
        record.readonly,
        record.max_rows,
        record.connection_timeout,
        record.query_timeout,
        &record.description,
    ) != (
        &old.host,
        old.port,
        &old.database,
        &old.ssl_mode,
        old.readonly,
        old.max_rows,
        old.connection_timeout,
        old.query_timeout,
        &old.description,
    );
    if spec_changed {
        state
            .writer
            .update_spec(&old.cr_name, &spec)
            .await
            .map_err(unavailable)?;
    }
    let saved = state
        .store
        .update_database(&record)
        .await?
        .ok_or(ApiError::NotFound("database"))?;
    Ok(Json(with_status(&state, saved).await))
}

/// Remove a database: record, Database CR and Secret.
#[utoipa::path(delete, path = "/api/v1/databases/{id}", tag = "databases",
    params(("id" = String, Path, description = "Database id"), crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 204, description = "Removed: record, CR and Secret"), (status = 403, description = "The role may not delete", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such database in this space", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn remove(
    State(state): State<AppState>,
    ctx: SpaceContext,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    ctx.require(Permission::Delete)?;
    let r = state
        .store
        .get_database(&ctx.scope(), &id)
        .await?
        .ok_or(ApiError::NotFound("database"))?;
    state.writer.delete(&r.cr_name).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "could not remove the database from Kubernetes ({})",
            e.reason()
        ))
    })?;
    state.store.delete_database(&ctx.scope(), &id).await?;
    release_instance(&state, &ctx.space_id).await;
    tracing::info!(db.id = %id, space.id = %ctx.space_id, "database removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the space's DBHub instance when it serves nothing any more (best effort: a leftover
/// instance with no Databases is scaled to zero by the reconciler).
async fn release_instance(state: &AppState, space_id: &str) {
    if let Err(e) = state.writer.remove_instance_if_unused(space_id).await {
        tracing::warn!(error = %e, space.id = %space_id, "could not remove the space's unused DBHub instance");
    }
}

/// Refuses hosts inside the service's own network (same answer as for unresolvable ones).
async fn guard_host(state: &AppState, r: &Record) -> ApiResult<()> {
    if r.db_type == "sqlite" {
        return Ok(());
    }
    let port = u16::try_from(r.port).unwrap_or_default();
    state
        .guard
        .check(&r.host, port)
        .await
        .map_err(|m| ApiError::Validation(vec![FieldError::new("host", m)]))
}
