//! What a query returns to the caller: DBHub's statements with rows cut to the caller's row
//! limit, columns in the database's order, the last statement on top.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::mcp::ExecResult;

/// One statement's result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatementOutput {
    /// The statement as run.
    pub sql: String,
    /// Column names in the database's order (empty when no row came back: DBHub sends names
    /// only with rows).
    pub columns: Vec<String>,
    /// Rows as objects, keys in column order; a cell is any JSON value (numbers, strings,
    /// booleans, null, or nested JSON for json columns).
    #[schema(value_type = Vec<std::collections::HashMap<String, serde_json::Value>>)]
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
    /// Rows as objects, keys in column order; a cell is any JSON value (numbers, strings,
    /// booleans, null, or nested JSON for json columns).
    #[schema(value_type = Vec<std::collections::HashMap<String, serde_json::Value>>)]
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

/// Shapes DBHub's result: rows cut to `limit`, the last statement on top.
pub fn shape(result: ExecResult, limit: usize, duration_ms: i64) -> QueryOutput {
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
    let top = match (several, statements.last()) {
        (true, Some(last)) => last.clone(),
        _ => statements.pop().unwrap_or(StatementOutput {
            sql: String::new(),
            columns: Vec::new(),
            rows: Vec::new(),
            row_count: 0,
            truncated: false,
        }),
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
}
