//! The reconcilers run in the test process, scoped to one test namespace, stopped on drop.

use std::time::{Duration, Instant};

use dbhub_operator::controller::{Config, Scope};
use dbhub_operator::crd::{Database, DatabasePhase};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

use super::crds::ensure_installed;
use super::kube::admin;
use super::logs;

/// Running reconcilers; cancelled when dropped.
pub struct Running {
    token: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Starts every reconciler watching only `namespace`.
pub async fn start(namespace: &str) -> Running {
    start_with(namespace, Default::default()).await
}

/// As [`start`], with these limits on concurrent connection checks.
pub async fn start_with(
    namespace: &str,
    probes: dbhub_operator::controller::database::ProbeLimits,
) -> Running {
    logs::capture();
    ensure_installed().await;
    let token = CancellationToken::new();
    let config = Config {
        scope: Scope {
            namespace: Some(namespace.to_string()),
        },
        policy: super::test_policy(),
        probes,
    };
    tokio::spawn(dbhub_operator::controller::run_all(
        admin().await,
        config,
        token.clone().cancelled_owned(),
    ));
    Running { token }
}

/// Creates an Opaque Secret with `username`/`password`.
pub async fn secret(api: &Api<Secret>, name: &str, user: &str, password: &str) {
    let s: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "stringData": {"username": user, "password": password}
    }))
    .unwrap();
    api.create(&PostParams::default(), &s)
        .await
        .expect("creating a Secret");
}

/// Creates Secret `name` holding the stack's test user and its URL-hostile password.
pub async fn app_secret(api: &Api<Secret>, name: &str) {
    let s = super::stack();
    secret(api, name, s.get("STACK_DB_USER"), s.hostile_password()).await;
}

/// A Database spec for the stack's PostgreSQL (on the bridge address pods reach too) with the
/// credentials in Secret `secret`.
pub fn pg_spec(secret: &str) -> serde_json::Value {
    let s = super::stack();
    serde_json::json!({"type": "postgres", "host": s.get("STACK_PG_HOST"),
        "port": s.get("STACK_PG_PORT").parse::<i32>().unwrap(),
        "database": s.get("STACK_DB_NAME"), "sslMode": "disable", "credentialsRef": {"name": secret}})
}

/// Creates a Database from a spec.
pub async fn database(api: &Api<Database>, name: &str, spec: serde_json::Value) -> Database {
    labelled_database(api, name, serde_json::json!({}), spec).await
}

/// Creates a Database with `labels` from a spec.
pub async fn labelled_database(
    api: &Api<Database>,
    name: &str,
    labels: serde_json::Value,
    spec: serde_json::Value,
) -> Database {
    let db: Database = serde_json::from_value(serde_json::json!({
        "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "Database",
        "metadata": {"name": name, "labels": labels}, "spec": spec
    }))
    .unwrap();
    api.create(&PostParams::default(), &db)
        .await
        .expect("creating a Database")
}

/// Waits until the Database reaches `phase`; panics with its last status otherwise.
pub async fn wait_phase(
    api: &Api<Database>,
    name: &str,
    phase: DatabasePhase,
    within: Duration,
) -> Database {
    let deadline = Instant::now() + within;
    loop {
        let db = api.get(name).await.expect("reading the Database");
        if db.status.as_ref().and_then(|s| s.phase) == Some(phase) {
            return db;
        }
        if Instant::now() > deadline {
            panic!(
                "{name} did not reach {phase:?} within {within:?}; status: {:?}",
                db.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The hostile password (raw or percent-encoded) appears in no log line, Event, or status of a
/// Database or DBHubInstance in the namespace.
pub async fn assert_no_leak(ns: &super::kube::TestNamespace) {
    use dbhub_operator::crd::DBHubInstance;
    use k8s_openapi::api::events::v1::Event;
    let pw = super::stack().hostile_password();
    let encoded = dbhub_operator::dsn::encode(pw);
    let events = ns.api::<Event>().list(&Default::default()).await.unwrap();
    let dbs = ns
        .api::<Database>()
        .list(&Default::default())
        .await
        .unwrap();
    let hubs = ns
        .api::<DBHubInstance>()
        .list(&Default::default())
        .await
        .unwrap();
    let places = [
        ("logs", logs::text()),
        ("events", serde_json::to_string(&events.items).unwrap()),
        ("databases", serde_json::to_string(&dbs.items).unwrap()),
        (
            "dbhubinstances",
            serde_json::to_string(&hubs.items).unwrap(),
        ),
    ];
    for (what, text) in places {
        assert!(!text.contains(pw), "the password leaked into {what}");
        assert!(
            !text.contains(&encoded),
            "the encoded password leaked into {what}"
        );
    }
}

/// The Events about object `name` in the namespace.
pub async fn events_for(
    ns: &super::kube::TestNamespace,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let all = ns
        .api::<k8s_openapi::api::events::v1::Event>()
        .list(&Default::default())
        .await
        .unwrap();
    all.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// Connection checks of Database `name` in `ns` the in-process reconcilers logged so far.
pub fn checks(ns: &str, name: &str) -> usize {
    let (ns, name) = (
        format!("\"db.namespace\":\"{ns}\""),
        format!("\"db.name\":\"{name}\""),
    );
    logs::text()
        .lines()
        .filter(|l| l.contains("database checked") && l.contains(&ns) && l.contains(&name))
        .count()
}
