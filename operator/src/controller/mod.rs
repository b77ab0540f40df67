//! The reconcilers. Each runs as a kube-runtime Controller until its shutdown future resolves.

pub mod conditions;
pub mod credentials;
pub mod database;
pub mod dbhubinstance;

use futures::{Future, FutureExt};
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

/// Name under which the operator writes (field manager, Event reporter).
pub const MANAGER: &str = "dbhub-operator";

/// Errors a reconcile can hit that make it retry with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object lacks its namespace (never for namespaced kinds).
    #[error("object has no namespace")]
    NoNamespace,
    /// DBHub's configuration could not be produced.
    #[error("rendering the DBHub configuration: {0}")]
    Render(String),
}

impl Error {
    /// Short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::NoNamespace => "no_namespace",
            Self::Render(_) => "render",
        }
    }
}

/// Result with the reconcile error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which namespaces a controller watches: one, or all when `None`.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The namespace to watch; `None` watches every namespace.
    pub namespace: Option<String>,
}

impl Scope {
    /// An API handle for `K` within this scope.
    pub fn api<K>(&self, client: Client) -> kube::Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => kube::Api::namespaced(client, ns),
            None => kube::Api::all(client),
        }
    }
}

/// How the reconcilers are configured.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Which namespaces they watch.
    pub scope: Scope,
    /// Where Database connections may go: checked before every connection check, and the
    /// source of the DBHub pods' NetworkPolicy egress exceptions.
    pub policy: crate::policy::ConnectionPolicy,
    /// How many connection checks may run at once, in all and per server.
    pub probes: database::ProbeLimits,
}

/// An Event recorder reporting as the operator.
pub fn recorder(client: Client) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    )
}

/// How long reconcilers get to finish in-flight work after shutdown is signalled.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs every reconciler until `shutdown` resolves. Returns when all of them have stopped, or
/// SHUTDOWN_GRACE after the signal: kube-runtime 5.0's graceful shutdown never completes when it
/// is signalled before the controller's store is first ready, so the wait is bounded.
pub async fn run_all(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    let controllers = async {
        tokio::join!(
            database::run(client.clone(), config.clone(), shutdown.clone()),
            dbhubinstance::run(client, config, shutdown.clone()),
        )
    };
    tokio::select! {
        _ = controllers => {}
        () = async { shutdown.clone().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconcilers did not stop in time; abandoning them");
        }
    }
}
