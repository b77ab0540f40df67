//! The Database reconciler against the real apiserver, PostgreSQL, MariaDB and a SQLite file.

use std::time::{Duration, Instant};

use dbhub_operator::crd::{Database, DatabasePhase, SslMode};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::support::kube::TestNamespace;
use crate::support::operator::{
    app_secret, assert_no_leak, checks, database, events_for, pg_spec, secret, start, wait_phase,
};
use crate::support::{stack, unique};

const WAIT: Duration = Duration::from_secs(30);

fn mariadb_spec(ty: &str, secret: &str) -> serde_json::Value {
    let s = stack();
    json!({"type": ty, "host": s.get("STACK_MARIADB_HOST"), "port": s.get("STACK_MARIADB_PORT").parse::<i32>().unwrap(),
           "database": s.get("STACK_DB_NAME"), "sslMode": "disable", "credentialsRef": {"name": secret}})
}

#[tokio::test]
async fn database_every_engine_connects_with_hostile_password() {
    let ns = TestNamespace::new("dbconn").await;
    let _ctl = start(&ns.name).await;
    app_secret(&ns.api(), "creds").await;
    let dir = std::env::temp_dir().join(unique("sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.db");
    // An empty file is a valid, empty SQLite database.
    std::fs::File::create(&file).unwrap();
    let api: Api<Database> = ns.api();
    database(&api, "pg", pg_spec("creds")).await;
    database(&api, "my", mariadb_spec("mysql", "creds")).await;
    database(&api, "maria", mariadb_spec("mariadb", "creds")).await;
    database(
        &api,
        "lite",
        json!({"type": "sqlite", "database": file.to_str().unwrap()}),
    )
    .await;

    for (name, version_has) in [
        ("pg", "PostgreSQL"),
        ("my", "MariaDB"),
        ("maria", "MariaDB"),
        ("lite", "SQLite 3"),
    ] {
        let db = wait_phase(&api, name, DatabasePhase::Connected, WAIT).await;
        let status = db.status.unwrap();
        assert!(
            status
                .server_version
                .as_deref()
                .unwrap_or_default()
                .contains(version_has),
            "{name}: {status:?}"
        );
        assert!(
            status.latency_ms.is_some() && status.last_checked.is_some(),
            "{name}: {status:?}"
        );
        assert_eq!(status.observed_generation, db.metadata.generation);
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready condition");
        assert_eq!(ready.status, "True");
    }
    // Events are written asynchronously after the status.
    let deadline = Instant::now() + WAIT;
    while events_for(&ns, "pg")
        .await
        .iter()
        .all(|e| e.reason.as_deref() != Some("Connected"))
    {
        assert!(Instant::now() < deadline, "no Connected Event for pg");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_no_leak(&ns).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn database_wrong_password_fails_clean_then_recovers_when_secret_is_fixed() {
    let ns = TestNamespace::new("dbpw").await;
    let _ctl = start(&ns.name).await;
    let s = stack();
    let secrets: Api<Secret> = ns.api();
    secret(
        &secrets,
        "creds",
        s.get("STACK_DB_USER"),
        "not-the-password",
    )
    .await;
    let api: Api<Database> = ns.api();
    database(&api, "pg", pg_spec("creds")).await;
    let db = wait_phase(&api, "pg", DatabasePhase::Failed, WAIT).await;
    let status = db.status.unwrap();
    let msg = status.message.unwrap();
    assert!(msg.contains("authentication failed"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "AuthenticationFailed");
    let generation = db.metadata.generation;

    // Fix only the Secret: the metadata watch on Secrets re-checks the Database.
    let fix = json!({"stringData": {"password": s.hostile_password()}});
    secrets
        .patch("creds", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    let db = wait_phase(&api, "pg", DatabasePhase::Connected, WAIT).await;
    assert_eq!(
        db.metadata.generation, generation,
        "the Database itself was not touched"
    );
    assert_no_leak(&ns).await;
}

/// A closed port is a passing cause (the server may be starting): reported in Ready within the
/// connection timeout, the Database stays Pending (never Failed, no Warning Event) and is
/// retried with backoff.
#[tokio::test]
async fn database_unreachable_port_is_reported_within_connection_timeout_and_stays_pending() {
    let ns = TestNamespace::new("dbdown").await;
    let _ctl = start(&ns.name).await;
    secret(&ns.api(), "creds", "u", "p").await;
    let api: Api<Database> = ns.api();
    let port = crate::support::dbhub::free_port();
    let started = Instant::now();
    database(
        &api,
        "gone",
        json!({"type": "postgres", "host": "127.0.0.1", "port": port, "database": "d",
        "connectionTimeout": 3, "credentialsRef": {"name": "creds"}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(3 + 5);
    let status = loop {
        let st = api.get("gone").await.unwrap().status.unwrap_or_default();
        if st
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "Unreachable")
        {
            break st;
        }
        assert!(Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(status.phase, Some(DatabasePhase::Pending), "{status:?}");
    assert!(status.message.unwrap().contains("unreachable"));
    // Retried (5 s backoff) and still Pending, without a Warning.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let st = api.get("gone").await.unwrap().status.unwrap();
    assert_eq!(st.phase, Some(DatabasePhase::Pending), "{st:?}");
    assert!(
        events_for(&ns, "gone").await.is_empty(),
        "no Event while Pending"
    );
}

/// libpq's `prefer` and `allow` against servers that offer no TLS (the stack's): both connect
/// in plaintext and say so in status; `require` fails, naming TLS.
#[tokio::test]
async fn database_prefer_and_allow_resolve_to_what_the_server_offers() {
    let ns = TestNamespace::new("dbtls").await;
    let _ctl = start(&ns.name).await;
    app_secret(&ns.api(), "creds").await;
    let api: Api<Database> = ns.api();
    let with = |mut spec: serde_json::Value, mode: &str| {
        spec["sslMode"] = json!(mode);
        spec
    };
    for (name, spec) in [
        ("pg-prefer", with(pg_spec("creds"), "prefer")),
        ("pg-allow", with(pg_spec("creds"), "allow")),
        ("pg-require", with(pg_spec("creds"), "require")),
        (
            "maria-prefer",
            with(mariadb_spec("mariadb", "creds"), "prefer"),
        ),
        (
            "maria-require",
            with(mariadb_spec("mariadb", "creds"), "require"),
        ),
    ] {
        database(&api, name, spec).await;
    }
    for name in ["pg-prefer", "pg-allow", "maria-prefer"] {
        let db = wait_phase(&api, name, DatabasePhase::Connected, WAIT).await;
        let status = db.status.unwrap();
        assert_eq!(status.effective_ssl_mode, Some(SslMode::Disable), "{name}");
        assert_eq!(
            status.message.as_deref(),
            Some("connected without TLS"),
            "{name}"
        );
    }
    for name in ["pg-require", "maria-require"] {
        let db = wait_phase(&api, name, DatabasePhase::Failed, WAIT).await;
        let status = db.status.unwrap();
        let message = status.message.unwrap_or_default();
        assert!(
            message.to_ascii_lowercase().contains("tls"),
            "{name}: {message}"
        );
        assert_eq!(status.effective_ssl_mode, None, "{name}");
    }
}

#[tokio::test]
async fn database_missing_secret_fails_naming_the_secret() {
    let ns = TestNamespace::new("dbnosecret").await;
    let _ctl = start(&ns.name).await;
    let api: Api<Database> = ns.api();
    database(&api, "pg", pg_spec("nowhere")).await;
    let db = wait_phase(&api, "pg", DatabasePhase::Failed, WAIT).await;
    let status = db.status.unwrap();
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains(&format!("Secret {}/nowhere not found", ns.name)),
        "{status:?}"
    );
    let cond = status
        .conditions
        .iter()
        .find(|c| c.type_ == "CredentialsResolved")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "SecretNotFound")
    );

    // A missing key is named too (never its value).
    secret(&ns.api(), "nowhere", "u", "p").await;
    let patch = json!({"spec": {"credentialsRef": {"name": "nowhere", "passwordKey": "pw"}}});
    api.patch("pg", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let st = api.get("pg").await.unwrap().status.unwrap();
        if st
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("has no usable key \"pw\"")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn database_cross_namespace_reference_is_refused_until_annotated() {
    let ns = TestNamespace::new("dbxns").await;
    let other = TestNamespace::new("dbxns-secrets").await;
    let _ctl = start(&ns.name).await;
    let foreign: Api<Secret> = other.api();
    app_secret(&foreign, "shared").await;
    let api: Api<Database> = ns.api();
    let mut spec = pg_spec("shared");
    spec["credentialsRef"]["namespace"] = json!(other.name);
    // The default interval (300 s): the fix must be noticed well before the next health check.
    database(&api, "pg", spec).await;
    let db = wait_phase(&api, "pg", DatabasePhase::Failed, WAIT).await;
    let cond = db
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(cond.reason, "ReferenceNotPermitted");

    let allow = json!({"metadata": {"annotations": {"dbhub.tas.io/allowed-namespaces": format!("x, {}", ns.name)}}});
    foreign
        .patch("shared", &PatchParams::default(), &Patch::Merge(&allow))
        .await
        .unwrap();
    // The Secret is outside the watched namespace, so no event tells of the annotation: the
    // refused reference is re-read every 15 s.
    let annotated = Instant::now();
    wait_phase(&api, "pg", DatabasePhase::Connected, WAIT).await;
    assert!(
        annotated.elapsed() < Duration::from_secs(25),
        "{:?}",
        annotated.elapsed()
    );
    assert_no_leak(&ns).await;
}

#[tokio::test]
async fn database_steady_state_rechecks_without_writing() {
    let ns = TestNamespace::new("dbsteady").await;
    let _ctl = start(&ns.name).await;
    let secrets: Api<Secret> = ns.api();
    app_secret(&secrets, "creds").await;
    let api: Api<Database> = ns.api();
    database(&api, "pg", pg_spec("creds")).await;
    let db = wait_phase(&api, "pg", DatabasePhase::Connected, WAIT).await;
    let rv = db.metadata.resource_version.clone();
    let checked_before = checks(&ns.name, "pg");

    // Two Secret touches = two more reconciles, each a real check, neither a write.
    for i in 0..2 {
        let touch = json!({"metadata": {"labels": {"touch": i.to_string()}}});
        secrets
            .patch("creds", &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
        let deadline = Instant::now() + WAIT;
        while checks(&ns.name, "pg") < checked_before + i + 1 {
            assert!(
                Instant::now() < deadline,
                "no re-check after touching the Secret"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let after = api.get("pg").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, rv,
        "no write while nothing changed: {:?} -> {:?}",
        db.status, after.status
    );
}
