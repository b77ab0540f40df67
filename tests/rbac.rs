//! The shipped RBAC is enough and not more: the reconcilers and the API run as a ServiceAccount
//! bound to `operator/config/rbac/role.yaml` against the RBAC-enforcing apiserver, a whole
//! scenario passes, and verbs the code does not need are refused.

use std::time::{Duration, Instant};

use dbhub_operator::controller::Scope;
use dbhub_operator::crd::{DBHubInstance, Database, DatabasePhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

use crate::support::api::{self, person, personal};
use crate::support::kube::TestNamespace;
use crate::support::{crds, stack};

fn manifest(name: &str) -> Value {
    let path = format!("{}/operator/config/rbac/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A client acting as ServiceAccount `aether-dbhub` of `ns`, bound to the shipped Role.
async fn service_account_client(ns: &TestNamespace) -> kube::Client {
    let mut role = manifest("role.yaml");
    role["metadata"]["namespace"] = json!(ns.name);
    let role: Role = serde_json::from_value(role).unwrap();
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let mut binding = manifest("role_binding.yaml");
    binding["metadata"]["namespace"] = json!(ns.name);
    binding["subjects"][0]["namespace"] = json!(ns.name);
    let binding: RoleBinding = serde_json::from_value(binding).unwrap();
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "aether-dbhub"}})).unwrap();
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}})).unwrap();
    let token = ns
        .api::<ServiceAccount>()
        .create_token_request("aether-dbhub", &PostParams::default(), &request)
        .await
        .expect("a ServiceAccount token")
        .status
        .unwrap()
        .token
        .expect("a token in the TokenRequest status");
    let mut kubeconfig = Kubeconfig::read_from(stack().get("KUBECONFIG")).unwrap();
    kubeconfig.auth_infos[0].auth_info.as_mut().unwrap().token = Some(token.into());
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[test]
fn role_and_cluster_role_grant_the_same_rules() {
    let role: Role = serde_json::from_value(manifest("role.yaml")).unwrap();
    let cluster: ClusterRole = serde_json::from_value(manifest("cluster_role.yaml")).unwrap();
    assert_eq!(role.rules, cluster.rules);
}

#[tokio::test]
async fn rbac_shipped_role_is_enough_for_api_and_reconcilers_and_no_more() {
    crds::ensure_installed().await;
    let ns = TestNamespace::new("rbac-sa").await;
    let sa = service_account_client(&ns).await;

    // Reconcilers and API as the ServiceAccount.
    let stop = aether_dbhub::lifecycle::Lifecycle::new();
    let config = dbhub_operator::controller::Config {
        scope: Scope {
            namespace: Some(ns.name.clone()),
        },
        policy: crate::support::test_policy(),
        probes: Default::default(),
    };
    // Under leader election, as in a multi-replica install: the Lease is RBAC-checked too.
    let leader = aether_dbhub::config::LeaderArgs {
        enabled: true,
        lease: "aether-dbhub-leader".into(),
        duration: 15,
        grace: 5,
        identity: String::new(),
    };
    let reconcilers =
        aether_dbhub::leader::spawn(sa.clone(), config, ns.name.clone(), leader, stop.clone());
    let server = api::serve(&ns.name, sa.clone()).await;
    let graph = api::graph();
    let owner = person(&graph).await;
    let call = personal(&server, &owner);

    let s = stack();
    let body = json!({"name": "orders", "type": "postgres", "host": "127.0.0.1", "port": s.get("STACK_PG_PORT"),
        "database": s.get("STACK_DB_NAME"), "username": s.get("STACK_DB_USER"), "password": s.hostile_password(), "ssl_mode": "disable"});
    let (code, created) = call.send("POST", "/api/v1/databases", Some(body)).await;
    assert_eq!(code, 201, "{created}");
    let cr = format!("db-{}", created["id"].as_str().unwrap().replace('-', ""));
    crate::support::operator::wait_phase(
        &ns.api::<Database>(),
        &cr,
        DatabasePhase::Connected,
        Duration::from_secs(30),
    )
    .await;

    let hub: DBHubInstance = serde_json::from_value(
        json!({"apiVersion": "dbhub.tas.io/v1alpha1", "kind": "DBHubInstance",
        "metadata": {"name": "hub"}, "spec": {}}),
    )
    .unwrap();
    Api::<DBHubInstance>::namespaced(sa.clone(), &ns.name)
        .create(&PostParams::default(), &hub)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = ns
            .api::<DBHubInstance>()
            .get("hub")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if st.connected_databases == [cr.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance never served the database: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        ns.api::<ConfigMap>()
            .get_opt("hub-config")
            .await
            .unwrap()
            .is_some()
    );
    let (code, _) = call
        .send(
            "DELETE",
            &format!("/api/v1/databases/{}", created["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let forbidden = crate::support::logs::text()
        .lines()
        .filter(|l| l.contains(&ns.name) && l.to_ascii_lowercase().contains("forbidden"))
        .map(String::from)
        .collect::<Vec<_>>();
    assert!(
        forbidden.is_empty(),
        "RBAC refused the code something it needed:\n{}",
        forbidden.join("\n")
    );
    // The Lease was taken under this role and is released on shutdown.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = ns.api();
    let held = leases.get("aether-dbhub-leader").await.unwrap();
    assert!(
        held.spec
            .and_then(|s| s.holder_identity)
            .is_some_and(|h| !h.is_empty())
    );
    stop.stop();
    reconcilers.await.unwrap();
    let released = leases.get("aether-dbhub-leader").await.unwrap();
    assert!(
        released
            .spec
            .and_then(|s| s.holder_identity)
            .is_none_or(|h| h.is_empty()),
        "the Lease is released on shutdown"
    );

    // Verbs the code does not need are refused.
    let denied =
        |r: Result<(), kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    let deps: Api<Deployment> = Api::namespaced(sa.clone(), &ns.name);
    assert!(
        denied(
            deps.delete("hub", &DeleteParams::default())
                .await
                .map(|_| ())
        ),
        "deployments delete"
    );
    let cms: Api<ConfigMap> = Api::namespaced(sa.clone(), &ns.name);
    assert!(
        denied(
            cms.delete("hub-config", &DeleteParams::default())
                .await
                .map(|_| ())
        ),
        "configmaps delete"
    );
    let roles: Api<Role> = Api::namespaced(sa.clone(), &ns.name);
    let grab = json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    assert!(
        denied(
            roles
                .patch(
                    "aether-dbhub",
                    &PatchParams::default(),
                    &Patch::Merge(&grab)
                )
                .await
                .map(|_| ())
        ),
        "role escalation"
    );
    let other_ns: Api<ConfigMap> = Api::namespaced(sa.clone(), "default");
    assert!(
        denied(other_ns.list(&Default::default()).await.map(|_| ())),
        "another namespace"
    );
    stop.stop();
}
