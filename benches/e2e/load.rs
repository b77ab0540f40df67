//! 200 concurrent clients for 60 s, each looping over list, get and query (`SELECT 1`) as fast
//! as answers come; the service's RSS is sampled every 250 ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Service, Tenant};
use crate::stats::{ms, rss_mib, summarize};

const CLIENTS: usize = 200;
const DURATION: Duration = Duration::from_secs(60);

pub async fn run() {
    let svc = Service::start().await;
    let tenant = Arc::new(Tenant::register(&svc).await);
    let idle_rss = rss_mib(svc.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let pid = svc.pid();
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        })
    };
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (t, stop) = (tenant.clone(), stop.clone());
            tokio::spawn(async move {
                let mut out: Vec<(usize, Duration, u16)> = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let kind = i % 3;
                    let t0 = Instant::now();
                    let (code, _) = match kind {
                        0 => t.send("GET", "/api/v1/databases", None).await,
                        1 => {
                            t.send("GET", &format!("/api/v1/databases/{}", t.db_id), None)
                                .await
                        }
                        _ => {
                            let q = json!({"query": "SELECT 1 AS one"});
                            t.send(
                                "POST",
                                &format!("/api/v1/databases/{}/query", t.db_id),
                                Some(q),
                            )
                            .await
                        }
                    };
                    out.push((kind, t0.elapsed(), code));
                    i += 1;
                }
                out
            })
        })
        .collect();
    tokio::time::sleep(DURATION).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let elapsed = started.elapsed();
    let peak = sampler.await.unwrap();
    let errors = all.iter().filter(|(_, _, code)| *code != 200).count();
    println!(
        "{CLIENTS} clients, {:.0} s, release build, loopback; service RSS idle {idle_rss:.1} MiB, peak {peak:.1} MiB",
        elapsed.as_secs_f64()
    );
    println!(
        "{:<8} {:>9} {:>8} {:>10} {:>10} {:>10} {:>9}",
        "route", "requests", "errors", "p50", "p95", "p99", "req/s"
    );
    for (kind, name) in [(0, "list"), (1, "get"), (2, "query"), (9, "all")] {
        let pick: Vec<&(usize, Duration, u16)> = all
            .iter()
            .filter(|(k, _, _)| kind == 9 || *k == kind)
            .collect();
        let errs = pick.iter().filter(|(_, _, c)| *c != 200).count();
        let s = summarize(pick.iter().map(|(_, d, _)| *d).collect());
        println!(
            "{name:<8} {:>9} {errs:>8} {:>10} {:>10} {:>10} {:>9.0}",
            s.count,
            ms(s.p50),
            ms(s.p95),
            ms(s.p99),
            s.count as f64 / elapsed.as_secs_f64()
        );
    }
    let mut codes: Vec<u16> = all
        .iter()
        .map(|(_, _, c)| *c)
        .filter(|c| *c != 200)
        .collect();
    codes.sort();
    codes.dedup();
    if errors > 0 {
        println!("non-200 statuses seen: {codes:?} (0 = no answer)");
    }
}
