//! A real DBHub process (Node 22 + @bytebase/dbhub from the stack's cache), started on
//! loopback exactly as the DBHub container would be: `--config`, `--transport http`, a port,
//! and its environment (DSNs, auth token). Killed when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::kube::TestNamespace;
use super::{stack, unique};

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

    /// Starts DBHub with exactly `args` (which must make it listen on `port`) and `env`.
    pub async fn spawn(
        args: &[String],
        port: u16,
        log: &Path,
        env: &BTreeMap<String, String>,
    ) -> Self {
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

pub use super::localpod::PodView;

/// What the Deployment of `inst` would give its container.
pub async fn pod_view(ns: &TestNamespace, inst: &str) -> PodView {
    super::localpod::pod_view(ns.client.clone(), &ns.name, inst)
        .await
        .expect("the instance's objects")
}

/// Starts DBHub as the container would, on loopback: same args except the listen address,
/// port and config path (the mounted file's stand-in).
pub async fn run_pod(view: &PodView) -> DbHub {
    run_pod_on(view, free_port()).await
}

/// As [`run_pod`], listening on `port`.
pub async fn run_pod_on(view: &PodView, port: u16) -> DbHub {
    let dir = std::env::temp_dir().join(unique("pod"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("dbhub.toml");
    std::fs::write(&config, &view.config).unwrap();
    let args = super::localpod::loopback_args(view, port, &config).unwrap();
    DbHub::spawn(&args, port, &dir.join("dbhub.log"), &view.env).await
}
