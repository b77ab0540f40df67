//! DBHub over MCP (Streamable HTTP, rmcp). The only module that uses rmcp. One [`Session`]
//! per DBHub endpoint + token is kept and reused; tool errors come back as typed [`McpError`]s
//! (never as server errors), results as typed statements with rows in column order.

pub mod hub;
pub mod result;

use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;

pub use result::{ExecResult, McpError, StatementResult};

/// DBHub 1.4 parses request bodies with express.json()'s default limit ("100kb") and answers
/// anything larger with 413; such a request is refused here instead, with a clear reason.
pub const DBHUB_MAX_REQUEST_BYTES: usize = 100 * 1024;
/// Room for the JSON-RPC envelope around a tool's arguments.
const ENVELOPE_BYTES: usize = 512;

/// A live MCP session with one DBHub.
pub struct Session {
    service: RunningService<rmcp::RoleClient, ()>,
    timeout: Duration,
}

impl Session {
    /// Connects (and initializes) within `timeout`. `token` is sent as a bearer token.
    pub async fn connect(endpoint: &str, token: &str, timeout: Duration) -> Result<Self, McpError> {
        let config = StreamableHttpClientTransportConfig::with_uri(endpoint.to_string())
            .auth_header(token.to_string());
        let transport = StreamableHttpClientTransport::from_config(config);
        let service = tokio::time::timeout(timeout, ().serve(transport))
            .await
            .map_err(|_| McpError::Unavailable("DBHub did not answer in time".into()))?
            .map_err(|e| McpError::Unavailable(result::init_failure(&e)))?;
        Ok(Self { service, timeout })
    }

    /// The names of DBHub's tools (suffixed per source when it serves several).
    pub async fn tool_names(&self) -> Result<Vec<String>, McpError> {
        let list = tokio::time::timeout(self.timeout, self.service.list_tools(None))
            .await
            .map_err(|_| McpError::Timeout)?
            .map_err(|e| McpError::Unavailable(result::transport_failure(&e)))?;
        Ok(list.tools.into_iter().map(|t| t.name.to_string()).collect())
    }

    /// Calls `tool` with `arguments`; the JSON DBHub put in its text content.
    pub async fn call(&self, tool: &str, arguments: Value) -> Result<Value, McpError> {
        self.call_within(tool, arguments, self.timeout).await
    }

    /// As [`Session::call`], waiting at most `timeout`.
    pub async fn call_within(
        &self,
        tool: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, McpError> {
        let bytes = serde_json::to_vec(&arguments).map_or(0, |v| v.len()) + ENVELOPE_BYTES;
        if bytes > DBHUB_MAX_REQUEST_BYTES {
            return Err(McpError::TooLarge {
                bytes,
                limit: DBHUB_MAX_REQUEST_BYTES,
            });
        }
        let args = arguments.as_object().cloned().unwrap_or_default();
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let res = tokio::time::timeout(timeout, self.service.call_tool(params))
            .await
            .map_err(|_| McpError::Timeout)?
            .map_err(|e| result::service_error(tool, &e))?;
        let text = res
            .content
            .iter()
            .filter_map(|c| c.as_text())
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join("");
        result::tool_output(res.is_error == Some(true), &text)
    }

    /// Runs SQL through an `execute_sql` tool.
    pub async fn execute_sql(&self, tool: &str, sql: &str) -> Result<ExecResult, McpError> {
        let out = self.call(tool, serde_json::json!({ "sql": sql })).await?;
        result::exec_result(out)
    }

    /// Ends the session.
    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
}
