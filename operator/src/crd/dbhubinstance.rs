//! The `DBHubInstance` custom resource: one DBHub deployment serving the Databases it selects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::defaults;

/// A DBHub MCP server deployed and configured from the Databases it selects.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dbhub.tas.io",
    version = "v1alpha1",
    kind = "DBHubInstance",
    plural = "dbhubinstances",
    namespaced,
    status = "DBHubInstanceStatus",
    shortname = "dbhub",
    category = "dbhub-all",
    derive = "PartialEq",
    doc = "A DBHub MCP server deployed and configured from the Databases it selects",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DBHubInstanceSpec {
    /// Number of DBHub pods (0 stops it). Also set by `kubectl scale`.
    #[serde(default = "defaults::replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// Container image. Default: a pinned DBHub release (bytebase/dbhub:1.4.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// MCP transport. Only `http` (Streamable HTTP) is supported: DBHub removed `sse`.
    #[serde(default = "defaults::transport")]
    #[x_kube(validation = Rule::new("self == 'http'")
        .message("transport must be http: DBHub removed the sse transport (any other value would silently start it on stdio)"))]
    pub transport: String,

    /// Port DBHub listens on and the Service exposes, 1-65535.
    #[serde(default = "defaults::port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Which Databases in this namespace to serve. Absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_selector: Option<DatabaseSelector>,

    /// Policy for Databases that set none of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_policy: Option<DefaultPolicy>,

    /// CPU and memory for each DBHub container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// The NetworkPolicy the operator keeps around the DBHub pods (on unless turned off):
    /// ingress only from the client pods on the DBHub port, egress to anything but cloud
    /// metadata and the operator's denied ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySettings>,
}

/// How the DBHub pods are fenced in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySettings {
    /// Create the NetworkPolicy (default true); turn off where another policy governs the pods.
    #[serde(default = "defaults::network_policy_enabled")]
    pub enabled: bool,
    /// Labels of the pods in this namespace that may call DBHub (default: the aether-dbhub
    /// service's pods, `app.kubernetes.io/name: aether-dbhub`).
    #[serde(default = "defaults::network_policy_clients")]
    pub allow_from: BTreeMap<String, String>,
}

impl Default for NetworkPolicySettings {
    fn default() -> Self {
        Self {
            enabled: defaults::network_policy_enabled(),
            allow_from: defaults::network_policy_clients(),
        }
    }
}

/// Selects Databases by labels and/or names; when both are given, both must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSelector {
    /// Labels a Database must carry (all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Names of the Databases to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_names: Option<Vec<String>>,
}

/// Query policy applied to every selected Database that does not set its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultPolicy {
    /// Only read statements may run (default true).
    #[serde(default = "defaults::readonly")]
    pub readonly: bool,
    /// Most rows one query returns, 1-100000 (default 1000).
    #[serde(default = "defaults::max_rows")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_rows: i32,
}

impl Default for DefaultPolicy {
    fn default() -> Self {
        Self {
            readonly: defaults::readonly(),
            max_rows: defaults::max_rows(),
        }
    }
}

/// What the operator last saw of the deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DBHubInstanceStatus {
    /// Pending (nothing selected or not yet available), Running, Degraded (fewer pods available
    /// than wanted) or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<InstancePhase>,
    /// Pods the Deployment has (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Pods ready to serve.
    #[serde(default)]
    pub available_replicas: i32,
    /// Names of the Databases in the running configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connected_databases: Vec<String>,
    /// In-cluster MCP endpoint, `http://<service>.<namespace>.svc.cluster.local:<port>/mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Label selector of the DBHub pods (for the scale subresource and HPAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The spec generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions; `Ready` is True when every wanted pod is available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Lifecycle phase of a DBHubInstance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum InstancePhase {
    /// Nothing selected, or pods not yet available.
    Pending,
    /// Every wanted pod is available.
    Running,
    /// Some but not all wanted pods are available.
    Degraded,
    /// The configuration could not be applied.
    Failed,
}
