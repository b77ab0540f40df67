//! The Helm chart and the kustomize tree: rendered with the real tools (helm from the Go proxy,
//! kubectl's kustomize) and applied to the real apiserver with server-side dry-run; their RBAC
//! rules are the shipped ones and their CRDs the generated ones.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::kube::TestNamespace;
use crate::support::stack;

fn root(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

const CHART: &str = "operator/charts/aether-dbhub";

/// Runs a tool; (success, stdout, stderr).
fn run(tool: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(tool)
        .args(args)
        .env("KUBECONFIG", stack().get("KUBECONFIG"))
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn docs(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
        .map(|d| {
            serde_saphyr::from_str::<Value>(d)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse ({e}):\n{d}"))
        })
        .filter(|v| v.is_object())
        .collect()
}

fn shipped_rules() -> Value {
    let role: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root("operator/config/rbac/cluster_role.yaml")).unwrap(),
    )
    .unwrap();
    role["rules"].clone()
}

fn helm_template(ns: &str, sets: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "template",
        "rel",
        CHART,
        "--namespace",
        ns,
        "--kube-version",
        "1.36.3",
        "--include-crds",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let chart = root(CHART);
    args[2] = &chart;
    run(stack().get("STACK_HELM"), &args, None)
}

fn dry_run_apply(yaml: &str) {
    let (ok, out, err) = run(
        stack().get("STACK_KUBECTL"),
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=chart-dry-run",
            "-f",
            "-",
        ],
        Some(yaml),
    );
    assert!(
        ok,
        "server-side dry-run refused the manifests:\n{err}\n{out}"
    );
}

#[test]
fn chart_crds_are_the_generated_ones() {
    for name in [
        "databases.dbhub.tas.io.yaml",
        "dbhubinstances.dbhub.tas.io.yaml",
    ] {
        let chart = std::fs::read_to_string(root(&format!("{CHART}/crds/{name}"))).unwrap();
        let bases =
            std::fs::read_to_string(root(&format!("operator/config/crd/bases/{name}"))).unwrap();
        assert!(
            chart == bases,
            "{CHART}/crds/{name} differs from operator/config/crd/bases: copy it over"
        );
    }
}

#[tokio::test]
async fn chart_renders_in_both_scopes_and_applies_with_server_side_dry_run() {
    crate::support::crds::ensure_installed().await;
    let ns = TestNamespace::new("chart").await;
    let (ok, _, _) = run(
        stack().get("STACK_HELM"),
        &[
            "lint",
            "--strict",
            &root(CHART),
            "--set",
            "jwt.issuers=https://kc.example/realms/aether",
        ],
        None,
    );
    assert!(ok, "helm lint");
    for (scope, replicas) in [("cluster", "1"), ("namespace", "2")] {
        let sets = [
            "jwt.issuers=https://kc.example/realms/aether",
            "jwt.jwksUrl=https://kc.example/realms/aether/protocol/openid-connect/certs",
            "neo4j.password=s3cret-in-a-secret",
            &format!("rbac.scope={scope}"),
            &format!("replicaCount={replicas}"),
        ];
        let (ok, yaml, err) = helm_template(&ns.name, &sets);
        assert!(ok, "helm template ({scope}): {err}");
        let all = docs(&yaml);
        let kinds: Vec<&str> = all.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        let role_kind = if scope == "cluster" {
            "ClusterRole"
        } else {
            "Role"
        };
        for want in [
            "CustomResourceDefinition",
            "ServiceAccount",
            role_kind,
            "Service",
            "Deployment",
            "Secret",
        ] {
            assert!(kinds.contains(&want), "{scope}: no {want} in {kinds:?}");
        }
        let role = all.iter().find(|d| d["kind"] == role_kind).unwrap();
        assert_eq!(
            role["rules"],
            shipped_rules(),
            "{scope}: the chart's rules drifted from operator/config/rbac"
        );
        let dep = all.iter().find(|d| d["kind"] == "Deployment").unwrap();
        let c = &dep["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["image"], "aether-dbhub:0.1.0",
            "pinned to the chart's appVersion"
        );
        let env = |name: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no env {name}"))
        };
        assert_eq!(
            env("AETHER_DBHUB_LEADER_ELECT")["value"],
            if replicas == "1" { "false" } else { "true" }
        );
        let watch = env("AETHER_DBHUB_WATCH_NAMESPACE")["value"].clone();
        assert_eq!(
            watch,
            if scope == "cluster" {
                ""
            } else {
                ns.name.as_str()
            }
        );
        assert_eq!(
            env("AETHER_DBHUB_NEO4J_PASSWORD")["valueFrom"]["secretKeyRef"]["key"],
            "password"
        );
        assert!(
            !c.to_string().contains("s3cret-in-a-secret"),
            "the password sits in the Deployment"
        );
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
            65532
        );
        // Every env var the chart sets is one the service reads.
        let sample = std::fs::read_to_string(root(".env.sample")).unwrap();
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap();
            assert!(
                sample.lines().any(|l| l.starts_with(&format!("{name}="))),
                "{name} is not a setting"
            );
        }
        dry_run_apply(&yaml);
    }
    // A missing issuer is refused by the values schema, naming it.
    let (ok, _, err) = helm_template(&ns.name, &[]);
    assert!(!ok);
    assert!(err.contains("'/jwt/issuers'"), "{err}");
}

/// `values.schema.json`: the shipped values (with the one required setting) pass `helm lint
/// --strict`; each mistyped, out-of-range or unknown value fails naming it.
#[test]
fn chart_values_schema_refuses_wrong_values_naming_them() {
    let issuers = "jwt.issuers=https://kc.example/realms/aether";
    let (ok, out, err) = run(
        stack().get("STACK_HELM"),
        &["lint", "--strict", &root(CHART), "--set", issuers],
        None,
    );
    assert!(ok, "helm lint --strict: {out}{err}");
    let wrong: &[(&str, &str, &str)] = &[
        (
            "--set-string",
            "replicaCount=two",
            "'/replicaCount': got string, want integer",
        ),
        (
            "--set-string",
            "leaderElection.enabled=yes-please",
            "'/leaderElection/enabled'",
        ),
        (
            "--set",
            "replicas=2",
            "additional properties 'replicas' not allowed",
        ),
        (
            "--set",
            "image.tagg=1.0",
            "additional properties 'tagg' not allowed",
        ),
        ("--set", "rbac.scope=everywhere", "'/rbac/scope'"),
        ("--set", "probes.perServer=0", "'/probes/perServer'"),
        ("--set", "service.port=70000", "'/service/port'"),
        (
            "--set",
            "dbhub.instanceMode=per-user",
            "'/dbhub/instanceMode'",
        ),
        ("--set", "neo4j.uri=http://neo4j:7474", "'/neo4j/uri'"),
        (
            "--set-string",
            "metrics.serviceMonitor.enabled=maybe",
            "'/metrics/serviceMonitor/enabled'",
        ),
        (
            "--set",
            "metrics.serviceMonitor.interval=often",
            "'/metrics/serviceMonitor/interval'",
        ),
    ];
    for (flag, value, names) in wrong {
        let chart = root(CHART);
        for cmd in [["lint", "--strict"], ["template", "rel"]] {
            let mut args = cmd.to_vec();
            args.extend([
                chart.as_str(),
                "--kube-version",
                "1.36.3",
                "--set",
                issuers,
                flag,
                value,
            ]);
            let cmd = cmd[0];
            let (ok, out, err) = run(stack().get("STACK_HELM"), &args, None);
            assert!(!ok, "helm {cmd} accepted {value}");
            assert!(
                format!("{out}{err}").contains(names),
                "helm {cmd} {value}: {out}{err}"
            );
        }
    }
}

/// The ServiceMonitor: not rendered unless enabled; when enabled, only where the cluster
/// serves its API (or when forced); it scrapes /metrics on the Service's http port.
#[test]
fn chart_service_monitor_only_where_prometheus_operator_is() {
    let render = |extra: &[&str]| {
        let chart = root(CHART);
        let mut args = vec![
            "template",
            "rel",
            chart.as_str(),
            "--kube-version",
            "1.36.3",
            "--set",
            "jwt.issuers=https://kc.example/realms/aether",
        ];
        args.extend(extra);
        let (ok, yaml, err) = run(stack().get("STACK_HELM"), &args, None);
        assert!(ok, "{err}");
        docs(&yaml)
            .into_iter()
            .filter(|d| d["kind"] == "ServiceMonitor")
            .collect::<Vec<_>>()
    };
    assert!(render(&[]).is_empty());
    assert!(
        render(&["--set", "metrics.serviceMonitor.enabled=true"]).is_empty(),
        "no API, not forced"
    );
    let with_api = render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
    ]);
    assert_eq!(with_api.len(), 1);
    let sm = &with_api[0];
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    let forced = render(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.force=true",
        "--set",
        "metrics.serviceMonitor.labels.release=kube-prom",
    ]);
    assert_eq!(forced.len(), 1);
    assert_eq!(forced[0]["metadata"]["labels"]["release"], "kube-prom");
}

#[tokio::test]
async fn kustomize_default_renders_and_applies_with_server_side_dry_run() {
    crate::support::crds::ensure_installed().await;
    let ns = TestNamespace::new("kustomize").await;
    let (ok, yaml, err) = run(
        stack().get("STACK_KUBECTL"),
        &["kustomize", &root("operator/config/default")],
        None,
    );
    assert!(ok, "kubectl kustomize: {err}");
    let all = docs(&yaml);
    let kinds: Vec<&str> = all.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "CustomResourceDefinition")
            .count(),
        2,
        "{kinds:?}"
    );
    for want in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    ] {
        assert!(kinds.contains(&want), "no {want} in {kinds:?}");
    }
    let role = all.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    assert_eq!(role["rules"], shipped_rules());
    let dep = all.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(dep["metadata"]["namespace"], "aether-databases");
    // The namespace does not exist here and a dry-run does not create it: apply into the test
    // namespace instead (the only change), without the Namespace object.
    let retargeted: Vec<String> = yaml
        .split("\n---")
        .filter(|d| !d.contains("kind: Namespace\n"))
        .map(|d| {
            d.replace(
                "namespace: aether-databases",
                &format!("namespace: {}", ns.name),
            )
        })
        .collect();
    dry_run_apply(&retargeted.join("\n---"));
}
