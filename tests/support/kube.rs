//! Kubernetes clients for the stack's apiserver and a namespace per test.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::{stack, unique};

/// A client with cluster-admin rights (group system:masters).
pub async fn admin() -> Client {
    client_from(stack().get("KUBECONFIG")).await
}

/// A client whose user has no role at all: RBAC denies it everything.
pub async fn nobody() -> Client {
    client_from(stack().get("STACK_KUBECONFIG_NOBODY")).await
}

async fn client_from(path: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("reading the stack's kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("loading the stack's kubeconfig");
    Client::try_from(config).expect("building a kube client")
}

/// A namespace of its own for one test; deleted when dropped (the node's namespace controller
/// finishes the deletion: pods stopped, objects collected; names never repeat).
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
    /// An admin client.
    pub client: Client,
}

impl TestNamespace {
    /// Creates `t-<prefix>-<random>`.
    pub async fn new(prefix: &str) -> Self {
        let client = admin().await;
        let name = unique(&format!("t-{prefix}"));
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "aether-dbhub.test/suite": "integration" } }
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating the test namespace");
        Self { name, client }
    }

    /// A namespaced API handle for this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop can't await: delete from a thread with its own runtime and its own client (the
        // test's client is served by the test's runtime, which is blocked here).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = Api::<Namespace>::all(admin().await)
                    .delete(&name, &DeleteParams::default())
                    .await;
            });
        })
        .join();
    }
}
