//! The middleware every request passes: the request-id scope for error bodies, a deadline that
//! answers 504 problem+json (a query may extend its own), a panic catcher that answers 500
//! problem+json and logs the panic once, and the request metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tower_http::request_id::RequestId;

use crate::error::{ApiError, REQUEST_ID};

/// The point in time a request must be answered by. Handlers that know they need longer (a
/// query on a database with a long query timeout) move it later with [`Deadline::extend`].
#[derive(Clone)]
pub struct Deadline {
    start: Instant,
    /// Milliseconds after `start`.
    at_ms: Arc<AtomicU64>,
}

impl Deadline {
    fn new(after: Duration) -> Self {
        Self {
            start: Instant::now(),
            at_ms: Arc::new(AtomicU64::new(after.as_millis() as u64)),
        }
    }

    /// Allows the request to run until `budget` from now, if that is later than the deadline.
    pub fn extend(&self, budget: Duration) {
        let wanted = (self.start.elapsed() + budget).as_millis() as u64;
        self.at_ms.fetch_max(wanted, Ordering::AcqRel);
    }

    fn remaining(&self) -> Duration {
        Duration::from_millis(self.at_ms.load(Ordering::Acquire))
            .saturating_sub(self.start.elapsed())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Deadline {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        parts.extensions.get::<Deadline>().cloned().ok_or_else(|| {
            ApiError::Domain(crate::model::Error::Internal("no request deadline".into()))
        })
    }
}

/// Answers 504 when the request outlives its [`Deadline`] (the handler is dropped; multi-step
/// writes run in tasks of their own, so nothing is left half-made).
pub async fn deadline(State(timeout): State<Duration>, mut req: Request, next: Next) -> Response {
    let deadline = Deadline::new(timeout);
    req.extensions_mut().insert(deadline.clone());
    let mut running = std::pin::pin!(next.run(req));
    loop {
        let left = deadline.remaining();
        if left.is_zero() {
            let secs = deadline.start.elapsed().as_secs();
            return ApiError::DeadlineExceeded(format!(
                "The request did not finish within {secs} s; retry later (see --request-timeout)."
            ))
            .into_response();
        }
        // Wake at the deadline; if a handler extended it meanwhile, wait on.
        if let Ok(res) = tokio::time::timeout(left, &mut running).await {
            return res;
        }
    }
}

/// Makes the request id available to error bodies (`request_id`) and turns a panicking
/// handler into a 500 problem+json carrying that id; the panic is logged once, here.
pub async fn request_scope(req: Request, next: Next) -> Response {
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|r| r.header_value().to_str().ok())
        .unwrap_or_default()
        .to_string();
    REQUEST_ID
        .scope(id, async move {
            match std::panic::AssertUnwindSafe(next.run(req))
                .catch_unwind()
                .await
            {
                Ok(res) => res,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".into());
                    tracing::error!(panic = %what, "a request handler panicked");
                    ApiError::Panicked.into_response()
                }
            }
        })
        .await
}

/// Counts the request by method, matched route and status, and times it.
pub async fn track(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    crate::metrics::http(
        &method,
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn panics() -> &'static str {
        panic!("secret detail {}", 42)
    }

    fn app(timeout: Duration) -> Router {
        Router::new()
            .route("/panic", get(panics))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route(
                "/extended",
                get(|d: Deadline| async move {
                    d.extend(Duration::from_millis(400));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    "in time"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(timeout, deadline))
            .layer(axum::middleware::from_fn(request_scope))
    }

    async fn get_body(app: Router, path: &str) -> (u16, String, Option<String>) {
        let res = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap(), ct)
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_problem_json_without_the_detail() {
        let (status, body, ct) = get_body(app(Duration::from_secs(5)), "/panic").await;
        assert_eq!(status, 500);
        assert_eq!(ct.as_deref(), Some("application/problem+json"));
        assert!(!body.contains("secret detail"), "{body}");
        assert!(body.contains("\"request_id\""), "{body}");
    }

    #[tokio::test]
    async fn a_slow_request_is_answered_504_at_its_deadline_unless_extended() {
        let started = Instant::now();
        let (status, body, _) = get_body(app(Duration::from_millis(100)), "/slow").await;
        assert_eq!(status, 504, "{body}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let (status, body, _) = get_body(app(Duration::from_millis(100)), "/extended").await;
        assert_eq!((status, body.as_str()), (200, "in time"));
    }
}
