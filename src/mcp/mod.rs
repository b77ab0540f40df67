//! DBHub over MCP Streamable HTTP: JSON-RPC 2.0 requests POSTed to the endpoint, each answered
//! with JSON or with a short SSE stream (shared/DBHUB.md). One [`Session`] per DBHub endpoint +
//! token is kept and reused, and takes concurrent calls; tool errors come back as typed
//! [`McpError`]s (never as server errors), results as typed statements with rows in column
//! order.
//!
//! The client is this module's own, on the service's HTTP client, because the query path pays
//! for it on every request: rmcp 3.11's client opened a new TCP connection per call against
//! DBHub (it stops reading the SSE answer once it has the response, so the connection cannot
//! go back to the pool) and spent ~0.5 ms more CPU per call than a plain POST (measured with
//! the e2e bench, 2026-12-01). Here every answer is read to its end, so connections are kept
//! alive and reused. While DBHub is busy with a session's calls, further calls go out together
//! as JSON-RPC batches ([`batch`]).

mod batch;
pub mod hub;
pub mod result;
mod rpc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use result::{ExecResult, McpError, StatementResult};

/// DBHub 1.4 parses request bodies with express.json()'s default limit ("100kb") and answers
/// anything larger with 413; such a request is refused here instead, with a clear reason.
pub const DBHUB_MAX_REQUEST_BYTES: usize = 100 * 1024;
/// The protocol revision asked for in `initialize`: 2025-03-26, the one whose servers must
/// accept JSON-RPC batches (later revisions dropped them; DBHub 1.4 speaks it and 2025-11-25
/// alike, and nothing this client uses differs between them). The server's answer is what later
/// requests declare; calls are batched only when it is this revision.
const PROTOCOL_VERSION: &str = "2025-03-26";
/// How long an idle connection to DBHub is kept: below Node's default keep-alive timeout (5 s),
/// so the pool never reuses a connection DBHub is closing.
const IDLE: Duration = Duration::from_secs(4);

/// The HTTP client every session shares (its pool keeps connections per DBHub address). No
/// redirects (a bearer token is never sent elsewhere) and no proxy from the environment: DBHub
/// is reached directly, inside the cluster.
fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .pool_idle_timeout(IDLE)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("the HTTP client's settings are valid")
    })
}

/// Request `id` calling `method` with `params`, encoded; refused when DBHub would refuse its size.
fn encode<P: Serialize>(id: u64, method: &str, params: &P) -> Result<Vec<u8>, McpError> {
    let body = rpc::request(id, method, params)?;
    if body.len() > DBHUB_MAX_REQUEST_BYTES {
        return Err(McpError::TooLarge {
            bytes: body.len(),
            limit: DBHUB_MAX_REQUEST_BYTES,
        });
    }
    Ok(body)
}

/// `initialize` (request 1) and `notifications/initialized`: what the session's requests carry
/// from then on (the protocol version, the session id when the server keeps sessions), and
/// whether they may be batched.
async fn initialize(
    endpoint: reqwest::Url,
    mut headers: HeaderMap,
) -> Result<batch::Link, McpError> {
    let params = Initialize {
        protocol_version: PROTOCOL_VERSION,
        capabilities: Default::default(),
        client_info: ClientInfo {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        },
    };
    let body = encode(1, "initialize", &params)?;
    let answer = rpc::post(http(), &endpoint, &headers, body).await?;
    let session = answer.headers().get("mcp-session-id").cloned();
    let init: Initialized = answer.reply(1).await.map_err(|e| match e.into_mcp() {
        McpError::Protocol(m) => McpError::Unavailable(format!("initialize: {m}")),
        other => other,
    })?;
    let batches = init.protocol_version == PROTOCOL_VERSION;
    let version = HeaderValue::try_from(init.protocol_version).map_err(|_| {
        McpError::Unavailable("initialize: DBHub named an invalid protocol version".into())
    })?;
    headers.insert("mcp-protocol-version", version);
    if let Some(id) = session {
        headers.insert("mcp-session-id", id);
    }
    let note = rpc::notification("notifications/initialized");
    rpc::post(http(), &endpoint, &headers, note)
        .await?
        .finish()
        .await?;
    Ok(batch::Link::new(endpoint, headers, batches))
}

/// A live MCP session with one DBHub.
pub struct Session {
    link: Arc<batch::Link>,
    next_id: AtomicU64,
    timeout: Duration,
}

#[derive(Serialize)]
struct Initialize<'a> {
    #[serde(rename = "protocolVersion")]
    protocol_version: &'a str,
    capabilities: serde_json::Map<String, Value>,
    #[serde(rename = "clientInfo")]
    client_info: ClientInfo<'a>,
}

#[derive(Serialize)]
struct ClientInfo<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Deserialize)]
struct Initialized {
    #[serde(rename = "protocolVersion")]
    protocol_version: String,
}

#[derive(Serialize)]
struct ListTools<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

#[derive(Deserialize)]
struct ToolList {
    tools: Vec<ToolName>,
    #[serde(rename = "nextCursor", default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ToolName {
    name: String,
}

#[derive(Serialize)]
struct CallTool<'a> {
    name: &'a str,
    arguments: &'a Value,
}

#[derive(Deserialize)]
struct ToolResult {
    #[serde(default)]
    content: Vec<Content>,
    #[serde(rename = "isError", default)]
    is_error: bool,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    text: Option<String>,
}

impl Session {
    /// Connects (and initializes) within `timeout`. `token` is sent as a bearer token.
    pub async fn connect(endpoint: &str, token: &str, timeout: Duration) -> Result<Self, McpError> {
        let endpoint = reqwest::Url::parse(endpoint)
            .map_err(|_| McpError::Unavailable("the DBHub endpoint is not a URL".into()))?;
        let mut auth = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| McpError::Unavailable("DBHub refused the token".into()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let link = tokio::time::timeout(timeout, initialize(endpoint, headers))
            .await
            .map_err(|_| McpError::Unavailable("DBHub did not answer in time".into()))??;
        Ok(Self {
            link: Arc::new(link),
            next_id: AtomicU64::new(2),
            timeout,
        })
    }

    /// Calls this session has sent to DBHub inside batches of two or more.
    pub fn batched_calls(&self) -> u64 {
        self.link.batched_calls()
    }

    /// Sends request `method` with `params` (alone or in a batch, see [`batch`]); its typed
    /// result. `timeout` is how long the caller waits.
    async fn request<P: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, rpc::Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = encode(id, method, params)?;
        let link = &self.link;
        match link.turn(id, body, tokio::time::Instant::now() + timeout) {
            batch::Turn::Now(_out, body) => {
                crate::metrics::mcp_request(1);
                rpc::post(http(), &link.endpoint, &link.headers, body)
                    .await?
                    .reply(id)
                    .await
            }
            batch::Turn::Later(answer) => {
                let text = link.wait(answer).await?;
                rpc::outcome(&text, id)?.ok_or_else(|| {
                    McpError::Protocol("the answer is not the response to the request".into())
                        .into()
                })
            }
        }
    }

    /// The names of DBHub's tools (suffixed per source when it serves several).
    pub async fn tool_names(&self) -> Result<Vec<String>, McpError> {
        let list = async {
            let (mut names, mut cursor) = (Vec::new(), None::<String>);
            loop {
                let params = ListTools {
                    cursor: cursor.as_deref(),
                };
                let page = self
                    .request::<_, ToolList>("tools/list", &params, self.timeout)
                    .await
                    .map_err(rpc::Failure::into_mcp)?;
                names.extend(page.tools.into_iter().map(|t| t.name));
                match page.next_cursor {
                    Some(next) if !next.is_empty() && cursor.as_ref() != Some(&next) => {
                        cursor = Some(next)
                    }
                    _ => return Ok(names),
                }
            }
        };
        tokio::time::timeout(self.timeout, list)
            .await
            .map_err(|_| McpError::Timeout)?
    }

    /// Calls `tool` with `arguments`; the JSON DBHub put in its text content.
    pub async fn call(&self, tool: &str, arguments: &Value) -> Result<Value, McpError> {
        self.call_within(tool, arguments, self.timeout).await
    }

    /// As [`Session::call`], waiting at most `timeout`.
    pub async fn call_within(
        &self,
        tool: &str,
        arguments: &Value,
        timeout: Duration,
    ) -> Result<Value, McpError> {
        let params = CallTool {
            name: tool,
            arguments,
        };
        let res = tokio::time::timeout(
            timeout,
            self.request::<_, ToolResult>("tools/call", &params, timeout),
        )
        .await
        .map_err(|_| McpError::Timeout)?
        .map_err(|e| match e {
            // DBHub answers a tool it does not have with "invalid params".
            rpc::Failure::Rpc(rpc::INVALID_PARAMS) => McpError::UnknownTool(tool.to_string()),
            other => other.into_mcp(),
        })?;
        let text: String = res.content.into_iter().filter_map(|c| c.text).collect();
        result::tool_output(res.is_error, &text)
    }

    /// Runs SQL through an `execute_sql` tool.
    pub async fn execute_sql(&self, tool: &str, sql: &str) -> Result<ExecResult, McpError> {
        let out = self.call(tool, &serde_json::json!({ "sql": sql })).await?;
        result::exec_result(out)
    }
}
