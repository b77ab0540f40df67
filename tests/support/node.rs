//! The stack's Kubernetes node from a user's side: kubectl and helm as the stack's admin, pods
//! that run commands, waiting for what the cluster reports, and an OIDC-style JWKS issuer that
//! pods can reach (the chart's service verifies tokens against it as it would Keycloak's).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{stack, unique};

/// Runs the stack's kubectl (admin) with `args` and `stdin`; Err carries stderr.
pub async fn kubectl_in(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    run(stack().get("STACK_KUBECTL"), args, stdin).await
}

/// Runs the stack's kubectl (admin).
pub async fn kubectl(args: &[&str]) -> Result<String, String> {
    kubectl_in(args, None).await
}

/// `kubectl get ... -o json`, parsed; None when it does not exist (or cannot be read).
pub async fn get_json(args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    kubectl(&a)
        .await
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
}

/// Runs the stack's helm (admin kubeconfig).
pub async fn helm(args: &[&str]) -> Result<String, String> {
    run(stack().get("STACK_HELM"), args, None).await
}

/// `program` (the stack's kubectl or helm) as the stack's admin, helm's state in the temp dir.
pub fn admin_command(program: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    let helm = std::env::temp_dir().join("aether-dbhub-helm");
    cmd.env("KUBECONFIG", stack().get("KUBECONFIG"))
        .env("HELM_CACHE_HOME", helm.join("cache"))
        .env("HELM_CONFIG_HOME", helm.join("config"))
        .env("HELM_DATA_HOME", helm.join("data"));
    cmd
}

async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::from(admin_command(program));
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("running {program}: {e}"))?;
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .map_err(|_| format!("{program} {args:?} did not finish within 300s"))?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// Polls `check` every 500 ms until it yields a value; panics after `secs` with `what` and the
/// last thing `check` saw (its Err).
pub async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        match check().await {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{what}: not within {secs}s; last seen: {last}");
}

/// A namespace with a fixed name (the seed's samples name theirs): any earlier one of that name
/// is deleted and waited for first; deleted again when dropped.
pub struct FixedNamespace(pub String);

impl FixedNamespace {
    pub async fn fresh(name: &str) -> Self {
        let _ = kubectl(&[
            "delete",
            "namespace",
            name,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ])
        .await;
        kubectl(&["create", "namespace", name]).await.unwrap();
        Self(name.to_string())
    }
}

impl Drop for FixedNamespace {
    fn drop(&mut self) {
        let _ = admin_command(stack().get("STACK_KUBECTL"))
            .args([
                "delete",
                "namespace",
                &self.0,
                "--wait=false",
                "--ignore-not-found",
            ])
            .output();
    }
}

/// Waits until namespace `name` is gone (its finalizers ran: pods, owned objects).
pub async fn wait_namespace_gone(name: &str, secs: u64) {
    wait_for(&format!("namespace {name} deleted"), secs, || async {
        match get_json(&["namespace", name]).await {
            None => Ok(()),
            Some(ns) => Err(format!("phase {}", ns["status"]["phase"])),
        }
    })
    .await
}

/// A pod that sleeps, to run commands in with `kubectl exec`: `image` (the node's busybox or the
/// DBHub image for Node.js), `labels` on it.
pub async fn client_pod(ns: &str, image: &str, labels: Value) -> String {
    let name = unique("client");
    let (command, args) = if image.contains("dbhub") {
        (
            json!(["node"]),
            json!(["-e", "setInterval(() => {}, 1 << 30)"]),
        )
    } else {
        (json!(["sleep"]), json!(["3600"]))
    };
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
                 "automountServiceAccountToken": false,
                 "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000},
                 "containers": [{"name": "c", "image": image, "imagePullPolicy": "IfNotPresent",
                                 "command": command, "args": args}]}
    });
    kubectl_in(&["apply", "-f", "-"], Some(&pod.to_string()))
        .await
        .unwrap();
    kubectl(&[
        "-n",
        ns,
        "wait",
        "--for=condition=Ready",
        &format!("pod/{name}"),
        "--timeout=120s",
    ])
    .await
    .unwrap_or_else(|e| panic!("client pod {name} not Ready: {e}"));
    name
}

/// `kubectl exec` in `pod`: stdout, or Err with stderr.
pub async fn exec(ns: &str, pod: &str, cmd: &[&str]) -> Result<String, String> {
    let mut a = vec!["-n", ns, "exec", pod, "--"];
    a.extend_from_slice(cmd);
    kubectl(&a).await
}

/// A Node.js script run in `pod` (an image with node) that calls DBHub's MCP endpoint `url` with
/// `token`: lists the tools and runs `sql` with the first `execute_sql*` tool. Prints one JSON
/// line `{tools: [...], result: <tools/call result>}`.
pub async fn mcp_from_pod(
    ns: &str,
    pod: &str,
    url: &str,
    token: &str,
    sql: &str,
) -> Result<Value, String> {
    let script = r#"
const [url, token, sql] = process.argv.slice(1);
const call = async (id, method, params) => {
  const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json',
    'Accept': 'application/json, text/event-stream', 'Authorization': 'Bearer ' + token},
    body: JSON.stringify({jsonrpc: '2.0', id, method, params})});
  const text = await r.text();
  if (!r.ok) throw new Error(method + ': HTTP ' + r.status + ' ' + text);
  const data = text.split('\n').filter(l => l.startsWith('data:')).map(l => l.slice(5)).join('') || text;
  const msg = JSON.parse(data);
  if (msg.error) throw new Error(method + ': ' + JSON.stringify(msg.error));
  return msg.result;
};
(async () => {
  await call(1, 'initialize', {protocolVersion: '2025-06-18', capabilities: {},
    clientInfo: {name: 'aether-dbhub-node-test', version: '1'}});
  const tools = (await call(2, 'tools/list', {})).tools.map(t => t.name);
  const exec = tools.find(t => t.startsWith('execute_sql'));
  const result = await call(3, 'tools/call', {name: exec, arguments: {sql}});
  console.log(JSON.stringify({tools, result}));
})().catch(e => { console.error(String(e)); process.exit(1); });
"#;
    let out = exec(ns, pod, &["node", "-e", script, url, token, sql]).await?;
    serde_json::from_str(out.trim()).map_err(|e| format!("{e}: {out}"))
}

/// An RS256 issuer whose JWKS pods can fetch (served on the bridge address), as the chart's
/// service would use Keycloak's.
pub struct Issuer {
    pub iss: String,
    pub jwks_url: String,
    keys: super::jwks::Keys,
    task: tokio::task::JoinHandle<()>,
}

impl Issuer {
    pub async fn start() -> Self {
        let pem = std::env::temp_dir().join(unique("issuer")).join("key.pem");
        let keys = super::jwks::Keys::load_or_create(&pem).unwrap();
        let _ = std::fs::remove_dir_all(pem.parent().unwrap());
        let listener = tokio::net::TcpListener::bind((stack().get("STACK_BRIDGE_IP"), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let task = keys.serve(listener);
        Self {
            iss: format!("http://{addr}/realms/node-test"),
            jwks_url: format!("http://{addr}/certs"),
            keys,
            task,
        }
    }

    /// A token for `sub`, valid for an hour.
    pub fn token(&self, sub: &str) -> String {
        self.keys.token(&self.iss, sub, 3600)
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The service image `scripts/stack image` built and imported (the README's test command builds
/// it before the tests run).
pub fn service_image() -> String {
    let f = PathBuf::from(stack().get("STACK_DIR")).join("service-image");
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/stack image", f.display()))
        .trim()
        .to_string()
}
