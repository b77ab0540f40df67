//! DBHub for tests: a process on loopback (Node 22 + @bytebase/dbhub from the stack's cache)
//! for tests that speak to DBHub itself, and the DBHub of a DBHubInstance in its real pods on the
//! node, reached through its Service ([`serve_instance`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::kube::TestNamespace;
use super::stack;

/// A running DBHub.
pub struct DbHub {
    child: tokio::process::Child,
    pid_file: PathBuf,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    /// Its stdout+stderr log file.
    pub log: PathBuf,
}

impl DbHub {
    /// Starts DBHub with the TOML at `config` and `env` as its only extra environment, then
    /// waits until `/healthz` answers.
    pub async fn start(config: &Path, env: &BTreeMap<String, String>) -> Self {
        let port = free_port();
        let args = [
            "--config",
            config.to_str().unwrap(),
            "--transport",
            "http",
            "--port",
            &port.to_string(),
        ]
        .map(String::from)
        .to_vec();
        Self::spawn(&args, port, &config.with_extension("log"), env).await
    }

    /// Starts DBHub with exactly `args` (which make it listen on `port`) and `env`.
    async fn spawn(args: &[String], port: u16, log: &Path, env: &BTreeMap<String, String>) -> Self {
        let log = log.to_path_buf();
        let out = std::fs::File::create(&log).expect("creating the DBHub log");
        let mut cmd = tokio::process::Command::new(stack().get("STACK_NODE"));
        cmd.arg(stack().get("STACK_DBHUB_JS"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("starting DBHub");
        let pid = child.id().expect("DBHub pid");
        let pid_file = stack().pid_dir().join(format!("dbhub-test-{pid}"));
        let _ = std::fs::write(&pid_file, pid.to_string());
        let hub = Self {
            child,
            pid_file,
            port,
            log,
        };
        hub.wait_healthy().await;
        hub
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    async fn wait_healthy(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let health = format!("http://127.0.0.1:{}/healthz", self.port);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(&health).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "DBHub did not answer /healthz within 60s; log:\n{}",
            self.log_text()
        );
    }

    /// Everything DBHub printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DbHub {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The DBHub of a DBHubInstance, running in its real pods on the node, reached from the host
/// through a TCP forwarder on 127.0.0.1:`port` to the instance's Service (ClusterIP, which
/// kube-proxy balances over the ready pods and which follows rollouts). The host cannot
/// resolve cluster names, and DBHub's Host allow-list admits loopback, so the tests' API (on the
/// host) uses `http://127.0.0.1:<port>/mcp` as its DBHub endpoint. Dropping it cuts the path.
pub struct PodHub {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The instance's DBHub token (from its Secret).
    pub token: String,
    ns: String,
    instance: String,
    task: tokio::task::JoinHandle<()>,
}

impl PodHub {
    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The MCP endpoint at the address of the instance's one Ready pod: what an in-cluster
    /// client reaches through the Service, without the forward (the host routes to pod
    /// addresses, and DBHub admits its own address as a Host).
    pub async fn pod_url(&self) -> String {
        use k8s_openapi::api::core::v1::Pod;
        let api: kube::Api<Pod> = kube::Api::namespaced(super::kube::admin().await, &self.ns);
        let lp = kube::api::ListParams::default().labels(&format!(
            "app.kubernetes.io/name=dbhub,app.kubernetes.io/instance={}",
            self.instance
        ));
        let pods = api.list(&lp).await.expect("listing the instance's pods");
        let pod = pods
            .items
            .iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
            .expect("a DBHub pod of the instance");
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let port = pod.spec.as_ref().and_then(|s| {
            s.containers[0]
                .ports
                .as_ref()?
                .first()
                .map(|p| p.container_port)
        });
        format!(
            "http://{}:{}/mcp",
            ip.expect("the pod's address"),
            port.unwrap_or(8080)
        )
    }

    /// The pods' logs (all containers of the instance's pods).
    pub async fn log_text(&self) -> String {
        super::node::kubectl(&[
            "-n",
            &self.ns,
            "logs",
            "-l",
            &format!("app.kubernetes.io/instance={}", self.instance),
            "--tail=200",
        ])
        .await
        .unwrap_or_else(|e| e)
    }
}

impl Drop for PodHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// True when the instance has exactly `want` pods, all Ready and none terminating (an old pod
/// still finishing its preStop sleep keeps serving the connections it has).
async fn only_current_pods(ns: &TestNamespace, inst: &str, want: i32) -> bool {
    use k8s_openapi::api::core::v1::Pod;
    let lp = kube::api::ListParams::default().labels(&format!(
        "app.kubernetes.io/name=dbhub,app.kubernetes.io/instance={inst}"
    ));
    let Ok(pods) = ns.api::<Pod>().list(&lp).await else {
        return false;
    };
    pods.items.len() == want as usize
        && pods.items.iter().all(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
}

/// Waits until the instance's Deployment has rolled out its current template (every replica
/// updated and available, no old pod left), then forwards 127.0.0.1:`port` to its Service and
/// waits until DBHub answers `/healthz` through it.
pub async fn serve_instance(ns: &TestNamespace, inst: &str, port: u16) -> PodHub {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Secret, Service};
    let deps: kube::Api<Deployment> = ns.api();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let d = deps.get(inst).await.ok();
        let want = d
            .as_ref()
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let st = d
            .as_ref()
            .and_then(|d| d.status.clone())
            .unwrap_or_default();
        let generation = d.as_ref().and_then(|d| d.metadata.generation);
        if want > 0
            && st.observed_generation >= generation
            && st.updated_replicas == Some(want)
            && st.available_replicas == Some(want)
            && st.replicas == Some(want)
            && only_current_pods(ns, inst, want).await
        {
            break;
        }
        if Instant::now() > deadline {
            let pods = super::node::kubectl(&["-n", &ns.name, "get", "pods", "-o", "wide"]).await;
            panic!("Deployment {inst} never rolled out: {st:?}\n{pods:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let svc = ns
        .api::<Service>()
        .get(inst)
        .await
        .expect("the instance's Service");
    let spec = svc.spec.unwrap();
    let target = format!(
        "{}:{}",
        spec.cluster_ip.unwrap(),
        spec.ports.unwrap()[0].port
    );
    let token = ns
        .api::<Secret>()
        .get(&format!("{inst}-token"))
        .await
        .unwrap()
        .data
        .unwrap()["token"]
        .0
        .clone();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("binding the DBHub forwarder");
    let task = super::forward::spawn(listener, move || {
        let target = target.clone();
        async move { Some(target) }
    });
    let hub = PodHub {
        port,
        token: String::from_utf8(token).unwrap(),
        ns: ns.name.clone(),
        instance: inst.to_string(),
        task,
    };
    let http = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(&health).send().await
            && r.status().is_success()
        {
            return hub;
        }
        assert!(
            Instant::now() < deadline,
            "DBHub of {inst} not answering through its Service:\n{}",
            hub.log_text().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
