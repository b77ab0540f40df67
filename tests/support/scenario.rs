//! Steps several tests share: registering the stack's databases through the API, waiting until
//! a DBHubInstance serves them, and a namespace with the reconcilers and the API wired to a
//! loopback DBHub port.

use std::time::{Duration, Instant};

use dbhub_operator::crd::DBHubInstance;
use serde_json::{Value, json};

use super::api::{Call, wait_status};
use super::dbhub::free_port;
use super::kube::TestNamespace;
use super::{logs, stack};

/// The Database CR name of a record id.
pub fn cr_of(id: &str) -> String {
    format!("db-{}", id.replace('-', ""))
}

/// Waits until the instance's configuration holds exactly these Databases.
pub async fn wait_served(ns: &TestNamespace, instance: &str, crs: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let served = ns
            .api::<DBHubInstance>()
            .get_opt(instance)
            .await
            .unwrap()
            .and_then(|i| i.status)
            .map(|s| s.connected_databases)
            .unwrap_or_default();
        let mut want = crs.to_vec();
        want.sort();
        let mut have = served.clone();
        have.sort();
        if have == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{instance} serves {served:?}, want {crs:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn register(call: &Call<'_>, body: Value) -> String {
    let (code, created) = call.send("POST", "/api/v1/databases", Some(body)).await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    wait_status(call, &id, "Connected").await;
    id
}

pub fn pg_body(name: &str, extra: Value) -> Value {
    let s = stack();
    let mut b = json!({"name": name, "type": "postgresql", "host": s.get("STACK_PG_HOST"),
        "port": s.get("STACK_PG_PORT"), "database": s.get("STACK_DB_NAME"),
        "username": s.get("STACK_DB_USER"), "password": s.hostile_password(), "ssl_mode": "disable"});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// Sends `body` to `POST /databases/{id}/query`.
pub async fn query(call: &Call<'_>, id: &str, body: Value) -> (u16, Value) {
    call.send("POST", &format!("/api/v1/databases/{id}/query"), Some(body))
        .await
}

/// A test namespace with the reconcilers and the API, which reaches DBHub on the returned
/// loopback port (where the test later runs it from the generated objects).
pub async fn setup(
    prefix: &str,
) -> (
    TestNamespace,
    crate::support::operator::Running,
    crate::support::api::ApiServer,
    u16,
) {
    setup_with(prefix, Default::default()).await
}

/// As [`setup`], with these API options (the DBHub endpoint is set here).
pub async fn setup_with(
    prefix: &str,
    options: super::api::Options,
) -> (
    TestNamespace,
    crate::support::operator::Running,
    crate::support::api::ApiServer,
    u16,
) {
    logs::capture();
    let ns = TestNamespace::new(prefix).await;
    let ctl = crate::support::operator::start(&ns.name).await;
    let port = free_port();
    let options = super::api::Options {
        dbhub_endpoint: Some(format!("http://127.0.0.1:{port}/mcp")),
        ..options
    };
    let server = super::api::serve_opts(&ns.name, ns.client.clone(), options).await;
    (ns, ctl, server, port)
}
