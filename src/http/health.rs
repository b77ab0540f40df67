//! `/healthz` (the process is up) and `/readyz` (Neo4j and the Kubernetes API answer).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Readiness report: `ready` plus one entry per dependency, with the reason when it failed.
#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    checks: Checks,
}

#[derive(Debug, Serialize)]
struct Checks {
    neo4j: Check,
    kubernetes: Check,
}

#[derive(Debug, Serialize)]
struct Check {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl Check {
    fn from<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::time::error::Elapsed>) -> Self {
        match r {
            Ok(Ok(())) => Check {
                ok: true,
                reason: None,
            },
            Ok(Err(e)) => Check {
                ok: false,
                reason: Some(e.to_string()),
            },
            Err(_) => Check {
                ok: false,
                reason: Some(format!("no answer within {CHECK_TIMEOUT:?}")),
            },
        }
    }
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (neo4j, kube) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()),
        tokio::time::timeout(CHECK_TIMEOUT, async {
            state.kube.apiserver_version().await.map(|_| ())
        }),
    );
    let checks = Checks {
        neo4j: Check::from(neo4j),
        kubernetes: Check::from(kube),
    };
    let ready = checks.neo4j.ok && checks.kubernetes.ok;
    if !ready {
        tracing::warn!(?checks, "not ready");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, checks }))
}
