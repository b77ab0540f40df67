//! The query path against DBHub itself, side by side in one run: `SELECT 1` straight to the
//! space's DBHub over MCP (one session per client, the best a client can do) and through
//! `POST /databases/{id}/query`, at concurrency 1, 8 and 32. The two sides alternate in short
//! slices (direct first, then service first, …) so machine noise hits both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_dbhub::mcp::Session;
use serde_json::json;

use crate::harness::{Service, Tenant};
use crate::stats::{cpu_ticks, ms, rss_mib, summarize};

const SLICE: Duration = Duration::from_millis(2500);
/// What the service's metrics say of the query route: Cypher queries so far, then the sum and
/// count of the handler's time (from the request's arrival to its response) and of the DBHub
/// calls made in it.
const SERIES: [&str; 5] = [
    "aether_dbhub_graph_queries_total",
    r#"aether_dbhub_http_request_duration_seconds_sum{method="POST",route="/api/v1/databases/{id}/query"}"#,
    r#"aether_dbhub_http_request_duration_seconds_count{method="POST",route="/api/v1/databases/{id}/query"}"#,
    r#"aether_dbhub_mcp_call_duration_seconds_sum{tool="execute_sql",outcome="ok"}"#,
    r#"aether_dbhub_mcp_call_duration_seconds_count{tool="execute_sql",outcome="ok"}"#,
];
const ROUNDS: usize = 4;

/// CPU ticks of the processes named `comm`, or of this benchmark (its clients) for "client".
fn cpu_of(comm: &str) -> u64 {
    if comm == "client" {
        return crate::stats::self_cpu_ticks();
    }
    cpu_ticks(comm)
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Direct,
    Service,
    /// `GET /healthz` of the service: the HTTP round trip alone.
    Floor,
    /// Straight to DBHub, every client on one shared MCP session.
    Shared,
}

/// Runs `c` clients on `side` for one slice; their latencies (errors are counted apart).
async fn slice(
    side: Side,
    c: usize,
    tenant: &Arc<Tenant>,
    sessions: &Arc<Vec<Session>>,
) -> (Vec<Duration>, usize) {
    let until = Instant::now() + SLICE;
    let workers: Vec<_> = (0..c)
        .map(|w| {
            let (tenant, sessions) = (tenant.clone(), sessions.clone());
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0);
                let path = format!("/api/v1/databases/{}/query", tenant.db_id);
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let ok = match side {
                        Side::Direct => sessions[w]
                            .execute_sql("execute_sql", "SELECT 1")
                            .await
                            .is_ok(),
                        Side::Service => {
                            tenant
                                .send("POST", &path, Some(json!({"query": "SELECT 1"})))
                                .await
                                .0
                                == 200
                        }
                        Side::Floor => tenant.send("GET", "/healthz", None).await.0 == 200,
                        Side::Shared => sessions[0]
                            .execute_sql("execute_sql", "SELECT 1")
                            .await
                            .is_ok(),
                    };
                    if ok {
                        lat.push(t0.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for w in workers {
        let (l, e) = w.await.unwrap();
        all.extend(l);
        errors += e;
    }
    (all, errors)
}

/// The concurrencies compared: `BENCH_CONCURRENCY` (e.g. `1` or `1,8`), 1, 8 and 32 by default.
fn concurrencies() -> Vec<usize> {
    std::env::var("BENCH_CONCURRENCY")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .filter(|c: &Vec<usize>| !c.is_empty())
        .unwrap_or_else(|| vec![1, 8, 32])
}

pub async fn run() {
    let mut svc = Service::start().await;
    let tenant = Arc::new(Tenant::register(&svc).await);
    let ready_after = svc.ready_after;
    // Both sides reach the DBHub pod at its own address, through the kernel as in-cluster
    // clients do (the forward the set-up used runs in this process: the direct client would get
    // a shortcut through it that the service, a process of its own, does not).
    let endpoint = tenant.hub.pod_url().await;
    svc.restart(&endpoint).await;
    tenant
        .answering_by(Instant::now() + Duration::from_secs(60))
        .await;
    let mut list = Vec::new();
    for _ in 0..32 {
        list.push(
            Session::connect(&endpoint, &tenant.hub_token, Duration::from_secs(10))
                .await
                .expect("a direct MCP session"),
        );
    }
    let sessions = Arc::new(list);
    println!(
        "service ready {:.0} ms after start (stack up); idle RSS {:.1} MiB; worker threads {} (BENCH_SERVICE_AETHER_DBHUB_WORKER_THREADS; 0: one per CPU); both sides reach DBHub at {endpoint} (its pod)",
        ready_after.as_secs_f64() * 1000.0,
        rss_mib(svc.pid()),
        std::env::var("BENCH_SERVICE_AETHER_DBHUB_WORKER_THREADS").unwrap_or_else(|_| "0".into())
    );
    let [connected, served, first] = tenant.timeline.map(|d| d.as_secs_f64() * 1000.0);
    println!(
        "POST /databases → Connected {connected:.0} ms → in DBHub's configuration {served:.0} ms → first query answered {first:.0} ms (the space's DBHub pod rolls out in between)"
    );
    // Warm both paths (sessions, caches, connection pools).
    for side in [Side::Direct, Side::Service] {
        slice(side, 4, &tenant, &sessions).await;
    }
    let idle = rss_mib(svc.pid());
    println!(
        "SELECT 1, release build, loopback, {ROUNDS} interleaved slices of {:.1} s per side; service RSS after warm-up {idle:.1} MiB",
        SLICE.as_secs_f64()
    );
    println!(
        "{:>4} {:<8} {:>9} {:>7} {:>10} {:>10} {:>10} {:>9} {:>8} {:>8}",
        "c", "side", "requests", "errors", "p50", "p95", "p99", "req/s", "p50 x", "rps x"
    );
    let mut peak: f64 = idle;
    // CPU per request by process, per side: where the time of a request goes.
    const PROCS: [&str; 5] = ["aether-dbhub", "node", "java", "postgres", "client"];
    let mut cpu = [[0u64; 5]; 2];
    let mut served = [0usize; 2];
    let mut cypher = [0.0; 2];
    let mut inside = Vec::new();
    for c in concurrencies() {
        let mut got = [(Vec::new(), 0usize), (Vec::new(), 0usize)];
        let mut handler = [0.0; 4];
        for round in 0..ROUNDS {
            let order = if round % 2 == 0 {
                [Side::Direct, Side::Service]
            } else {
                [Side::Service, Side::Direct]
            };
            for side in order {
                let (before, seen) = (PROCS.map(cpu_of), svc.samples(SERIES).await);
                let (lat, errors) = slice(side, c, &tenant, &sessions).await;
                let i = usize::from(side == Side::Service);
                let after = PROCS.map(cpu_of);
                let now = svc.samples(SERIES).await;
                cypher[i] += now[0] - seen[0];
                for (k, h) in handler.iter_mut().enumerate() {
                    *h += now[k + 1] - seen[k + 1];
                }
                for p in 0..PROCS.len() {
                    cpu[i][p] += after[p].saturating_sub(before[p]);
                }
                served[i] += lat.len();
                got[i].0.extend(lat);
                got[i].1 += errors;
                peak = peak.max(rss_mib(svc.pid()));
            }
        }
        let seconds = SLICE.as_secs_f64() * ROUNDS as f64;
        let direct = summarize(got[0].0.clone());
        let service = summarize(got[1].0.clone());
        for (name, s, errors) in [
            ("direct", &direct, got[0].1),
            ("service", &service, got[1].1),
        ] {
            let (ratio_p50, ratio_rps) = if name == "service" {
                (
                    format!("{:.2}", s.p50.as_secs_f64() / direct.p50.as_secs_f64()),
                    format!("{:.2}", s.count as f64 / direct.count as f64),
                )
            } else {
                (String::new(), String::new())
            };
            println!(
                "{c:>4} {name:<8} {:>9} {errors:>7} {:>10} {:>10} {:>10} {:>9.0} {ratio_p50:>8} {ratio_rps:>8}",
                s.count,
                ms(s.p50),
                ms(s.p95),
                ms(s.p99),
                s.count as f64 / seconds
            );
        }
        let [hs, hn, ms_, mn] = handler;
        inside.push(format!(
            "c={c}: {:.3} ms in the handler, of which the DBHub call {:.3} ms",
            hs * 1000.0 / hn.max(1.0),
            ms_ * 1000.0 / mn.max(1.0)
        ));
    }
    println!(
        "Mean time inside the service (its own metrics) per POST /query: {}",
        inside.join("; ")
    );
    println!("CPU per request (ms), by process:");
    for (i, name) in ["direct", "service"].iter().enumerate() {
        let per = |p: usize| cpu[i][p] as f64 * 10.0 / served[i].max(1) as f64;
        println!(
            "  {name:<8} {}",
            PROCS
                .iter()
                .enumerate()
                .map(|(p, n)| format!("{n} {:.3}", per(p)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  {name:<8} Cypher queries per request {:.3}",
            cypher[i] / served[i].max(1) as f64
        );
    }
    for c in [8, 32] {
        let (shared, _) = slice(Side::Shared, c, &tenant, &sessions).await;
        let n = shared.len();
        let shared = summarize(shared);
        println!(
            "direct, {c} clients on one MCP session: p50 {}, {:.0} req/s",
            ms(shared.p50),
            n as f64 / SLICE.as_secs_f64()
        );
    }
    let (floor, _) = slice(Side::Floor, 1, &tenant, &sessions).await;
    let floor = summarize(floor);
    println!(
        "HTTP floor (GET /healthz of the service, c=1): p50 {}, p95 {}",
        ms(floor.p50),
        ms(floor.p95)
    );
    println!("service RSS peak {peak:.1} MiB");
}
