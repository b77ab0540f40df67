//! The HTTP surface. The only module that uses axum.

mod health;

use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::storage::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The Aether graph.
    pub store: Store,
    /// The Kubernetes API.
    pub kube: kube::Client,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .merge(health::router())
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}
