//! The API reference page, `/api/v1/docs`: Swagger UI 5.35.0 (Apache-2.0; vendored unchanged in
//! `assets/swagger-ui/`, which records its origin, licence and hashes) embedded in the binary,
//! rendering `/api/v1/openapi.json`. Nothing on the page comes from anywhere but the service,
//! and its Content-Security-Policy says so: scripts, styles, the document fetch and images only
//! from the service's own origin (images also as `data:` URIs, which Swagger UI's stylesheet
//! uses for its icons), no inline script, no frames, no forms posting elsewhere.

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::IntoResponse;
use axum::routing::get;

/// The vendored Swagger UI release.
pub const VERSION: &str = "5.35.0";

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = include_str!("../../assets/swagger-ui/index.html");
const INIT: &str = include_str!("../../assets/swagger-ui/init.js");
const BUNDLE: &str = include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &str = include_str!("../../assets/swagger-ui/swagger-ui.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, CSP),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}

/// The page and its files.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/api/v1/docs",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/api/v1/docs/init.js",
            get(|| async { asset("text/javascript; charset=utf-8", INIT) }),
        )
        .route(
            "/api/v1/docs/swagger-ui-bundle.js",
            get(|| async { asset("text/javascript; charset=utf-8", BUNDLE) }),
        )
        .route(
            "/api/v1/docs/swagger-ui.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The embedded files are the release recorded in assets/swagger-ui/README.md.
    #[test]
    fn the_embedded_viewer_is_the_recorded_release() {
        let readme = include_str!("../../assets/swagger-ui/README.md");
        assert!(readme.contains(&format!("Swagger UI {VERSION}")));
        assert!(
            readme.contains(&hex(BUNDLE.as_bytes())),
            "swagger-ui-bundle.js changed"
        );
        assert!(
            readme.contains(&hex(CSS.as_bytes())),
            "swagger-ui.css changed"
        );
        // The page loads only the service's own files.
        for line in PAGE.lines().chain(INIT.lines()) {
            assert!(
                !line.contains("http://") && !line.contains("https://"),
                "{line}"
            );
        }
        assert!(
            !PAGE.contains("<script>"),
            "no inline script (the CSP forbids it)"
        );
    }
}
