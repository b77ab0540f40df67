//! The HTTP surface: the only module that uses axum. Each resource's file holds its router
//! (with its OpenAPI operations), handlers and response shapes; handlers parse, call a use case
//! ([`crate::registry`], [`crate::queries`]) and shape the answer. Nothing outside depends on
//! this module but `app.rs`, which serves [`router`].

mod context;
pub mod cors;
mod databases;
pub mod docs;
mod extract;
mod health;
mod layers;
pub mod openapi;
mod paging;
mod problems;
mod queries;
mod saved;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::Verifier;
use crate::error::ApiError;
use crate::storage::Store;

/// What one request may send and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// SQL size, statements and tokens.
    pub sql: crate::sql::Limits,
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
    /// Default deadline of a request (504 beyond).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sql: Default::default(),
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler can reach: cloned for every request (axum hands each handler and
/// middleware its own), so it is one reference-counted pointer.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// The databases use cases.
    pub registry: Arc<crate::registry::Registry>,
    /// The query use cases.
    pub queries: Arc<crate::queries::Queries>,
    /// The saved-query use cases.
    pub saved: Arc<crate::saved::SavedQueries>,
    /// Resolves callers in spaces (with a short cache).
    pub spaces: Arc<crate::spaces::Spaces>,
    /// The Aether graph (space resolution, readiness).
    pub store: Store,
    /// The Kubernetes API (readiness).
    pub kube: kube::Client,
    /// Verifies the bearer tokens of requests.
    pub verifier: Arc<Verifier>,
    /// Body size, request deadline and SQL limits.
    pub limits: Limits,
    /// Origins browsers may call the API from.
    pub cors: cors::Origins,
}

/// The API's routes with their OpenAPI operations.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(databases::router())
        .merge(queries::router())
        .merge(schema::router())
        .merge(saved::router())
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let cors = state.cors.layer();
    let (api, _) = api().split_for_parts();
    let json = Arc::new(openapi::json());
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    let app = Router::new()
        .merge(health::router())
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let json = json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        (*json).clone(),
                    )
                }
            }),
        )
        .merge(docs::router())
        .route("/metrics", axum::routing::get(crate::metrics::handler))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.limits.request_timeout,
            layers::deadline,
        ))
        .with_state(state)
        .layer(middleware::from_fn(layers::request_scope))
        .layer(middleware::from_fn(layers::track))
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
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid));
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
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
