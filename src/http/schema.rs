//! Schema browsing: `/databases/{id}/schema`, `/tables`, `/tables/{table}/columns` — parse,
//! call the [`crate::queries::schema`] use cases, answer.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::context::Space;
use super::extract::{Path, Query};
use super::problems::{Standard, Upstream};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::queries::schema::{ColumnList, Listing, SchemaListing, TableList};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(schema))
        .routes(routes!(tables))
        .routes(routes!(columns))
}

/// `?type=schema|table&schema=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SchemaParams {
    /// `schema` (default) lists schemas, `table` lists tables.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Only this schema (tables).
    schema: Option<String>,
}

/// `?schema=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SchemaFilter {
    /// Only this schema (for MySQL/MariaDB the database name).
    schema: Option<String>,
}

/// Schemas (`type=schema`, default) or tables (`type=table`).
#[utoipa::path(get, operation_id = "getSchema", path = "/api/v1/databases/{id}/schema", tag = "schema",
    params(("id" = String, Path, description = "Database id"), SchemaParams, Space), security(("bearer" = [])),
    responses((status = 200, description = "`{schemas}` or `{tables}`", body = SchemaListing), Standard, Upstream))]
async fn schema(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
    Query(p): Query<SchemaParams>,
) -> ApiResult<Json<SchemaListing>> {
    let what = match p.kind.as_deref().unwrap_or("schema") {
        "schema" => Listing::Schemas,
        "table" => Listing::Tables,
        _ => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "type",
                "schema or table",
            )]));
        }
    };
    Ok(Json(
        state
            .queries
            .schema(&caller, &id, what, p.schema.as_deref())
            .await?,
    ))
}

/// The database's tables.
#[utoipa::path(get, operation_id = "getTables", path = "/api/v1/databases/{id}/tables", tag = "schema",
    params(("id" = String, Path, description = "Database id"), SchemaFilter, Space), security(("bearer" = [])),
    responses((status = 200, description = "Tables", body = TableList), Standard, Upstream))]
async fn tables(
    State(state): State<AppState>,
    Space(caller): Space,
    Path(id): Path<String>,
    Query(p): Query<SchemaFilter>,
) -> ApiResult<Json<TableList>> {
    Ok(Json(
        state
            .queries
            .tables(&caller, &id, p.schema.as_deref())
            .await?,
    ))
}

/// A table's columns, with primary keys from the index data and foreign keys from the catalog.
#[utoipa::path(get, operation_id = "getTableColumns", path = "/api/v1/databases/{id}/tables/{table}/columns", tag = "schema",
    params(("id" = String, Path, description = "Database id"), ("table" = String, Path, description = "Table name"), SchemaFilter, Space),
    security(("bearer" = [])),
    responses((status = 200, description = "Columns in table order", body = ColumnList), Standard, Upstream))]
async fn columns(
    State(state): State<AppState>,
    Space(caller): Space,
    Path((id, table)): Path<(String, String)>,
    Query(p): Query<SchemaFilter>,
) -> ApiResult<Json<ColumnList>> {
    Ok(Json(
        state
            .queries
            .columns(&caller, &id, &table, p.schema.as_deref())
            .await?,
    ))
}
