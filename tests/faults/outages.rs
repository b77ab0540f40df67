//! Neo4j, the kube-apiserver and DBHub, each down for a while under a running API.

use std::time::{Duration, Instant};

use dbhub_operator::crd::Database;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::serial;
use crate::support::Outage;
use crate::support::api::{self, Call, person, personal};
use crate::support::dbhub::serve_instance;
use crate::support::scenario::{cr_of, pg_body, query, register, setup, wait_served};

/// "Quickly": well inside a client's patience, far from a hang.
const QUICK: Duration = Duration::from_secs(10);

/// Sends the request and checks it is a 503 problem+json with `Retry-After`, answered quickly.
async fn assert_unavailable(call: &Call<'_>, method: &str, path: &str, body: Option<Value>) {
    let started = Instant::now();
    let res = call.request(method, path, body).await;
    let took = started.elapsed();
    let status = res.status().as_u16();
    let ct = res.headers().get("content-type").cloned();
    let retry = res.headers().get("retry-after").cloned();
    let text = res.text().await.unwrap();
    assert_eq!(status, 503, "{method} {path}: {text}");
    assert_eq!(
        ct.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{method} {path}"
    );
    assert!(retry.is_some(), "{method} {path}: no Retry-After");
    assert!(took < QUICK, "{method} {path} took {took:?}");
}

async fn readyz(call: &Call<'_>) -> (u16, Value) {
    let res = reqwest::get(format!("{}/readyz", call.api.base))
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Repeats `GET path` until it answers 200 (the dependency is back), within `within`.
async fn until_ok(call: &Call<'_>, path: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = call.send("GET", path, None).await;
        if code == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not recover: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn names(call: &Call<'_>) -> Vec<String> {
    let (code, list) = call.send("GET", "/api/v1/databases", None).await;
    assert_eq!(code, 200, "{list}");
    list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn neo4j_down_answers_503_quickly_and_recovers_without_a_restart() {
    let _one = serial().await;
    let (ns, _ctl, server, _port) = setup("fneo").await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);
    let id = register(&call, pg_body("before", json!({}))).await;
    {
        let _down = Outage::begin("neo4j");
        assert_unavailable(&call, "GET", "/api/v1/databases", None).await;
        assert_unavailable(&call, "GET", &format!("/api/v1/databases/{id}"), None).await;
        assert_unavailable(
            &call,
            "POST",
            "/api/v1/databases",
            Some(pg_body("during", json!({}))),
        )
        .await;
        let (code, ready) = readyz(&call).await;
        assert_eq!(code, 503, "{ready}");
        assert_eq!(ready["checks"]["neo4j"]["ok"], false, "{ready}");
        assert_eq!(ready["checks"]["kubernetes"]["ok"], true, "{ready}");
    }
    until_ok(&call, "/api/v1/databases", Duration::from_secs(90)).await;
    assert_eq!(names(&call).await, ["before"]);
    // The create that failed left nothing in Kubernetes either: one CR, one Secret.
    assert_eq!(
        ns.api::<Database>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let managed =
        kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=aether-dbhub");
    assert_eq!(
        ns.api::<Secret>().list(&managed).await.unwrap().items.len(),
        1
    );
    let again = register(&call, pg_body("after", json!({}))).await;
    assert_ne!(again, id);
}

#[tokio::test]
async fn kube_apiserver_down_answers_503_quickly_and_recovers_without_a_restart() {
    let _one = serial().await;
    let (ns, _ctl, server, _port) = setup("fkube").await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);
    let id = register(&call, pg_body("before", json!({}))).await;
    let path = format!("/api/v1/databases/{id}");
    {
        let _down = Outage::begin("kube-apiserver");
        assert_unavailable(
            &call,
            "POST",
            "/api/v1/databases",
            Some(pg_body("during", json!({}))),
        )
        .await;
        assert_unavailable(&call, "PUT", &path, Some(json!({"description": "changed"}))).await;
        assert_unavailable(&call, "DELETE", &path, None).await;
        // What needs only the graph and the watch cache still works.
        let (code, record) = call.send("GET", &path, None).await;
        assert_eq!(
            (code, record["description"].as_str()),
            (200, Some("")),
            "{record}"
        );
        assert_eq!(names(&call).await, ["before"]);
        let (code, ready) = readyz(&call).await;
        assert_eq!(code, 503, "{ready}");
        assert_eq!(ready["checks"]["kubernetes"]["ok"], false, "{ready}");
        assert_eq!(ready["checks"]["neo4j"]["ok"], true, "{ready}");
    }
    // Back: the same requests succeed, and the reconcilers' watches resume.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (code, ready) = readyz(&call).await;
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {ready}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        ns.api::<Database>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1,
        "the failed create left a Database CR"
    );
    let (code, updated) = call
        .send("PUT", &path, Some(json!({"description": "changed"})))
        .await;
    assert_eq!(code, 200, "{updated}");
    let after = register(&call, pg_body("after", json!({}))).await;
    let (code, _) = call.send("DELETE", &path, None).await;
    assert_eq!(code, 204);
    assert_eq!(names(&call).await, ["after"]);
    assert!(
        ns.api::<Database>()
            .get_opt(&cr_of(&id))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ns.api::<Database>()
            .get_opt(&cr_of(&after))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn dbhub_down_answers_503_quickly_and_recovers_without_a_restart() {
    let _one = serial().await;
    let (ns, _ctl, server, port) = setup("fhub").await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);
    let id = register(&call, pg_body("hub", json!({}))).await;
    let instance = format!("dbhub-{}", owner.space);
    wait_served(&ns, &instance, &[cr_of(&id)]).await;
    let select = json!({"query": "SELECT 1 AS one"});
    let hub = serve_instance(&ns, &instance, port).await;
    let (code, out) = query(&call, &id, select.clone()).await;
    assert_eq!(code, 200, "{out}");
    // DBHub unreachable: the path to its pods is cut (connections refused), as when its
    // Service has no ready endpoint.
    drop(hub);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in [format!("/api/v1/databases/{id}/tables")] {
        assert_unavailable(&call, "GET", &path, None).await;
    }
    assert_unavailable(
        &call,
        "POST",
        &format!("/api/v1/databases/{id}/query"),
        Some(select.clone()),
    )
    .await;
    let (code, ready) = readyz(&call).await;
    assert_eq!(
        code, 200,
        "one space's DBHub does not make the service unready: {ready}"
    );
    let _hub = serve_instance(&ns, &instance, port).await;
    let (code, out) = query(&call, &id, select).await;
    assert_eq!(code, 200, "{out}");
}
