//! Start-up and shutdown: builds the clients, runs the HTTP server and the reconcilers until
//! the [`Lifecycle`] stops (SIGTERM/SIGINT, or a failure), then drains in-flight requests within
//! the shutdown timeout. A start-up step that gives up, or a supervised task that ends on its
//! own, makes [`run`] fail, and the process exit non-zero with one error line.

use anyhow::Context;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::Verifier;
use crate::config::{Cli, Command, OperatorArgs, ServeArgs};
use crate::http::{AppState, Limits, router};
use crate::lifecycle::Lifecycle;
use crate::queries::Queries;
use crate::registry::Registry;
use crate::storage::Store;
use crate::telemetry;

/// Runs the chosen subcommand to completion. A failure has been logged (one error line) when
/// this returns `Err`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Both rustls providers get compiled in (neo4rs and kube pull different ones); pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    telemetry::init(cli.log_format, &cli.log)?;
    let workers = usize::from(cli.worker_threads);
    let result = match cli.command {
        Command::Openapi => {
            print!("{}", crate::http::openapi::json());
            Ok(())
        }
        Command::Crds => dbhub_operator::crd::yaml()
            .map(|y| print!("{y}"))
            .context("rendering the CRDs"),
        Command::Serve(args) => runtime(workers).and_then(|rt| rt.block_on(serve(*args))),
        Command::Migrate(args) => runtime(workers).and_then(|rt| rt.block_on(migrate(args))),
        Command::Operator(args) => runtime(workers).and_then(|rt| rt.block_on(operator(args))),
    };
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "aether-dbhub stopped with an error");
    }
    result
}

/// The runtime: `workers` threads (0: tokio's default, one per CPU the process may use).
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.enable_all().build().context("starting the async runtime")
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    check_leader_args(&args.leader)?;
    anyhow::ensure!(
        args.limits.request_timeout > Duration::ZERO,
        "--request-timeout must be at least one second"
    );
    let kube = kube::Client::try_default()
        .await
        .context("loading the Kubernetes configuration")?;
    let store = Store::connect(&args.neo4j).context("configuring the Neo4j driver")?;
    let verifier =
        Arc::new(Verifier::from_args(&args.auth).context("configuring token verification")?);
    let state = app_state(&args, kube.clone(), store.clone(), verifier);
    tokio::spawn({
        let registry = state.registry.clone();
        async move { registry.mirror_status().await }
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    let life = Lifecycle::new();
    tokio::spawn(life.clone().stop_on_signal());
    let controllers = crate::leader::spawn(
        kube,
        args.kube.reconcilers(&args.policy),
        args.kube.namespace.clone(),
        args.leader.clone(),
        life.clone(),
    );
    // Migrations run beside the server (readiness fails while Neo4j is unreachable anyway);
    // if they cannot be applied within the start-up timeout the process fails.
    let (migrating, wait) = (life.clone(), args.neo4j.startup_timeout);
    tokio::spawn(async move {
        if let Err(e) = migrate_within(&store, wait).await {
            migrating.fail(format!("{e:#}"));
        }
    });

    let queries = state.queries.clone();
    let drain = life.token().clone();
    // Small answers go out at once (no Nagle delay waiting for the client's ACK).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { drain.cancelled().await });
    let mut server = std::pin::pin!(server.into_future());
    let stopping = life.token().clone();
    tokio::select! {
        res = &mut server => {
            if let Err(e) = res {
                life.fail(format!("the HTTP server failed: {e}"));
            } else if !life.is_stopping() {
                life.fail("the HTTP server stopped unexpectedly");
            }
        }
        () = async { stopping.cancelled().await; tokio::time::sleep(args.shutdown_timeout).await } => {
            tracing::warn!(timeout = ?args.shutdown_timeout, "requests still running after the shutdown timeout; stopping anyway");
        }
    }
    life.stop();
    // The runs answered before the drain are written before the process ends.
    queries.flush_history().await;
    controllers.await.context("the reconcilers panicked")?;
    life.outcome()?;
    tracing::info!("stopped");
    Ok(())
}

/// Everything the API is built from (the configuration, or a test's choices).
pub struct Wiring {
    /// The Kubernetes API.
    pub kube: kube::Client,
    /// The service's namespace.
    pub namespace: String,
    /// DBHub instance layout.
    pub mode: crate::config::InstanceMode,
    /// `defaultPolicy` (readonly, maxRows) of the instances the service creates.
    pub default_policy: (bool, i32),
    /// DBHub endpoint override (outside the cluster).
    pub dbhub_endpoint: Option<String>,
    /// Base timeout of DBHub calls.
    pub dbhub_timeout: Duration,
    /// Where database connections may go.
    pub policy: dbhub_operator::policy::ConnectionPolicy,
    /// Connection tests one user may start per minute.
    pub test_rate_limit: u32,
    /// Body size, request deadline and SQL limits.
    pub limits: Limits,
    /// Origins browsers may call the API from.
    pub cors: crate::http::cors::Origins,
    /// How long a caller's membership of a space is remembered.
    pub space_cache_ttl: Duration,
    /// The Aether graph (records, history, space resolution).
    pub store: Store,
    /// Verifies the bearer tokens of requests.
    pub verifier: Arc<Verifier>,
}

/// The use cases and what the handlers reach.
pub fn wire(w: Wiring) -> AppState {
    let cluster = crate::k8s::Cluster::new(w.kube.clone(), w.namespace, w.mode)
        .with_default_policy(w.default_policy.0, w.default_policy.1);
    let directory = crate::k8s::directory::Directory::new(cluster.clone(), w.dbhub_endpoint);
    let hubs = Arc::new(crate::mcp::hub::Hubs::new(directory, w.dbhub_timeout));
    let registry = Arc::new(Registry::new(
        w.store.clone(),
        cluster,
        w.policy,
        w.test_rate_limit,
    ));
    let queries = Arc::new(Queries::new(
        w.store.clone(),
        registry.clone(),
        hubs,
        w.limits.sql,
    ));
    let saved = Arc::new(crate::saved::SavedQueries::new(
        w.store.clone(),
        queries.clone(),
    ));
    AppState::new(crate::http::Shared {
        spaces: Arc::new(crate::spaces::Spaces::new(
            w.store.clone(),
            w.space_cache_ttl,
        )),
        registry,
        queries,
        saved,
        store: w.store,
        kube: w.kube,
        verifier: w.verifier,
        limits: w.limits,
        cors: w.cors,
    })
}

fn app_state(
    args: &ServeArgs,
    kube: kube::Client,
    store: Store,
    verifier: Arc<Verifier>,
) -> AppState {
    wire(Wiring {
        kube,
        namespace: args.kube.namespace.clone(),
        mode: args.instance_mode,
        default_policy: (args.dbhub.default_readonly, args.dbhub.default_max_rows),
        dbhub_endpoint: Some(args.dbhub.endpoint.clone()),
        dbhub_timeout: args.dbhub.timeout,
        policy: args.policy.policy(),
        test_rate_limit: args.test_rate_limit,
        limits: Limits {
            sql: args.limits.sql(),
            max_body_bytes: args.limits.max_body_bytes as usize,
            request_timeout: args.limits.request_timeout,
        },
        cors: args.cors_allowed_origins.clone(),
        space_cache_ttl: args.space_cache_ttl,
        store,
        verifier,
    })
}

/// Applies graph migrations, retrying while Neo4j is not reachable yet, for at most `wait`; a
/// changed migration fails at once.
async fn migrate_within(store: &Store, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    let mut attempt = 0;
    loop {
        attempt += 1;
        // One attempt may wait --neo4j-timeout to connect; the start-up timeout still holds.
        let left = deadline.saturating_duration_since(Instant::now());
        let attempted = tokio::time::timeout(left, crate::storage::migrate::run(store))
            .await
            .unwrap_or_else(|_| {
                Err(crate::storage::Error::Unavailable(
                    "no answer before the start-up timeout".into(),
                ))
            });
        match attempted {
            Ok(_) => return Ok(()),
            Err(e @ crate::storage::Error::Migration(_)) => {
                return Err(anyhow::Error::from(e).context("graph migrations cannot be applied"));
            }
            Err(e) if Instant::now() + Duration::from_secs(2) < deadline => {
                tracing::warn!(error = %e, attempt, "graph migrations not applied yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "Neo4j did not accept the graph migrations within {}s (--neo4j-startup-timeout)",
                    wait.as_secs()
                )));
            }
        }
    }
}

async fn migrate(args: crate::config::MigrateArgs) -> anyhow::Result<()> {
    let store = Store::connect(&args.neo4j).context("configuring the Neo4j driver")?;
    let n = crate::storage::migrate::run(&store)
        .await
        .context("applying graph migrations")?;
    tracing::info!(applied = n, "graph migrations done");
    Ok(())
}

async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    check_leader_args(&args.leader)?;
    let kube = kube::Client::try_default()
        .await
        .context("loading the Kubernetes configuration")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let life = Lifecycle::new();
    tokio::spawn(life.clone().stop_on_signal());
    tracing::info!(scope = ?args.kube.reconcilers(&args.policy).scope, "reconcilers starting");
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz and /metrics");
    let probes = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/metrics", axum::routing::get(crate::metrics::handler));
    let (drain, serving) = (life.token().clone(), life.clone());
    tokio::spawn(async move {
        let res = axum::serve(listener, probes)
            .with_graceful_shutdown(async move { drain.cancelled().await })
            .await;
        if !serving.is_stopping() {
            serving.fail(match res {
                Err(e) => format!("the /healthz and /metrics server failed: {e}"),
                Ok(()) => "the /healthz and /metrics server stopped unexpectedly".into(),
            });
        }
    });
    crate::leader::spawn(
        kube,
        args.kube.reconcilers(&args.policy),
        args.kube.namespace.clone(),
        args.leader.clone(),
        life.clone(),
    )
    .await
    .context("the reconcilers panicked")?;
    life.stop();
    life.outcome()?;
    tracing::info!("stopped");
    Ok(())
}

fn check_leader_args(l: &crate::config::LeaderArgs) -> anyhow::Result<()> {
    if l.enabled && l.grace >= l.duration {
        anyhow::bail!(
            "--leader-elect-grace ({}s) must be shorter than --leader-elect-duration ({}s)",
            l.grace,
            l.duration
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_runtime_has_the_threads_asked_for_or_tokios_default() {
        assert_eq!(super::runtime(1).unwrap().metrics().num_workers(), 1);
        assert_eq!(super::runtime(3).unwrap().metrics().num_workers(), 3);
        // tokio's default: TOKIO_WORKER_THREADS when set, else the CPUs this process may use.
        let cpus = std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        assert_eq!(super::runtime(0).unwrap().metrics().num_workers(), cpus);
    }
}
