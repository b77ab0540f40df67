//! The local demo `scripts/dev` runs beside the chart it installs on the stack's node: serves
//! the demo issuer's JWKS on the bridge address (the service in its pods verifies tokens against
//! it, as against Keycloak), forwards 127.0.0.1:<listen port> to the service's Service, seeds a
//! user with a personal space in the graph, mints a token for it, creates a small sample schema in
//! the stack's PostgreSQL, registers that database through the API, waits until the space's DBHub
//! pod serves it, and prints `curl` lines that work as printed, until interrupted.
//!
//! Settings (all set by scripts/dev): AETHER_DBHUB_DEV_API (base URL, 127.0.0.1), the release's
//! Service AETHER_DBHUB_DEV_RELEASE, AETHER_DBHUB_DEV_JWKS_ADDR, AETHER_DBHUB_DEV_ISSUER,
//! AETHER_DBHUB_DEV_SPACE, AETHER_DBHUB_NAMESPACE, NEO4J_URI, KUBECONFIG, STACK_*.

#[path = "../tests/support/forward.rs"]
mod forward;
#[path = "../tests/support/jwks.rs"]
#[allow(dead_code)]
mod jwks;

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

/// Waits until the space's DBHubInstance serves `cr` and its Deployment has a ready pod.
async fn served(client: &kube::Client, ns: &str, instance: &str, cr: &str) -> anyhow::Result<()> {
    let api: kube::Api<dbhub_operator::crd::DBHubInstance> =
        kube::Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = api.get_opt(instance).await?.and_then(|i| i.status);
        if status.is_some_and(|s| {
            s.available_replicas > 0 && s.connected_databases.iter().any(|n| n == cr)
        }) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("DBHubInstance {instance} has no ready pod serving {cr} after 3 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Forwards `listen` to Service `service` on the node (looked up for each connection, so a
/// re-created Service is found again), as `kubectl port-forward` would but surviving pod
/// restarts. Without the Service, connections are closed.
async fn forward_to(
    client: kube::Client,
    ns: &str,
    service: String,
    listen: &str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(client, ns);
    Ok(forward::spawn(listener, move || {
        let (services, service) = (services.clone(), service.clone());
        async move {
            let spec = services.get_opt(&service).await.ok()??.spec?;
            let port = spec.ports?.first()?.port;
            Some(format!("{}:{port}", spec.cluster_ip?))
        }
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let base = var("AETHER_DBHUB_DEV_API")?;
    let space = var("AETHER_DBHUB_DEV_SPACE")?;
    let ns = var("AETHER_DBHUB_NAMESPACE")?;
    let issuer = var("AETHER_DBHUB_DEV_ISSUER")?;
    let client = kube::Client::try_default().await?;
    // The issuer's key survives restarts of the demo (tokens stay valid for their 12 hours).
    let keys = jwks::Keys::load_or_create(
        &std::path::PathBuf::from(var("STACK_DIR")?).join("dev-issuer/key.pem"),
    )
    .map_err(anyhow::Error::msg)?;
    let jwks_addr = var("AETHER_DBHUB_DEV_JWKS_ADDR")?;
    let jwks_task = keys.serve(
        tokio::net::TcpListener::bind(&jwks_addr)
            .await
            .with_context(|| format!("binding {jwks_addr} for the JWKS"))?,
    );
    let listen = base.trim_start_matches("http://").to_string();
    let api_forward = forward_to(
        client.clone(),
        &ns,
        var("AETHER_DBHUB_DEV_RELEASE")?,
        &listen,
    )
    .await?;
    wait_ready(&base).await?;
    let user = seed_graph(&space).await?;
    let api = Api {
        base: base.clone(),
        token: keys.token(&issuer, &user, 12 * 3600),
        space: space.clone(),
        http: reqwest::Client::new(),
    };
    sample_schema().await?;
    let id = register(&api).await?;
    wait_connected(&api, &id).await?;
    let instance =
        aether_dbhub::k8s::instance_name(aether_dbhub::k8s::InstanceMode::PerSpace, &space);
    let cr = format!("db-{}", id.replace('-', ""));
    served(&client, &ns, &instance, &cr).await?;

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
        "[dev] the service and the DBHub of {instance} run in pods on the node: $STACK_KUBECTL -n {ns} get pods"
    );
    println!("curl -s {h} {base}/api/v1/databases");
    println!(
        "curl -s {h} -H 'Content-Type: application/json' -d '{{\"query\": \"SELECT o.order_no, c.name, o.total FROM demo_orders o JOIN demo_customers c USING (customer_no) ORDER BY o.order_no\"}}' {db}/query"
    );
    println!("curl -s {h} {db}/tables");
    println!("curl -s {h} '{db}/tables/demo_orders/columns?schema=public'");
    println!("curl -s {h} {db}/history");
    println!("[dev] API docs: {base}/api/v1/docs   metrics: {base}/metrics");

    // The node keeps everything in step (rollouts on changes, a new DBHub instance when the space
    // gets a database again); this serves the JWKS and the forward until Ctrl-C.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = api_forward => r?,
    }
    jwks_task.abort();
    Ok(())
}
