//! The Database and DBHubInstance CRDs on the real apiserver: installation, samples, server-side
//! validation messages, printer columns (Table API) and the scale subresource.

use dbhub_operator::crd::{DBHubInstance, Database};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::support::crds::ensure_installed;
use crate::support::kube::TestNamespace;

fn samples() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("operator/config/samples");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let v: Value = serde_saphyr::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn dynamic_api(ns: &TestNamespace, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("dbhub.tas.io", "v1alpha1", kind);
    Api::namespaced_with(ns.client.clone(), &ns.name, &ApiResource::from_gvk(&gvk))
}

#[tokio::test]
async fn crds_install_and_every_sample_applies() {
    ensure_installed().await;
    let ns = TestNamespace::new("samples").await;
    let all = samples();
    assert!(
        all.len() >= 6,
        "samples: {:?}",
        all.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for (file, mut obj) in all {
        obj["metadata"]["namespace"] = json!(ns.name);
        let kind = obj["kind"].as_str().unwrap().to_string();
        let dynobj: DynamicObject = serde_json::from_value(obj).unwrap();
        let pp = PatchParams::apply("aether-dbhub-tests");
        let name = dynobj.metadata.name.clone().unwrap();
        dynamic_api(&ns, &kind)
            .patch(&name, &pp, &Patch::Apply(&dynobj))
            .await
            .unwrap_or_else(|e| panic!("{file} was rejected: {e}"));
    }
    // The typed API reads them back, with server-side defaults filled in.
    let dbs: Api<Database> = ns.api();
    let pg = dbs.get("tas-postgres").await.unwrap();
    assert_eq!(
        (
            pg.spec.connection_timeout,
            pg.spec.query_timeout,
            pg.spec.health_check_interval
        ),
        (30, 15, 300)
    );
    let mysql = dbs.get("tas-mysql").await.unwrap();
    assert_eq!(
        mysql.spec.readonly,
        Some(false),
        "an explicit readonly: false survives server-side apply"
    );
    let hubs: Api<DBHubInstance> = ns.api();
    let hub = hubs.get("dbhub").await.unwrap();
    assert_eq!((hub.spec.port, hub.spec.transport.as_str()), (8080, "http"));
    assert!(hub.spec.default_policy.unwrap().readonly);
}

#[tokio::test]
async fn readonly_false_in_default_policy_survives_server_side_apply() {
    ensure_installed().await;
    let ns = TestNamespace::new("rofalse").await;
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "DBHubInstance",
        "metadata": {"name": "rw", "namespace": ns.name},
        "spec": {"defaultPolicy": {"readonly": false}}
    }))
    .unwrap();
    let api = dynamic_api(&ns, "DBHubInstance");
    api.patch(
        "rw",
        &PatchParams::apply("aether-dbhub-tests"),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
    let back = api.get("rw").await.unwrap();
    assert_eq!(back.data["spec"]["defaultPolicy"]["readonly"], false);
    assert_eq!(
        back.data["spec"]["defaultPolicy"]["maxRows"], 1000,
        "default filled in"
    );
}

/// Each invalid spec, the text the apiserver's message must contain (field and rule).
fn invalid_specs() -> Vec<(&'static str, &'static str, Value, &'static [&'static str])> {
    let cred = json!({"name": "s"});
    vec![
        (
            "unknown type",
            "Database",
            json!({"type": "oracle", "host": "h", "credentialsRef": cred}),
            &["spec.type", "Unsupported value: \"oracle\""],
        ),
        (
            "type missing",
            "Database",
            json!({"host": "h", "credentialsRef": cred}),
            &["spec.type", "Required value"],
        ),
        (
            "postgres without host",
            "Database",
            json!({"type": "postgres", "credentialsRef": cred}),
            &["spec.host", "spec.host is required for type postgres"],
        ),
        (
            "sqlite with host",
            "Database",
            json!({"type": "sqlite", "host": "h", "database": "/a.db"}),
            &["spec.host", "must not be set for type sqlite"],
        ),
        (
            "sqlite relative path",
            "Database",
            json!({"type": "sqlite", "database": "data/a.db"}),
            &["spec.database", "absolute file path"],
        ),
        (
            "sqlite with port",
            "Database",
            json!({"type": "sqlite", "database": "/a.db", "port": 5432}),
            &["spec.port", "must not be set for type sqlite"],
        ),
        (
            "verify-ca on mysql",
            "Database",
            json!({"type": "mysql", "host": "h", "database": "d", "credentialsRef": cred, "sslMode": "verify-ca"}),
            &["spec.sslMode", "supported for type postgres only"],
        ),
        (
            "sslMode preferred (MySQL's spelling)",
            "Database",
            json!({"type": "postgres", "host": "h", "credentialsRef": cred, "sslMode": "preferred"}),
            &["spec.sslMode", "Unsupported value: \"preferred\""],
        ),
        (
            "port 0",
            "Database",
            json!({"type": "postgres", "host": "h", "credentialsRef": cred, "port": 0}),
            &["spec.port", "greater than or equal to 1"],
        ),
        (
            "port 70000",
            "Database",
            json!({"type": "postgres", "host": "h", "credentialsRef": cred, "port": 70000}),
            &["spec.port", "less than or equal to 65535"],
        ),
        (
            "maxRows 0",
            "Database",
            json!({"type": "postgres", "host": "h", "credentialsRef": cred, "maxRows": 0}),
            &["spec.maxRows", "greater than or equal to 1"],
        ),
        (
            "maxRows 100001",
            "Database",
            json!({"type": "postgres", "host": "h", "credentialsRef": cred, "maxRows": 100_001}),
            &["spec.maxRows", "less than or equal to 100000"],
        ),
        (
            "connectionTimeout 0",
            "Database",
            json!({"type": "postgres", "host": "h", "credentialsRef": cred, "connectionTimeout": 0}),
            &["spec.connectionTimeout", "greater than or equal to 1"],
        ),
        (
            "queryTimeout 3601",
            "Database",
            json!({"type": "postgres", "host": "h", "credentialsRef": cred, "queryTimeout": 3601}),
            &["spec.queryTimeout", "less than or equal to 3600"],
        ),
        (
            "healthCheckInterval 5",
            "Database",
            json!({"type": "postgres", "host": "h", "credentialsRef": cred, "healthCheckInterval": 5}),
            &["spec.healthCheckInterval", "greater than or equal to 10"],
        ),
        (
            "no credentials",
            "Database",
            json!({"type": "sqlserver", "host": "h"}),
            &["spec.credentialsRef", "credentialsRef is required"],
        ),
        (
            "mariadb without database",
            "Database",
            json!({"type": "mariadb", "host": "h", "credentialsRef": cred}),
            &["spec.database", "required for type mysql and mariadb"],
        ),
        (
            "transport sse",
            "DBHubInstance",
            json!({"transport": "sse"}),
            &["spec.transport", "DBHub removed the sse transport"],
        ),
        (
            "replicas -1",
            "DBHubInstance",
            json!({"replicas": -1}),
            &["spec.replicas", "greater than or equal to 0"],
        ),
        (
            "instance port 0",
            "DBHubInstance",
            json!({"port": 0}),
            &["spec.port", "greater than or equal to 1"],
        ),
        (
            "policy maxRows 0",
            "DBHubInstance",
            json!({"defaultPolicy": {"maxRows": 0}}),
            &["spec.defaultPolicy.maxRows", "greater than or equal to 1"],
        ),
        (
            "policy maxRows too big",
            "DBHubInstance",
            json!({"defaultPolicy": {"maxRows": 200_000}}),
            &["spec.defaultPolicy.maxRows", "less than or equal to 100000"],
        ),
    ]
}

#[tokio::test]
async fn invalid_specs_are_rejected_with_a_message_naming_field_and_rule() {
    ensure_installed().await;
    let ns = TestNamespace::new("invalid").await;
    let cases = invalid_specs();
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for (i, (what, kind, spec, expected)) in cases.into_iter().enumerate() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "dbhub.tas.io/v1alpha1", "kind": kind,
            "metadata": {"name": format!("bad-{i}")}, "spec": spec
        }))
        .unwrap();
        match dynamic_api(&ns, kind)
            .create(&PostParams::default(), &obj)
            .await
        {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status)) => {
                if status.code != 422 {
                    failures.push(format!("{what}: HTTP {} {}", status.code, status.message));
                }
                for needle in expected {
                    if !status.message.contains(needle) {
                        failures.push(format!(
                            "{what}: message lacks {needle:?}: {}",
                            status.message
                        ));
                    }
                }
            }
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn table_api_shows_the_printer_columns() {
    ensure_installed().await;
    let ns = TestNamespace::new("table").await;
    for (_, mut obj) in samples() {
        obj["metadata"]["namespace"] = json!(ns.name);
        let kind = obj["kind"].as_str().unwrap().to_string();
        let d: DynamicObject = serde_json::from_value(obj).unwrap();
        dynamic_api(&ns, &kind)
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
    }
    let table = |plural: &str| {
        axum::http::Request::get(format!(
            "/apis/dbhub.tas.io/v1alpha1/namespaces/{}/{plural}",
            ns.name
        ))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap()
    };
    let db: Value =
        serde_json::from_str(&ns.client.request_text(table("databases")).await.unwrap()).unwrap();
    let cols: Vec<&str> = db["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Type", "Host", "Database", "Phase", "Age"]);
    let pg = db["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cells"][0] == "tas-postgres")
        .expect("row");
    assert_eq!(pg["cells"][1], "postgres");
    assert_eq!(
        pg["cells"][2],
        "postgres-shared.tas-shared.svc.cluster.local"
    );
    assert_eq!(pg["cells"][3], "tas_shared");

    let hub: Value = serde_json::from_str(
        &ns.client
            .request_text(table("dbhubinstances"))
            .await
            .unwrap(),
    )
    .unwrap();
    let cols: Vec<&str> = hub["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        ["Name", "Replicas", "Available", "Phase", "Endpoint", "Age"]
    );
    assert_eq!(hub["rows"][0]["cells"][1], 1);
}

#[tokio::test]
async fn scale_subresource_moves_spec_replicas_and_status_stays_separate() {
    ensure_installed().await;
    let ns = TestNamespace::new("scale").await;
    let api: Api<DBHubInstance> = ns.api();
    let hub: DBHubInstance = serde_json::from_value(json!({
        "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "DBHubInstance",
        "metadata": {"name": "hub"}, "spec": {"replicas": 1}
    }))
    .unwrap();
    api.create(&PostParams::default(), &hub).await.unwrap();

    // A status write does not touch spec.
    let status = json!({"status": {"replicas": 1, "availableReplicas": 1, "phase": "Running",
        "selector": "app.kubernetes.io/instance=hub"}});
    api.patch_status("hub", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let after_status = api.get("hub").await.unwrap();
    assert_eq!(after_status.spec, hub.spec);

    // GET/PUT /scale.
    let scale = api.get_scale("hub").await.unwrap();
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(
        scale.status.as_ref().unwrap().selector.as_deref(),
        Some("app.kubernetes.io/instance=hub")
    );
    let mut scaled = scale.clone();
    scaled.spec.as_mut().unwrap().replicas = Some(3);
    api.replace_scale("hub", &PostParams::default(), &scaled)
        .await
        .unwrap();
    let after_scale = api.get("hub").await.unwrap();
    assert_eq!(after_scale.spec.replicas, 3);
    assert_eq!(
        after_scale.status, after_status.status,
        "scaling changes spec only"
    );

    // A spec write does not touch status.
    api.patch(
        "hub",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"port": 9090}})),
    )
    .await
    .unwrap();
    let after_spec = api.get("hub").await.unwrap();
    assert_eq!(after_spec.status, after_status.status);
    assert_eq!(after_spec.spec.port, 9090);
}

/// kubectl with the short names: `db` and `dbhub` each name one resource (the shared category
/// is `dbhub-all`, so `kubectl get dbhub NAME` and `kubectl scale dbhub NAME` are unambiguous),
/// and `explain` finds both.
#[tokio::test]
async fn kubectl_short_names_get_scale_and_explain() {
    ensure_installed().await;
    let ns = TestNamespace::new("kubectl").await;
    let cache = std::env::temp_dir().join(crate::support::unique("kubectl-cache"));
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::stack().get("STACK_KUBECTL"))
            .args(args)
            .args(["-n", &ns.name, "--cache-dir", cache.to_str().unwrap()])
            .env("KUBECONFIG", crate::support::stack().get("KUBECONFIG"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubectl {args:?}: {text}");
        text
    };
    for (file, mut obj) in samples() {
        if !["dbhubinstance.yaml", "postgres.yaml"]
            .iter()
            .any(|f| file.ends_with(f))
        {
            continue;
        }
        obj["metadata"]["namespace"] = json!(ns.name);
        let kind = obj["kind"].as_str().unwrap().to_string();
        let dynobj: DynamicObject = serde_json::from_value(obj).unwrap();
        let name = dynobj.metadata.name.clone().unwrap();
        dynamic_api(&ns, &kind)
            .patch(
                &name,
                &PatchParams::apply("aether-dbhub-tests"),
                &Patch::Apply(&dynobj),
            )
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let inst = ns
        .api::<DBHubInstance>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let db = ns
        .api::<Database>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert!(!inst.is_empty() && !db.is_empty(), "samples applied");
    let (inst, db) = (
        inst[0].metadata.name.clone().unwrap(),
        db[0].metadata.name.clone().unwrap(),
    );

    assert!(kubectl(&["get", "dbhub", &inst]).contains(&inst));
    assert!(kubectl(&["get", "db", &db]).contains(&db));
    kubectl(&["scale", "dbhub", &inst, "--replicas=2"]);
    let scaled = ns.api::<DBHubInstance>().get(&inst).await.unwrap();
    assert_eq!(scaled.spec.replicas, 2);
    let all = kubectl(&["get", "dbhub-all"]);
    assert!(all.contains(&inst) && all.contains(&db), "{all}");
    assert!(kubectl(&["explain", "dbhub.spec.replicas"]).contains("replicas"));
    assert!(kubectl(&["explain", "db.spec.sslMode"]).contains("sslMode"));
    let _ = std::fs::remove_dir_all(&cache);
}
