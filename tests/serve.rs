//! `aether-dbhub serve` as a process: health, readiness with reasons, request ids, JSON logs
//! and a clean exit on SIGTERM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::dbhub::free_port;
use crate::support::{stack, unique};

/// The tests' connection policy for a spawned process: the stack's databases on loopback,
/// SQLite files in the temp directory.
fn policy_env() -> [(&'static str, String); 2] {
    [
        ("AETHER_DBHUB_HOST_ALLOW_CIDRS", "127.0.0.0/8".into()),
        (
            "AETHER_DBHUB_SQLITE_ALLOWED_DIRS",
            std::env::temp_dir().display().to_string(),
        ),
    ]
}

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
        Self::start_with(neo4j_uri, &[]).await
    }

    /// Starts `serve` with `extra` environment on top of the defaults.
    async fn start_with(neo4j_uri: &str, extra: &[(&str, String)]) -> Self {
        crate::support::crds::ensure_installed().await;
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aether-dbhub"))
            .args(["--log-format", "json", "serve"])
            .env("AETHER_DBHUB_LISTEN", format!("127.0.0.1:{port}"))
            .env("AETHER_DBHUB_NEO4J_URI", neo4j_uri)
            .env("AETHER_DBHUB_JWT_ISSUERS", crate::support::api::ISSUER)
            .env("AETHER_DBHUB_JWT_HS256_SECRET", crate::support::api::SECRET)
            .env("KUBECONFIG", stack().get("KUBECONFIG"))
            .envs(policy_env())
            // Its reconcilers watch a namespace of their own, away from other tests' objects.
            .env("AETHER_DBHUB_WATCH_NAMESPACE", unique("serve-scope"))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
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

    /// `/metrics` text.
    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
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

    // A call in a space: its access log line carries the request id and the space id.
    let graph = crate::support::api::graph();
    let p = crate::support::api::person(&graph).await;
    let listed = reqwest::Client::new()
        .get(format!("{}/api/v1/databases", server.base))
        .bearer_auth(crate::support::api::token(&p.sub))
        .header("x-space-type", "personal")
        .header("x-space-id", &p.space)
        .header("x-request-id", "req-in-a-space")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let metrics = metrics.text().await.unwrap();
    for series in [
        "aether_dbhub_http_requests_total{method=\"GET\",route=\"/api/v1/databases\",status=\"200\"} 1",
        "aether_dbhub_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"} 1",
        "dbhub_operator_leader 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} missing:\n{metrics}"
        );
    }

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
    let access = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "req-in-a-space")
        .unwrap_or_else(|| panic!("no log line of the request:\n{stderr}"));
    assert_eq!(access["span"]["space_id"], p.space.as_str(), "{access}");
    assert_eq!(access["span"]["route"], "/api/v1/databases", "{access}");
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
    let metrics_port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aether-dbhub"))
        .args([
            "--log-format",
            "json",
            "operator",
            "--watch-namespace",
            &ns.name,
            "--listen",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .env("KUBECONFIG", stack().get("KUBECONFIG"))
        .envs(policy_env())
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
    // Its own /metrics shows the reconciles and the check it ran, and that it is reconciling.
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dbhub_operator_reconciles_total{controller=\"database\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "dbhub_operator_probe_duration_seconds_count{engine=\"sqlite\",outcome=\"ok\"}"
        )
    );
    assert!(metrics.lines().any(|l| l == "dbhub_operator_leader 1"));

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

/// Two `serve` replicas with `--leader-elect`: both serve the API, exactly one holds the Lease
/// and reconciles; killed (no chance to release), the other takes over once the Lease expires
/// and reconciles.
#[tokio::test]
async fn leader_election_one_replica_reconciles_and_the_other_takes_over() {
    use dbhub_operator::crd::{Database, DatabasePhase};
    use k8s_openapi::api::coordination::v1::Lease;
    let ns = crate::support::kube::TestNamespace::new("leader").await;
    let lease = unique("lease");
    let (duration, grace) = (6u64, 2u64);
    let env = |id: &str| {
        vec![
            ("AETHER_DBHUB_NAMESPACE", ns.name.clone()),
            ("AETHER_DBHUB_WATCH_NAMESPACE", ns.name.clone()),
            ("AETHER_DBHUB_LEADER_ELECT", "true".to_string()),
            ("AETHER_DBHUB_LEADER_ELECT_LEASE", lease.clone()),
            ("AETHER_DBHUB_LEADER_ELECT_DURATION", duration.to_string()),
            ("AETHER_DBHUB_LEADER_ELECT_GRACE", grace.to_string()),
            ("AETHER_DBHUB_LEADER_ELECT_IDENTITY", id.to_string()),
        ]
    };
    let neo4j = stack().get("NEO4J_URI");
    let mut replicas = vec![
        (
            "replica-a",
            Server::start_with(neo4j, &env("replica-a")).await,
        ),
        (
            "replica-b",
            Server::start_with(neo4j, &env("replica-b")).await,
        ),
    ];
    let leases: kube::Api<Lease> = ns.api();
    let holder = |want: Option<&'static str>| {
        let leases = leases.clone();
        let lease = lease.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(3 * duration + 10);
            loop {
                let h = leases
                    .get_opt(&lease)
                    .await
                    .unwrap()
                    .and_then(|l| l.spec)
                    .and_then(|s| s.holder_identity)
                    .filter(|h| !h.is_empty());
                if let Some(h) = h
                    && want.is_none_or(|w| w == h)
                {
                    return h;
                }
                assert!(
                    Instant::now() < deadline,
                    "lease holder never became {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let first = holder(None).await;
    // Exactly one reconciles (the leader gauge), both serve.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut leading = Vec::new();
        for (id, s) in &replicas {
            if s.metrics()
                .await
                .lines()
                .any(|l| l == "dbhub_operator_leader 1")
            {
                leading.push(*id);
            }
        }
        if leading == [first.as_str()] {
            break;
        }
        assert!(leading.len() <= 1, "two replicas reconcile: {leading:?}");
        assert!(
            Instant::now() < deadline,
            "the holder {first} never reconciled ({leading:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (_, s) in &replicas {
        let ok = reqwest::get(format!("{}/healthz", s.base)).await.unwrap();
        assert_eq!(ok.status(), 200);
    }
    let dbs: kube::Api<Database> = ns.api();
    let dir = std::env::temp_dir().join(unique("leader"));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["one", "two"] {
        std::fs::File::create(dir.join(format!("{name}.db"))).unwrap();
    }
    let lite = |name: &str| serde_json::json!({"type": "sqlite", "database": dir.join(format!("{name}.db")).to_str().unwrap()});
    crate::support::operator::database(&dbs, "one", lite("one")).await;
    crate::support::operator::wait_phase(
        &dbs,
        "one",
        DatabasePhase::Connected,
        Duration::from_secs(30),
    )
    .await;

    // Kill the leader outright: it cannot release the Lease.
    let at = replicas.iter().position(|(id, _)| *id == first).unwrap();
    let (_, mut dead) = replicas.remove(at);
    dead.child.start_kill().unwrap();
    let _ = dead.child.wait().await;
    let killed = Instant::now();
    let (other, survivor) = &replicas[0];
    let other: &'static str = other;
    holder(Some(other)).await;
    let took = killed.elapsed();
    println!("takeover {took:?} after the leader was killed (lease {duration}s, grace {grace}s)");
    crate::support::operator::database(&dbs, "two", lite("two")).await;
    crate::support::operator::wait_phase(
        &dbs,
        "two",
        DatabasePhase::Connected,
        Duration::from_secs(30),
    )
    .await;
    assert!(
        survivor
            .metrics()
            .await
            .lines()
            .any(|l| l == "dbhub_operator_leader 1")
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs the real binary with `args` and `env` until it exits (within 60 s); (success, stderr).
async fn run_to_exit(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aether-dbhub"))
        .args(args)
        .env("KUBECONFIG", stack().get("KUBECONFIG"))
        .envs(policy_env())
        .env("AETHER_DBHUB_JWT_ISSUERS", crate::support::api::ISSUER)
        .env("AETHER_DBHUB_JWT_HS256_SECRET", crate::support::api::SECRET)
        .env("AETHER_DBHUB_WATCH_NAMESPACE", unique("exit-scope"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the process exits on its own")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect()
}

/// Runs `serve` against Neo4j at `uri` with a 3 s start-up timeout: it must exit non-zero
/// within `within`, with one error line naming the flag.
async fn assert_serve_gives_up_on(uri: String, within: Duration) {
    let started = Instant::now();
    let (ok, stderr) = run_to_exit(
        &["--log-format", "json", "serve"],
        &[
            ("AETHER_DBHUB_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("AETHER_DBHUB_NEO4J_URI", uri),
            ("AETHER_DBHUB_NEO4J_STARTUP_TIMEOUT", "3".into()),
        ],
    )
    .await;
    let took = started.elapsed();
    assert!(!ok, "{stderr}");
    assert!(took < within, "took {took:?}:\n{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(
        errors[0].contains("--neo4j-startup-timeout"),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn serve_exits_non_zero_when_neo4j_stays_unreachable_past_its_startup_timeout() {
    let nobody = format!("bolt://127.0.0.1:{}", free_port());
    assert_serve_gives_up_on(nobody, Duration::from_secs(30)).await;
}

/// A Neo4j that accepts connections and never answers (stalled, or a wrong port that swallows
/// Bolt): the start-up timeout still holds, though one connection attempt may wait up to
/// --neo4j-timeout (15 s).
#[tokio::test]
async fn serve_exits_within_its_startup_timeout_when_neo4j_accepts_but_never_answers() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            held.push(conn);
        }
    });
    assert_serve_gives_up_on(format!("bolt://{addr}"), Duration::from_secs(12)).await;
}

#[tokio::test]
async fn operator_exits_non_zero_when_its_listen_address_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, stderr) = run_to_exit(
        &["--log-format", "json", "operator", "--listen", &addr],
        &[],
    )
    .await;
    assert!(!ok, "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(errors[0].contains(&addr), "{}", errors[0]);
}
