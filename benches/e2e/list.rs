//! `GET /databases` for a space with 1 000 records against the raw Cypher that reads the same
//! nodes (neo4rs, from this process), interleaved; then whether listing changed the nodes.

use std::time::Instant;

use crate::harness::{Service, Tenant};
use crate::stats::{ms, summarize};

const RECORDS: i64 = 1000;
const ROUNDS: usize = 10;
const PER_ROUND: usize = 5;

pub async fn run() {
    let svc = Service::start().await;
    let tenant = Tenant::register(&svc).await;
    let graph = crate::support::api::graph();
    let (_, first) = tenant
        .send("GET", &format!("/api/v1/databases/{}", tenant.db_id), None)
        .await;
    let (tenant_id, space_id) = (
        first["tenant_id"].as_str().unwrap().to_string(),
        first["space_id"].as_str().unwrap().to_string(),
    );
    // 999 more records like the registered one (graph nodes only: listing reads the graph and
    // the watch cache, so the CRs do not matter here).
    graph
        .run(
            neo4rs::query(
                "MATCH (d:Database {id: $id}) WITH properties(d) AS p UNWIND range(1, $n) AS i \
                 CREATE (c:Database) SET c = p {.*, id: p.id + '-' + toString(i), \
                 name: p.name + ' ' + toString(i), cr_name: p.cr_name + '-' + toString(i)}",
            )
            .param("id", tenant.db_id.as_str())
            .param("n", RECORDS - 1),
        )
        .await
        .unwrap();
    let raw = || async {
        let q = neo4rs::query(
            "MATCH (d:Database {tenant_id: $tenant_id, space_id: $space_id}) \
             RETURN d ORDER BY d.created_at DESC, d.id LIMIT 1000",
        )
        .param("tenant_id", tenant_id.as_str())
        .param("space_id", space_id.as_str());
        let mut rows = graph.execute(q).await.unwrap();
        let mut n = 0;
        while let Some(row) = rows.next().await.unwrap() {
            let _node: neo4rs::Node = row.get("d").unwrap();
            n += 1;
        }
        n
    };
    // The registered record is left out: the reconciler's checks reach it through the watch
    // mirror while the bench runs; the 999 others have no CR, so only a listing could write them.
    let before = snapshot(&graph, &tenant_id, &space_id, &tenant.db_id).await;
    let (mut api, mut cypher) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            for _ in 0..PER_ROUND {
                let t0 = Instant::now();
                if side == 0 {
                    let (code, bytes) = tenant.get_bytes("/api/v1/databases").await;
                    api.push(t0.elapsed());
                    assert_eq!(code, 200);
                    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(
                        body["databases"].as_array().unwrap().len(),
                        RECORDS as usize
                    );
                } else {
                    assert_eq!(raw().await, RECORDS);
                    cypher.push(t0.elapsed());
                }
            }
        }
    }
    let changed = snapshot(&graph, &tenant_id, &space_id, &tenant.db_id).await != before;
    let (a, c) = (summarize(api), summarize(cypher));
    println!(
        "{RECORDS} records, {} requests per side, interleaved",
        ROUNDS * PER_ROUND
    );
    println!("{:<28} {:>10} {:>10}", "", "p50", "p95");
    println!(
        "{:<28} {:>10} {:>10}",
        "raw Cypher (neo4rs)",
        ms(c.p50),
        ms(c.p95)
    );
    println!(
        "{:<28} {:>10} {:>10}",
        "GET /api/v1/databases",
        ms(a.p50),
        ms(a.p95)
    );
    println!(
        "ratio p50 {:.2}; the 999 unreconciled nodes' properties {} while listing",
        a.p50.as_secs_f64() / c.p50.as_secs_f64().max(f64::EPSILON),
        if changed { "CHANGED" } else { "did not change" }
    );
}

/// The space's Database nodes' properties, as one text (compared before and after listing: a
/// listing that wrote status or anything else onto the nodes would change it).
async fn snapshot(graph: &neo4rs::Graph, tenant_id: &str, space_id: &str, skip: &str) -> String {
    let mut rows = graph
        .execute(
            neo4rs::query(
                "MATCH (d:Database {tenant_id: $tenant_id, space_id: $space_id}) WHERE d.id <> $skip \
                 WITH d ORDER BY d.id RETURN collect(properties(d)) AS all",
            )
            .param("skip", skip)
            .param("tenant_id", tenant_id)
            .param("space_id", space_id),
        )
        .await
        .unwrap();
    let row = rows.next().await.unwrap().unwrap();
    // Map keys in a fixed order (a BoltMap's own order varies from read to read).
    let all = row.get::<neo4rs::BoltList>("all").unwrap();
    let mut text = String::new();
    for node in all.value {
        let neo4rs::BoltType::Map(m) = node else {
            panic!("not a map: {node:?}")
        };
        let sorted: std::collections::BTreeMap<String, String> = m
            .value
            .into_iter()
            .map(|(k, v)| (k.value, format!("{v:?}")))
            .collect();
        text.push_str(&format!("{sorted:?}\n"));
    }
    text
}
