//! The query-history queue against the real graph: runs are written in batches off the request
//! path, a flush writes everything queued before it, a full queue drops and counts instead of
//! growing, and runs of a database deleted meanwhile are skipped.

use aether_dbhub::model::Execution;
use aether_dbhub::queries::recorder::{QUEUE, Recorder};

use crate::support::api::{self, person};
use crate::support::unique;

fn counter(outcome: &str) -> u64 {
    let text = aether_dbhub::metrics::render();
    let prefix = format!("aether_dbhub_history_entries_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn run(p: &api::Person, database_id: &str, n: usize) -> Execution {
    Execution {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: p.tenant.clone(),
        space_id: p.space.clone(),
        database_id: database_id.into(),
        database_name: String::new(),
        user_id: p.id.clone(),
        statement: format!("SELECT {n}"),
        status: "success".into(),
        error: String::new(),
        row_count: 1,
        truncated: false,
        duration_ms: 1,
        executed_at: "2026-12-01T00:00:00Z".into(),
        saved_query_id: None,
        executed_ns: n as i64,
    }
}

async fn count(graph: &neo4rs::Graph, database_id: &str) -> i64 {
    let mut rows = graph
        .execute(
            neo4rs::query(
                "MATCH (q:QueryExecution {database_id: $id})-[:EXECUTED_ON]->(:Database {id: $id}) \
                 MATCH (:User)-[:EXECUTED]->(q) RETURN count(q) AS n",
            )
            .param("id", database_id),
        )
        .await
        .unwrap();
    rows.next().await.unwrap().unwrap().get("n").unwrap()
}

// Current-thread runtime: the writer task cannot run while the test submits without awaiting,
// so exactly the runs beyond the queue's capacity are dropped.
#[tokio::test(flavor = "current_thread")]
async fn history_queue_writes_batches_flushes_and_sheds_when_full() {
    let graph = api::graph();
    let p = person(&graph).await;
    let (db, gone) = (unique("histdb"), unique("histgone"));
    for id in [&db, &gone] {
        graph
            .run(
                neo4rs::query(
                    "CREATE (:Database {id: $id, tenant_id: $t, space_id: $s, name: $id})",
                )
                .param("id", id.as_str())
                .param("t", p.tenant.as_str())
                .param("s", p.space.as_str()),
            )
            .await
            .unwrap();
    }
    let recorder = Recorder::start(api::store().await);
    let (written, dropped) = (counter("written"), counter("dropped_full"));

    let extra = 37;
    for n in 0..QUEUE + extra {
        recorder.submit(run(&p, &db, n));
    }
    assert_eq!(
        counter("dropped_full") - dropped,
        extra as u64,
        "runs beyond the queue are counted as dropped"
    );
    recorder.flush().await;
    // flush() waits at most FLUSH_WAIT (10 s); on a loaded machine 8192 writes can take longer,
    // so keep waiting for the writer (what is checked is that every queued run is written).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while count(&graph, &db).await < QUEUE as i64 && std::time::Instant::now() < deadline {
        recorder.flush().await;
    }
    assert_eq!(
        count(&graph, &db).await,
        QUEUE as i64,
        "everything queued before the flush is written"
    );
    assert!(counter("written") - written >= QUEUE as u64);

    // A run of a database deleted before the writer gets to it is skipped, not an error.
    graph
        .run(
            neo4rs::query("MATCH (d:Database {id: $id}) DETACH DELETE d")
                .param("id", gone.as_str()),
        )
        .await
        .unwrap();
    recorder.submit(run(&p, &gone, 1));
    recorder.submit(run(&p, &db, QUEUE + 1));
    recorder.flush().await;
    assert_eq!(count(&graph, &db).await, QUEUE as i64 + 1);
    let mut rows = graph
        .execute(
            neo4rs::query("MATCH (q:QueryExecution {database_id: $id}) RETURN count(q) AS n")
                .param("id", gone.as_str()),
        )
        .await
        .unwrap();
    let n: i64 = rows.next().await.unwrap().unwrap().get("n").unwrap();
    assert_eq!(n, 0);

    graph
        .run(
            neo4rs::query("MATCH (d:Database {id: $id}) OPTIONAL MATCH (q:QueryExecution)-[:EXECUTED_ON]->(d) DETACH DELETE q, d")
                .param("id", db.as_str()),
        )
        .await
        .unwrap();
}

/// A database with more history than one Neo4j transaction can delete (the stack's Neo4j
/// refuses a transaction beyond ~540 MiB; 150 000 runs needed more) is deleted through the API
/// all the same, its runs in chunks: 204, and no run, saved query or record is left. The whole
/// deletion takes longer than the request timeout (8 s here; ~12 s on an idle machine), which
/// each chunk deleted extends: only a stalled deletion is a 504.
#[tokio::test]
async fn deleting_a_database_with_a_long_history_deletes_all_of_it() {
    let ns = crate::support::kube::TestNamespace::new("longhist").await;
    let server = api::serve_opts(
        &ns.name,
        ns.client.clone(),
        api::Options {
            limits: aether_dbhub::http::Limits {
                request_timeout: std::time::Duration::from_secs(8),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = api::personal(&server, &owner);
    let body = crate::support::scenario::pg_body("busy", serde_json::json!({}));
    let (code, created) = call.send("POST", "/api/v1/databases", Some(body)).await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    for _ in 0..6 {
        graph
            .run(
                neo4rs::query(
                    "MATCH (d:Database {id: $id}) UNWIND range(1, 25000) AS i \
                     CREATE (:QueryExecution {id: randomUUID(), tenant_id: d.tenant_id, \
                     space_id: d.space_id, database_id: d.id, user_id: $user, \
                     statement: 'SELECT 1', status: 'success', executed_ns: i})-[:EXECUTED_ON]->(d)",
                )
                .param("id", id.as_str())
                .param("user", owner.id.as_str()),
            )
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    let (code, problem) = call
        .send("DELETE", &format!("/api/v1/databases/{id}"), None)
        .await;
    assert_eq!(code, 204, "after {:?}: {problem}", started.elapsed());
    let mut rows = graph
        .execute(
            neo4rs::query(
                "OPTIONAL MATCH (q:QueryExecution {database_id: $id}) WITH count(q) AS runs \
                 OPTIONAL MATCH (d:Database {id: $id}) RETURN runs, count(d) AS records",
            )
            .param("id", id.as_str()),
        )
        .await
        .unwrap();
    let row = rows.next().await.unwrap().unwrap();
    assert_eq!(
        (
            row.get::<i64>("runs").unwrap(),
            row.get::<i64>("records").unwrap()
        ),
        (0, 0)
    );
}

/// Plain runs and runs of a saved query in one batch: both written; a plain run carries no
/// `saved_query_id` (and so no entry in its index), a saved run carries it and points at its
/// saved query; both come back through the API's reading of the history.
#[tokio::test]
async fn plain_and_saved_runs_in_one_batch_are_written_each_in_its_form() {
    let graph = api::graph();
    let p = person(&graph).await;
    let (db, saved) = (unique("histmix"), unique("histsaved"));
    graph
        .run(
            neo4rs::query(
                "CREATE (:Database {id: $id, tenant_id: $t, space_id: $s, name: $id}) \
                 CREATE (:SavedQuery {id: $saved, tenant_id: $t, space_id: $s, database_id: $id})",
            )
            .param("id", db.as_str())
            .param("saved", saved.as_str())
            .param("t", p.tenant.as_str())
            .param("s", p.space.as_str()),
        )
        .await
        .unwrap();
    let store = api::store().await;
    let plain = run(&p, &db, 1);
    let mut of_saved = run(&p, &db, 2);
    of_saved.saved_query_id = Some(saved.clone());
    assert_eq!(
        store
            .record_executions(&[plain.clone(), of_saved.clone()])
            .await
            .unwrap(),
        2
    );
    let mut rows = graph
        .execute(
            neo4rs::query(
                "MATCH (q:QueryExecution {database_id: $id})-[:EXECUTED_ON]->(:Database {id: $id}) \
                 OPTIONAL MATCH (q)-[:RUN_OF]->(s:SavedQuery) \
                 RETURN q.id AS id, q.saved_query_id AS saved, s.id AS linked ORDER BY q.executed_ns",
            )
            .param("id", db.as_str()),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(row) = rows.next().await.unwrap() {
        seen.push((
            row.get::<String>("id").unwrap(),
            row.get::<Option<String>>("saved").unwrap(),
            row.get::<Option<String>>("linked").unwrap(),
        ));
    }
    assert_eq!(
        seen,
        [
            (plain.id.clone(), None, None),
            (
                of_saved.id.clone(),
                Some(saved.clone()),
                Some(saved.clone())
            ),
        ]
    );
    let scope = aether_dbhub::model::Scope {
        tenant_id: p.tenant.clone(),
        space_id: p.space.clone(),
    };
    let back = store
        .list_executions(&scope, &p.id, &db, None, 10)
        .await
        .unwrap();
    let ids: Vec<_> = back
        .iter()
        .map(|e| (e.id.clone(), e.saved_query_id.clone()))
        .collect();
    assert_eq!(ids, [(of_saved.id, Some(saved.clone())), (plain.id, None)]);
    graph
        .run(
            neo4rs::query(
                "MATCH (d:Database {id: $id}) OPTIONAL MATCH (q:QueryExecution)-[:EXECUTED_ON]->(d) \
                 OPTIONAL MATCH (s:SavedQuery {id: $saved}) DETACH DELETE q, d, s",
            )
            .param("id", db.as_str())
            .param("saved", saved.as_str()),
        )
        .await
        .unwrap();
}
