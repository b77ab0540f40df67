//! Where connections may go, enforced where connections are made: the API refuses every
//! internal and metadata address (in all its IPv6 disguises) and unresolvable names with one
//! answer; the Database reconciler refuses a CR applied directly and re-resolves the name at
//! every check; SQLite files only from allowed directories, with one answer whether a file
//! outside exists or not; connection tests are rate-limited per user.

use std::time::Duration;

use dbhub_operator::crd::{Database, DatabasePhase};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::api::{self, person, personal};
use crate::support::kube::TestNamespace;
use crate::support::operator::{app_secret, database, start, wait_phase};
use crate::support::scenario::pg_body;
use crate::support::{stack, unique};

/// Every address the attacker tried, and the other forms of 169.254.169.254.
const REFUSED: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "169.254.169.254",
    "0.0.0.0",
    "::1",
    "fe80::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "192.0.0.192",
    "::ffff:169.254.169.254",
    "::a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::",
    "2001:0:4136:e378:8000:63bf:5601:5601",
    "no-such-host.invalid",
];

fn field_message(problem: &Value) -> (String, String) {
    let e = &problem["details"]["validation_errors"][0];
    (
        e["field"].as_str().unwrap_or_default().into(),
        e["message"].as_str().unwrap_or_default().into(),
    )
}

#[tokio::test]
async fn the_api_refuses_internal_metadata_and_unknown_hosts_with_one_answer() {
    let ns = TestNamespace::new("polapi").await;
    crate::support::crds::ensure_installed().await;
    let server = api::serve_with_policy(&ns.name, ns.client.clone(), Default::default()).await;
    let graph = api::graph();
    let p = person(&graph).await;
    let call = personal(&server, &p);
    let mut answers = Vec::new();
    for host in REFUSED {
        let mut body = pg_body("guarded", json!({}));
        body["host"] = json!(host);
        let (code, problem) = call.send("POST", "/api/v1/databases", Some(body)).await;
        assert_eq!(code, 400, "{host}: {problem}");
        answers.push(field_message(&problem));
        let test = json!({"databaseType": "postgresql", "host": host, "port": 5432, "database": "d",
                          "username": "u", "password": "p"});
        let (code, problem) = call
            .send("POST", "/api/v1/databases/test", Some(test))
            .await;
        assert_eq!(code, 400, "{host}: {problem}");
        answers.push(field_message(&problem));
    }
    answers.dedup();
    assert_eq!(
        answers.len(),
        1,
        "refused and unresolvable hosts must look the same: {answers:?}"
    );
    assert_eq!(answers[0].0, "host");
    assert!(
        ns.api::<Secret>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        ns.api::<Database>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn the_reconciler_refuses_a_database_applied_directly_at_a_refused_host() {
    let ns = TestNamespace::new("polrec").await;
    let _ctl = start(&ns.name).await;
    app_secret(&ns.api(), "creds").await;
    let dbs = ns.api::<Database>();
    for (i, host) in [
        "169.254.169.254",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "100.100.100.200",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("meta-{i}");
        database(
            &dbs,
            &name,
            json!({"type": "postgres", "host": host, "port": 5432,
            "database": "d", "credentialsRef": {"name": "creds"}}),
        )
        .await;
        let db = wait_phase(&dbs, &name, DatabasePhase::Failed, Duration::from_secs(30)).await;
        let ready = db
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason, "HostNotAllowed", "{host}");
    }
}

/// A name in /etc/hosts, removed again however the test ends.
struct HostsEntry(String);

impl HostsEntry {
    fn point(name: &str, ip: &str) -> Self {
        let line = format!("{ip} {name} # aether-dbhub test");
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
        let kept: Vec<&str> = hosts
            .lines()
            .filter(|l| !l.contains(&format!(" {name} ")))
            .collect();
        std::fs::write("/etc/hosts", format!("{}\n{line}\n", kept.join("\n"))).unwrap();
        Self(name.to_string())
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
            let kept: Vec<&str> = hosts
                .lines()
                .filter(|l| !l.contains(&format!(" {} ", self.0)))
                .collect();
            let _ = std::fs::write("/etc/hosts", format!("{}\n", kept.join("\n")));
        }
    }
}

#[tokio::test]
async fn a_name_that_later_resolves_to_a_refused_address_is_caught_at_the_next_check() {
    let ns = TestNamespace::new("polreb").await;
    let _ctl = start(&ns.name).await;
    app_secret(&ns.api(), "creds").await;
    let dbs = ns.api::<Database>();
    let name = format!("{}.rebind.test", unique("db"));
    let _entry = HostsEntry::point(&name, "127.0.0.1");
    let s = stack();
    database(&dbs, "rebind", json!({"type": "postgres", "host": name, "port": s.get("STACK_PG_PORT").parse::<i32>().unwrap(),
        "database": s.get("STACK_DB_NAME"), "credentialsRef": {"name": "creds"}, "sslMode": "disable"}))
    .await;
    wait_phase(
        &dbs,
        "rebind",
        DatabasePhase::Connected,
        Duration::from_secs(30),
    )
    .await;
    let _moved = HostsEntry::point(&name, "169.254.169.254");
    // The next check (here: prompted by a spec change) resolves the name again.
    dbs.patch(
        "rebind",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"description": "moved"}})),
    )
    .await
    .unwrap();
    let db = wait_phase(
        &dbs,
        "rebind",
        DatabasePhase::Failed,
        Duration::from_secs(30),
    )
    .await;
    let ready = db
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "HostNotAllowed");
}

#[tokio::test]
async fn sqlite_files_only_from_allowed_directories_with_one_answer_outside() {
    let ns = TestNamespace::new("polsql").await;
    crate::support::crds::ensure_installed().await;
    let graph = api::graph();
    let p = person(&graph).await;
    let test = |path: &str| json!({"databaseType": "sqlite", "path": path});

    let off = api::serve_with_policy(&ns.name, ns.client.clone(), Default::default()).await;
    let (code, problem) = personal(&off, &p)
        .send("POST", "/api/v1/databases/test", Some(test("/etc/passwd")))
        .await;
    assert_eq!(code, 400, "{problem}");
    let (field, message) = field_message(&problem);
    assert_eq!(field, "path");
    assert!(message.contains("--sqlite-allowed-dirs"), "{message}");

    let dir = std::env::temp_dir().join(unique("sqlite-allowed"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ok.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true);
    sqlx::Connection::close(
        <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let policy = dbhub_operator::policy::ConnectionPolicy {
        sqlite_dirs: vec![dir.clone()],
        ..Default::default()
    };
    let on = api::serve_with_policy(&ns.name, ns.client.clone(), policy).await;
    let call = personal(&on, &p);
    let (code, ok) = call
        .send(
            "POST",
            "/api/v1/databases/test",
            Some(test(file.to_str().unwrap())),
        )
        .await;
    assert_eq!(
        (code, ok["status"].as_str()),
        (200, Some("connected")),
        "{ok}"
    );
    let mut answers = Vec::new();
    for outside in [
        "/etc/passwd".to_string(),
        "/etc/no-such-file".to_string(),
        format!("{}/../../etc/passwd", dir.display()),
    ] {
        let (code, problem) = call
            .send("POST", "/api/v1/databases/test", Some(test(&outside)))
            .await;
        assert_eq!(code, 400, "{outside}: {problem}");
        answers.push(field_message(&problem));
    }
    answers.dedup();
    assert_eq!(
        answers.len(),
        1,
        "existing and missing files outside look the same: {answers:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn connection_tests_are_rate_limited_per_user() {
    let ns = TestNamespace::new("polrate").await;
    crate::support::crds::ensure_installed().await;
    let options = api::Options {
        test_rate_limit: 3,
        ..Default::default()
    };
    let server = api::serve_opts(&ns.name, ns.client.clone(), options).await;
    let graph = api::graph();
    let (a, b) = (person(&graph).await, person(&graph).await);
    let probe = json!({"databaseType": "postgresql", "host": "127.0.0.1", "port": 1, "database": "d",
                       "username": "u", "password": "p", "connectionTimeout": 1});
    for _ in 0..3 {
        let (code, body) = personal(&server, &a)
            .send("POST", "/api/v1/databases/test", Some(probe.clone()))
            .await;
        assert_eq!(
            (code, body["details"]["status"].as_str()),
            (502, Some("failed")),
            "{body}"
        );
    }
    let res = personal(&server, &a)
        .request("POST", "/api/v1/databases/test", Some(probe.clone()))
        .await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED", "{body}");
    let (code, _) = personal(&server, &b)
        .send("POST", "/api/v1/databases/test", Some(probe))
        .await;
    assert_eq!(
        code, 502,
        "another user has budget of their own (the test runs and fails)"
    );
}
