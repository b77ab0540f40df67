//! Prometheus metrics of the service (`GET /metrics`, OpenMetrics text): HTTP requests by route
//! and status, DBHub (MCP) call latency by tool and outcome, plus the embedded reconcilers'
//! metrics (reconciles, errors, duration, connection-check latency, leadership).

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// `method`, `route` (the matched route template, never the raw path), `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    /// GET, POST, …
    pub method: String,
    /// e.g. `/api/v1/databases/{id}`; `unmatched` for unknown paths.
    pub route: String,
    /// HTTP status code.
    pub status: u16,
}

/// `method`, `route`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// GET, POST, …
    pub method: String,
    /// The matched route template.
    pub route: String,
}

/// `tool` (execute_sql | search_objects), `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpLabel {
    /// Base tool name (without the source suffix: ids must not become label values).
    pub tool: String,
    /// ok, tool_error, unavailable, timeout, unknown_tool, protocol, not_served.
    pub outcome: String,
}

use dbhub_operator::metrics::{Histograms, seconds};

/// `outcome` of a history entry: written, or dropped (queue full, or the write failed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HistoryLabel {
    /// written, dropped_full, dropped_failed.
    pub outcome: String,
}

/// `form` of an HTTP request to DBHub carrying tool calls: `single` (one call) or `batch`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormLabel {
    /// single, batch.
    pub form: &'static str,
}

struct Metrics {
    requests: Family<HttpLabel, Counter>,
    duration: Histograms<RouteLabel>,
    mcp: Histograms<McpLabel>,
    mcp_requests: Family<FormLabel, Counter>,
    mcp_batched_calls: Counter,
    history: Family<HistoryLabel, Counter>,
    graph_queries: Counter,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        requests: Family::default(),
        duration: Family::new_with_constructor(seconds),
        mcp: Family::new_with_constructor(seconds),
        mcp_requests: Family::default(),
        mcp_batched_calls: Counter::default(),
        history: Family::default(),
        graph_queries: Counter::default(),
    })
}

/// Counts `n` query-history entries with `outcome`.
pub fn history(outcome: &str, n: u64) {
    metrics()
        .history
        .get_or_create(&HistoryLabel {
            outcome: outcome.into(),
        })
        .inc_by(n);
}

/// Counts one Cypher query sent to Neo4j.
pub fn graph_query() {
    metrics().graph_queries.inc();
}

/// Records one HTTP request.
pub fn http(method: &str, route: &str, status: u16, seconds: f64) {
    let m = metrics();
    m.requests
        .get_or_create(&HttpLabel {
            method: method.into(),
            route: route.into(),
            status,
        })
        .inc();
    m.duration
        .get_or_create(&RouteLabel {
            method: method.into(),
            route: route.into(),
        })
        .observe(seconds);
}

/// Records one DBHub tool call.
pub fn mcp(tool: &str, outcome: &str, seconds: f64) {
    metrics()
        .mcp
        .get_or_create(&McpLabel {
            tool: tool.into(),
            outcome: outcome.into(),
        })
        .observe(seconds);
}

/// Counts one HTTP request to DBHub carrying `calls` tool calls (more than one: a batch).
pub fn mcp_request(calls: usize) {
    let m = metrics();
    let form = if calls > 1 { "batch" } else { "single" };
    m.mcp_requests.get_or_create(&FormLabel { form }).inc();
    if calls > 1 {
        m.mcp_batched_calls.inc_by(calls as u64);
    }
}

/// Everything, in the OpenMetrics text format.
pub fn render() -> String {
    let m = metrics();
    let mut reg = Registry::default();
    reg.register(
        "aether_dbhub_http_requests",
        "HTTP requests served, by method, route and status",
        m.requests.clone(),
    );
    reg.register(
        "aether_dbhub_http_request_duration_seconds",
        "HTTP request latency, by method and route",
        m.duration.clone(),
    );
    reg.register(
        "aether_dbhub_mcp_call_duration_seconds",
        "DBHub (MCP) tool call latency, by tool and outcome",
        m.mcp.clone(),
    );
    reg.register(
        "aether_dbhub_mcp_requests",
        "HTTP requests to DBHub carrying MCP calls, by form (single: one call; batch: calls that queued while DBHub was busy, sent together)",
        m.mcp_requests.clone(),
    );
    reg.register(
        "aether_dbhub_mcp_batched_calls",
        "MCP calls sent to DBHub inside batches",
        m.mcp_batched_calls.clone(),
    );
    reg.register(
        "aether_dbhub_history_entries",
        "Query-history entries, by outcome (written; dropped_full when the write queue was full; dropped_failed when Neo4j refused the write)",
        m.history.clone(),
    );
    reg.register(
        "aether_dbhub_graph_queries",
        "Cypher queries sent to Neo4j (reads and writes, each its own transaction)",
        m.graph_queries.clone(),
    );
    dbhub_operator::metrics::register(&mut reg);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)
        .expect("writing to a String cannot fail");
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `GET /metrics` handler (the API's router and the operator's probe server share it).
pub async fn handler() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_mcp_series_are_rendered_with_route_templates() {
        http("GET", "/api/v1/databases/{id}", 404, 0.002);
        mcp("execute_sql", "ok", 0.01);
        let text = render();
        assert!(
            text.contains("aether_dbhub_http_requests_total{method=\"GET\",route=\"/api/v1/databases/{id}\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "aether_dbhub_mcp_call_duration_seconds_count{tool=\"execute_sql\",outcome=\"ok\"} 1"
        ));
        assert!(
            text.contains("dbhub_operator_leader"),
            "the operator's metrics are included"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
