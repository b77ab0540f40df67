//! Cross-origin calls from browsers (Aether's UI served on another origin calls the API
//! directly): tower-http's CORS layer for the configured origins, with the headers the frontend
//! sends. No origins, no layer: responses then carry no CORS headers.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The allowed origins (`--cors-allowed-origins`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origins {
    /// No CORS headers.
    #[default]
    None,
    /// Any origin (`*`).
    Any,
    /// Exactly these (`scheme://host[:port]`).
    List(Vec<HeaderValue>),
}

impl Origins {
    /// Parses a comma-separated list; each entry must be an origin, with no path.
    pub fn parse(s: &str) -> Result<Self, String> {
        let entries: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(Self::None);
        }
        if entries == ["*"] {
            return Ok(Self::Any);
        }
        entries
            .into_iter()
            .map(origin)
            .collect::<Result<_, _>>()
            .map(Self::List)
    }

    /// The layer, or None when no origin is allowed.
    pub fn layer(&self) -> Option<CorsLayer> {
        let allow = match self {
            Self::None => return None,
            Self::Any => AllowOrigin::any(),
            Self::List(list) => AllowOrigin::list(list.clone()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                    Method::OPTIONS,
                ])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-space-type"),
                    HeaderName::from_static("x-space-id"),
                    HeaderName::from_static("x-request-id"),
                ])
                .expose_headers([
                    header::LOCATION,
                    header::RETRY_AFTER,
                    HeaderName::from_static("x-request-id"),
                ])
                .max_age(Duration::from_secs(600)),
        )
    }
}

/// One origin as browsers send it: `http` or `https`, a host, maybe a port, nothing else.
fn origin(e: &str) -> Result<HeaderValue, String> {
    let bad = || {
        format!("{e:?} is not an origin: write scheme://host[:port], e.g. http://localhost:3000")
    };
    let rest = e
        .strip_prefix("https://")
        .or_else(|| e.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let plain = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if !plain {
        return Err(bad());
    }
    HeaderValue::from_str(e).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_as_browsers_send_them() {
        assert_eq!(Origins::parse(""), Ok(Origins::None));
        assert_eq!(Origins::parse(" , "), Ok(Origins::None));
        assert_eq!(Origins::parse("*"), Ok(Origins::Any));
        assert_eq!(
            Origins::parse("http://localhost:3000, https://aether.example"),
            Ok(Origins::List(vec![
                HeaderValue::from_static("http://localhost:3000"),
                HeaderValue::from_static("https://aether.example"),
            ]))
        );
        for bad in [
            "localhost:3000",
            "http://x/path",
            "ftp://x",
            "http://",
            "*, http://a",
        ] {
            let err = Origins::parse(bad).unwrap_err();
            assert!(err.contains("scheme://host[:port]"), "{bad}: {err}");
        }
        assert!(Origins::None.layer().is_none());
        assert!(Origins::Any.layer().is_some());
    }
}
