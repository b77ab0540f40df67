//! Schema browsing through DBHub's `search_objects`: schemas, tables and a table's columns.
//! Primary keys come from DBHub's index data (`primary: true`), foreign keys from the engine's
//! catalog (a read-only SELECT through `execute_sql`) — never from column names.

use dbhub_operator::crd::DatabaseType;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Queries, hub_error};
use crate::model::{Caller, Database, Error, FieldError, Result};

/// A table (or view) as DBHub lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Table {
    /// Its name as the engine spells it.
    pub name: String,
    /// Schema (MySQL/MariaDB: the database).
    pub schema: String,
    /// Row count from the engine's statistics; null when it has none.
    pub row_count: Option<i64>,
    /// Same as row_count (the notebook's data-source picker); absent when the count is unknown.
    #[serde(rename = "rowCount", skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub row_count_alias: Option<i64>,
}

/// Schemas or tables (`?type=`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SchemaListing {
    /// Schema names (`type=schema`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Vec<String>>,
    /// Tables (`type=table`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<Table>>,
    /// Whether DBHub's limit (1000) may have cut the list.
    pub truncated: bool,
}

/// The tables of the database.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TableList {
    /// The tables, in the order DBHub lists them.
    pub tables: Vec<Table>,
    /// Whether DBHub's limit (1000) may have cut the list.
    pub truncated: bool,
}

/// A column, with the frontend's camelCase trio.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(non_snake_case)]
pub struct Column {
    /// Its name as the engine spells it.
    pub name: String,
    /// The engine's type name.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Default expression, if any.
    pub default: Option<String>,
    /// Part of the primary key (from the index data).
    pub primary_key: bool,
    /// Same as primary_key (frontend).
    pub isPrimaryKey: bool,
    /// Part of a foreign key (from the engine's catalog).
    pub isForeignKey: bool,
    /// Same as default (frontend).
    pub defaultValue: Option<String>,
}

/// A table's columns in their order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ColumnList {
    /// The table asked for.
    pub table: String,
    /// The schema it was found in.
    pub schema: String,
    /// Columns in table order.
    pub columns: Vec<Column>,
}

const LIMIT: i64 = 1000;

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .into()
}

fn table_args(schema: Option<&str>, detail: &str) -> Value {
    let mut args = json!({"object_type": "table", "detail_level": detail, "limit": LIMIT});
    if let Some(s) = schema.filter(|s| !s.is_empty()) {
        args["schema"] = json!(s);
    }
    args
}

fn to_tables(results: &[Value]) -> Vec<Table> {
    results
        .iter()
        .map(|t| Table {
            name: text(t, "name"),
            schema: text(t, "schema"),
            row_count: t.get("row_count").and_then(Value::as_i64),
            row_count_alias: t.get("row_count").and_then(Value::as_i64),
        })
        .collect()
}

/// The primary-key columns of a table DBHub described with `detail_level: full` (from its
/// index data).
fn primary_keys(t: &Value) -> Vec<String> {
    t.get("indexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
        .flat_map(|i| {
            i.get("columns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c.as_str().map(String::from))
        .collect()
}

/// The columns of a table DBHub described, in table order, marked with their keys.
fn to_columns(t: &Value, primary: &[String], foreign: &[String]) -> Vec<Column> {
    t.get("columns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let name = text(c, "name");
            let default = c.get("default").and_then(|d| match d {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            });
            let pk = primary.contains(&name);
            Column {
                isForeignKey: foreign.contains(&name),
                data_type: text(c, "type"),
                nullable: c.get("nullable").and_then(Value::as_bool).unwrap_or(true),
                defaultValue: default.clone(),
                default,
                primary_key: pk,
                isPrimaryKey: pk,
                name,
            }
        })
        .collect()
}

/// What to list with [`Queries::schema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Schema names (`type=schema`).
    Schemas,
    /// The tables, in the order DBHub lists them.
    Tables,
}

impl Queries {
    async fn search(
        &self,
        caller: &Caller,
        db: &Database,
        args: Value,
    ) -> Result<(Vec<Value>, bool)> {
        let out = self
            .hubs
            .search_objects(&self.instance(caller), &db.cr_name, args)
            .await
            .map_err(hub_error)?;
        let results = out
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let truncated = out.get("truncated").and_then(Value::as_bool) == Some(true);
        Ok((results, truncated))
    }

    /// Schemas or tables of database `id` (tables of `schema` only, when given).
    pub async fn schema(
        &self,
        caller: &Caller,
        id: &str,
        what: Listing,
        schema: Option<&str>,
    ) -> Result<SchemaListing> {
        let db = self.registry.connected(caller, id).await?;
        if what == Listing::Schemas {
            let args = json!({"object_type": "schema", "detail_level": "names", "limit": LIMIT});
            let (results, truncated) = self.search(caller, &db, args).await?;
            return Ok(SchemaListing {
                schemas: Some(results.iter().map(|s| text(s, "name")).collect()),
                tables: None,
                truncated,
            });
        }
        let (results, truncated) = self
            .search(caller, &db, table_args(schema, "summary"))
            .await?;
        Ok(SchemaListing {
            schemas: None,
            tables: Some(to_tables(&results)),
            truncated,
        })
    }

    /// The tables of database `id`.
    pub async fn tables(
        &self,
        caller: &Caller,
        id: &str,
        schema: Option<&str>,
    ) -> Result<TableList> {
        let db = self.registry.connected(caller, id).await?;
        let (results, truncated) = self
            .search(caller, &db, table_args(schema, "summary"))
            .await?;
        Ok(TableList {
            tables: to_tables(&results),
            truncated,
        })
    }

    /// A table's columns, with primary keys from the index data and foreign keys from the catalog.
    pub async fn columns(
        &self,
        caller: &Caller,
        id: &str,
        table: &str,
        schema: Option<&str>,
    ) -> Result<ColumnList> {
        let db = self.registry.connected(caller, id).await?;
        let mut args = table_args(schema, "full");
        // LIKE pattern: `_`/`%` in a name match more than the name, so results are filtered exactly.
        args["pattern"] = json!(table);
        let (results, _) = self.search(caller, &db, args).await?;
        let mut found: Vec<&Value> = results
            .iter()
            .filter(|t| text(t, "name") == table)
            .collect();
        let t = match found.len() {
            0 => return Err(Error::NotFound("table")),
            1 => found.remove(0),
            _ => {
                let schemas: Vec<String> = found.iter().map(|t| text(t, "schema")).collect();
                return Err(Error::Invalid(vec![FieldError::new(
                    "schema",
                    format!(
                        "table {table:?} exists in several schemas ({}): pass ?schema=",
                        schemas.join(", ")
                    ),
                )]));
            }
        };
        let schema = text(t, "schema");
        let foreign = self.foreign_keys(caller, &db, &schema, table).await;
        let columns = to_columns(t, &primary_keys(t), &foreign);
        Ok(ColumnList {
            table: table.to_string(),
            schema,
            columns,
        })
    }

    /// Foreign-key columns of the table (empty, with a warning logged, when they cannot be read).
    async fn foreign_keys(
        &self,
        caller: &Caller,
        db: &Database,
        schema: &str,
        table: &str,
    ) -> Vec<String> {
        let Some(sql) = foreign_key_sql(db.settings.engine, schema, table) else {
            tracing::warn!(
                table,
                "foreign keys not looked up: the name is not a plain literal"
            );
            return Vec::new();
        };
        match self
            .hubs
            .execute_sql(
                &self.instance(caller),
                &db.cr_name,
                &sql,
                std::time::Duration::ZERO,
                crate::mcp::hub::Source::Read,
            )
            .await
        {
            Ok(res) => res
                .statements
                .into_iter()
                .flat_map(|s| s.rows)
                .filter_map(|row| {
                    row.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("column_name"))
                        .and_then(|(_, v)| v.as_str().map(String::from))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %crate::mcp::result::redact(&e.to_string()), table, "foreign keys could not be read");
                Vec::new()
            }
        }
    }
}

/// The catalog query listing a table's foreign-key columns, or None when the names cannot be
/// written as plain string literals (quotes, backslashes, control characters).
pub fn foreign_key_sql(engine: DatabaseType, schema: &str, table: &str) -> Option<String> {
    let plain = |s: &str| !s.chars().any(|c| c == '\'' || c == '\\' || c.is_control());
    if !plain(schema) || !plain(table) {
        return None;
    }
    Some(match engine {
        DatabaseType::Sqlite => {
            format!("SELECT \"from\" AS column_name FROM pragma_foreign_key_list('{table}')")
        }
        // The catalogs, not information_schema.table_constraints: that view hides constraints
        // of tables the user may only read, which is the usual read-only account.
        DatabaseType::Postgres => format!(
            "SELECT a.attname AS column_name FROM pg_catalog.pg_constraint c \
             JOIN pg_catalog.pg_class t ON t.oid = c.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
             WHERE c.contype = 'f' AND n.nspname = '{schema}' AND t.relname = '{table}'"
        ),
        DatabaseType::Mysql | DatabaseType::Mariadb => format!(
            "SELECT column_name AS column_name FROM information_schema.key_column_usage \
             WHERE referenced_table_name IS NOT NULL AND table_schema = '{schema}' AND table_name = '{table}'"
        ),
        DatabaseType::Sqlserver => format!(
            "SELECT c.name AS column_name FROM sys.foreign_key_columns f \
             JOIN sys.columns c ON c.object_id = f.parent_object_id AND c.column_id = f.parent_column_id \
             JOIN sys.tables t ON t.object_id = f.parent_object_id \
             JOIN sys.schemas s ON s.schema_id = t.schema_id \
             WHERE s.name = '{schema}' AND t.name = '{table}'"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn foreign_key_lookup_only_for_plain_names_and_always_a_read() {
        for engine in [
            DatabaseType::Postgres,
            DatabaseType::Mysql,
            DatabaseType::Mariadb,
            DatabaseType::Sqlserver,
            DatabaseType::Sqlite,
        ] {
            let sql = foreign_key_sql(engine, "public", "order_items").unwrap();
            assert!(
                matches!(
                    crate::sql::classify(&sql, engine, &Default::default()).await,
                    Ok(crate::sql::Verdict::ReadOnly { statements: 1, .. })
                ),
                "{engine:?}: {sql}"
            );
            assert_eq!(
                foreign_key_sql(engine, "public", "x'; DROP TABLE t; --"),
                None
            );
            assert_eq!(foreign_key_sql(engine, "p\\", "t"), None);
        }
    }
}
