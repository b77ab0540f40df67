//! Parsing what DBHub 1.4 returns (shared/DBHUB.md): `{"success":true,"data":{"statements":
//! [{"sql","rows","count","truncated"?}]}}` on success, `{"success":false,"error","code"}` (or
//! plain text for argument-schema violations) with `isError` on failure.

use serde::Deserialize;
use serde_json::{Map, Value};

/// What can go wrong calling DBHub, mapped by the API to proper problems (never a 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// DBHub cannot be reached or refused the session (down, wrong token, wrong host).
    #[error("DBHub unavailable: {0}")]
    Unavailable(String),
    /// No answer within the timeout.
    #[error("DBHub did not answer in time")]
    Timeout,
    /// DBHub has no such tool (its configuration changed).
    #[error("DBHub has no tool {0}")]
    UnknownTool(String),
    /// The tool ran and reported an error: `code` is DBHub's (READONLY_VIOLATION,
    /// EXECUTION_ERROR, SOURCE_UNREACHABLE, AUTH_FAILED, …), `message` its text.
    #[error("{code}: {message}")]
    Tool {
        /// DBHub's error code.
        code: String,
        /// DBHub's message.
        message: String,
    },
    /// An answer this client does not understand.
    #[error("unexpected DBHub answer: {0}")]
    Protocol(String),
    /// The request would exceed what DBHub accepts in one HTTP request (its JSON body limit).
    #[error("the request is {bytes} bytes once encoded; DBHub accepts at most {limit}")]
    TooLarge {
        /// Size of the encoded request.
        bytes: usize,
        /// DBHub's limit.
        limit: usize,
    },
}

impl McpError {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Tool { .. } => "tool_error",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout => "timeout",
            Self::UnknownTool(_) => "unknown_tool",
            Self::Protocol(_) => "protocol",
            Self::TooLarge { .. } => "too_large",
        }
    }
}

/// One statement's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementResult {
    /// The statement as DBHub ran it.
    pub sql: String,
    /// Rows, keys in column order.
    pub rows: Vec<Map<String, Value>>,
    /// Rows returned, or rows affected by a write.
    pub count: i64,
    /// Whether max_rows cut the result.
    pub truncated: bool,
}

impl StatementResult {
    /// Column names in order (from the first row: DBHub sends no column list, so an empty
    /// result has none).
    pub fn columns(&self) -> Vec<String> {
        self.rows
            .first()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// An `execute_sql` outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecResult {
    /// Per statement, in order.
    pub statements: Vec<StatementResult>,
}

#[derive(Deserialize)]
struct Envelope {
    success: bool,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// The JSON payload of a tool result, or its error.
pub fn tool_output(is_error: bool, text: &str) -> Result<Value, McpError> {
    let parsed: Option<Envelope> = serde_json::from_str(text).ok();
    match parsed {
        Some(env) if env.success && !is_error => Ok(env.data),
        Some(env) => Err(McpError::Tool {
            code: env.code.unwrap_or_else(|| "EXECUTION_ERROR".into()),
            message: env
                .error
                .unwrap_or_else(|| "DBHub reported an error".into()),
        }),
        // Argument-schema violations come back as plain text.
        None if is_error => Err(McpError::Tool {
            code: "INVALID_ARGUMENTS".into(),
            message: text.trim().to_string(),
        }),
        None => Err(McpError::Protocol("tool output is not DBHub's JSON".into())),
    }
}

#[derive(Deserialize)]
struct RawStatement {
    #[serde(default)]
    sql: String,
    #[serde(default)]
    rows: Vec<Map<String, Value>>,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    truncated: bool,
}

/// Typed `execute_sql` data.
pub fn exec_result(data: Value) -> Result<ExecResult, McpError> {
    let statements = match data {
        Value::Object(mut m) => m.remove("statements").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let raw: Vec<RawStatement> = serde_json::from_value(statements)
        .map_err(|e| McpError::Protocol(format!("statements: {e}")))?;
    Ok(ExecResult {
        statements: raw
            .into_iter()
            .map(|s| StatementResult {
                count: s.count.unwrap_or(s.rows.len() as i64),
                sql: s.sql,
                rows: s.rows,
                truncated: s.truncated,
            })
            .collect(),
    })
}

/// A DBHub or driver message made safe to show (the operator's rules; 2000 characters at most).
pub fn redact(text: &str) -> String {
    dbhub_operator::redact::clean(text, &[], 2000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_keeps_column_order_and_counts() {
        let text = r#"{"success":true,"data":{"statements":[{"sql":"SELECT 3 AS c, 1 AS a","rows":[{"c":3,"a":1}],"count":1},
            {"sql":"UPDATE t SET x=1","rows":[],"count":4}],"source_id":"pg"}}"#;
        let r = exec_result(tool_output(false, text).unwrap()).unwrap();
        assert_eq!(r.statements[0].columns(), ["c", "a"]);
        assert_eq!(
            (r.statements[1].count, r.statements[1].truncated),
            (4, false)
        );
    }

    #[test]
    fn big_integers_stay_strings_and_truncation_is_kept() {
        let text = r#"{"success":true,"data":{"statements":[{"sql":"s","rows":[{"n":"9007199254740993"}],"count":1,"truncated":true}]}}"#;
        let r = exec_result(tool_output(false, text).unwrap()).unwrap();
        assert_eq!(r.statements[0].rows[0]["n"], "9007199254740993");
        assert!(r.statements[0].truncated);
    }

    #[test]
    fn tool_errors_keep_dbhub_code_and_message() {
        let e = tool_output(
            true,
            r#"{"success":false,"error":"Read-only mode","code":"READONLY_VIOLATION"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            McpError::Tool {
                code: "READONLY_VIOLATION".into(),
                message: "Read-only mode".into()
            }
        );
        let plain = tool_output(true, "Invalid arguments: sql required").unwrap_err();
        assert!(matches!(plain, McpError::Tool { code, .. } if code == "INVALID_ARGUMENTS"));
        assert!(matches!(
            tool_output(false, "hello"),
            Err(McpError::Protocol(_))
        ));
    }
}
