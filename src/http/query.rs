//! `POST /databases/{id}/query` and the caller's query history. Queries go to the space's DBHub
//! over MCP; for a read-only database the service refuses anything but plain reads before
//! DBHub sees it (DBHub's read-only tool and the engine's read-only transaction follow).
//! Every run — refused, failed or not — is recorded as a `QueryExecution`.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use dbhub_operator::crd::DatabaseType;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AppState;
use super::context::{Permission, SpaceContext};
use super::extract::{JsonBody, Path, Query};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::mcp::hub::HubError;
use crate::mcp::{ExecResult, McpError};
use crate::sql::{Verdict, classify};
use crate::storage::databases::Record;
use crate::storage::history::{Cursor, Execution};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/databases/{id}/query", post(run))
        .route("/api/v1/databases/{id}/history", get(database_history))
        .route("/api/v1/query-history", get(space_history))
}

/// A query to run.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct QueryInput {
    /// SQL; several statements may be separated by `;`.
    #[schema(value_type = String, required = true)]
    pub query: Option<String>,
    /// Bind parameters: DBHub's execute_sql has none, so only an empty list/object is accepted.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    /// Alias of `params`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Row limit for this run; can only lower the database's `max_rows`.
    #[serde(default)]
    pub max_rows: Option<i64>,
}

/// One statement's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatementOutput {
    /// The statement as run.
    pub sql: String,
    /// Column names in the database's order (empty when no row came back: DBHub sends names
    /// only with rows).
    pub columns: Vec<String>,
    /// Rows as objects, keys in column order.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
    /// Rows returned, or rows affected by a write.
    pub row_count: i64,
    /// Whether the row limit cut the result.
    pub truncated: bool,
}

/// What a query returned: the last statement's result at the top level, every statement in
/// `statements` when there were several.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueryOutput {
    /// Column names in the database's order.
    pub columns: Vec<String>,
    /// Rows as objects, keys in column order.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
    /// Rows returned, or rows affected by a write.
    pub row_count: i64,
    /// Whether the row limit cut the result.
    pub truncated: bool,
    /// Wall time in milliseconds (service → DBHub → database → back).
    pub duration_ms: i64,
    /// Per statement, when the input had several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statements: Option<Vec<StatementOutput>>,
}

/// Checks the body: the SQL, no bind parameters, the row limit.
fn validate(input: &QueryInput, db_max: i64) -> ApiResult<(String, i64)> {
    let mut errs = Vec::new();
    let sql = input
        .query
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_string();
    if sql.is_empty() {
        errs.push(FieldError::new("query", "required: the SQL to run"));
    }
    for (field, v) in [("params", &input.params), ("parameters", &input.parameters)] {
        let empty = match v {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(_) => false,
        };
        if !empty {
            errs.push(FieldError::new(
                field,
                "bind parameters are not supported: DBHub's execute_sql takes plain SQL only; \
                 send the query without parameters",
            ));
        }
    }
    let limit = match input.max_rows {
        None => db_max,
        Some(n) if n >= 1 => n.min(db_max),
        Some(_) => {
            errs.push(FieldError::new(
                "max_rows",
                "a whole number from 1 (it can only lower the database's limit)",
            ));
            db_max
        }
    };
    if errs.is_empty() {
        Ok((sql, limit))
    } else {
        Err(ApiError::Validation(errs))
    }
}

/// Shapes DBHub's result: rows cut to `limit`, the last statement on top.
pub fn shape(result: ExecResult, limit: i64, duration_ms: i64) -> QueryOutput {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut statements: Vec<StatementOutput> = result
        .statements
        .into_iter()
        .map(|s| {
            let columns = s.columns();
            let mut rows = s.rows;
            let cut = rows.len() > limit;
            rows.truncate(limit);
            let row_count = if rows.is_empty() {
                s.count
            } else {
                rows.len() as i64
            };
            StatementOutput {
                sql: s.sql,
                columns,
                rows,
                row_count,
                truncated: s.truncated || cut,
            }
        })
        .collect();
    let several = statements.len() > 1;
    let top = if several {
        let last = statements.last().expect("several");
        StatementOutput {
            sql: last.sql.clone(),
            columns: last.columns.clone(),
            rows: last.rows.clone(),
            row_count: last.row_count,
            truncated: last.truncated,
        }
    } else {
        statements.pop().unwrap_or(StatementOutput {
            sql: String::new(),
            columns: Vec::new(),
            rows: Vec::new(),
            row_count: 0,
            truncated: false,
        })
    };
    QueryOutput {
        columns: top.columns,
        rows: top.rows,
        row_count: top.row_count,
        truncated: top.truncated,
        duration_ms,
        statements: several.then_some(statements),
    }
}

/// DBHub failures as API problems (never a 500; never DBHub's text for connection failures,
/// which may carry connection details).
pub fn hub_problem(e: HubError) -> ApiError {
    match e {
        HubError::NotServed(m) | HubError::Kube(m) => ApiError::Unavailable(m),
        HubError::Mcp(e) => match e {
            McpError::Unavailable(m) => ApiError::Unavailable(m),
            McpError::Timeout => ApiError::GatewayTimeout("DBHub did not answer in time".into()),
            McpError::UnknownTool(_) => ApiError::Unavailable(
                "DBHub is loading its new configuration; retry shortly".into(),
            ),
            McpError::Protocol(_) => ApiError::BadGateway("DBHub answered unexpectedly".into()),
            McpError::TooLarge { bytes, limit } => ApiError::Validation(vec![FieldError::new(
                "query",
                format!(
                    "the query is {bytes} bytes once encoded for DBHub, which accepts at most {limit} bytes per request: shorten it"
                ),
            )]),
            McpError::Tool { code, message } => match code.as_str() {
                "READONLY_VIOLATION" => ApiError::ReadOnly(format!(
                    "the database is read-only: {}",
                    crate::mcp::result::redact(&message)
                )),
                "EXECUTION_ERROR" | "SEARCH_ERROR" | "INVALID_ARGUMENTS" => {
                    ApiError::QueryFailed(crate::mcp::result::redact(&message))
                }
                "SCHEMA_NOT_FOUND" => ApiError::NotFound("schema"),
                other => ApiError::BadGateway(format!(
                    "the database could not be reached through DBHub ({other})"
                )),
            },
        },
    }
}

/// The record and its engine, if it is Connected (409 with its status otherwise).
pub(super) async fn connected(
    state: &AppState,
    ctx: &SpaceContext,
    id: &str,
) -> ApiResult<(Record, DatabaseType)> {
    let r = state
        .store
        .get_database(&ctx.scope(), id)
        .await?
        .ok_or(ApiError::NotFound("database"))?;
    let (status, status_message) =
        crate::kube::cached_status(&state.cache, state.writer.namespace(), &r.cr_name)
            .map(|(p, m, _)| (p, m))
            .unwrap_or_else(|| (r.status.clone(), r.status_message.clone()));
    if status != "Connected" {
        return Err(ApiError::NotReady {
            message: format!(
                "the database is {status}, not Connected: fix its connection (or wait for the check) and retry"
            ),
            status,
            status_message,
        });
    }
    let engine = super::databases::dto::parse_type(&r.db_type)
        .ok_or_else(|| ApiError::Internal(format!("stored type {:?}", r.db_type)))?;
    Ok((r, engine))
}

/// The DBHubInstance serving the caller's space.
pub(super) fn instance(state: &AppState, ctx: &SpaceContext) -> String {
    crate::kube::instance_name(state.writer.mode(), &ctx.space_id)
}

/// Run SQL on the database through DBHub. Writes need the `update` permission and a writable database.
#[utoipa::path(post, path = "/api/v1/databases/{id}/query", tag = "queries", request_body = QueryInput,
    params(("id" = String, Path, description = "Database id"), crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 200, description = "The result; columns in the database's order", body = QueryOutput),
        (status = 400, description = "Empty query, bind parameters, bad max_rows", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "READONLY_VIOLATION (read-only database) or FORBIDDEN (the role may not write)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such database in this space", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The database is not Connected (details carry its status)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The database reported an error (its message)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 502, description = "DBHub could not reach the database", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "DBHub unavailable or not serving the database yet", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 504, description = "DBHub did not answer in time", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn run(
    State(state): State<AppState>,
    ctx: SpaceContext,
    Path(id): Path<String>,
    deadline: super::layers::Deadline,
    JsonBody(input): JsonBody<QueryInput>,
) -> ApiResult<Json<QueryOutput>> {
    ctx.require(Permission::Read)?;
    let (r, engine) = connected(&state, &ctx, &id).await?;
    // The database's own query timeout must answer first (with DBHub's message).
    let query_timeout = Duration::from_secs(u64::try_from(r.query_timeout).unwrap_or(0));
    deadline.extend(state.hubs.timeout() + query_timeout + Duration::from_secs(5));
    let (sql, limit) = validate(&input, r.max_rows)?;
    let started = Instant::now();
    let now = Timestamp::now();
    let mut run = Execution {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: ctx.tenant_id.clone(),
        space_id: ctx.space_id.clone(),
        database_id: r.id.clone(),
        database_name: r.name.clone(),
        user_id: ctx.user_id.clone(),
        statement: sql.clone(),
        status: "rejected".into(),
        error: String::new(),
        row_count: 0,
        truncated: false,
        duration_ms: 0,
        executed_at: now.to_string(),
        executed_ns: i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX),
    };
    let verdict = classify(&sql, engine, &state.limits.sql)
        .await
        .map_err(|e| ApiError::Validation(vec![FieldError::new("query", e.to_string())]))?;
    let refusal = match verdict {
        Verdict::ReadOnly { .. } => None,
        verdict => {
            let why = match verdict {
                Verdict::Writes(w) => w,
                Verdict::Unparseable(e) => format!("it could not be classified as a read ({e})"),
                Verdict::ReadOnly { .. } => unreachable!(),
            };
            if r.readonly {
                Some(ApiError::ReadOnly(format!(
                    "the database is read-only and the query is not a plain read: {why}"
                )))
            } else {
                ctx.require(Permission::Update).err().map(|_| {
                    ApiError::Forbidden(format!(
                        "role {} may only run reads here, and the query is not a plain read: {why}",
                        ctx.role
                    ))
                })
            }
        }
    };
    if let Some(e) = refusal {
        run.error = e.to_string();
        record(&state, &run).await;
        return Err(e);
    }
    let out = state
        .hubs
        .execute_sql(&instance(&state, &ctx), &r.cr_name, &sql, query_timeout)
        .await;
    run.duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match out {
        Ok(result) => {
            let shaped = shape(result, limit, run.duration_ms);
            (run.status, run.row_count, run.truncated) =
                ("success".into(), shaped.row_count, shaped.truncated);
            record(&state, &run).await;
            Ok(Json(shaped))
        }
        Err(e) => {
            let problem = hub_problem(e);
            (run.status, run.error) = ("error".into(), problem.to_string());
            record(&state, &run).await;
            Err(problem)
        }
    }
}

async fn record(state: &AppState, run: &Execution) {
    if let Err(e) = state.store.record_execution(run).await {
        tracing::warn!(error = %e, db.id = %run.database_id, "could not record the query in the history");
    }
}

/// `?limit=50&cursor=…`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryParams {
    /// Runs per page, 1-100 (default 50).
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One recorded run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// Run id.
    pub id: String,
    /// The database.
    pub database_id: String,
    /// Its name when the query ran.
    pub database_name: String,
    /// Who ran it (always the caller).
    pub user_id: String,
    /// The SQL (up to 10 000 characters).
    pub statement: String,
    /// success, error or rejected (refused by the service before DBHub).
    pub status: String,
    /// Why it failed or was refused.
    pub error: String,
    /// Rows returned or affected.
    pub row_count: i64,
    /// Whether the row limit cut the result.
    pub truncated: bool,
    /// Milliseconds.
    pub duration_ms: i64,
    /// RFC 3339.
    pub executed_at: String,
}

/// A page of the caller's history, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    /// Runs, newest first.
    pub history: Vec<HistoryEntry>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

async fn history_page(
    state: &AppState,
    ctx: &SpaceContext,
    database_id: &str,
    p: &HistoryParams,
) -> ApiResult<HistoryPage> {
    let limit = match p.limit.as_deref().map(str::trim) {
        None | Some("") => 50,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::Validation(vec![FieldError::new(
                    "limit",
                    "a whole number from 1 to 100",
                )])
            })?,
    };
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new(
                "cursor",
                "not a cursor this API returned; start without one",
            )])
        })?),
    };
    let mut runs = state
        .store
        .list_executions(
            &ctx.scope(),
            &ctx.user_id,
            database_id,
            after.as_ref(),
            limit + 1,
        )
        .await?;
    let more = runs.len() as i64 > limit;
    runs.truncate(limit as usize);
    let next_cursor = more.then(|| runs.last()).flatten().map(|r| {
        Cursor {
            executed_ns: r.executed_ns,
            id: r.id.clone(),
        }
        .encode()
    });
    Ok(HistoryPage {
        history: runs
            .into_iter()
            .map(|r| HistoryEntry {
                id: r.id,
                database_id: r.database_id,
                database_name: r.database_name,
                user_id: r.user_id,
                statement: r.statement,
                status: r.status,
                error: r.error,
                row_count: r.row_count,
                truncated: r.truncated,
                duration_ms: r.duration_ms,
                executed_at: r.executed_at,
            })
            .collect(),
        next_cursor,
    })
}

/// The caller's query history on one database, newest first.
#[utoipa::path(get, path = "/api/v1/databases/{id}/history", tag = "queries",
    params(("id" = String, Path, description = "Database id"), HistoryParams, crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 200, description = "A page of the caller's runs", body = HistoryPage),
        (status = 400, description = "Bad limit or cursor", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such database in this space", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn database_history(
    State(state): State<AppState>,
    ctx: SpaceContext,
    Path(id): Path<String>,
    Query(p): Query<HistoryParams>,
) -> ApiResult<Json<HistoryPage>> {
    ctx.require(Permission::Read)?;
    state
        .store
        .get_database(&ctx.scope(), &id)
        .await?
        .ok_or(ApiError::NotFound("database"))?;
    Ok(Json(history_page(&state, &ctx, &id, &p).await?))
}

/// The caller's query history across the space, newest first.
#[utoipa::path(get, path = "/api/v1/query-history", tag = "queries",
    params(HistoryParams, crate::http::openapi::SpaceHeaders), security(("bearer" = [])),
    responses((status = 200, description = "A page of the caller's runs", body = HistoryPage),
        (status = 400, description = "Bad limit or cursor", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(super) async fn space_history(
    State(state): State<AppState>,
    ctx: SpaceContext,
    Query(p): Query<HistoryParams>,
) -> ApiResult<Json<HistoryPage>> {
    ctx.require(Permission::Read)?;
    Ok(Json(history_page(&state, &ctx, "", &p).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::StatementResult;
    use serde_json::json;

    fn rows(n: usize) -> Vec<Map<String, Value>> {
        (0..n)
            .map(|i| {
                json!({"z": i, "a": format!("r{i}")})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect()
    }

    fn input(v: Value) -> QueryInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn bind_parameters_empty_query_and_bad_limits_are_400() {
        for body in [
            json!({"query": "select 1", "params": [1]}),
            json!({"query": "select 1", "parameters": {"a": 1}}),
            json!({"query": "  "}),
            json!({"query": "select 1", "max_rows": 0}),
        ] {
            assert!(
                matches!(
                    validate(&input(body.clone()), 100),
                    Err(ApiError::Validation(_))
                ),
                "{body}"
            );
        }
        let ok = validate(
            &input(json!({"query": " select 1 ", "params": [], "max_rows": 5})),
            100,
        )
        .unwrap();
        assert_eq!(ok, ("select 1".to_string(), 5));
        // max_rows can only lower the database's limit.
        assert_eq!(
            validate(&input(json!({"query": "x", "max_rows": 5000})), 100)
                .unwrap()
                .1,
            100
        );
    }

    #[test]
    fn shape_keeps_column_order_cuts_to_the_limit_and_reports_statements() {
        let one = ExecResult {
            statements: vec![StatementResult {
                sql: "s".into(),
                rows: rows(5),
                count: 5,
                truncated: false,
            }],
        };
        let out = shape(one, 3, 7);
        assert_eq!(out.columns, ["z", "a"]);
        assert_eq!(
            (out.row_count, out.truncated, out.duration_ms),
            (3, true, 7)
        );
        assert!(out.statements.is_none());

        let two = ExecResult {
            statements: vec![
                StatementResult {
                    sql: "select".into(),
                    rows: rows(2),
                    count: 2,
                    truncated: true,
                },
                StatementResult {
                    sql: "update".into(),
                    rows: vec![],
                    count: 4,
                    truncated: false,
                },
            ],
        };
        let out = shape(two, 100, 1);
        assert_eq!((out.row_count, out.truncated), (4, false));
        assert!(out.columns.is_empty());
        let st = out.statements.unwrap();
        assert_eq!(st.len(), 2);
        assert!(st[0].truncated, "DBHub's own truncation is kept");
    }

    #[test]
    fn dbhub_failures_map_to_problems_not_500s() {
        let tool = |code: &str, msg: &str| {
            hub_problem(HubError::Mcp(McpError::Tool {
                code: code.into(),
                message: msg.into(),
            }))
        };
        let status = |e: ApiError| e.body(None)["status"].as_u64().unwrap();
        assert_eq!(status(tool("READONLY_VIOLATION", "no")), 403);
        let failed = tool("EXECUTION_ERROR", "relation \"x\" does not exist");
        assert_eq!(failed.to_string(), "relation \"x\" does not exist");
        assert_eq!(status(failed), 422);
        let unreachable = tool("SOURCE_UNREACHABLE", "connect postgres://u:secret@h failed");
        assert!(!unreachable.to_string().contains("secret"));
        assert_eq!(status(unreachable), 502);
        assert_eq!(status(tool("AUTH_FAILED", "x")), 502);
        assert_eq!(
            status(hub_problem(HubError::Mcp(McpError::Unavailable(
                "down".into()
            )))),
            503
        );
        assert_eq!(status(hub_problem(HubError::Mcp(McpError::Timeout))), 504);
        assert_eq!(
            status(hub_problem(HubError::NotServed("later".into()))),
            503
        );
    }
}
