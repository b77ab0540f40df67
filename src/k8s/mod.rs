//! Kubernetes as the service uses it — the only module besides the operator crate that talks to
//! the apiserver: the Secret + Database CR writes behind REST calls ([`writes`]), the watch
//! caches the API reads status from ([`cache`]), and where each space's DBHub is and how to
//! authenticate to it ([`directory`], which the MCP hub consumes through a narrow trait).

pub mod cache;
pub mod directory;
pub mod writes;

use kube::Client;
use kube::runtime::reflector::Store;

use dbhub_operator::crd::{DBHubInstance, Database};

pub use crate::config::InstanceMode;

/// Label: who manages an object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label: the Aether space.
pub const SPACE_LABEL: &str = "aether.tas.io/space-id";
/// Label: the Aether tenant.
pub const TENANT_LABEL: &str = "aether.tas.io/tenant-id";
/// Label: the record id.
pub const DATABASE_ID_LABEL: &str = "dbhub.tas.io/database-id";
/// The value of `MANAGED_BY` on what this service creates.
pub const MANAGER: &str = "aether-dbhub";

/// A Kubernetes call failed.
#[derive(Debug, thiserror::Error)]
#[error("kubernetes: {0}")]
pub struct Error(#[from] pub kube::Error);

impl Error {
    /// A short, secret-free reason (`403 Forbidden`, `API unreachable`).
    pub fn reason(&self) -> String {
        reason(&self.0)
    }
}

/// A short, secret-free reason for a Kubernetes failure.
pub fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason),
        _ => "API unreachable".into(),
    }
}

impl From<Error> for crate::model::Error {
    fn from(e: Error) -> Self {
        Self::Unavailable(format!(
            "Kubernetes could not be reached or refused the change ({}); nothing was kept, retry shortly.",
            e.reason()
        ))
    }
}

/// The service's namespace on the cluster: where its Database CRs, Secrets and DBHub instances
/// live, with watch caches of the CRs and instances there.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    namespace: String,
    mode: InstanceMode,
    default_policy: (bool, i32),
    databases: Store<Database>,
    instances: Store<DBHubInstance>,
    changes:
        std::sync::Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<cache::StatusChange>>>>,
}

/// Status changes buffered for the graph mirror; beyond this the oldest news is dropped (the
/// next change of the same Database carries its whole status again).
const CHANGE_BUFFER: usize = 4096;

impl Cluster {
    /// Starts the watches of `namespace`; the caches fill in the background.
    pub fn new(client: Client, namespace: impl Into<String>, mode: InstanceMode) -> Self {
        let namespace = namespace.into();
        let (tx, rx) = tokio::sync::mpsc::channel(CHANGE_BUFFER);
        let databases = cache::watch_then(client.clone(), &namespace, move |db: Database| {
            if let Some(change) = cache::status_change(&db) {
                let _ = tx.try_send(change);
            }
        });
        Self {
            databases,
            changes: std::sync::Arc::new(std::sync::Mutex::new(Some(rx))),
            instances: cache::watch(client.clone(), &namespace),
            client,
            namespace,
            mode,
            default_policy: (
                dbhub_operator::crd::defaults::readonly(),
                dbhub_operator::crd::defaults::max_rows(),
            ),
        }
    }

    /// Sets `defaultPolicy` (readonly, maxRows) of the instances this service creates.
    pub fn with_default_policy(mut self, readonly: bool, max_rows: i32) -> Self {
        self.default_policy = (readonly, max_rows);
        self
    }

    /// The namespace the service keeps its Database CRs, Secrets and DBHub instances in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// How DBHub instances are laid out.
    pub fn mode(&self) -> InstanceMode {
        self.mode
    }

    /// The DBHubInstance serving `space_id`.
    pub fn instance_for(&self, space_id: &str) -> String {
        instance_name(self.mode, space_id)
    }

    /// The stream of Database status changes (for the graph mirror); once.
    pub fn take_status_changes(&self) -> Option<tokio::sync::mpsc::Receiver<cache::StatusChange>> {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The raw client (readiness checks).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The DBHubInstance serving `space_id`: `dbhub-<space>` (DNS-1123, ≤ 63 characters; a digest
/// keeps long or unusual ids unique), or `dbhub` when shared.
pub fn instance_name(mode: InstanceMode, space_id: &str) -> String {
    if mode == InstanceMode::Shared {
        return "dbhub".into();
    }
    let clean: String = space_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let clean = clean.trim_matches('-').to_string();
    if !clean.is_empty() && clean.len() <= 57 && clean == space_id {
        return format!("dbhub-{clean}");
    }
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(space_id.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let head: String = clean.chars().take(48).collect();
    format!("dbhub-{}-{digest}", head.trim_matches('-'))
}

/// The credentials Secret of a CR.
pub fn secret_name(cr: &str) -> String {
    format!("{cr}-credentials")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_dns_labels_and_unique() {
        assert_eq!(
            instance_name(InstanceMode::PerSpace, "space-1"),
            "dbhub-space-1"
        );
        assert_eq!(instance_name(InstanceMode::Shared, "space-1"), "dbhub");
        let odd = instance_name(InstanceMode::PerSpace, "Space_1");
        let other = instance_name(InstanceMode::PerSpace, "space_1");
        assert_ne!(odd, other, "ids that clean up alike stay distinct");
        let long = instance_name(InstanceMode::PerSpace, &"x".repeat(200));
        for n in [odd, other, long] {
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.ends_with('-'));
        }
    }
}
