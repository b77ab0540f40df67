//! Connection checks on demand: `POST /databases/test` (nothing saved; the frontend's camelCase
//! body) and `POST /databases/{id}/test` (re-check a registered database now; its record's
//! status is updated).

use axum::Json;
use axum::extract::State;
use dbhub_operator::crd::Database;
use dbhub_operator::dsn::Credentials;
use dbhub_operator::probe;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dto::{DatabaseInput, validate};
use super::guard_host;
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::context::{Permission, SpaceContext};
use crate::http::extract::{JsonBody, Path};

/// The frontend's test body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct TestInput {
    /// postgresql|mysql|mariadb|mssql|sqlite (our ids work too).
    pub database_type: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Port (number or string).
    #[schema(value_type = Option<i64>)]
    pub port: Option<Value>,
    /// Database name.
    pub database: Option<String>,
    /// SQLite path.
    pub path: Option<String>,
    /// User.
    pub username: Option<String>,
    /// Password.
    #[schema(write_only)]
    pub password: Option<String>,
    /// TLS mode.
    pub ssl_mode: Option<String>,
}

/// `{status: connected|failed, message, latency_ms}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestResult {
    /// connected or failed.
    pub status: String,
    /// What happened (never a secret).
    pub message: String,
    /// Connect + query time when connected.
    pub latency_ms: Option<i64>,
}

/// Seconds a check started from the API may take.
const CHECK_TIMEOUT_SECS: i64 = 10;

fn outcome(r: Result<probe::Probed, probe::ProbeError>) -> TestResult {
    match r {
        Ok(p) => TestResult {
            status: "connected".into(),
            message: format!("connected: {}", p.server_version),
            latency_ms: Some(p.latency.as_millis() as i64),
        },
        Err(e) => TestResult {
            status: "failed".into(),
            message: e.to_string(),
            latency_ms: None,
        },
    }
}

/// Test a connection without saving anything (the connection form's "Test" button).
#[utoipa::path(post, path = "/api/v1/databases/test", tag = "databases", request_body = TestInput,
    params(crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 200, description = "Checked (a failed connection is status `failed`)", body = TestResult),
              (status = 400, description = "Invalid body or refused host", body = crate::error::Problem, content_type = "application/problem+json"),
              (status = 401, description = "No valid token", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn test_unsaved(
    State(state): State<AppState>,
    ctx: SpaceContext,
    JsonBody(t): JsonBody<TestInput>,
) -> ApiResult<Json<TestResult>> {
    ctx.require(Permission::Create)?;
    let input = DatabaseInput {
        name: Some("connection test".into()),
        db_type: t.database_type,
        host: t.host,
        port: t.port,
        database: t.database,
        path: t.path,
        username: t.username,
        password: t.password,
        ssl_mode: t.ssl_mode,
        connection_timeout: Some(CHECK_TIMEOUT_SECS),
        ..Default::default()
    };
    let valid = validate(&input, None).map_err(ApiError::Validation)?;
    guard_host(&state, &valid.record).await?;
    let creds = valid.password.map(|password| Credentials {
        user: valid.record.username.clone(),
        password,
    });
    Ok(Json(outcome(
        probe::probe(&valid.spec, creds.as_ref()).await,
    )))
}

/// Re-check a registered database now; its record's status is updated.
#[utoipa::path(post, path = "/api/v1/databases/{id}/test", tag = "databases",
    params(("id" = String, Path, description = "Database id"), crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 200, description = "Checked", body = TestResult),
              (status = 404, description = "No such database in this space", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn test_saved(
    State(state): State<AppState>,
    ctx: SpaceContext,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResult>> {
    ctx.require(Permission::Update)?;
    let record = state
        .store
        .get_database(&ctx.scope(), &id)
        .await?
        .ok_or(ApiError::NotFound("database"))?;
    guard_host(&state, &record).await?;
    let api: kube::Api<Database> =
        kube::Api::namespaced(state.kube.clone(), state.writer.namespace());
    let cr = api
        .get_opt(&record.cr_name)
        .await
        .map_err(|_| ApiError::Unavailable("the Kubernetes API is unreachable".into()))?
        .ok_or_else(|| {
            ApiError::Conflict(
                "the database's Kubernetes resource is missing; re-register it".into(),
            )
        })?;
    let mut spec = cr.spec.clone();
    spec.connection_timeout = spec.connection_timeout.min(CHECK_TIMEOUT_SECS as i32);
    let result = match dbhub_operator::controller::credentials::resolve(&state.kube, &cr).await {
        Ok(creds) => outcome(probe::probe(&spec, creds.as_ref()).await),
        Err(e) => TestResult {
            status: "failed".into(),
            message: e.to_string(),
            latency_ms: None,
        },
    };
    let phase = if result.status == "connected" {
        "Connected"
    } else {
        "Failed"
    };
    state
        .store
        .mirror_status(
            &ctx.scope(),
            &id,
            phase,
            &result.message,
            &Timestamp::now().to_string(),
        )
        .await?;
    Ok(Json(result))
}
