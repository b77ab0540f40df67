//! The HTTP surface. The only module that uses axum.

mod context;
mod databases;
mod health;
pub mod openapi;
mod query;
mod schema;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use dbhub_operator::crd::Database;
use kube::runtime::reflector::Store as Cache;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa_scalar::Servable;

pub use context::{Permission, SpaceContext};
pub use databases::dto;

use crate::auth::Verifier;
use crate::error::REQUEST_ID;
use crate::storage::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The Aether graph.
    pub store: Store,
    /// The Kubernetes API.
    pub kube: kube::Client,
    /// Bearer-token verification.
    pub verifier: Arc<Verifier>,
    /// Secret + CR writes.
    pub writer: crate::kube::Writer,
    /// Watch cache of the service's Database CRs (status without an API call per request).
    pub cache: Cache<Database>,
    /// Refuses database hosts inside the service's own network.
    pub guard: Arc<crate::hostguard::HostGuard>,
    /// DBHub sessions (queries and schema browsing).
    pub hubs: Arc<crate::mcp::hub::Hubs>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .merge(health::router())
        .merge(databases::router())
        .merge(query::router())
        .merge(schema::router())
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi::json(),
                )
            }),
        )
        .merge(utoipa_scalar::Scalar::with_url(
            "/api/v1/docs",
            <openapi::ApiDoc as utoipa::OpenApi>::openapi(),
        ))
        .route("/metrics", axum::routing::get(crate::metrics::handler))
        .with_state(state)
        .layer(middleware::from_fn(request_id_scope))
        .layer(middleware::from_fn(track))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Millis),
                ),
        )
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}

/// The span every request's logs carry: method, route, request id and (once resolved) the
/// space id. The path's query string is left out.
fn request_span(req: &Request) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(req.uri().path(), |p| p.as_str());
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %request_id,
        space_id = tracing::field::Empty,
    )
}

/// Counts the request by method, matched route and status, and times it.
async fn track(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    crate::metrics::http(
        &method,
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// Makes the request id available to error bodies (`request_id`).
async fn request_id_scope(req: Request, next: Next) -> Response {
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|r| r.header_value().to_str().ok())
        .unwrap_or_default()
        .to_string();
    REQUEST_ID.scope(id, next.run(req)).await
}
