//! The DBHubInstance reconciler against the real apiserver and node: the DBHub pods its
//! Deployment creates run for real, and the tests speak MCP to them through their Service.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dbhub_operator::controller::dbhubinstance::{CONFIG_KEY, HASH_ANNOTATION, TOKEN_KEY};
use dbhub_operator::crd::{DBHubInstance, Database, DatabasePhase, InstancePhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::support::dbhub::{free_port, serve_instance};
use crate::support::kube::TestNamespace;
use crate::support::operator::{
    app_secret, assert_no_leak, labelled_database, pg_spec, secret, start, wait_phase,
};
use crate::support::{logs, stack, unique};

const WAIT: Duration = Duration::from_secs(30);

/// Three Connected Databases: pg {env: prod, team: a}, maria {env: prod, team: b}, lite {env: dev}.
async fn three_databases(ns: &TestNamespace) -> std::path::PathBuf {
    let s = stack();
    app_secret(&ns.api(), "creds").await;
    let dir = std::env::temp_dir().join(unique("lite"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lite.db");
    std::fs::File::create(&file).unwrap();
    let api: Api<Database> = ns.api();
    let port = |k: &str| s.get(k).parse::<i32>().unwrap();
    labelled_database(
        &api,
        "pg",
        json!({"env": "prod", "team": "a"}),
        pg_spec("creds"),
    )
    .await;
    labelled_database(
        &api,
        "maria",
        json!({"env": "prod", "team": "b"}),
        json!({"type": "mariadb", "host": s.get("STACK_MARIADB_HOST"),
        "port": port("STACK_MARIADB_PORT"), "database": s.get("STACK_DB_NAME"), "sslMode": "disable",
        "readonly": false, "credentialsRef": {"name": "creds"}}),
    )
    .await;
    labelled_database(
        &api,
        "lite",
        json!({"env": "dev"}),
        json!({"type": "sqlite", "database": file.to_str().unwrap()}),
    )
    .await;
    for n in ["pg", "maria", "lite"] {
        wait_phase(&api, n, DatabasePhase::Connected, WAIT).await;
    }
    dir
}

async fn instance(ns: &TestNamespace, name: &str, spec: Value) -> DBHubInstance {
    let obj: DBHubInstance = serde_json::from_value(json!({
        "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "DBHubInstance", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    ns.api::<DBHubInstance>()
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

/// Source ids in the instance's ConfigMap, once it exists and satisfies `done`.
async fn wait_config(
    ns: &TestNamespace,
    inst: &str,
    done: impl Fn(&toml::Value) -> bool,
) -> toml::Value {
    let api: Api<ConfigMap> = ns.api();
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(cm) = api.get_opt(&format!("{inst}-config")).await.unwrap() {
            let text = cm
                .data
                .unwrap_or_default()
                .remove(CONFIG_KEY)
                .unwrap_or_default();
            let parsed: toml::Value =
                toml::from_str(&text).expect("the ConfigMap holds valid TOML");
            if done(&parsed) {
                return parsed;
            }
            last = Some(text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{inst}-config never satisfied the condition; last:\n{last:?}");
}

/// Every source id in the configuration.
fn all_source_ids(cfg: &toml::Value) -> BTreeSet<String> {
    cfg.get("sources")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The read-only sources: one per Database in the configuration (writable Databases add a
/// `<id>_write` source beside theirs).
fn source_ids(cfg: &toml::Value) -> BTreeSet<String> {
    all_source_ids(cfg)
        .into_iter()
        .filter(|id| !id.ends_with("_write"))
        .collect()
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn instance_selects_by_labels_names_both_and_nothing() {
    let ns = TestNamespace::new("hubsel").await;
    let _ctl = start(&ns.name).await;
    let dir = three_databases(&ns).await;
    let cases = [
        (
            "by-labels",
            json!({"databaseSelector": {"matchLabels": {"env": "prod"}}}),
            ids(&["maria", "pg"]),
        ),
        (
            "by-names",
            json!({"databaseSelector": {"matchNames": ["lite", "pg"]}}),
            ids(&["lite", "pg"]),
        ),
        (
            "by-both",
            json!({"databaseSelector": {"matchLabels": {"env": "prod"}, "matchNames": ["pg", "lite"]}}),
            ids(&["pg"]),
        ),
        ("all", json!({}), ids(&["lite", "maria", "pg"])),
    ];
    for (name, spec, _) in &cases {
        instance(&ns, name, spec.clone()).await;
    }
    for (name, _, want) in &cases {
        let cfg = wait_config(&ns, name, |c| &source_ids(c) == want).await;
        assert_eq!(&source_ids(&cfg), want, "{name}");
        // maria is writable: a second, writable source beside its read-only one.
        assert_eq!(
            all_source_ids(&cfg).contains("maria_write"),
            want.contains("maria"),
            "{name}"
        );
        // Status is written after every object is applied.
        wait_status(&ns, name, |st| {
            st.connected_databases
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                == *want
        })
        .await;
        let inst = ns.api::<DBHubInstance>().get(name).await.unwrap();
        let uid = inst.metadata.uid.clone().unwrap();
        for (kind, obj_name, owners) in [
            (
                "ConfigMap",
                format!("{name}-config"),
                ns.api::<ConfigMap>()
                    .get(&format!("{name}-config"))
                    .await
                    .unwrap()
                    .metadata
                    .owner_references,
            ),
            (
                "Secret",
                format!("{name}-dsn"),
                ns.api::<Secret>()
                    .get(&format!("{name}-dsn"))
                    .await
                    .unwrap()
                    .metadata
                    .owner_references,
            ),
            (
                "Secret",
                format!("{name}-token"),
                ns.api::<Secret>()
                    .get(&format!("{name}-token"))
                    .await
                    .unwrap()
                    .metadata
                    .owner_references,
            ),
            (
                "Service",
                name.to_string(),
                ns.api::<Service>()
                    .get(name)
                    .await
                    .unwrap()
                    .metadata
                    .owner_references,
            ),
            (
                "Deployment",
                name.to_string(),
                ns.api::<Deployment>()
                    .get(name)
                    .await
                    .unwrap()
                    .metadata
                    .owner_references,
            ),
        ] {
            let o = owners.unwrap_or_default();
            assert_eq!(o.len(), 1, "{kind} {obj_name}");
            assert_eq!(
                (
                    o[0].kind.as_str(),
                    o[0].uid.as_str(),
                    o[0].controller,
                    o[0].block_owner_deletion
                ),
                ("DBHubInstance", uid.as_str(), Some(true), Some(true)),
                "{kind} {obj_name}"
            );
        }
    }
    // Status of the all-selecting instance.
    let deadline = Instant::now() + WAIT;
    loop {
        let st = ns
            .api::<DBHubInstance>()
            .get("all")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if st.connected_databases.len() == 3 {
            assert_eq!(
                st.endpoint.as_deref(),
                Some(format!("http://all.{}.svc.cluster.local:8080/mcp", ns.name).as_str())
            );
            assert_eq!(
                st.selector.as_deref(),
                Some("app.kubernetes.io/instance=all,app.kubernetes.io/name=dbhub")
            );
            break;
        }
        assert!(Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn instance_with_nothing_selected_scales_to_zero_and_stays_pending() {
    let ns = TestNamespace::new("hubempty").await;
    let _ctl = start(&ns.name).await;
    instance(
        &ns,
        "empty",
        json!({"replicas": 2, "databaseSelector": {"matchLabels": {"env": "none"}}}),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let inst = ns.api::<DBHubInstance>().get("empty").await.unwrap();
        if let Some(st) = inst.status {
            assert_eq!(st.phase, Some(InstancePhase::Pending));
            let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
            assert_eq!(ready.reason, "NoDatabases");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dep = ns.api::<Deployment>().get("empty").await.unwrap();
    assert_eq!(dep.spec.unwrap().replicas, Some(0));
}

async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    tool: &str,
    sql: &str,
) -> rmcp::model::CallToolResult {
    let args = json!({"sql": sql}).as_object().unwrap().clone();
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .expect("tools/call")
}

#[tokio::test]
async fn instance_objects_start_a_working_dbhub() {
    let ns = TestNamespace::new("hubpod").await;
    let _ctl = start(&ns.name).await;
    let dir = three_databases(&ns).await;
    instance(
        &ns,
        "hub",
        json!({"defaultPolicy": {"readonly": true, "maxRows": 100}}),
    )
    .await;
    wait_config(&ns, "hub", |c| all_source_ids(c).len() == 4).await;
    let dep = existing_deployment(&ns, "hub").await;
    let container = &dep.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        &container.args.as_ref().unwrap()[..2],
        ["--transport", "http"]
    );
    let hub = serve_instance(&ns, "hub", free_port()).await;
    let token = hub.token.clone();
    let stored = ns
        .api::<Secret>()
        .get("hub-token")
        .await
        .unwrap()
        .data
        .unwrap()[TOKEN_KEY]
        .0
        .clone();
    assert_eq!(token.as_bytes(), stored.as_slice());

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(hub.url()).auth_header(token.clone()),
    );
    let client = ().serve(transport).await.expect("MCP initialize");
    let tools: BTreeSet<String> = client
        .list_tools(None)
        .await
        .unwrap()
        .tools
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for id in ["pg", "maria", "lite"] {
        assert!(
            tools.contains(&format!("execute_sql_{id}"))
                && tools.contains(&format!("search_objects_{id}")),
            "{tools:?}"
        );
    }
    let rows = call(
        &client,
        "execute_sql_pg",
        "SELECT current_user AS who, 2 AS two",
    )
    .await;
    assert_ne!(
        rows.is_error,
        Some(true),
        "{rows:?}\n{}",
        hub.log_text().await
    );
    let body: Value = serde_json::from_str(&rows.content[0].as_text().unwrap().text).unwrap();
    assert_eq!(
        body["data"]["statements"][0]["rows"][0]["who"],
        stack().get("STACK_DB_USER")
    );

    let refused = call(&client, "execute_sql_pg", "INSERT INTO nowhere VALUES (1)").await;
    assert_eq!(refused.is_error, Some(true));
    let text = &refused.content[0].as_text().unwrap().text;
    assert!(text.contains("READONLY_VIOLATION"), "{text}");

    // maria is writable: its read-only source still refuses writes, its writable source runs them.
    assert!(tools.contains("execute_sql_maria_write") && !tools.contains("execute_sql_pg_write"));
    assert!(!tools.contains("search_objects_maria_write"), "{tools:?}");
    let table = crate::support::unique("w").replace('-', "_");
    let refused = call(
        &client,
        "execute_sql_maria",
        &format!("CREATE TABLE {table} (a int)"),
    )
    .await;
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    let made = call(
        &client,
        "execute_sql_maria_write",
        &format!("CREATE TABLE {table} (a int)"),
    )
    .await;
    assert_ne!(made.is_error, Some(true), "{made:?}");
    let dropped = call(
        &client,
        "execute_sql_maria_write",
        &format!("DROP TABLE {table}"),
    )
    .await;
    assert_ne!(dropped.is_error, Some(true), "{dropped:?}");
    let _ = client.cancel().await;

    // The NetworkPolicy fences the pods: ingress only from the service's pods on DBHub's port,
    // egress to anything but cloud metadata.
    let np = ns
        .api::<k8s_openapi::api::networking::v1::NetworkPolicy>()
        .get("hub")
        .await
        .expect("the instance's NetworkPolicy");
    let spec = serde_json::to_value(np.spec.unwrap()).unwrap();
    assert_eq!(
        spec["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "hub"
    );
    assert_eq!(
        spec["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "aether-dbhub"
    );
    assert_eq!(spec["ingress"][0]["ports"][0]["port"], 8080);
    let except = spec["egress"][0]["to"].to_string();
    assert!(
        except.contains("169.254.0.0/16") && except.contains("fd00:ec2::254/128"),
        "{except}"
    );

    let http = reqwest::Client::new();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let post = |host: &str, token: Option<&str>| {
        let mut r = http
            .post(hub.url())
            .header("accept", "application/json, text/event-stream")
            .header("host", host)
            .json(&list);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(
        post("127.0.0.1", None).await.unwrap().status(),
        401,
        "no token"
    );
    let svc = format!("hub.{}.svc.cluster.local", ns.name);
    assert_eq!(
        post(&svc, Some(&token)).await.unwrap().status(),
        200,
        "the Service's DNS name is allowed"
    );
    assert_eq!(
        post("evil.example", Some(&token)).await.unwrap().status(),
        403,
        "other hosts are refused"
    );
    assert_no_leak(&ns).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits until the instance's status satisfies `done`.
async fn wait_status(
    ns: &TestNamespace,
    inst: &str,
    done: impl Fn(&dbhub_operator::crd::DBHubInstanceStatus) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let st = ns
            .api::<DBHubInstance>()
            .get(inst)
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if done(&st) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{inst} status never matched: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The instance's Deployment, once it exists (the reconciler writes the ConfigMap, Secrets,
/// Service and NetworkPolicy before it).
async fn existing_deployment(ns: &TestNamespace, inst: &str) -> Deployment {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(d) = ns.api::<Deployment>().get_opt(inst).await.unwrap() {
            return d;
        }
        assert!(Instant::now() < deadline, "no Deployment {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pod_hash(ns: &TestNamespace, inst: &str) -> String {
    let dep = ns.api::<Deployment>().get(inst).await.unwrap();
    dep.spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[HASH_ANNOTATION]
        .clone()
}

fn exec_readonly(cfg: &toml::Value, id: &str) -> Option<bool> {
    cfg["tools"].as_array()?.iter().find(|t| t["name"].as_str() == Some("execute_sql") && t["source"].as_str() == Some(id))?["readonly"].as_bool()
}

#[tokio::test]
async fn instance_follows_database_changes() {
    let ns = TestNamespace::new("hubchg").await;
    let _ctl = start(&ns.name).await;
    let dir = three_databases(&ns).await;
    instance(
        &ns,
        "prod",
        json!({"databaseSelector": {"matchLabels": {"env": "prod"}}}),
    )
    .await;
    let cfg = wait_config(&ns, "prod", |c| source_ids(c) == ids(&["maria", "pg"])).await;
    assert_eq!(exec_readonly(&cfg, "pg"), Some(true));
    wait_status(&ns, "prod", |st| st.connected_databases.len() == 2).await;
    let h0 = pod_hash(&ns, "prod").await;

    // Added → rendered, pods roll.
    let dbs: Api<Database> = ns.api();
    let mut spec = serde_json::to_value(&dbs.get("pg").await.unwrap().spec).unwrap();
    labelled_database(&dbs, "pg-two", json!({"env": "prod"}), spec.clone()).await;
    wait_config(&ns, "prod", |c| {
        source_ids(c) == ids(&["maria", "pg", "pg_two"])
    })
    .await;
    wait_status(&ns, "prod", |st| st.connected_databases.len() == 3).await;
    assert_ne!(
        pod_hash(&ns, "prod").await,
        h0,
        "pod template hash changes with the config"
    );

    // Deleted → gone.
    dbs.delete("pg-two", &DeleteParams::default())
        .await
        .unwrap();
    wait_config(&ns, "prod", |c| source_ids(c) == ids(&["maria", "pg"])).await;

    // readonly flipped → a writable source appears beside the read-only one.
    dbs.patch(
        "pg",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"readonly": false}})),
    )
    .await
    .unwrap();
    let cfg = wait_config(&ns, "prod", |c| exec_readonly(c, "pg_write") == Some(false)).await;
    assert_eq!(
        exec_readonly(&cfg, "pg"),
        Some(true),
        "reads stay read-only"
    );

    // A Failed Database is left out and named.
    secret(&ns.api(), "wrong", stack().get("STACK_DB_USER"), "wrong").await;
    spec["credentialsRef"] = json!({"name": "wrong"});
    labelled_database(&dbs, "broken", json!({"env": "prod"}), spec).await;
    wait_phase(&dbs, "broken", DatabasePhase::Failed, WAIT).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let st = ns
            .api::<DBHubInstance>()
            .get("prod")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        let cond = st.conditions.iter().find(|c| c.type_ == "DatabasesServed");
        if let Some(c) = cond.filter(|c| c.message.contains("broken (Failed)")) {
            assert_eq!(c.status, "False");
            break;
        }
        assert!(Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cfg = wait_config(&ns, "prod", |_| true).await;
    assert_eq!(source_ids(&cfg), ids(&["maria", "pg"]));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn instance_scale_and_status_follow_the_deployment() {
    let ns = TestNamespace::new("hubscale").await;
    let _ctl = start(&ns.name).await;
    let dir = three_databases(&ns).await;
    let api: Api<DBHubInstance> = ns.api();
    instance(&ns, "hub", json!({})).await;
    wait_config(&ns, "hub", |c| source_ids(c).len() == 3).await;

    // As `kubectl scale` does: a patch of the scale subresource (a get-then-replace would race
    // the reconciler's status writes, which change the object's resourceVersion).
    api.patch_scale(
        "hub",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get_scale("hub").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );
    let deps: Api<Deployment> = ns.api();
    let deadline = Instant::now() + WAIT;
    // The reconciler writes the ConfigMap before the Deployment: it may not exist yet.
    while deps
        .get_opt("hub")
        .await
        .unwrap()
        .and_then(|d| d.spec?.replicas)
        != Some(2)
    {
        assert!(Instant::now() < deadline, "Deployment not scaled to 2");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The node's kubelet runs the two DBHub pods; the Deployment controller reports them and
    // the instance's status follows.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let st = api.get("hub").await.unwrap().status.unwrap_or_default();
        if st.phase == Some(InstancePhase::Running) && st.available_replicas == 2 {
            assert_eq!(st.replicas, 2);
            let dep = deps.get("hub").await.unwrap().status.unwrap_or_default();
            assert_eq!(dep.available_replicas, Some(2), "{dep:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn reconciles_logged(ns: &str) -> usize {
    logs::text()
        .lines()
        .filter(|l| {
            l.contains("dbhubinstance reconciled")
                && l.contains(&format!("\"instance.namespace\":\"{ns}\""))
        })
        .count()
}

#[tokio::test]
async fn instance_unchanged_reconciles_write_nothing() {
    let ns = TestNamespace::new("hubsteady").await;
    let _ctl = start(&ns.name).await;
    let dir = three_databases(&ns).await;
    let api: Api<DBHubInstance> = ns.api();
    instance(&ns, "hub", json!({})).await;
    wait_config(&ns, "hub", |c| source_ids(c).len() == 3).await;
    // Let the pod come up (the Deployment's and the instance's status change until then), then
    // the reconciler settle (status written, owned-object events drained).
    let deadline = Instant::now() + Duration::from_secs(180);
    while api
        .get("hub")
        .await
        .unwrap()
        .status
        .unwrap_or_default()
        .available_replicas
        != 1
    {
        assert!(
            Instant::now() < deadline,
            "the DBHub pod never became available"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let versions = || async {
        let cm = ns
            .api::<ConfigMap>()
            .get("hub-config")
            .await
            .unwrap()
            .metadata
            .resource_version;
        let dsn = ns
            .api::<Secret>()
            .get("hub-dsn")
            .await
            .unwrap()
            .metadata
            .resource_version;
        let tok = ns
            .api::<Secret>()
            .get("hub-token")
            .await
            .unwrap()
            .metadata
            .resource_version;
        let svc = ns
            .api::<Service>()
            .get("hub")
            .await
            .unwrap()
            .metadata
            .resource_version;
        let dep = ns
            .api::<Deployment>()
            .get("hub")
            .await
            .unwrap()
            .metadata
            .resource_version;
        let status = api.get("hub").await.unwrap().status;
        (
            cm,
            dsn,
            tok,
            svc,
            dep,
            serde_json::to_string(&status).unwrap(),
        )
    };
    let before = versions().await;
    for i in 0..10 {
        let seen = reconciles_logged(&ns.name);
        let touch = json!({"metadata": {"annotations": {"test/touch": i.to_string()}}});
        api.patch("hub", &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
        let deadline = Instant::now() + WAIT;
        while reconciles_logged(&ns.name) <= seen {
            assert!(Instant::now() < deadline, "no reconcile after touch {i}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        versions().await,
        before,
        "ten reconciles of an unchanged instance wrote nothing"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The DSN values of the instance's `<name>-dsn` Secret.
async fn dsn_values(ns: &TestNamespace, name: &str) -> Vec<String> {
    ns.api::<Secret>()
        .get_opt(&format!("{name}-dsn"))
        .await
        .unwrap()
        .and_then(|s| s.data)
        .unwrap_or_default()
        .into_values()
        .map(|v| String::from_utf8(v.0).unwrap())
        .collect()
}

/// The reconciler keeps Secrets' data between passes (read again only when the Secret's
/// resourceVersion changes): a rotated password must still reach the instance's DSNs, and the
/// old one must leave them.
#[tokio::test]
async fn instance_follows_a_rotated_credentials_secret() {
    use sqlx::Connection;
    let ns = TestNamespace::new("hubrot").await;
    let _ctl = start(&ns.name).await;
    let role = format!("rot_{}", unique("r").replace('-', "_"));
    let (old, new) = ("OldPassw0rd1", "NewPassw0rd2");
    let mut admin = sqlx::PgConnection::connect(&crate::support::pg_admin_db_url())
        .await
        .unwrap();
    // The role name is ours (a uuid's hex digits), the passwords are constants.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{old}'"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    secret(&ns.api(), "rot", &role, old).await;
    let dbs: Api<Database> = ns.api();
    labelled_database(&dbs, "pg", json!({"env": "prod"}), pg_spec("rot")).await;
    wait_phase(&dbs, "pg", DatabasePhase::Connected, WAIT).await;
    instance(
        &ns,
        "prod",
        json!({"databaseSelector": {"matchLabels": {"env": "prod"}}}),
    )
    .await;
    wait_config(&ns, "prod", |c| source_ids(c) == ids(&["pg"])).await;
    let before = dsn_values(&ns, "prod").await;
    assert!(
        before.iter().any(|d| d.contains(old)),
        "the DSN holds the password"
    );

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE {role} PASSWORD '{new}'"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    ns.api::<Secret>()
        .patch(
            "rot",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": new}})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = dsn_values(&ns, "prod").await;
        if now.iter().any(|d| d.contains(new)) && !now.iter().any(|d| d.contains(old)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated password never reached the DSNs"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_phase(&dbs, "pg", DatabasePhase::Connected, WAIT).await;
    drop(ns);
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut admin)
        .await;
}

/// A Database relabelled so that its instance no longer selects it leaves that instance's
/// configuration at once, on a quiet instance (rolled out, nothing else changing) that nothing
/// else would trigger for its 10-minute requeue.
#[tokio::test]
async fn a_database_relabelled_away_leaves_its_instance() {
    let ns = TestNamespace::new("hubrel").await;
    let _ctl = start(&ns.name).await;
    app_secret(&ns.api(), "creds").await;
    let dbs: Api<Database> = ns.api();
    for name in ["pg", "pg-two"] {
        labelled_database(&dbs, name, json!({"env": "a"}), pg_spec("creds")).await;
        wait_phase(&dbs, name, DatabasePhase::Connected, WAIT).await;
    }
    instance(
        &ns,
        "a",
        json!({"databaseSelector": {"matchLabels": {"env": "a"}}}),
    )
    .await;
    wait_config(&ns, "a", |c| source_ids(c) == ids(&["pg", "pg_two"])).await;
    // Quiet: the pod is up and the Deployment's status has stopped changing.
    let hub = serve_instance(&ns, "a", free_port()).await;
    wait_status(&ns, "a", |st| {
        st.phase == Some(InstancePhase::Running) && st.available_replicas == 1
    })
    .await;
    drop(hub);
    tokio::time::sleep(Duration::from_secs(3)).await;

    dbs.patch(
        "pg-two",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"env": "b"}}})),
    )
    .await
    .unwrap();
    wait_config(&ns, "a", |c| source_ids(c) == ids(&["pg"])).await;
    wait_status(&ns, "a", |st| st.connected_databases == ["pg"]).await;
}
