//! Extractors whose every rejection is an [`ApiError`] (problem+json) that names the field or
//! parameter at fault and never echoes what the client sent: serde's own messages quote the
//! offending value, so only its location is reported.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::{ApiError, FieldError};

/// A JSON body. Over the body limit → 413; not JSON → 400 (415 for another content type);
/// a field of the wrong type → 400 naming the field.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || v.ends_with("+json")
            });
        match json {
            Some(true) => {}
            Some(false) => return Err(ApiError::UnsupportedMediaType),
            None => {
                return Err(ApiError::BadRequest(
                    "send the body as JSON with Content-Type: application/json".into(),
                ));
            }
        }
        let limit = state.limits.max_body_bytes;
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| body_rejection(e, limit))?;
        parse(&bytes).map(JsonBody)
    }
}

/// A JSON body that may also be absent (an empty body reads as `T::default()`), for actions
/// whose every field is optional (`/execute`, `/duplicate`).
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let limit = state.limits.max_body_bytes;
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(limit))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        JsonBody::from_request(req, state).await.map(|b| Self(b.0))
    }
}

/// Deserializes `bytes` as `T`, reporting where it failed without quoting values.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(ApiError::BadRequest(format!(
                    "the body is not valid JSON (line {}, column {})",
                    inner.line(),
                    inner.column()
                )))
            } else if path.is_empty() || path == "." {
                Err(ApiError::BadRequest(
                    "the body must be a JSON object with the documented fields".into(),
                ))
            } else {
                Err(ApiError::Validation(vec![FieldError::new(
                    path,
                    "has the wrong type (see the API's OpenAPI document)",
                )]))
            }
        }
    }
}

fn body_rejection(e: BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(limit)
    } else {
        ApiError::BadRequest("the body could not be read".into())
    }
}

/// Query-string parameters. A parameter given twice → 400 naming it (which one would count is
/// ambiguous); unknown parameters are ignored. `T`'s fields should be `Option<String>` and be
/// validated by the handler, so a bad value is reported with what is allowed.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        let mut map = serde_json::Map::new();
        let mut twice = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            if map.insert(k.to_string(), v.into_owned().into()).is_some()
                && !twice.iter().any(|f: &FieldError| f.field == k)
            {
                twice.push(FieldError::new(k, "given more than once: send it once"));
            }
        }
        if !twice.is_empty() {
            return Err(ApiError::Validation(twice));
        }
        match serde_path_to_error::deserialize(serde_json::Value::Object(map)) {
            Ok(v) => Ok(Query(v)),
            Err(e) => Err(ApiError::Validation(vec![FieldError::new(
                e.path().to_string(),
                "is not a valid value for this parameter",
            )])),
        }
    }
}

/// Path parameters; a segment that cannot be read → 400 naming the parameter.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(path_rejection(e)),
        }
    }
}

fn path_rejection(e: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind as K;
    let key = match &e {
        PathRejection::FailedToDeserializePathParams(d) => match d.kind() {
            K::ParseErrorAtKey { key, .. }
            | K::InvalidUtf8InPathParam { key }
            | K::DeserializeError { key, .. } => Some(key.clone()),
            _ => None,
        },
        _ => None,
    };
    match key {
        Some(key) => ApiError::Validation(vec![FieldError::new(
            key,
            "this path segment is not valid (percent-encoded UTF-8 text expected)",
        )]),
        None => ApiError::BadRequest("the request path could not be read".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: Option<String>,
        port: Option<i64>,
    }

    #[test]
    fn a_wrong_type_names_the_field_without_the_value() {
        let e = parse::<Body>(br#"{"name": 5, "port": 1}"#).unwrap_err();
        let body = e.body(None).to_string();
        assert!(body.contains("\"field\":\"name\""), "{body}");
        let secret = parse::<Body>(br#"{"port": "hunter2-secret"}"#)
            .unwrap_err()
            .body(None)
            .to_string();
        assert!(!secret.contains("hunter2"), "{secret}");
        assert!(secret.contains("\"field\":\"port\""), "{secret}");
    }

    #[test]
    fn broken_json_says_where() {
        let e = parse::<Body>(b"{\"name\": ").unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        let e = parse::<Body>(b"\"just text\"").unwrap_err();
        assert!(matches!(e, ApiError::BadRequest(_)), "{e:?}");
    }
}
