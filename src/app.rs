//! Start-up and shutdown: builds the clients, runs the HTTP server until SIGTERM/SIGINT
//! cancels one token, then drains in-flight requests within the shutdown timeout.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{Cli, Command, ServeArgs};
use crate::http::{AppState, router};
use crate::storage::Store;
use crate::telemetry;

/// Runs the chosen subcommand to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Both rustls providers get compiled in (neo4rs and kube pull different ones); pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::Crds => {
            print!(
                "{}",
                dbhub_operator::crd::yaml().context("rendering the CRDs")?
            );
            Ok(())
        }
        Command::Serve(args) => {
            telemetry::init(cli.log_format, &cli.log)?;
            tokio::runtime::Runtime::new()?.block_on(serve(args))
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let kube = kube::Client::try_default()
        .await
        .context("loading the Kubernetes configuration")?;
    let store = Store::connect(&args.neo4j).context("configuring the Neo4j driver")?;
    let app = router(AppState { store, kube });

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

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
    tracing::info!("stopped");
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
