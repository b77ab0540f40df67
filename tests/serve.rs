//! `aether-dbhub serve` as a process: health, readiness with reasons, request ids, JSON logs
//! and a clean exit on SIGTERM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::dbhub::free_port;
use crate::support::{stack, unique};

struct Server {
    child: tokio::process::Child,
    base: String,
    /// stderr, drained continuously so a full pipe can never block the server.
    stderr: tokio::task::JoinHandle<String>,
}

fn drain(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let mut pipe = child.stderr.take().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut out = String::new();
        let _ = pipe.read_to_string(&mut out).await;
        out
    })
}

impl Server {
    async fn start(neo4j_uri: &str) -> Self {
        crate::support::crds::ensure_installed().await;
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aether-dbhub"))
            .args(["--log-format", "json", "serve"])
            .env("AETHER_DBHUB_LISTEN", format!("127.0.0.1:{port}"))
            .env("AETHER_DBHUB_NEO4J_URI", neo4j_uri)
            .env("AETHER_DBHUB_JWT_ISSUERS", "https://issuer.test")
            .env(
                "AETHER_DBHUB_JWT_HS256_SECRET",
                "a-test-secret-that-is-long-enough-0123456789",
            )
            .env("KUBECONFIG", stack().get("KUBECONFIG"))
            // Its reconcilers watch a namespace of their own, away from other tests' objects.
            .env("AETHER_DBHUB_WATCH_NAMESPACE", unique("serve-scope"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting aether-dbhub serve");
        let mut child = child;
        let stderr = drain(&mut child);
        let server = Self {
            child,
            stderr,
            base: format!("http://127.0.0.1:{port}"),
        };
        server.wait_until_listening().await;
        server
    }

    async fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if reqwest::get(format!("{}/healthz", self.base)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("aether-dbhub serve did not listen within 30s");
    }

    /// Sends SIGTERM and returns (exit success, stderr).
    async fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let out = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        let _ = self.child.start_kill();
        let stderr = self.stderr.await.unwrap();
        let out = out
            .unwrap_or_else(|_| panic!("no exit within 15s of SIGTERM; stderr:\n{stderr}"))
            .unwrap();
        (out.success(), stderr)
    }
}

#[tokio::test]
async fn serve_with_stack_up_is_ready_and_stops_cleanly_on_sigterm() {
    let server = Server::start(stack().get("NEO4J_URI")).await;
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let ready = reqwest::Client::new()
        .get(format!("{}/readyz", server.base))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.headers()["x-request-id"],
        "req-123",
        "request id echoed"
    );
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["checks"]["neo4j"]["ok"], true, "{body}");
    assert_eq!(body["checks"]["kubernetes"]["ok"], true, "{body}");

    let fresh = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert!(
        fresh.headers().contains_key("x-request-id"),
        "a request id is created when absent"
    );

    let (ok, stderr) = server.terminate().await;
    assert!(ok, "exit status after SIGTERM; stderr:\n{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "listening"),
        "{stderr}"
    );
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{stderr}");
}

#[tokio::test]
async fn serve_with_neo4j_down_reports_not_ready_with_reason() {
    let dead = format!("bolt://127.0.0.1:{}", free_port());
    let server = Server::start(&dead).await;
    let ready = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["checks"]["neo4j"]["ok"], false, "{body}");
    assert!(
        !body["checks"]["neo4j"]["reason"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{body}"
    );
    assert_eq!(body["checks"]["kubernetes"]["ok"], true, "{body}");
    let (ok, _) = server.terminate().await;
    assert!(ok);
}

/// `aether-dbhub operator` runs the reconcilers alone: a Database in its namespace gets
/// checked, and SIGTERM stops it cleanly.
#[tokio::test]
async fn operator_subcommand_reconciles_alone_and_stops_on_sigterm() {
    use dbhub_operator::crd::{Database, DatabasePhase};
    crate::support::crds::ensure_installed().await;
    let ns = crate::support::kube::TestNamespace::new("opalone").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aether-dbhub"))
        .args([
            "--log-format",
            "json",
            "operator",
            "--watch-namespace",
            &ns.name,
        ])
        .env("KUBECONFIG", stack().get("KUBECONFIG"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting aether-dbhub operator");
    let dir = std::env::temp_dir().join(unique("opalone"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a.db");
    std::fs::File::create(&file).unwrap();
    let api: kube::Api<Database> = ns.api();
    crate::support::operator::database(
        &api,
        "lite",
        serde_json::json!({"type": "sqlite", "database": file.to_str().unwrap()}),
    )
    .await;
    crate::support::operator::wait_phase(
        &api,
        "lite",
        DatabasePhase::Connected,
        Duration::from_secs(30),
    )
    .await;

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exited")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(dir);
}
