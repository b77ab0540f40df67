//! Concurrency well past every pool: 64 clients mixing list, get, query and an organization
//! space's list against an API whose Neo4j pool has 4 connections. Every request must be
//! answered with its expected status (no request may wait on a connection that another part of
//! the same request holds: such a request would wait out the acquire timeout and answer 503).
//! A correctness test with a generous overall bound, not a timing one; the acquire timeout is
//! long so a machine busy with other tests queues requests instead of refusing them.

use std::time::Duration;

use serde_json::json;

use crate::support::api::{self, Call, org_space, person, personal};
use crate::support::dbhub::serve_instance;
use crate::support::scenario::{cr_of, pg_body, query, register, setup_with, wait_served};

const CLIENTS: usize = 64;
const ROUNDS: usize = 8;

#[tokio::test]
async fn sixty_four_concurrent_clients_all_get_answers() {
    let options = api::Options {
        acquire_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let (ns, _ctl, server, port) = setup_with("load", options).await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let (org, _) = org_space(&graph, &[(&owner, "admin")]).await;
    let call = personal(&server, &owner);
    let id = register(&call, pg_body("load", json!({}))).await;
    let instance = format!("dbhub-{}", owner.space);
    wait_served(&ns, &instance, &[cr_of(&id)]).await;
    let _hub = serve_instance(&ns, &instance, port).await;
    let (code, out) = query(&call, &id, json!({"query": "SELECT 1 AS one"})).await;
    assert_eq!(code, 200, "{out}");

    let org_call = Call {
        api: &server,
        token: api::token(&owner.sub),
        space_type: "organization",
        space_id: org.clone(),
    };
    let run = async {
        let clients = (0..CLIENTS).map(|c| {
            let (call, org_call, id) = (&call, &org_call, &id);
            async move {
                let mut failures = Vec::new();
                for r in 0..ROUNDS {
                    let (what, (code, body)) = match (c + r) % 4 {
                        0 => ("list", call.send("GET", "/api/v1/databases", None).await),
                        1 => (
                            "get",
                            call.send("GET", &format!("/api/v1/databases/{id}"), None)
                                .await,
                        ),
                        2 => (
                            "query",
                            query(
                                call,
                                id,
                                json!({"query": format!("SELECT {c} AS c, {r} AS r")}),
                            )
                            .await,
                        ),
                        _ => (
                            "org list",
                            org_call.send("GET", "/api/v1/databases", None).await,
                        ),
                    };
                    if code != 200 {
                        failures.push(format!("client {c} round {r} {what}: {code} {body}"));
                    }
                }
                failures
            }
        });
        futures::future::join_all(clients).await
    };
    let results = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("every request is answered (no request hangs)");
    let failures: Vec<String> = results.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed:\n{}",
        failures.len(),
        CLIENTS * ROUNDS,
        failures.join("\n")
    );
}
