//! Start-up and shutdown: builds the clients, runs the HTTP server until SIGTERM/SIGINT
//! cancels one token, then drains in-flight requests within the shutdown timeout.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Verifier;
use crate::config::{Cli, Command, OperatorArgs, ServeArgs};
use crate::http::{AppState, router};
use crate::storage::Store;
use crate::telemetry;

/// Runs the chosen subcommand to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Both rustls providers get compiled in (neo4rs and kube pull different ones); pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Openapi => {
            print!("{}", crate::http::openapi::json());
            Ok(())
        }
        Command::Crds => {
            print!(
                "{}",
                dbhub_operator::crd::yaml().context("rendering the CRDs")?
            );
            Ok(())
        }
        Command::Serve(args) => {
            telemetry::init(cli.log_format, &cli.log)?;
            tokio::runtime::Runtime::new()?.block_on(serve(*args))
        }
        Command::Migrate(args) => {
            telemetry::init(cli.log_format, &cli.log)?;
            tokio::runtime::Runtime::new()?.block_on(migrate(args))
        }
        Command::Operator(args) => {
            telemetry::init(cli.log_format, &cli.log)?;
            tokio::runtime::Runtime::new()?.block_on(operator(args))
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let kube = kube::Client::try_default()
        .await
        .context("loading the Kubernetes configuration")?;
    let store = Store::connect(&args.neo4j).context("configuring the Neo4j driver")?;
    let verifier =
        Arc::new(Verifier::from_args(&args.auth).context("configuring token verification")?);
    let cache = crate::kube::status_cache(kube.clone(), &args.kube.namespace);
    let writer = crate::kube::Writer::new(
        kube.clone(),
        args.kube.namespace.clone(),
        args.instance_mode,
    )
    .with_default_policy(args.dbhub.default_readonly, args.dbhub.default_max_rows);
    let hubs = Arc::new(crate::mcp::hub::Hubs::new(
        kube.clone(),
        &args.kube.namespace,
        Some(args.dbhub.endpoint.clone()),
        args.dbhub.timeout,
    ));
    let app_store_for_migrations = store.clone();
    let guard = crate::hostguard::HostGuard::new(
        args.host_allow_cidrs.0.clone(),
        args.host_deny_cidrs.0.clone(),
    );
    let app = router(AppState {
        store,
        kube: kube.clone(),
        verifier,
        writer,
        cache,
        guard: Arc::new(guard),
        hubs,
    });

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    check_leader_args(&args.leader)?;
    let controllers = crate::leader::spawn(
        kube,
        args.kube.scope(),
        args.kube.namespace.clone(),
        args.leader.clone(),
        shutdown.clone(),
    );
    // Migrations run beside the server (readiness fails while Neo4j is unreachable anyway);
    // one that cannot be applied stops the process.
    let (migrations, stop) = (app_store_for_migrations, shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = migrate_with_retry(&migrations).await {
            tracing::error!(error = %e, "graph migrations failed; shutting down");
            stop.cancel();
        }
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    let drain = shutdown.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { drain.cancelled().await });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        res = &mut server => res.context("HTTP server failed")?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(args.shutdown_timeout).await } => {
            tracing::warn!(timeout = ?args.shutdown_timeout, "requests still running after the shutdown timeout; stopping anyway");
        }
    }
    shutdown.cancel();
    controllers.await.context("the reconcilers panicked")?;
    tracing::info!("stopped");
    Ok(())
}

/// Applies graph migrations, retrying while Neo4j is not reachable yet (up to a minute); a
/// changed migration fails at once.
async fn migrate_with_retry(store: &Store) -> anyhow::Result<()> {
    for attempt in 1..=30 {
        match crate::storage::migrate::run(store).await {
            Ok(_) => return Ok(()),
            Err(e @ crate::storage::Error::Migration(_)) => return Err(e.into()),
            Err(e) if attempt < 30 => {
                tracing::warn!(error = %e, attempt, "graph migrations not applied yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(anyhow::Error::from(e).context("applying graph migrations")),
        }
    }
    unreachable!()
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
    let kube = kube::Client::try_default()
        .await
        .context("loading the Kubernetes configuration")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    check_leader_args(&args.leader)?;
    tracing::info!(scope = ?args.kube.scope(), "reconcilers starting");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz and /metrics");
    let probes = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/metrics", axum::routing::get(crate::metrics::handler));
    let drain = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, probes)
            .with_graceful_shutdown(async move { drain.cancelled().await })
            .await
    });
    crate::leader::spawn(
        kube,
        args.kube.scope(),
        args.kube.namespace.clone(),
        args.leader.clone(),
        shutdown.clone(),
    )
    .await
    .context("the reconcilers panicked")?;
    shutdown.cancel();
    let _ = server.await;
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

async fn cancel_on_signal(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    token.cancel();
}
