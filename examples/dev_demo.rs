//! The local demo `scripts/dev` runs beside `aether-dbhub serve`: seeds a user with a personal
//! space in the graph, mints a token for it, creates a small sample schema in the stack's
//! PostgreSQL, registers that database through the API, runs the DBHub of the space's
//! DBHubInstance from the generated objects (no kubelet runs locally), and prints `curl` lines
//! that work as printed. It then keeps that DBHub running (restarting it when the operator
//! changes its objects) until interrupted.
//!
//! Settings (all set by scripts/dev): AETHER_DBHUB_DEV_API (base URL), AETHER_DBHUB_DEV_DBHUB_PORT,
//! AETHER_DBHUB_DEV_SPACE, AETHER_DBHUB_NAMESPACE, AETHER_DBHUB_JWT_ISSUERS (first one),
//! AETHER_DBHUB_JWT_HS256_SECRET, NEO4J_URI, KUBECONFIG and the stack's STACK_* variables.

#[path = "../tests/support/localpod.rs"]
mod localpod;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sqlx::Connection;

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run this through scripts/dev)"))
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS demo_customers (customer_no int PRIMARY KEY, name text NOT NULL, city text)",
    "CREATE TABLE IF NOT EXISTS demo_orders (order_no int PRIMARY KEY, \
     customer_no int NOT NULL REFERENCES demo_customers(customer_no), total numeric(10,2) NOT NULL, placed_on date NOT NULL DEFAULT current_date)",
    "INSERT INTO demo_customers VALUES (1, 'Ada', 'London'), (2, 'Grace', 'Arlington'), (3, 'Edsger', 'Austin') ON CONFLICT DO NOTHING",
    "INSERT INTO demo_orders VALUES (100, 1, 42.50, '2026-11-02'), (101, 2, 17.00, '2026-11-03'), \
     (102, 1, 99.90, '2026-11-05'), (103, 3, 5.25, '2026-11-08') ON CONFLICT DO NOTHING",
];

struct Api {
    base: String,
    token: String,
    space: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method.parse()?, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("X-Space-Type", "personal")
            .header("X-Space-ID", &self.space);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let code = res.status().as_u16();
        Ok((code, res.json().await.unwrap_or(Value::Null)))
    }
}

async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the API at {base} did not become ready within 3 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn seed_graph(space: &str) -> anyhow::Result<String> {
    let config = neo4rs::ConfigBuilder::default()
        .uri(var("NEO4J_URI")?)
        .user("neo4j")
        .password("")
        .build()?;
    let graph = neo4rs::Graph::connect(config)?;
    // Aether's own constraints on the labels the service reads, as Aether's graph has them.
    for stmt in aether_dbhub::storage::migrate::statements(include_str!(
        "../test-support/aether-graph.cypher"
    )) {
        graph.run(neo4rs::query(&stmt)).await?;
    }
    let user = format!("{space}-user");
    graph
        .run(
            neo4rs::query(
                "MERGE (u:User {id: $user}) SET u.keycloak_id = $user, u.personal_space_id = $space, \
                 u.personal_tenant_id = $tenant, u.name = 'Dev User' \
                 MERGE (s:Space {id: $space}) SET s.tenant_id = $tenant, s.owner_id = $user, s.owner_type = 'user'",
            )
            .param("user", user.as_str())
            .param("space", space)
            .param("tenant", format!("{space}-tenant")),
        )
        .await?;
    Ok(user)
}

fn token(sub: &str) -> anyhow::Result<String> {
    let issuer = var("AETHER_DBHUB_JWT_ISSUERS")?
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": sub, "iss": issuer, "iat": now, "exp": now + 12 * 3600});
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(var("AETHER_DBHUB_JWT_HS256_SECRET")?.as_bytes()),
    )?)
}

async fn sample_schema() -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(&var("STACK_PG_URL")?).await?;
    for s in SCHEMA {
        sqlx::query(*s).execute(&mut conn).await?;
    }
    Ok(())
}

/// The demo database's id: registered through the API unless the space already has it.
async fn register(api: &Api) -> anyhow::Result<String> {
    let (code, list) = api
        .send("GET", "/api/v1/databases?page_size=100", None)
        .await?;
    if code != 200 {
        bail!("listing databases: {code} {list}");
    }
    if let Some(id) = list["databases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == "demo-postgres")
        .and_then(|d| d["id"].as_str())
    {
        return Ok(id.to_string());
    }
    let body = json!({
        "name": "demo-postgres", "type": "postgresql", "host": var("STACK_PG_HOST")?,
        "port": var("STACK_PG_PORT")?.parse::<u16>()?, "database": var("STACK_DB_NAME")?,
        "username": var("STACK_DB_USER")?, "password": var("STACK_DB_PASSWORD")?,
        "ssl_mode": "disable", "readonly": true, "max_rows": 100,
        "description": "the local stack's PostgreSQL with demo_customers and demo_orders",
    });
    let (code, created) = api.send("POST", "/api/v1/databases", Some(body)).await?;
    if code != 201 {
        bail!("registering the demo database: {code} {created}");
    }
    Ok(created["id"].as_str().context("no id")?.to_string())
}

async fn wait_connected(api: &Api, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, r) = api
            .send("GET", &format!("/api/v1/databases/{id}"), None)
            .await?;
        if r["status"] == "Connected" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the demo database is not Connected: {} {}",
                r["status"],
                r["status_message"]
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The instance's objects once they serve `cr`.
async fn served_view(
    client: &kube::Client,
    ns: &str,
    instance: &str,
    cr: &str,
) -> anyhow::Result<localpod::PodView> {
    let api: kube::Api<dbhub_operator::crd::DBHubInstance> =
        kube::Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let served = api
            .get_opt(instance)
            .await?
            .and_then(|i| i.status)
            .is_some_and(|s| s.connected_databases.iter().any(|n| n == cr));
        if served {
            return localpod::pod_view(client.clone(), ns, instance).await;
        }
        if Instant::now() > deadline {
            bail!("DBHubInstance {instance} does not serve {cr} after a minute");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Starts DBHub from the view on loopback and waits for /healthz.
async fn start_dbhub(view: &localpod::PodView, port: u16) -> anyhow::Result<tokio::process::Child> {
    let dir = std::path::PathBuf::from(var("STACK_DIR")?).join("dev-dbhub");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("dbhub.toml");
    std::fs::write(&config, &view.config)?;
    let args = localpod::loopback_args(view, port, &config)?;
    let log = std::fs::File::create(dir.join("dbhub.log"))?;
    let child = tokio::process::Command::new(var("STACK_NODE")?)
        .arg(var("STACK_DBHUB_JS")?)
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &dir)
        .envs(&view.env)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting DBHub")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && r.status().is_success()
        {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "DBHub did not answer on port {port}; see {}",
        dir.join("dbhub.log").display()
    )
}

fn same(a: &localpod::PodView, b: &localpod::PodView) -> bool {
    (a.replicas, &a.args, &a.env, &a.config) == (b.replicas, &b.args, &b.env, &b.config)
}

/// Runs the space's DBHub the way its Deployment would: none while the instance is gone or
/// scaled to 0 (DBHub refuses a configuration without sources), restarted when the generated
/// objects change or it exits. A DBHub that fails to start is retried, never fatal: the demo
/// survives any change of the space.
struct Runner {
    client: kube::Client,
    ns: String,
    instance: String,
    port: u16,
    view: Option<localpod::PodView>,
    child: Option<tokio::process::Child>,
}

impl Runner {
    async fn tick(&mut self) {
        let wanted = localpod::pod_view(self.client.clone(), &self.ns, &self.instance)
            .await
            .ok()
            .filter(|v| v.replicas > 0);
        let exited = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => {
                eprintln!("[dev] DBHub exited ({status}); starting it again");
                true
            }
            _ => false,
        };
        let changed = match (&wanted, &self.view) {
            (Some(a), Some(b)) => !same(a, b),
            (None, None) => false,
            _ => true,
        };
        if !changed && !exited && (self.child.is_some() || wanted.is_none()) {
            return;
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
        self.view = None;
        let Some(view) = wanted else {
            eprintln!(
                "[dev] {} serves no database now; its DBHub is stopped",
                self.instance
            );
            return;
        };
        eprintln!(
            "[dev] starting the DBHub of {} from its generated objects",
            self.instance
        );
        match start_dbhub(&view, self.port).await {
            Ok(child) => {
                self.child = Some(child);
                self.view = Some(view);
            }
            Err(e) => eprintln!("[dev] DBHub did not start ({e:#}); retrying"),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let base = var("AETHER_DBHUB_DEV_API")?;
    let port: u16 = var("AETHER_DBHUB_DEV_DBHUB_PORT")?.parse()?;
    let space = var("AETHER_DBHUB_DEV_SPACE")?;
    let ns = var("AETHER_DBHUB_NAMESPACE")?;
    wait_ready(&base).await?;
    let user = seed_graph(&space).await?;
    let api = Api {
        base: base.clone(),
        token: token(&user)?,
        space: space.clone(),
        http: reqwest::Client::new(),
    };
    sample_schema().await?;
    let id = register(&api).await?;
    wait_connected(&api, &id).await?;
    let client = kube::Client::try_default().await?;
    let instance =
        aether_dbhub::k8s::instance_name(aether_dbhub::k8s::InstanceMode::PerSpace, &space);
    let cr = format!("db-{}", id.replace('-', ""));
    let view = served_view(&client, &ns, &instance, &cr).await?;
    let mut runner = Runner {
        child: Some(start_dbhub(&view, port).await?),
        view: Some(view),
        client,
        ns,
        instance: instance.clone(),
        port,
    };

    let t = &api.token;
    let h = format!(
        "-H 'Authorization: Bearer {t}' -H 'X-Space-Type: personal' -H 'X-Space-ID: {space}'"
    );
    let db = format!("{base}/api/v1/databases/{id}");
    println!(
        "[dev] demo ready: user {user}, personal space {space}, database demo-postgres ({id})"
    );
    println!("[dev] token (12 h): {t}");
    println!(
        "[dev] DBHub of {instance} on 127.0.0.1:{port} (from the generated Deployment, ConfigMap and Secrets)"
    );
    println!("curl -s {h} {base}/api/v1/databases");
    println!(
        "curl -s {h} -H 'Content-Type: application/json' -d '{{\"query\": \"SELECT o.order_no, c.name, o.total FROM demo_orders o JOIN demo_customers c USING (customer_no) ORDER BY o.order_no\"}}' {db}/query"
    );
    println!("curl -s {h} {db}/tables");
    println!("curl -s {h} '{db}/tables/demo_orders/columns?schema=public'");
    println!("curl -s {h} {db}/history");
    println!("[dev] API docs: {base}/api/v1/docs   metrics: {base}/metrics");

    // Keep the DBHub in step with what the operator generates (databases added or removed,
    // new tokens), whatever happens to the space.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            () = tokio::time::sleep(Duration::from_secs(2)) => runner.tick().await,
        }
    }
    if let Some(mut c) = runner.child.take() {
        let _ = c.kill().await;
    }
    Ok(())
}
