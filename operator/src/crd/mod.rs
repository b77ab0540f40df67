//! The custom resources of group `dbhub.tas.io`, version `v1alpha1`, and their YAML.

pub mod database;
pub mod dbhubinstance;
pub mod defaults;

pub use database::{
    CredentialsRef, Database, DatabasePhase, DatabaseSpec, DatabaseStatus, DatabaseType, SslMode,
};
pub use dbhubinstance::{
    DBHubInstance, DBHubInstanceSpec, DBHubInstanceStatus, DatabaseSelector, DefaultPolicy,
    InstancePhase, NetworkPolicySettings,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Both CRDs, Database first.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![Database::crd(), DBHubInstance::crd()]
}

/// Both CRDs as one multi-document YAML stream (what `aether-dbhub crds` prints and what is
/// committed under `operator/config/crd/`).
pub fn yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed YAML under operator/config/crd/ and the Helm chart's crds/ must match the
    /// types. Regenerate with `AETHER_DBHUB_BLESS=1 cargo test -p dbhub-operator committed_crd_yaml`.
    #[test]
    fn committed_crd_yaml_matches_types() {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in [
            here.join("config/crd/bases"),
            here.join("charts/aether-dbhub/crds"),
        ] {
            committed_in(&dir);
        }
    }

    fn committed_in(dir: &std::path::Path) {
        for crd in all() {
            let file = dir.join(format!("{}.yaml", crd.metadata.name.as_deref().unwrap()));
            let fresh = format!("---\n{}", serde_saphyr::to_string(&crd).unwrap());
            if std::env::var_os("AETHER_DBHUB_BLESS").is_some() {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(&file, &fresh).unwrap();
            }
            let committed = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(
                committed == fresh,
                "{} is stale: regenerate with AETHER_DBHUB_BLESS=1 cargo test -p dbhub-operator committed_crd_yaml",
                file.display()
            );
        }
    }

    #[test]
    fn yaml_holds_both_crds_in_order() {
        let y = yaml().unwrap();
        let db = y.find("name: databases.dbhub.tas.io").unwrap();
        let hub = y.find("name: dbhubinstances.dbhub.tas.io").unwrap();
        assert!(db < hub);
    }

    #[test]
    fn readonly_false_survives_serialisation() {
        let spec: DatabaseSpec = serde_json::from_value(serde_json::json!({
            "type": "postgres", "host": "h", "readonly": false,
            "credentialsRef": {"name": "s"}
        }))
        .unwrap();
        assert_eq!(spec.readonly, Some(false));
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["readonly"], false);
        let policy: DefaultPolicy =
            serde_json::from_value(serde_json::json!({"readonly": false})).unwrap();
        assert_eq!(serde_json::to_value(&policy).unwrap()["readonly"], false);
    }

    #[test]
    fn defaults_fill_omitted_fields() {
        let spec: DatabaseSpec =
            serde_json::from_value(serde_json::json!({"type": "sqlite", "database": "/d.db"}))
                .unwrap();
        assert_eq!(
            (
                spec.connection_timeout,
                spec.query_timeout,
                spec.health_check_interval
            ),
            (30, 15, 300)
        );
        let inst: DBHubInstanceSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(
            (inst.replicas, inst.port, inst.transport.as_str()),
            (1, 8080, "http")
        );
    }
}
