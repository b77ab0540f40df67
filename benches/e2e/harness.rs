//! What every scenario needs: the stack, a release `aether-dbhub serve` process with its own
//! namespace, a user with a personal space and token, the stack's PostgreSQL registered through
//! the API, and that space's DBHub run from the generated objects.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::api::{person, token};
use crate::support::dbhub::{PodHub, free_port, serve_instance};
use crate::support::kube::TestNamespace;
use crate::support::scenario::{cr_of, pg_body, wait_served};
use crate::support::stack;

/// Brings the stack up unless it runs (`scripts/stack up` is idempotent; without
/// `AETHER_DBHUB_STACK_ENV` the support module reads the repository's `.stack/env`).
pub fn ensure_stack() {
    if std::env::var_os("AETHER_DBHUB_STACK_ENV").is_some() {
        return;
    }
    let ok = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack"))
        .arg("up")
        .stdout(Stdio::null())
        .status()
        .expect("running scripts/stack up")
        .success();
    assert!(ok, "scripts/stack up failed");
}

/// A running `aether-dbhub serve` (release build) and what it serves.
pub struct Service {
    child: tokio::process::Child,
    port: u16,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its namespace (CRs, Secrets, DBHubInstances).
    pub ns: TestNamespace,
    /// The DBHub port the service reaches.
    pub dbhub_port: u16,
    /// From spawning the process to its first ready `/readyz` (the stack already up).
    pub ready_after: Duration,
}

/// `aether-dbhub <args>` (release build) for namespace `ns` on the stack, logging JSON to this
/// process's stderr and killed when dropped; callers add their own settings and spawn it.
pub fn command(args: &[&str], ns: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_aether-dbhub"));
    cmd.args(["--log-format", "json"])
        .args(args)
        .env("AETHER_DBHUB_NAMESPACE", ns)
        .env("AETHER_DBHUB_WATCH_NAMESPACE", ns)
        .env("AETHER_DBHUB_HOST_ALLOW_CIDRS", "127.0.0.0/8")
        .env("KUBECONFIG", stack().get("KUBECONFIG"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// `aether-dbhub serve` on 127.0.0.1:`port` for namespace `ns`, reaching DBHub at `endpoint`.
fn spawn(ns: &str, port: u16, endpoint: &str) -> tokio::process::Child {
    let mut cmd = command(&["--log", "warn", "serve"], ns);
    // `BENCH_SERVICE_<NAME>=v` in the bench's environment sets `<NAME>=v` for the service
    // alone (e.g. `BENCH_SERVICE_TOKIO_WORKER_THREADS=1`), to compare settings.
    for (k, v) in std::env::vars() {
        if let Some(name) = k.strip_prefix("BENCH_SERVICE_") {
            cmd.env(name, v);
        }
    }
    cmd.env("AETHER_DBHUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("AETHER_DBHUB_NEO4J_URI", stack().get("NEO4J_URI"))
        .env("AETHER_DBHUB_JWT_ISSUERS", crate::support::api::ISSUER)
        .env("AETHER_DBHUB_JWT_HS256_SECRET", crate::support::api::SECRET)
        .env("AETHER_DBHUB_DBHUB_ENDPOINT", endpoint)
        .spawn()
        .expect("starting aether-dbhub serve")
}

impl Service {
    pub async fn start() -> Self {
        crate::support::crds::ensure_installed().await;
        let ns = TestNamespace::new("bench").await;
        let (port, dbhub_port) = (free_port(), free_port());
        let spawned = Instant::now();
        let child = spawn(
            &ns.name,
            port,
            &format!("http://127.0.0.1:{dbhub_port}/mcp"),
        );
        let mut s = Self {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            ns,
            dbhub_port,
            ready_after: Duration::ZERO,
        };
        s.ready().await;
        s.ready_after = spawned.elapsed();
        s
    }

    /// Waits for its first ready `/readyz`.
    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.base)).await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "the service never became ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the process and starts it again on the same port and namespace, reaching DBHub at
    /// `endpoint`.
    pub async fn restart(&mut self, endpoint: &str) {
        let _ = self.child.kill().await;
        self.child = spawn(&self.ns.name, self.port, endpoint);
        self.ready().await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// The values of the service's metric series `series` (each the text before the value in
    /// `/metrics`, e.g. `aether_dbhub_graph_queries_total`); 0 for one it does not show.
    pub async fn samples<const N: usize>(&self, series: [&str; N]) -> [f64; N] {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap_or_default();
        series.map(|name| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0.0)
        })
    }
}

/// A user of the service with one registered, Connected and served PostgreSQL database.
pub struct Tenant {
    pub token: String,
    pub space: String,
    pub db_id: String,
    pub http: reqwest::Client,
    pub base: String,
    /// The space's DBHub, run from the generated objects (kept alive for the service).
    #[allow(dead_code)]
    pub hub: PodHub,
    /// Its bearer token (for calling DBHub directly).
    #[allow(dead_code)]
    pub hub_token: String,
    /// From `POST /databases` to: Connected, in the instance's configuration, first
    /// successful query (DBHub started from the generated objects by this harness in between).
    pub timeline: [Duration; 3],
}

impl Tenant {
    pub async fn register(svc: &Service) -> Self {
        let graph = crate::support::api::graph();
        let p = person(&graph).await;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()
            .unwrap();
        let (token, space, base) = (token(&p.sub), p.space.clone(), svc.base.clone());
        let send = |m, path, body| send(&http, &base, &token, &space, m, path, body);
        let posted = Instant::now();
        let (code, created) = send(
            "POST",
            "/api/v1/databases".into(),
            Some(pg_body("bench", json!({}))),
        )
        .await;
        assert_eq!(code, 201, "{created}");
        let db_id = created["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, r) = send("GET", format!("/api/v1/databases/{db_id}"), None).await;
            if r["status"] == "Connected" {
                break;
            }
            assert!(Instant::now() < deadline, "never Connected: {r}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connected = posted.elapsed();
        let instance = format!("dbhub-{}", p.space);
        wait_served(&svc.ns, &instance, &[cr_of(&db_id)]).await;
        let served = posted.elapsed();
        let hub = serve_instance(&svc.ns, &instance, svc.dbhub_port).await;
        let mut tenant = Self {
            timeline: [connected, served, Duration::ZERO],
            hub_token: hub.token.clone(),
            hub,
            token,
            space,
            db_id,
            http,
            base,
        };
        tenant.answering_by(deadline).await;
        tenant.timeline[2] = posted.elapsed();
        tenant
    }

    /// Waits until a query on its database is answered (at most until `deadline`).
    pub async fn answering_by(&self, deadline: Instant) {
        let path = format!("/api/v1/databases/{}/query", self.db_id);
        loop {
            let q = Some(json!({"query": "SELECT 1"}));
            let (code, _) = self.send("POST", &path, q).await;
            if code == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "never answered a query ({code})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET `path`, the body as received (a client's JSON parsing is not the service's time).
    pub async fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("x-space-type", "personal")
            .header("x-space-id", &self.space)
            .send()
            .await
            .unwrap();
        let code = res.status().as_u16();
        (code, res.bytes().await.unwrap().to_vec())
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        send(
            &self.http,
            &self.base,
            &self.token,
            &self.space,
            method,
            path.into(),
            body,
        )
        .await
    }
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    space: &str,
    method: &str,
    path: String,
    body: Option<Value>,
) -> (u16, Value) {
    {
        let mut req = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(token)
            .header("x-space-type", "personal")
            .header("x-space-id", space);
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(res) => {
                let code = res.status().as_u16();
                (code, res.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }
}
