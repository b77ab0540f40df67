//! On the stack's real Kubernetes node (kubelet, controller-manager, scheduler, kube-proxy,
//! CoreDNS): the seed's phase 7 as a user runs it — CRDs with kubectl, the chart with helm and the
//! locally built image, the samples applied — then the service in its pods answering the REST API
//! through its Service, DBHub under the Deployment the reconciler generates, garbage collection,
//! namespaces finishing deleting, the network rule, and the stack's image against the Dockerfile.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::support::api::{Person, aether_schema, graph};
use crate::support::node::{
    FixedNamespace, Issuer, admin_command, client_pod, exec, get_json, helm, kubectl, kubectl_in,
    mcp_from_pod, service_image, wait_for, wait_namespace_gone,
};
use crate::support::{stack, unique};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SERVERS: &str = "tas-mcp-servers";
const SHARED: &str = "tas-shared";

/// The seed's PostgreSQL (`postgres-shared.tas-shared.svc.cluster.local:5432`, database
/// `tas_shared`) for pods: a selector-less Service whose EndpointSlice is the stack's PostgreSQL
/// on the bridge address, a reader login, the Secret the sample names, annotated so that
/// Databases in tas-mcp-servers may use it.
async fn seed_postgres(password: &str) {
    let admin = stack().get("STACK_PG_ADMIN_URL");
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
        .await
        .unwrap();
    for sql in [
        "DROP DATABASE IF EXISTS tas_shared WITH (FORCE)".to_string(),
        "DROP ROLE IF EXISTS tas_reader".to_string(),
        format!("CREATE ROLE tas_reader LOGIN PASSWORD '{password}'"),
        "CREATE DATABASE tas_shared OWNER tas_reader".to_string(),
    ] {
        // (the password is generated here: letters and digits only)
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    let url = format!("{}/tas_shared", admin.rsplit_once('/').unwrap().0);
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE orders (id int PRIMARY KEY, item text)",
        "INSERT INTO orders VALUES (1, 'anvil'), (2, 'rocket'), (3, 'magnet')",
        "ALTER TABLE orders OWNER TO tas_reader",
    ] {
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
    let port: i32 = stack().get("STACK_PG_PORT").parse().unwrap();
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "postgres-shared-secret", "namespace": SHARED,
                      "annotations": {"dbhub.tas.io/allowed-namespaces": SERVERS}},
         "stringData": {"username": "tas_reader", "password": password}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "postgres-shared", "namespace": SHARED},
         "spec": {"ports": [{"name": "pg", "port": 5432, "targetPort": port, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "postgres-shared-host", "namespace": SHARED,
                      "labels": {"kubernetes.io/service-name": "postgres-shared"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [stack().get("STACK_BRIDGE_IP")]}],
         "ports": [{"name": "pg", "port": port, "protocol": "TCP"}]},
    ]});
    kubectl_in(&["apply", "-f", "-"], Some(&objects.to_string()))
        .await
        .unwrap();
}

/// `kubectl get <kind> <name> -n tas-mcp-servers` until `ok(object)`.
async fn wait_object(
    kind: &str,
    name: &str,
    secs: u64,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(&format!("{kind}/{name}: {what}"), secs, || async {
        match get_json(&["-n", SERVERS, kind, name]).await {
            Some(o) if ok(&o) => Ok(o),
            Some(o) => Err(o["status"].to_string()),
            None => Err("not found".into()),
        }
    })
    .await
}

/// The pods of DBHubInstance `inst` that are Running and Ready.
async fn ready_pods(inst: &str) -> Vec<Value> {
    let pods = get_json(&[
        "-n",
        SERVERS,
        "pods",
        "-l",
        &format!("app.kubernetes.io/instance={inst},app.kubernetes.io/name=dbhub"),
    ])
    .await
    .unwrap_or_default();
    pods["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null()
                && p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .collect()
}

async fn token_of(client: &kube::Client, inst: &str) -> String {
    let s = kube::Api::<Secret>::namespaced(client.clone(), SERVERS)
        .get(&format!("{inst}-token"))
        .await
        .unwrap();
    String::from_utf8(s.data.unwrap()["token"].0.clone()).unwrap()
}

/// Phase 7 of the seed plan, then the service's own REST round trip, on the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_phase_7_and_the_service_in_pods() {
    let image = service_image();
    let (repo, tag) = image.rsplit_once(':').unwrap();
    let issuer = Issuer::start().await;
    let shared = FixedNamespace::fresh(SHARED).await;
    let servers = FixedNamespace::fresh(SERVERS).await;
    let pg_password = unique("pw").replace('-', "");
    seed_postgres(&pg_password).await;
    let client = crate::support::kube::admin().await;

    // 7.1 CRDs, as the seed says; 7.2 the operator: the chart with the stack's image, two
    // replicas (leader election), reconciling tas-mcp-servers, DBHub endpoints from status.
    kubectl(&["apply", "-f", &format!("{ROOT}/operator/config/crd/bases/")])
        .await
        .unwrap();
    let release = unique("aether-dbhub");
    let release = &release[..release.len().min(40)];
    let sets = [
        format!("image.repository={repo}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".into(),
        "replicaCount=2".into(),
        format!("watchNamespace={SERVERS}"),
        format!("neo4j.uri={}", stack().get("NEO4J_URI")),
        format!("jwt.issuers={}", issuer.iss),
        format!("jwt.jwksUrl={}", issuer.jwks_url),
        "log.level=info".into(),
    ];
    let chart = format!("{ROOT}/operator/charts/aether-dbhub");
    let mut args = vec!["install", release, &chart];
    let owned: Vec<String> = sets.iter().map(|s| format!("--set={s}")).collect();
    args.extend(owned.iter().map(String::as_str));
    args.extend(["--namespace", SERVERS, "--wait", "--timeout", "180s"]);
    let installed = helm(&args).await;
    let _uninstall = Uninstall(release.to_string());
    if let Err(e) = installed {
        let pods = kubectl(&["-n", SERVERS, "get", "pods", "-o", "wide"])
            .await
            .unwrap_or_default();
        let logs = kubectl(&[
            "-n",
            SERVERS,
            "logs",
            &format!("deploy/{release}"),
            "--tail=40",
        ])
        .await
        .unwrap_or_else(|e| e);
        panic!("helm install: {e}\npods:\n{pods}\nlogs:\n{logs}");
    }
    // Both replicas run; one holds the Lease.
    let dep = get_json(&["-n", SERVERS, "deploy", release]).await.unwrap();
    assert_eq!(dep["status"]["readyReplicas"], 2, "{}", dep["status"]);
    wait_for("a leader", 60, || async {
        let lease = get_json(&["-n", SERVERS, "lease", "aether-dbhub-leader"]).await;
        match lease
            .as_ref()
            .and_then(|l| l["spec"]["holderIdentity"].as_str())
        {
            Some(h) if h.starts_with(release) => Ok(()),
            _ => Err(format!("{lease:?}")),
        }
    })
    .await;

    // 7.3 + 7.4 the samples, verbatim.
    kubectl(&[
        "apply",
        "-f",
        &format!("{ROOT}/operator/config/samples/database_postgres.yaml"),
        "-f",
        &format!("{ROOT}/operator/config/samples/dbhubinstance.yaml"),
    ])
    .await
    .unwrap();

    // 7.5 Connected, Running with one available replica from the real Deployment, the pod runs.
    wait_object("database", "tas-postgres", 90, "Connected", |o| {
        o["status"]["phase"] == "Connected"
    })
    .await;
    let inst = wait_object("dbhubinstance", "dbhub", 180, "Running, 1 available", |o| {
        o["status"]["phase"] == "Running" && o["status"]["availableReplicas"] == 1
    })
    .await;
    let deploy = get_json(&["-n", SERVERS, "deploy", "dbhub"]).await.unwrap();
    assert_eq!(
        deploy["status"]["availableReplicas"], 1,
        "{}",
        deploy["status"]
    );
    let pods = ready_pods("dbhub").await;
    assert_eq!(pods.len(), 1);
    let endpoint = inst["status"]["endpoint"].as_str().unwrap().to_string();
    assert_eq!(
        endpoint,
        format!("http://dbhub.{SERVERS}.svc.cluster.local:8080/mcp")
    );

    // DBHub under the generated Deployment: non-root, read-only root, /tmp writable.
    let pod = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let probe = "const fs=require('fs');let r;try{fs.writeFileSync('/x','1');r='writable'}catch(e){r=e.code}\
                 fs.writeFileSync('/tmp/p','1');console.log(JSON.stringify({uid:process.getuid(),root:r,tmp:'ok'}))";
    let seen: Value = serde_json::from_str(
        exec(SERVERS, &pod, &["node", "-e", probe])
            .await
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(seen, json!({"uid": 1000, "root": "EROFS", "tmp": "ok"}));

    // MCP from a pod through the Service DNS name: tools listed, SQL run.
    let token = token_of(&client, "dbhub").await;
    let caller = client_pod(
        SERVERS,
        stack().get("STACK_DBHUB_IMAGE"),
        json!({"app.kubernetes.io/name": "aether-dbhub"}),
    )
    .await;
    let out = mcp_from_pod(
        SERVERS,
        &caller,
        &endpoint,
        &token,
        "SELECT item FROM orders ORDER BY id",
    )
    .await
    .unwrap();
    assert!(out["tools"].as_array().unwrap().len() >= 2, "{out}");
    let text = out["result"].to_string();
    assert!(text.contains("anvil") && text.contains("magnet"), "{out}");
    // Read-only by the instance's default policy: a write is refused by DBHub.
    let write = mcp_from_pod(SERVERS, &caller, &endpoint, &token, "DELETE FROM orders").await;
    assert!(
        write
            .as_ref()
            .map_or(true, |v| v["result"]["isError"] == true),
        "{write:?}"
    );
    let admin = stack().get("STACK_PG_ADMIN_URL");
    let tas = format!("{}/tas_shared", admin.rsplit_once('/').unwrap().0);
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&tas)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 3, "the read-only instance let a DELETE through");
    // Without the token: refused.
    assert!(
        mcp_from_pod(SERVERS, &caller, &endpoint, "wrong", "SELECT 1")
            .await
            .is_err()
    );

    // 7.6 scaling with kubectl and the short name.
    kubectl(&["scale", "dbhub", "dbhub", "-n", SERVERS, "--replicas=2"])
        .await
        .unwrap();
    wait_object("dbhubinstance", "dbhub", 120, "2 available", |o| {
        o["status"]["availableReplicas"] == 2
    })
    .await;
    wait_for("two ready DBHub pods", 60, || async {
        let n = ready_pods("dbhub").await.len();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} ready"))
        }
    })
    .await;

    // 7.7 a new Database with the label: config regenerated, pods rolled, new source answers.
    let old_hash =
        deploy["spec"]["template"]["metadata"]["annotations"]["dbhub.tas.io/config-hash"].clone();
    let second = json!({"apiVersion": "dbhub.tas.io/v1alpha1", "kind": "Database",
        "metadata": {"name": "tas-postgres-replica", "namespace": SERVERS, "labels": {"environment": "production"}},
        "spec": {"type": "postgres", "host": format!("postgres-shared.{SHARED}.svc.cluster.local"), "port": 5432,
                 "database": "tas_shared", "sslMode": "disable",
                 "credentialsRef": {"name": "postgres-shared-secret", "namespace": SHARED,
                                    "userKey": "username", "passwordKey": "password"}}});
    kubectl_in(&["apply", "-f", "-"], Some(&second.to_string()))
        .await
        .unwrap();
    wait_object("dbhubinstance", "dbhub", 120, "two databases served", |o| {
        o["status"]["connectedDatabases"]
            .as_array()
            .is_some_and(|d| d.len() == 2)
    })
    .await;
    let cm = get_json(&["-n", SERVERS, "configmap", "dbhub-config"])
        .await
        .unwrap();
    assert!(
        cm["data"]["dbhub.toml"]
            .as_str()
            .unwrap()
            .contains("tas_postgres_replica"),
        "{cm}"
    );
    kubectl(&[
        "-n",
        SERVERS,
        "rollout",
        "status",
        "deploy/dbhub",
        "--timeout=180s",
    ])
    .await
    .unwrap();
    let rolled = get_json(&["-n", SERVERS, "deploy", "dbhub"]).await.unwrap();
    assert_ne!(
        rolled["spec"]["template"]["metadata"]["annotations"]["dbhub.tas.io/config-hash"],
        old_hash
    );
    let tools = wait_for("the new source's tool through the Service", 90, || async {
        let out = mcp_from_pod(SERVERS, &caller, &endpoint, &token, "SELECT 1").await?;
        let tools: Vec<String> = out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        if tools.iter().any(|t| t.contains("replica")) {
            Ok(tools)
        } else {
            Err(format!("{tools:?}"))
        }
    })
    .await;
    assert!(
        tools
            .iter()
            .any(|t| t.starts_with("execute_sql") && t.contains("replica")),
        "{tools:?}"
    );

    // The service's REST API through its Service: create → Connected → query → delete, the DBHub
    // endpoint taken from the per-space instance's status.endpoint (no override).
    let svc = get_json(&["-n", SERVERS, "service", release])
        .await
        .unwrap();
    let base = format!("http://{}:8080", svc["spec"]["clusterIP"].as_str().unwrap());
    let g = graph();
    aether_schema(&g).await;
    let person = crate::support::api::person(&g).await;
    let api = Rest {
        base,
        token: issuer.token(&person.sub),
        person: &person,
    };
    let s = stack();
    let body = json!({"name": unique("pod-pg"), "type": "postgresql", "host": s.get("STACK_BRIDGE_IP"),
        "port": s.get("STACK_PG_PORT"), "database": s.get("STACK_DB_NAME"),
        "username": s.get("STACK_DB_USER"), "password": s.hostile_password(), "ssl_mode": "disable"});
    let (code, created) = api
        .send("POST", "/api/v1/databases", Some(body.clone()))
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    wait_for("the API's database Connected", 90, || async {
        let (_, b) = api
            .send("GET", &format!("/api/v1/databases/{id}"), None)
            .await;
        if b["status"] == "Connected" {
            Ok(())
        } else {
            Err(b.to_string())
        }
    })
    .await;
    let rows = wait_for("a query through the space's DBHub pod", 180, || async {
        let (code, b) = api
            .send(
                "POST",
                &format!("/api/v1/databases/{id}/query"),
                Some(json!({"query": "SELECT 41 + 1 AS answer"})),
            )
            .await;
        if code == 200 {
            Ok(b)
        } else {
            Err(format!("{code} {b}"))
        }
    })
    .await;
    assert_eq!(rows["rows"][0]["answer"], 42, "{rows}");
    let (code, _) = api
        .send("DELETE", &format!("/api/v1/databases/{id}"), None)
        .await;
    assert_eq!(code, 204);
    let (code, _) = api
        .send("GET", &format!("/api/v1/databases/{id}"), None)
        .await;
    assert_eq!(code, 404);

    // A Database CR the API created, deleted with kubectl: its credentials Secret is collected.
    let body2 = json!({"name": unique("pod-pg2"), "type": "postgresql", "host": s.get("STACK_BRIDGE_IP"),
        "port": s.get("STACK_PG_PORT"), "database": s.get("STACK_DB_NAME"),
        "username": s.get("STACK_DB_USER"), "password": s.hostile_password(), "ssl_mode": "disable"});
    let (code, created) = api.send("POST", "/api/v1/databases", Some(body2)).await;
    assert_eq!(code, 201, "{created}");
    let id2 = created["id"].as_str().unwrap().to_string();
    let cr_name = crate::support::scenario::cr_of(&id2);
    let db = get_json(&["-n", SERVERS, "database", &cr_name])
        .await
        .unwrap_or_else(|| panic!("no Database CR {cr_name} for {id2}"));
    let secret_name = db["spec"]["credentialsRef"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = get_json(&["-n", SERVERS, "secret", &secret_name])
        .await
        .unwrap();
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["name"],
        cr_name.as_str(),
        "{secret}"
    );
    kubectl(&["-n", SERVERS, "delete", "database", &cr_name])
        .await
        .unwrap();
    wait_for("the API-made Secret collected", 60, || async {
        match get_json(&["-n", SERVERS, "secret", &secret_name]).await {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        }
    })
    .await;

    // Deleting the DBHubInstance garbage-collects everything it owned.
    let uid = inst["metadata"]["uid"].as_str().unwrap().to_string();
    let owned = owned_by(&uid).await;
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "NetworkPolicy",
    ] {
        assert!(
            owned.iter().any(|(k, _)| k == kind),
            "no {kind} owned by dbhub: {owned:?}"
        );
    }
    kubectl(&["-n", SERVERS, "delete", "dbhubinstance", "dbhub"])
        .await
        .unwrap();
    wait_for("everything dbhub owned collected", 120, || async {
        let left = owned_by(&uid).await;
        let pods = get_json(&[
            "-n",
            SERVERS,
            "pods",
            "-l",
            "app.kubernetes.io/instance=dbhub",
        ])
        .await
        .unwrap();
        let pods = pods["items"].as_array().map(Vec::len).unwrap_or(0);
        if left.is_empty() && pods == 0 {
            Ok(())
        } else {
            Err(format!("{left:?}, {pods} pods"))
        }
    })
    .await;

    // Namespaces finish deleting (pods, finalizers, owned objects).
    drop(_uninstall);
    let (a, b) = (servers.0.clone(), shared.0.clone());
    drop(servers);
    drop(shared);
    wait_namespace_gone(&a, 180).await;
    wait_namespace_gone(&b, 60).await;
}

/// (kind, name) of every object in tas-mcp-servers whose owner is `uid`.
async fn owned_by(uid: &str) -> Vec<(String, String)> {
    let all = get_json(&["-n", SERVERS, "deploy,rs,svc,cm,secret,networkpolicy,pod"])
        .await
        .unwrap_or_default();
    all["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["uid"] == uid))
        })
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

struct Uninstall(String);

impl Drop for Uninstall {
    fn drop(&mut self) {
        let _ = admin_command(stack().get("STACK_HELM"))
            .args([
                "uninstall",
                &self.0,
                "--namespace",
                SERVERS,
                "--wait",
                "--timeout",
                "60s",
            ])
            .output();
    }
}

/// The REST API as the frontend calls it, in the person's personal space.
struct Rest<'a> {
    base: String,
    token: String,
    person: &'a Person,
}

impl Rest<'_> {
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .timeout(Duration::from_secs(60))
            .bearer_auth(&self.token)
            .header("x-space-type", "personal")
            .header("x-space-id", &self.person.space);
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(res) => {
                let code = res.status().as_u16();
                let text = res.text().await.unwrap_or_default();
                (code, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({"error": e.to_string()})),
        }
    }
}

/// The network rule: everything the stack runs listens on loopback or the bridge address only;
/// a pod reaches the bridge (host services, other pods, ClusterIPs) but nothing beyond it, and
/// cluster DNS resolves no outside name.
#[tokio::test]
async fn traffic_stays_on_loopback_and_the_bridge() {
    let bridge = stack().get("STACK_BRIDGE_IP");
    let pids = stack_pids();
    let ss = std::process::Command::new("ss")
        .args(["-Hltunp"])
        .output()
        .unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout).to_string();
    let mut checked = 0;
    for line in ss.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (local, users) = (cols[4], cols.last().copied().unwrap_or_default());
        let ours = pids.iter().any(|p| users.contains(&format!("pid={p},")));
        if !ours {
            continue;
        }
        checked += 1;
        let host = local.rsplit_once(':').unwrap().0.trim_matches(['[', ']']);
        let host = host.trim_start_matches("::ffff:");
        assert!(
            host == "127.0.0.1" || host == "::1" || host == bridge || host.starts_with("127."),
            "a stack process listens beyond loopback and the bridge: {line}"
        );
    }
    assert!(
        checked >= 10,
        "expected the stack's listeners, saw {checked}:\n{ss}"
    );

    let ns = crate::support::kube::TestNamespace::new("net").await;
    let pod = client_pod(&ns.name, stack().get("STACK_DBHUB_IMAGE"), json!({})).await;
    let connect = |host: &str, port: &str| {
        let (ns, pod) = (ns.name.clone(), pod.clone());
        let (host, port) = (host.to_string(), port.to_string());
        async move {
            let js = "const [h,p]=process.argv.slice(1);require('net').connect(+p,h)\
                      .on('connect',()=>process.exit(0)).on('error',e=>{console.error(e.code);process.exit(1)});\
                      setTimeout(()=>{console.error('timeout');process.exit(2)},3000)";
            exec(&ns, &pod, &["node", "-e", js, &host, &port]).await
        }
    };
    // The host's services on the bridge are reachable (PostgreSQL's port), and the Kubernetes
    // API through its Service name.
    connect(bridge, stack().get("STACK_PG_PORT"))
        .await
        .unwrap_or_else(|e| panic!("pod -> the stack's PostgreSQL on the bridge: {e}"));
    connect("kubernetes.default.svc.cluster.local", "443")
        .await
        .unwrap();
    // Nothing beyond: the machine's default gateway and public addresses.
    let route = std::process::Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    let gw = route
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .unwrap_or("1.1.1.1")
        .to_string();
    let before = guard_drops();
    for target in [gw.as_str(), "1.1.1.1", "8.8.8.8"] {
        for port in ["53", "80", "443"] {
            let r = connect(target, port).await;
            assert!(r.is_err(), "a pod reached {target}:{port}");
        }
    }
    assert!(
        guard_drops() > before,
        "the guard counted no dropped packet"
    );
    // Cluster DNS has no upstream: an outside name does not resolve, a cluster name does.
    let lookup = "require('dns').lookup(process.argv[1],(e,a)=>{console.log(e?e.code:a);process.exit(e?1:0)})";
    let out = exec(&ns.name, &pod, &["node", "-e", lookup, "example.com"]).await;
    assert!(out.is_err(), "an outside name resolved: {out:?}");
    let inside = exec(
        &ns.name,
        &pod,
        &["node", "-e", lookup, "kubernetes.default.svc.cluster.local"],
    )
    .await
    .unwrap();
    assert_eq!(
        inside.trim(),
        format!(
            "{}.1",
            stack()
                .get("STACK_SERVICE_CIDR")
                .rsplit_once('.')
                .unwrap()
                .0
        )
    );
    // No masquerading rule for the pod range except kube-proxy's own (marked) one.
    let nat = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    let nat = String::from_utf8_lossy(&nat.stdout).to_string();
    for rule in nat.lines().filter(|l| l.contains("MASQUERADE")) {
        assert!(
            rule.contains("KUBE-") || !rule.contains("10.244."),
            "unexpected masquerade: {rule}"
        );
    }
    let nodes = get_json(&["nodes"]).await.unwrap();
    assert_eq!(nodes["items"].as_array().unwrap().len(), 1);
}

/// Dropped-packet counters of the stack's nftables guard.
fn guard_drops() -> u64 {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "inet", "aether_dbhub_guard"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("drop"),
        "the guard is not loaded: {text}"
    );
    text.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "packets")
        .map(|w| w[1].parse::<u64>().unwrap_or(0))
        .sum()
}

/// PIDs of the stack's processes (recorded by scripts/stack) and their descendants.
fn stack_pids() -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(crate::support::stack().pid_dir())
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    // children (runuser -> postgres, env -> containerd, ...), a few levels
    for _ in 0..3 {
        let mut more = vec![];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid: u32 = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            if pids.contains(&ppid) && !pids.contains(&pid) {
                more.push(pid);
            }
        }
        pids.extend(more);
    }
    pids
}

/// The stack's service image and the Dockerfile's final stage agree: user, entrypoint, command,
/// exposed port, working directory, and what the image contains (the binary where the Dockerfile
/// copies it, its shared libraries, CA certificates, the nonroot user).
#[test]
fn the_stacks_service_image_matches_the_dockerfile() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let last = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        last.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "{last}"
    );
    let field = |k: &str| {
        last.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("no {k} in the final stage"))
            .to_string()
    };
    let cache = std::env::var("AETHER_DBHUB_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/aether-dbhub", std::env::var("HOME").unwrap()));
    let tar = std::path::PathBuf::from(cache).join("service-image/aether-dbhub.tar");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
idx = json.load(t.extractfile('index.json'))
blob = lambda d: t.extractfile('blobs/sha256/' + d.split(':')[1])
m = json.load(blob(idx['manifests'][0]['digest']))
cfg = json.load(blob(m['config']['digest']))
layer = tarfile.open(fileobj=blob(m['layers'][0]['digest']))
files = {i.name: [i.uid, i.gid, i.mode, i.size] for i in layer.getmembers()}
passwd = layer.extractfile('etc/passwd').read().decode()
print(json.dumps({'name': idx['manifests'][0]['annotations']['io.containerd.image.name'],
                  'config': cfg['config'], 'files': files, 'passwd': passwd}))
"#,
        )
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        tar.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let img: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cfg = &img["config"];
    assert_eq!(cfg["User"], field("USER"));
    assert_eq!(
        cfg["Entrypoint"],
        serde_json::from_str::<Value>(&field("ENTRYPOINT")).unwrap()
    );
    assert_eq!(
        cfg["Cmd"],
        serde_json::from_str::<Value>(&field("CMD")).unwrap()
    );
    assert_eq!(
        cfg["ExposedPorts"],
        json!({format!("{}/tcp", field("EXPOSE")): {}})
    );
    assert_eq!(
        cfg["WorkingDir"], "/home/nonroot",
        "distroless nonroot's working directory"
    );
    let copy = field("COPY");
    let dest = copy
        .split_whitespace()
        .last()
        .unwrap()
        .trim_start_matches('/');
    let files = img["files"].as_object().unwrap();
    let bin = &files[dest];
    assert!(
        bin[2].as_u64().unwrap() & 0o111 != 0 && bin[3].as_u64().unwrap() > 1 << 20,
        "{bin}"
    );
    for f in [
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libgcc_s.so.1",
        "lib64/ld-linux-x86-64.so.2",
        "etc/ssl/certs/ca-certificates.crt",
        "tmp",
        "home/nonroot",
    ] {
        assert!(
            files.contains_key(f),
            "the image lacks {f} (distroless cc has it)"
        );
    }
    assert_eq!(files["home/nonroot"][0], 65532);
    assert!(
        img["passwd"]
            .as_str()
            .unwrap()
            .contains("nonroot:x:65532:65532:"),
        "{img}"
    );
    assert_eq!(
        img["name"],
        service_image(),
        "the archive is the image the node runs"
    );
}
