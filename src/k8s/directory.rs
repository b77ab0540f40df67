//! Where a space's DBHub is and how to authenticate to it, for the MCP hub: the instance's
//! `status.endpoint` (or the configured override, for a service running outside the cluster),
//! the Databases in its running configuration (`status.connectedDatabases`), and its bearer
//! token (the instance's `<name>-token` Secret).

use dbhub_operator::controller::dbhubinstance::{TOKEN_KEY, token_secret_name};
use dbhub_operator::crd::DBHubInstance;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::{Cluster, reason};
use crate::mcp::hub::{HubError, Placement};

/// The Kubernetes side of [`crate::mcp::hub::Directory`].
#[derive(Clone)]
pub struct Directory {
    cluster: Cluster,
    endpoint_override: Option<String>,
}

impl Directory {
    /// Looks instances up in `cluster`; `endpoint_override` (with `{instance}` and
    /// `{namespace}` filled in) replaces every instance's `status.endpoint` when set.
    pub fn new(cluster: Cluster, endpoint_override: Option<String>) -> Self {
        Self {
            cluster,
            endpoint_override: endpoint_override.filter(|s| !s.trim().is_empty()),
        }
    }

    async fn instance(&self, name: &str) -> Result<std::sync::Arc<DBHubInstance>, HubError> {
        if let Some(i) = self.cluster.cached_instance(name) {
            return Ok(i);
        }
        let api: Api<DBHubInstance> =
            Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace);
        match api.get_opt(name).await {
            Ok(Some(i)) => Ok(std::sync::Arc::new(i)),
            Ok(None) => Err(HubError::NotServed(
                "No DBHub instance serves this space yet; retry shortly.".into(),
            )),
            Err(e) => Err(HubError::Lookup(format!(
                "could not read the DBHub instance from Kubernetes ({})",
                reason(&e)
            ))),
        }
    }
}

/// The endpoint for `instance`: the override with `{instance}` and `{namespace}` filled in, or
/// the instance's own `status.endpoint`.
pub fn endpoint_for(
    override_template: Option<&str>,
    instance: &DBHubInstance,
    namespace: &str,
) -> Option<String> {
    let name = instance.metadata.name.as_deref().unwrap_or_default();
    match override_template {
        Some(t) => Some(
            t.replace("{instance}", name)
                .replace("{namespace}", namespace),
        ),
        None => instance.status.as_ref()?.endpoint.clone(),
    }
}

impl crate::mcp::hub::Directory for Directory {
    async fn placement(&self, name: &str) -> Result<Placement, HubError> {
        let inst = self.instance(name).await?;
        let served = inst
            .status
            .as_ref()
            .map(|s| s.connected_databases.clone())
            .unwrap_or_default();
        let endpoint = endpoint_for(
            self.endpoint_override.as_deref(),
            &inst,
            &self.cluster.namespace,
        )
        .ok_or_else(|| {
            HubError::NotServed("The DBHub instance has no endpoint yet; retry shortly.".into())
        })?;
        Ok(Placement { endpoint, served })
    }

    async fn token(&self, name: &str) -> Result<String, HubError> {
        let api: Api<Secret> =
            Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace);
        let secret = api
            .get_opt(&token_secret_name(name))
            .await
            .map_err(|e| {
                HubError::Lookup(format!(
                    "could not read the DBHub token from Kubernetes ({})",
                    reason(&e)
                ))
            })?
            .ok_or_else(|| {
                HubError::NotServed(
                    "The DBHub instance has no access token yet; retry shortly.".into(),
                )
            })?;
        secret
            .data
            .and_then(|mut d| d.remove(TOKEN_KEY))
            .and_then(|b| String::from_utf8(b.0).ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                HubError::NotServed("The DBHub instance's token Secret is empty.".into())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_fills_in_instance_and_namespace() {
        let mut inst = DBHubInstance::new(
            "dbhub-s1",
            serde_json::from_value(serde_json::json!({})).unwrap(),
        );
        assert_eq!(endpoint_for(None, &inst, "ns"), None);
        inst.status = Some(dbhub_operator::crd::DBHubInstanceStatus {
            endpoint: Some("http://dbhub-s1.ns.svc.cluster.local:8080/mcp".into()),
            ..Default::default()
        });
        assert_eq!(
            endpoint_for(None, &inst, "ns").as_deref(),
            Some("http://dbhub-s1.ns.svc.cluster.local:8080/mcp")
        );
        assert_eq!(
            endpoint_for(
                Some("http://127.0.0.1:9/{namespace}/{instance}"),
                &inst,
                "ns"
            )
            .as_deref(),
            Some("http://127.0.0.1:9/ns/dbhub-s1")
        );
    }
}
