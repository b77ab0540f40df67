//! Test fixtures: the stack's env file, Kubernetes clients, per-test namespaces, unique graph
//! ids and a DBHub process started the way a pod would start it.

#![allow(dead_code)] // each test module uses a different part

pub mod api;
pub mod crds;
pub mod dbhub;
pub mod forward;
pub mod jwks;
pub mod kube;
pub mod logs;
pub mod node;
pub mod operator;
pub mod scenario;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The values `scripts/stack up` wrote to its env file.
pub struct Stack {
    vars: HashMap<String, String>,
}

static STACK: OnceLock<Stack> = OnceLock::new();

/// The running stack. Panics (failing the test, never skipping it) when it is not up.
pub fn stack() -> &'static Stack {
    STACK.get_or_init(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let path = env_file();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the local stack is not up ({}: {e}). Run the tests with scripts/test, \
                 or start the stack with scripts/stack up",
                path.display()
            )
        });
        Stack {
            vars: parse_env(&text),
        }
    })
}

fn env_file() -> PathBuf {
    match std::env::var_os("AETHER_DBHUB_STACK_ENV") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".stack/env"),
    }
}

/// Parses `export KEY='value'` lines (the stack never writes a value containing `'`).
fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

impl Stack {
    /// One value of the env file; panics naming the key when it is missing.
    pub fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the stack's env file"))
    }

    /// The test user's password, full of characters that break naive DSN handling.
    pub fn hostile_password(&self) -> &str {
        self.get("STACK_DB_PASSWORD")
    }

    /// Where tests may record the PIDs of processes they start (so `stack down` stops them).
    pub fn pid_dir(&self) -> PathBuf {
        PathBuf::from(self.get("STACK_DIR")).join("pids")
    }
}

/// One component of the shared stack stopped (`scripts/stack stop NAME`) until dropped, when it
/// is started again on the same port with the same data — also when the test panics.
pub struct Outage(&'static str);

impl Outage {
    /// Stops `component` (etcd, kube-apiserver, neo4j, postgres, mariadb).
    pub fn begin(component: &'static str) -> Self {
        stack_ctl("stop", component).unwrap();
        Self(component)
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        // Never panic here (it may run while a failed test unwinds).
        if let Err(e) = stack_ctl("start", self.0) {
            eprintln!("{e}");
        }
    }
}

fn stack_ctl(action: &str, component: &str) -> Result<(), String> {
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack"))
        .args([action, component])
        .env("AETHER_DBHUB_STACK_DIR", stack().get("STACK_DIR"))
        .output()
        .map_err(|e| format!("running scripts/stack: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "scripts/stack {action} {component} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The connection policy of the tests' API and reconcilers: the stack's databases listen on
/// loopback, which the policy refuses unless allowed; SQLite files live in the temp directory.
pub fn test_policy() -> dbhub_operator::policy::ConnectionPolicy {
    dbhub_operator::policy::ConnectionPolicy {
        hosts: dbhub_operator::policy::HostPolicy::new(
            dbhub_operator::policy::parse_list("127.0.0.0/8").unwrap(),
            Vec::new(),
        ),
        sqlite_dirs: vec![std::env::temp_dir()],
    }
}

/// A short random suffix for names that must not collide between tests or runs.
/// The stack's test database as the PostgreSQL superuser (roles, grants, extensions).
pub fn pg_admin_db_url() -> String {
    let admin = stack().get("STACK_PG_ADMIN_URL");
    format!(
        "{}/{}",
        admin.rsplit_once('/').unwrap().0,
        stack().get("STACK_DB_NAME")
    )
}

pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..10])
}

#[test]
fn parse_env_reads_export_lines() {
    let vars = parse_env("# c\nexport A='x y'\nexport B='p@s:s/w?d#%&=+\"\\$'\n");
    assert_eq!(vars["A"], "x y");
    assert_eq!(vars["B"], "p@s:s/w?d#%&=+\"\\$");
}
