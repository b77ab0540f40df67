//! The objects one DBHubInstance owns, built as values ready for server-side apply.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::crd::DBHubInstance;
use crate::crd::defaults::DBHUB_IMAGE;

/// Where DBHub reads its TOML inside the pod.
pub const CONFIG_DIR: &str = "/etc/dbhub";
/// The TOML's key in the ConfigMap (and file name).
pub const CONFIG_KEY: &str = "dbhub.toml";
/// The token's key in `<name>-token`.
pub const TOKEN_KEY: &str = "token";
/// Pod-template annotation that changes whenever the configuration or a DSN does.
pub const HASH_ANNOTATION: &str = "dbhub.tas.io/config-hash";

/// Names of the owned objects.
pub fn config_map_name(inst: &str) -> String {
    format!("{inst}-config")
}
/// Name of the DSN Secret.
pub fn dsn_secret_name(inst: &str) -> String {
    format!("{inst}-dsn")
}
/// Name of the token Secret.
pub fn token_secret_name(inst: &str) -> String {
    format!("{inst}-token")
}

/// Labels on every owned object and the pods.
pub fn labels(inst: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "dbhub".into()),
        ("app.kubernetes.io/instance".into(), inst.into()),
        (
            "app.kubernetes.io/managed-by".into(),
            super::super::MANAGER.into(),
        ),
    ])
}

/// The pod selector, as a label-selector string (for status.selector and the scale subresource).
pub fn selector(inst: &str) -> String {
    format!("app.kubernetes.io/instance={inst},app.kubernetes.io/name=dbhub")
}

/// The in-cluster MCP endpoint.
pub fn endpoint(inst: &str, ns: &str, port: i32) -> String {
    format!("http://{inst}.{ns}.svc.cluster.local:{port}/mcp")
}

/// DBHub's DNS-rebinding guard refuses Host names it does not know: list the Service's names.
pub fn allowed_hosts(inst: &str, ns: &str) -> String {
    format!("{inst},{inst}.{ns},{inst}.{ns}.svc,{inst}.{ns}.svc.cluster.local")
}

use k8s_openapi::ByteString;
use kube::Resource;

fn meta(obj: &DBHubInstance, name: &str) -> Value {
    let mut owner = obj
        .controller_owner_ref(&())
        .expect("a stored object has a uid");
    // Foreground deletion of the instance waits for what it owns.
    owner.block_owner_deletion = Some(true);
    json!({
        "name": name,
        "namespace": obj.metadata.namespace,
        "labels": labels(obj.metadata.name.as_deref().unwrap_or_default()),
        "ownerReferences": [owner],
    })
}

/// ConfigMap `<name>-config` with the TOML.
pub fn config_map(obj: &DBHubInstance, toml: &str) -> Value {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(obj, &config_map_name(name)),
           "data": {CONFIG_KEY: toml}})
}

/// Secret `<name>-dsn`: one key per source env var.
pub fn dsn_secret(obj: &DBHubInstance, dsns: &BTreeMap<String, String>) -> Value {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    // `data`, not `stringData`: re-applying identical data is a no-op on the apiserver.
    let data: BTreeMap<&String, ByteString> = dsns
        .iter()
        .map(|(k, v)| (k, ByteString(v.as_bytes().to_vec())))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": meta(obj, &dsn_secret_name(name)), "data": data})
}

/// Secret `<name>-token` (created once; never re-applied, so never rotated by accident).
pub fn token_secret(obj: &DBHubInstance, token: &str) -> Value {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": meta(obj, &token_secret_name(name)), "stringData": {TOKEN_KEY: token}})
}

/// Service `<name>`.
pub fn service(obj: &DBHubInstance) -> Value {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(obj, name),
           "spec": {"selector": {"app.kubernetes.io/name": "dbhub", "app.kubernetes.io/instance": name},
                    "ports": [{"name": "http", "port": obj.spec.port, "targetPort": "http", "protocol": "TCP"}]}})
}

/// Startup probes (every 2 s) before a DBHub that has not answered `/healthz` is restarted.
pub const STARTUP_PROBES: i32 = 150;

/// Deployment `<name>`: DBHub with the config mounted, DSNs and the token from Secrets.
pub fn deployment(obj: &DBHubInstance, replicas: i32, env_names: &[String], hash: &str) -> Value {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
    let port = obj.spec.port;
    let mut env: Vec<Value> = env_names
        .iter()
        .map(|e| json!({"name": e, "valueFrom": {"secretKeyRef": {"name": dsn_secret_name(name), "key": e}}}))
        .collect();
    env.push(json!({"name": "DBHUB_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": token_secret_name(name), "key": TOKEN_KEY}}}));
    env.push(json!({"name": "DBHUB_ALLOWED_HOSTS", "value": allowed_hosts(name, ns)}));
    let probe = |period: i32, timeout: i32, failures: i32| {
        json!({"httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": period, "timeoutSeconds": timeout, "failureThreshold": failures})
    };
    let pod_labels = labels(name);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(obj, name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "dbhub", "app.kubernetes.io/instance": name}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {HASH_ANNOTATION: hash}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "dbhub",
                        "image": obj.spec.image.as_deref().unwrap_or(DBHUB_IMAGE),
                        "args": ["--transport", "http", "--host", "0.0.0.0", "--port", port.to_string(),
                                 "--config", format!("{CONFIG_DIR}/{CONFIG_KEY}")],
                        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                        "env": env,
                        // subPath: a running pod keeps the file it started with. DBHub hot-reloads
                        // its config, and a new source's `${DSN}` variable exists only in pods
                        // created after the change (env comes from the pod template), so an old
                        // pod must not load it ("No connector found for DSN: ${...}", seen on the
                        // node); the config-hash annotation rolls the pods instead.
                        "volumeMounts": [{"name": "config", "mountPath": format!("{CONFIG_DIR}/{CONFIG_KEY}"),
                                          "subPath": CONFIG_KEY, "readOnly": true},
                                         {"name": "tmp", "mountPath": "/tmp"}],
                        // Node loads DBHub in ~1 s on an idle core but far slower when many pods
                        // start at once (50 instances rolling out on a 2-core node took minutes):
                        // the startup probe gives it up to 5 min, and liveness, which would
                        // otherwise kill a DBHub still starting and restart it forever, only
                        // begins once it has answered.
                        "startupProbe": probe(2, 2, STARTUP_PROBES),
                        "livenessProbe": probe(10, 3, 3),
                        "readinessProbe": probe(5, 2, 3),
                        // DBHub exits at once on SIGTERM: give endpoints time to drop the pod first.
                        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                        "resources": obj.spec.resources.clone().unwrap_or_default(),
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": config_map_name(name)}},
                                {"name": "tmp", "emptyDir": {}}],
                }
            }
        }
    })
}

/// NetworkPolicy `<name>`: ingress only from the client pods on the DBHub port; egress to
/// anything but the denied ranges (`except` lists, IPv4 and IPv6).
pub fn network_policy(
    obj: &DBHubInstance,
    allow_from: &BTreeMap<String, String>,
    except: (Vec<String>, Vec<String>),
) -> Value {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(obj, name),
    "spec": {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "dbhub", "app.kubernetes.io/instance": name}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": allow_from}}],
                     "ports": [{"port": obj.spec.port, "protocol": "TCP"}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": except.0}},
                           {"ipBlock": {"cidr": "::/0", "except": except.1}}]}],
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> DBHubInstance {
        serde_json::from_value(json!({
            "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "DBHubInstance",
            "metadata": {"name": "hub", "namespace": "ns", "uid": "u"},
            "spec": {"databaseSelector": {"matchLabels": {"a": "b"}}}}))
        .unwrap()
    }

    #[test]
    fn a_slow_starting_dbhub_is_given_time_before_liveness_can_restart_it() {
        let d = deployment(&instance(), 1, &[], "h");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        let startup = &c["startupProbe"];
        assert_eq!(startup["httpGet"]["path"], "/healthz");
        let allowed = startup["periodSeconds"].as_i64().unwrap()
            * startup["failureThreshold"].as_i64().unwrap();
        assert!(allowed >= 300, "startup allows {allowed} s");
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"]["path"], "/healthz");
            // The startup probe gates both; a delay would only postpone readiness.
            assert!(c[probe].get("initialDelaySeconds").is_none(), "{probe}");
            assert!(c[probe]["timeoutSeconds"].as_i64().unwrap() >= 2, "{probe}");
        }
    }
}
