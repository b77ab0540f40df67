//! What a DBHubInstance's Deployment gives its container — args, environment with Secret
//! references resolved, the mounted `dbhub.toml` — and those args rewritten to run the same
//! DBHub as a host process on loopback. Test support only (not in the product): the query-path
//! tests run their space's DBHub this way because their API runs on the host, which cannot
//! resolve the cluster's Service names; tests/node.rs runs DBHub and the service in real pods.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use dbhub_operator::controller::dbhubinstance::{CONFIG_KEY, config_map_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;

/// What the container of a DBHub Deployment gets.
#[derive(Debug, Clone)]
pub struct PodView {
    /// Pods the Deployment wants (0 when the instance serves nothing).
    pub replicas: i32,
    /// Container args.
    pub args: Vec<String>,
    /// Container environment, Secret references resolved.
    pub env: BTreeMap<String, String>,
    /// The mounted `dbhub.toml`.
    pub config: String,
}

/// Reads the Deployment, Secrets and ConfigMap of DBHubInstance `instance` in `namespace`.
pub async fn pod_view(
    client: kube::Client,
    namespace: &str,
    instance: &str,
) -> anyhow::Result<PodView> {
    let dep = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(instance)
        .await
        .with_context(|| format!("reading Deployment {instance}"))?;
    let replicas = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let container = dep
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .context("the Deployment has no container")?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut env = BTreeMap::new();
    for e in container.env.unwrap_or_default() {
        let value = match (e.value, e.value_from) {
            (Some(v), _) => v,
            (None, Some(from)) => {
                let r = from
                    .secret_key_ref
                    .with_context(|| format!("env {} is not from a Secret", e.name))?;
                let s = secrets
                    .get(&r.name)
                    .await
                    .with_context(|| format!("reading Secret {}", r.name))?;
                let bytes = s
                    .data
                    .and_then(|mut d| d.remove(&r.key))
                    .with_context(|| format!("Secret {} has no key {}", r.name, r.key))?;
                String::from_utf8(bytes.0).context("a Secret value is not UTF-8")?
            }
            _ => anyhow::bail!("env {} has no value", e.name),
        };
        env.insert(e.name, value);
    }
    let cm = Api::<ConfigMap>::namespaced(client, namespace)
        .get(&config_map_name(instance))
        .await
        .with_context(|| format!("reading ConfigMap {}", config_map_name(instance)))?;
    let config = cm
        .data
        .and_then(|mut d| d.remove(CONFIG_KEY))
        .context("the ConfigMap has no dbhub.toml")?;
    Ok(PodView {
        replicas,
        args: container.args.unwrap_or_default(),
        env,
        config,
    })
}

/// The container's args with the listen address, port and config path replaced: the same
/// DBHub on `127.0.0.1:port`, reading the configuration from `config`.
pub fn loopback_args(view: &PodView, port: u16, config: &Path) -> anyhow::Result<Vec<String>> {
    let mut args = view.args.clone();
    for (flag, value) in [
        ("--port", port.to_string()),
        ("--config", config.display().to_string()),
        ("--host", "127.0.0.1".into()),
    ] {
        let i = args
            .iter()
            .position(|a| a == flag)
            .with_context(|| format!("the container args lack {flag}"))?;
        *args
            .get_mut(i + 1)
            .with_context(|| format!("{flag} has no value"))? = value;
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_args_replace_only_address_port_and_config() {
        let view = PodView {
            replicas: 1,
            args: [
                "--transport",
                "http",
                "--host",
                "0.0.0.0",
                "--port",
                "8080",
                "--config",
                "/etc/dbhub/dbhub.toml",
            ]
            .map(String::from)
            .to_vec(),
            env: BTreeMap::new(),
            config: String::new(),
        };
        let args = loopback_args(&view, 9, Path::new("/tmp/x.toml")).unwrap();
        assert_eq!(
            args,
            [
                "--transport",
                "http",
                "--host",
                "127.0.0.1",
                "--port",
                "9",
                "--config",
                "/tmp/x.toml"
            ]
        );
        let bare = PodView {
            args: vec!["--port".into()],
            ..view
        };
        assert!(loopback_args(&bare, 9, Path::new("/x")).is_err());
    }
}
