//! End-to-end benchmarks against the real local stack, printed as numbers — never a pass/fail
//! test. `cargo bench --bench e2e -- <scenario>...` (all when none is named):
//!
//! - `compare`: `SELECT 1` straight to DBHub over MCP vs through `POST /databases/{id}/query`
//!   at concurrency 1, 8 and 32, interleaved (p50/p95/p99, requests/s, ratios), both sides
//!   reaching the DBHub pod at its own address.
//! - `list`: `GET /databases` with 1 000 records vs the raw Cypher reading them, interleaved.
//! - `load`: 200 concurrent clients for 60 s mixing list, get and query against a release
//!   build of `aether-dbhub serve` (requests, errors, p50/p95/p99, peak RSS of the service).
//! - `operator`: 2 000 Databases / 50 DBHubInstances reconciled by `aether-dbhub operator` from
//!   cold with the instances' DBHub in real pods, a steady window, a restart (time to Connected,
//!   configured, Running and answering through each Service; peak connections, checks, writes,
//!   RSS).
//!
//! It brings the stack up (`scripts/stack up`) when it is not running, starts the service as a
//! process with its embedded reconcilers in a namespace of its own, registers the stack's
//! PostgreSQL through the API and runs that space's DBHub from the generated objects.

#[path = "../../tests/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod compare;
mod harness;
mod list;
mod load;
mod operator;
mod stats;

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = ["compare", "list", "load", "operator"];
    let run: Vec<&str> = if wanted.is_empty() {
        all.to_vec()
    } else {
        all.iter()
            .copied()
            .filter(|s| wanted.iter().any(|w| w == s))
            .collect()
    };
    harness::ensure_stack();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for scenario in run {
        println!("\n== {scenario} ==");
        match scenario {
            "compare" => rt.block_on(compare::run()),
            "list" => rt.block_on(list::run()),
            "load" => rt.block_on(load::run()),
            "operator" => rt.block_on(operator::run()),
            _ => unreachable!(),
        }
    }
}
