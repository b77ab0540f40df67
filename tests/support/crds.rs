//! Installs the project's CRDs into the stack's apiserver once per test run.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::OnceCell;

use super::kube::admin;

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Server-side applies both CRDs and waits until they are Established (idempotent).
pub async fn ensure_installed() {
    INSTALLED
        .get_or_init(|| async {
            let api: Api<CustomResourceDefinition> = Api::all(admin().await);
            let pp = PatchParams::apply("aether-dbhub-tests").force();
            for crd in dbhub_operator::crd::all() {
                let name = crd.metadata.name.clone().unwrap();
                api.patch(&name, &pp, &Patch::Apply(&crd))
                    .await
                    .expect("applying a CRD");
                wait_established(&api, &name).await;
            }
        })
        .await;
}

/// Polls until the CRD has condition Established=True.
pub async fn wait_established(api: &Api<CustomResourceDefinition>, name: &str) {
    for _ in 0..100 {
        let crd = api.get(name).await.expect("reading the CRD");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("CRD {name} not Established within 10s");
}
