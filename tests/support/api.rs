//! The REST API served in-process against the real stack (Neo4j, apiserver), with HS256 tokens
//! minted for users seeded into the graph.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_dbhub::auth::Verifier;
use aether_dbhub::config::AuthArgs;
use aether_dbhub::config::InstanceMode;
use aether_dbhub::http::router;
use aether_dbhub::storage::Store;
use dbhub_operator::policy::ConnectionPolicy;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::{stack, unique};

/// Issuer the test verifier accepts.
pub const ISSUER: &str = "https://keycloak.test/realms/aether";
/// HS256 secret of the test verifier.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// A running API.
pub struct ApiServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Neo4j store for the stack, migrations applied.
pub async fn store() -> Store {
    store_with(std::time::Duration::from_secs(2)).await
}

/// As [`store`], waiting at most `acquire_timeout` for a pooled connection.
pub async fn store_with(acquire_timeout: std::time::Duration) -> Store {
    let args = aether_dbhub::config::Neo4jArgs {
        uri: stack().get("NEO4J_URI").into(),
        user: "neo4j".into(),
        password: String::new(),
        // Small on purpose: tests run concurrency well past it.
        max_connections: 4,
        acquire_timeout,
        answer_timeout: std::time::Duration::from_secs(15),
        startup_timeout: std::time::Duration::from_secs(30),
    };
    let store = Store::connect(&args).unwrap();
    static MIGRATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    MIGRATED
        .get_or_init(|| async {
            aether_dbhub::storage::migrate::run(&store)
                .await
                .map(|_| ())
                .expect("migrations")
        })
        .await;
    store
}

/// How a test API is set up beyond its namespace and Kubernetes identity.
pub struct Options {
    /// Refuses database hosts (default: loopback allowed, where the stack's databases listen).
    pub policy: ConnectionPolicy,
    /// Connection tests one user may start per minute.
    pub test_rate_limit: u32,
    /// Where every DBHub is reached (the loopback forward to the instance's pods, since the host
    /// cannot resolve cluster names); None: each instance's `status.endpoint`.
    pub dbhub_endpoint: Option<String>,
    /// Per-space or shared DBHub instances.
    pub mode: InstanceMode,
    /// Request limits.
    pub limits: aether_dbhub::http::Limits,
    /// How long a request waits for one of the 4 pooled Neo4j connections.
    pub acquire_timeout: std::time::Duration,
    /// Origins browsers may call from (CORS).
    pub cors: aether_dbhub::http::cors::Origins,
    /// How long a membership is remembered (the service's default, 5 s).
    pub space_cache_ttl: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            policy: super::test_policy(),
            test_rate_limit: 1000,
            dbhub_endpoint: None,
            mode: InstanceMode::PerSpace,
            limits: Default::default(),
            acquire_timeout: std::time::Duration::from_secs(2),
            cors: Default::default(),
            space_cache_ttl: std::time::Duration::from_secs(5),
        }
    }
}

/// Serves the API writing CRs/Secrets into `namespace` with `kube` (whose rights the test
/// picks).
pub async fn serve(namespace: &str, kube: kube::Client) -> ApiServer {
    serve_opts(namespace, kube, Options::default()).await
}

/// As [`serve`], with the given connection policy.
pub async fn serve_with_policy(
    namespace: &str,
    kube: kube::Client,
    policy: ConnectionPolicy,
) -> ApiServer {
    serve_opts(
        namespace,
        kube,
        Options {
            policy,
            ..Default::default()
        },
    )
    .await
}

/// As [`serve`], reaching every DBHub at `endpoint`.
pub async fn serve_with_dbhub(namespace: &str, kube: kube::Client, endpoint: &str) -> ApiServer {
    let dbhub_endpoint = Some(endpoint.to_string());
    serve_opts(
        namespace,
        kube,
        Options {
            dbhub_endpoint,
            ..Default::default()
        },
    )
    .await
}

/// As [`serve_with_dbhub`], with one DBHubInstance shared by every space.
pub async fn serve_shared(namespace: &str, kube: kube::Client, endpoint: &str) -> ApiServer {
    let dbhub_endpoint = Some(endpoint.to_string());
    let mode = InstanceMode::Shared;
    serve_opts(
        namespace,
        kube,
        Options {
            dbhub_endpoint,
            mode,
            ..Default::default()
        },
    )
    .await
}

/// Serves the API as `options` say.
pub async fn serve_opts(namespace: &str, kube: kube::Client, options: Options) -> ApiServer {
    // The API creates Database CRs and watches them: their CRDs must be there (a test run alone
    // on a fresh stack has no other test to install them first).
    super::crds::ensure_installed().await;
    let auth = AuthArgs {
        jwt_issuers: ISSUER.into(),
        jwt_audience: String::new(),
        jwt_jwks_url: String::new(),
        jwt_rs256_pem: String::new(),
        jwt_hs256_secret: SECRET.into(),
    };
    let state = aether_dbhub::app::wire(aether_dbhub::app::Wiring {
        kube,
        namespace: namespace.into(),
        mode: options.mode,
        default_policy: (true, 1000),
        dbhub_endpoint: options.dbhub_endpoint,
        dbhub_timeout: std::time::Duration::from_secs(10),
        policy: options.policy,
        test_rate_limit: options.test_rate_limit,
        limits: options.limits,
        cors: options.cors,
        space_cache_ttl: options.space_cache_ttl,
        store: store_with(options.acquire_timeout).await,
        verifier: Arc::new(Verifier::from_args(&auth).unwrap()),
    });
    tokio::spawn({
        let registry = state.registry.clone();
        async move { registry.mirror_status().await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router(state)).await.unwrap();
    });
    ApiServer { base, task }
}

/// An HS256 token for `sub`, valid for an hour unless `exp_offset` says otherwise.
pub fn token_with(sub: &str, iss: &str, exp_offset: i64) -> String {
    let exp = jsonwebtoken::get_current_timestamp() as i64 + exp_offset;
    signed(&json!({"sub": sub, "iss": iss, "exp": exp, "iat": exp - 3600}))
}

/// An HS256 token with exactly these claims, signed with the test verifier's secret.
pub fn signed(claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A valid token for `sub`.
pub fn token(sub: &str) -> String {
    token_with(sub, ISSUER, 3600)
}

/// A user with a personal space, plus (optionally) roles in an organization space.
pub struct Person {
    /// Keycloak subject (the token's `sub`).
    pub sub: String,
    /// Aether user id.
    pub id: String,
    /// Personal space id.
    pub space: String,
    /// Personal tenant id.
    pub tenant: String,
}

/// Aether's own constraints on the labels the service reads (`test-support/aether-graph.cypher`),
/// applied once per test binary so that the stack's graph is indexed as Aether's is.
pub async fn aether_schema(graph: &neo4rs::Graph) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let text = include_str!("../../test-support/aether-graph.cypher");
        for stmt in aether_dbhub::storage::migrate::statements(text) {
            graph
                .run(neo4rs::query(&stmt))
                .await
                .unwrap_or_else(|e| panic!("{stmt}: {e}"));
        }
    })
    .await;
}

/// Seeds `(:User)` with a personal space and tenant.
pub async fn person(store_graph: &neo4rs::Graph) -> Person {
    aether_schema(store_graph).await;
    let p = Person {
        sub: unique("kc"),
        id: unique("user"),
        space: unique("space"),
        tenant: unique("tenant"),
    };
    store_graph
        .run(
            neo4rs::query(
                "CREATE (:User {id: $id, keycloak_id: $sub, personal_space_id: $space, personal_tenant_id: $tenant}) \
                 CREATE (:Space {id: $space, tenant_id: $tenant, owner_id: $id, owner_type: 'user'})",
            )
            .param("id", p.id.as_str())
            .param("sub", p.sub.as_str())
            .param("space", p.space.as_str())
            .param("tenant", p.tenant.as_str()),
        )
        .await
        .unwrap();
    p
}

/// Seeds an organization space (new tenant) where each `(person, role)` is a member.
pub async fn org_space(graph: &neo4rs::Graph, members: &[(&Person, &str)]) -> (String, String) {
    let (space, tenant) = (unique("orgspace"), unique("orgtenant"));
    graph
        .run(
            neo4rs::query("CREATE (:Space {id: $space, tenant_id: $tenant, owner_id: 'org', owner_type: 'organization'})")
                .param("space", space.as_str())
                .param("tenant", tenant.as_str()),
        )
        .await
        .unwrap();
    for (p, role) in members {
        graph
            .run(
                neo4rs::query("MATCH (u:User {id: $id}), (s:Space {id: $space}) CREATE (u)-[:MEMBER_OF {role: $role}]->(s)")
                    .param("id", p.id.as_str())
                    .param("space", space.as_str())
                    .param("role", *role),
            )
            .await
            .unwrap();
    }
    (space, tenant)
}

/// A raw Neo4j handle for seeding and inspecting.
pub fn graph() -> neo4rs::Graph {
    let config = neo4rs::ConfigBuilder::default()
        .uri(stack().get("NEO4J_URI"))
        .user("neo4j")
        .password("x")
        .build()
        .unwrap();
    neo4rs::Graph::connect(config).unwrap()
}

/// A client call in a space.
pub struct Call<'a> {
    /// The server.
    pub api: &'a ApiServer,
    /// Bearer token.
    pub token: String,
    /// personal|organization.
    pub space_type: &'a str,
    /// Space id.
    pub space_id: String,
}

impl Call<'_> {
    /// Sends `method path` with an optional JSON body; the whole response.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.api.base))
            .bearer_auth(&self.token)
            .header("x-space-type", self.space_type)
            .header("x-space-id", &self.space_id);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// Sends `method path` with an optional JSON body; returns (status, JSON body or Null).
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let res = self.request(method, path, body).await;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == 500 {
            // The body says nothing on purpose; the cause is in the service's log (captured in
            // this process), printed with the test's output should the test fail.
            let id = body["request_id"].as_str();
            for line in crate::support::logs::text().lines() {
                if id.is_some_and(|id| line.contains(id))
                    || line.contains("internal error")
                    || line.contains("panicked")
                {
                    eprintln!("service log: {line}");
                }
            }
        }
        (status, body)
    }
}

/// The call `p` makes in their personal space.
pub fn personal<'a>(api: &'a ApiServer, p: &Person) -> Call<'a> {
    Call {
        api,
        token: token(&p.sub),
        space_type: "personal",
        space_id: p.space.clone(),
    }
}

/// Polls the record until its status is `want` (30 s).
pub async fn wait_status(call: &Call<'_>, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = call
            .send("GET", &format!("/api/v1/databases/{id}"), None)
            .await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "status never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
