//! Proof that every part of the stack is real and reachable the way the product will use it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use sqlx::Connection;

use crate::support::dbhub::DbHub;
use crate::support::kube::{TestNamespace, nobody};
use crate::support::{stack, unique};

#[tokio::test]
async fn kube_configmap_create_then_read_round_trips() {
    let ns = TestNamespace::new("smoke").await;
    let api: Api<ConfigMap> = ns.api();
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "smoke" }, "data": { "hello": "world" }
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create ConfigMap");
    let got = api.get("smoke").await.expect("read ConfigMap");
    assert_eq!(got.data.unwrap()["hello"], "world");
    assert!(got.metadata.uid.is_some(), "the apiserver assigned a uid");
}

#[tokio::test]
async fn kube_user_without_role_is_denied_by_rbac() {
    let ns = TestNamespace::new("rbac").await;
    let api: Api<ConfigMap> = Api::namespaced(nobody().await, &ns.name);
    let err = api
        .list(&Default::default())
        .await
        .expect_err("RBAC must deny");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("stack-nobody"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 403 from the apiserver, got {other:?}"),
    }
}

#[tokio::test]
async fn neo4j_return_one_and_write_read_round_trip() {
    let config = neo4rs::ConfigBuilder::default()
        .uri(stack().get("NEO4J_URI"))
        .user("neo4j")
        .password("unused")
        .build()
        .unwrap();
    let graph = neo4rs::Graph::connect(config).unwrap();
    let mut rows = graph
        .execute(neo4rs::query("RETURN 1 AS one"))
        .await
        .unwrap();
    let one: i64 = rows.next().await.unwrap().unwrap().get("one").unwrap();
    assert_eq!(one, 1);

    let id = unique("smoke");
    graph
        .run(
            neo4rs::query("CREATE (:SmokeTest {id: $id, note: $note})")
                .param("id", id.as_str())
                .param("note", "hi"),
        )
        .await
        .unwrap();
    let mut rows = graph
        .execute(
            neo4rs::query("MATCH (n:SmokeTest {id: $id}) RETURN n.note AS note")
                .param("id", id.as_str()),
        )
        .await
        .unwrap();
    let note: String = rows
        .next()
        .await
        .unwrap()
        .expect("node written")
        .get("note")
        .unwrap();
    assert_eq!(note, "hi");
    graph
        .run(neo4rs::query("MATCH (n:SmokeTest {id: $id}) DELETE n").param("id", id.as_str()))
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_select_version_as_user_with_hostile_password() {
    let s = stack();
    let opts = sqlx::postgres::PgConnectOptions::new()
        .host(s.get("STACK_PG_HOST"))
        .port(s.get("STACK_PG_PORT").parse().unwrap())
        .username(s.get("STACK_DB_USER"))
        .password(s.hostile_password())
        .database(s.get("STACK_DB_NAME"));
    let mut conn = sqlx::PgConnection::connect_with(&opts)
        .await
        .expect("login with the hostile password");
    let (version,): (String,) = sqlx::query_as("SELECT version()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(version.starts_with("PostgreSQL"), "{version}");

    // The percent-encoded URL in the env file decodes to the same password.
    let mut conn = sqlx::PgConnection::connect(s.get("STACK_PG_URL"))
        .await
        .expect("login by URL");
    let (user,): (String,) = sqlx::query_as("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(user, s.get("STACK_DB_USER"));
}

#[tokio::test]
async fn mariadb_select_version_as_user_with_hostile_password() {
    let s = stack();
    let opts = sqlx::mysql::MySqlConnectOptions::new()
        .host(s.get("STACK_MARIADB_HOST"))
        .port(s.get("STACK_MARIADB_PORT").parse().unwrap())
        .username(s.get("STACK_DB_USER"))
        .password(s.hostile_password())
        .database(s.get("STACK_DB_NAME"));
    let mut conn = sqlx::MySqlConnection::connect_with(&opts)
        .await
        .expect("login with the hostile password");
    let (version,): (String,) = sqlx::query_as("SELECT version()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(version.contains("MariaDB"), "{version}");

    let mut conn = sqlx::MySqlConnection::connect(s.get("STACK_MARIADB_URL"))
        .await
        .expect("login by URL");
    let (db,): (String,) = sqlx::query_as("SELECT database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(db, s.get("STACK_DB_NAME"));
}

/// DBHub from a TOML file whose DSN comes from the environment (as the operator will do it),
/// queried through rmcp over Streamable HTTP with a bearer token.
#[tokio::test]
async fn dbhub_lists_tools_and_executes_sql_with_bearer_token() {
    let s = stack();
    let dir = std::env::temp_dir().join(unique("dbhub-smoke"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = toml::toml! {
        [[sources]]
        id = "smoke_pg"
        dsn = "${SMOKE_PG_DSN}"
        lazy = true
        connection_timeout = 10
        query_timeout = 10
    };
    let path = dir.join("dbhub.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let token = unique("token");
    let env = BTreeMap::from([
        (
            "SMOKE_PG_DSN".to_string(),
            format!("{}?sslmode=disable", s.get("STACK_PG_URL")),
        ),
        ("DBHUB_AUTH_TOKEN".to_string(), token.clone()),
    ]);
    let hub = DbHub::start(&path, &env).await;

    // Without the token the MCP endpoint refuses.
    let plain = reqwest::Client::new()
        .post(hub.url())
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 401);

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(hub.url()).auth_header(token),
    );
    let client = ().serve(transport).await.expect("MCP initialize");
    let tools = client.list_tools(None).await.expect("tools/list");
    let names: Vec<&str> = tools.tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"execute_sql"), "{names:?}");
    assert!(names.contains(&"search_objects"), "{names:?}");

    let args = serde_json::json!({ "sql": "SELECT 1 AS one, current_user AS who" });
    let result = client
        .call_tool(
            CallToolRequestParams::new("execute_sql")
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .expect("tools/call execute_sql");
    assert_ne!(
        result.is_error,
        Some(true),
        "{result:?}\n{}",
        hub.log_text()
    );
    let text = result.content[0]
        .as_text()
        .expect("text content")
        .text
        .clone();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let row = &body["data"]["statements"][0]["rows"][0];
    assert_eq!(row["one"], 1, "{body}");
    assert_eq!(row["who"], s.get("STACK_DB_USER"), "{body}");
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(dir);
}
