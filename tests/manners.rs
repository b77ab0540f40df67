//! The Database reconciler as a good citizen, against the real apiserver and PostgreSQL: a busy
//! server (a role's connection limit reached, SQLSTATE 53300) is a passing cause — Pending
//! before the first success, Degraded after it, never Failed, and no DBHub rollout; checks are bounded per server, so
//! however many Databases point at one server it sees only a few connections at once; a restarted
//! operator resumes the schedule instead of re-checking everything.

use std::time::{Duration, Instant};

use dbhub_operator::controller::database::ProbeLimits;
use dbhub_operator::crd::{DBHubInstance, Database, DatabasePhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sqlx::Connection;

use crate::support::kube::TestNamespace;
use crate::support::operator::{
    app_secret, checks, database, events_for, secret, start, start_with, wait_phase,
};
use crate::support::{stack, unique};

const WAIT: Duration = Duration::from_secs(40);

/// A PostgreSQL login of its own whose connection limit the test sets.
struct Role {
    name: String,
    password: String,
}

impl Role {
    async fn create(limit: i32) -> Self {
        let role = Self {
            name: unique("busy").replace('-', "_"),
            password: "pw-of-a-busy-role".into(),
        };
        role.admin(&format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}' CONNECTION LIMIT {limit}",
            role.name, role.password
        ))
        .await;
        role
    }

    async fn limit(&self, limit: i32) {
        self.admin(&format!(
            "ALTER ROLE {} CONNECTION LIMIT {limit}",
            self.name
        ))
        .await;
    }

    async fn admin(&self, sql: &str) {
        let mut admin = sqlx::PgConnection::connect(&crate::support::pg_admin_db_url())
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

fn spec(secret: &str, interval: i32) -> serde_json::Value {
    let s = stack();
    json!({"type": "postgres", "host": s.get("STACK_PG_HOST"), "port": s.get("STACK_PG_PORT").parse::<i32>().unwrap(),
           "database": s.get("STACK_DB_NAME"), "sslMode": "disable", "healthCheckInterval": interval,
           "credentialsRef": {"name": secret}})
}

fn ready_reason(db: &Database) -> String {
    db.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn manners_a_busy_server_is_transient_pending_then_degraded_never_failed() {
    let ns = TestNamespace::new("busy").await;
    let _ctl = start(&ns.name).await;
    let role = Role::create(0).await;
    secret(&ns.api(), "creds", &role.name, &role.password).await;
    let api: Api<Database> = ns.api();
    database(&api, "pg", spec("creds", 10)).await;

    // Before any success: Pending, with the reason in Ready, retried; no Event.
    let deadline = Instant::now() + WAIT;
    loop {
        let db = api.get("pg").await.unwrap();
        if ready_reason(&db) == "ServerBusy" && checks(&ns.name, "pg") >= 2 {
            let st = db.status.unwrap();
            assert_eq!(st.phase, Some(DatabasePhase::Pending), "{st:?}");
            assert!(st.message.unwrap().contains("too many connections"));
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", db.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(events_for(&ns, "pg").await.is_empty());

    // The server has room again: Connected at the next retry, and served by an instance.
    role.limit(-1).await;
    wait_phase(&api, "pg", DatabasePhase::Connected, WAIT).await;
    let hub: DBHubInstance = serde_json::from_value(json!({
        "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "DBHubInstance", "metadata": {"name": "hub"},
        "spec": {}}))
    .unwrap();
    ns.api::<DBHubInstance>()
        .create(&Default::default(), &hub)
        .await
        .unwrap();
    let generation = rollouts(&ns).await;

    // Busy again after a success: Degraded, and it stays Degraded through repeated failures
    // (it used to become Failed after the third).
    role.limit(0).await;
    wait_phase(&api, "pg", DatabasePhase::Degraded, WAIT).await;
    let seen = checks(&ns.name, "pg");
    let deadline = Instant::now() + WAIT;
    while checks(&ns.name, "pg") < seen + 3 {
        let db = api.get("pg").await.unwrap();
        assert_eq!(
            db.status.as_ref().and_then(|s| s.phase),
            Some(DatabasePhase::Degraded),
            "{:?}",
            db.status
        );
        assert!(Instant::now() < deadline, "not re-checked with backoff");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = api.get("pg").await.unwrap();
    assert_eq!(
        db.status.as_ref().and_then(|s| s.phase),
        Some(DatabasePhase::Degraded)
    );
    let events = events_for(&ns, "pg").await;
    let warnings: Vec<_> = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one Warning (entering Degraded): {events:?}"
    );
    assert!(events.iter().all(|e| e.reason.as_deref() != Some("Failed")));
    role.limit(-1).await;
    wait_phase(&api, "pg", DatabasePhase::Connected, WAIT).await;
    // Connected → Degraded → Connected kept the source in DBHub's configuration: no rollout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rollouts(&ns).await,
        generation,
        "the DBHub Deployment changed"
    );
}

/// The generation of the `hub` instance's Deployment once it exists with the Database in its
/// configuration (each change of the pod template is a rollout).
async fn rollouts(ns: &TestNamespace) -> Option<i64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let inst = ns.api::<DBHubInstance>().get("hub").await.unwrap();
        let served = inst
            .status
            .as_ref()
            .is_some_and(|s| !s.connected_databases.is_empty());
        if let (true, Some(dep)) = (served, ns.api::<Deployment>().get_opt("hub").await.unwrap()) {
            return dep.metadata.generation;
        }
        assert!(Instant::now() < deadline, "{:?}", inst.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A TCP relay in front of the stack's PostgreSQL that holds every connection 250 ms before
/// relaying it and records when each was open (accepted until the client closed it).
struct Relay {
    port: u16,
    spans: Spans,
}

type Spans = std::sync::Arc<std::sync::Mutex<Vec<(Instant, Instant)>>>;

impl Relay {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = format!(
            "{}:{}",
            stack().get("STACK_PG_HOST"),
            stack().get("STACK_PG_PORT")
        );
        let spans = Spans::default();
        let out = spans.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (spans, target) = (spans.clone(), target.clone());
                tokio::spawn(async move {
                    let opened = Instant::now();
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let ((mut cr, mut cw), (mut sr, mut sw)) =
                        (client.into_split(), server.into_split());
                    let back = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    spans.lock().unwrap().push((opened, Instant::now()));
                    back.abort();
                });
            }
        });
        Self { port, spans: out }
    }
}

/// Most connections open at one moment. Each span loses its last 20 ms: a check's slot is
/// handed on as its client closes, a moment before the relay reads the close.
fn peak(spans: &[(Instant, Instant)]) -> usize {
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    for (from, to) in spans {
        let to = to
            .checked_sub(Duration::from_millis(20))
            .unwrap_or(*from)
            .max(*from);
        edges.extend([(*from, 1), (to, -1)]);
    }
    // Ends sort before starts at the same instant.
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}

/// Sixteen Databases on two servers (relays that hold each connection 250 ms), checked with at
/// most two checks per server and three in all: every one connects, and the servers never see
/// more connections at once than that. With the bounds lifted the same setup opens more.
#[tokio::test]
async fn manners_checks_stay_within_the_global_and_per_server_limits() {
    async fn run(limits: ProbeLimits) -> (usize, usize, usize) {
        let ns = TestNamespace::new("perserver").await;
        let _ctl = start_with(&ns.name, limits).await;
        app_secret(&ns.api(), "creds").await;
        let relays = [Relay::start().await, Relay::start().await];
        let api: Api<Database> = ns.api();
        let mut names = Vec::new();
        for i in 0..16 {
            let name = format!("pg{i}");
            let mut spec = spec("creds", 300);
            spec["host"] = json!("127.0.0.1");
            spec["port"] = json!(relays[i % 2].port);
            database(&api, &name, spec).await;
            names.push(name);
        }
        for name in &names {
            wait_phase(&api, name, DatabasePhase::Connected, WAIT).await;
        }
        let a = relays[0].spans.lock().unwrap().clone();
        let b = relays[1].spans.lock().unwrap().clone();
        let both: Vec<_> = a.iter().chain(&b).copied().collect();
        (peak(&a), peak(&b), peak(&both))
    }
    let (a, b, total) = run(ProbeLimits {
        concurrency: 3,
        per_server: 2,
    })
    .await;
    assert!(a <= 2 && b <= 2, "per server: {a}, {b}");
    assert!(total <= 3, "in all: {total}");
    let (a, b, total) = run(ProbeLimits {
        concurrency: 64,
        per_server: 64,
    })
    .await;
    assert!(
        total > 3 && a.max(b) > 2,
        "unbounded, the same Databases open more at once: {a}, {b}, {total}"
    );
}

/// A restarted operator does not re-check a Connected Database checked moments ago; a change of
/// its credentials Secret (here only its metadata) still triggers a check at once.
#[tokio::test]
async fn manners_a_restart_resumes_the_schedule() {
    let ns = TestNamespace::new("resume").await;
    let first = start(&ns.name).await;
    app_secret(&ns.api(), "creds").await;
    let api: Api<Database> = ns.api();
    database(&api, "pg", spec("creds", 300)).await;
    let db = wait_phase(&api, "pg", DatabasePhase::Connected, WAIT).await;
    let secrets: Api<Secret> = ns.api();
    let rv = secrets
        .get("creds")
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(db.status.unwrap().credentials_version, rv);

    drop(first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = checks(&ns.name, "pg");
    let _second = start(&ns.name).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        checks(&ns.name, "pg"),
        before,
        "re-checked right after the restart"
    );
    let db = api.get("pg").await.unwrap();
    assert_eq!(
        db.status.and_then(|s| s.phase),
        Some(DatabasePhase::Connected)
    );

    // The Secret changes: checked now.
    secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"rotated": "yes"}}})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while checks(&ns.name, "pg") == before {
        assert!(
            Instant::now() < deadline,
            "a Secret change did not trigger a check"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
