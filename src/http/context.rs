//! Who is calling and in which space: the bearer token (401 when absent or invalid), then
//! `X-Space-Type` + `X-Space-ID` resolved against Aether's graph to a tenant and a role. The
//! extractor documents the two headers in the OpenAPI document itself.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{Object, Required, Type};

use super::AppState;
use crate::auth::{AuthError, bearer};
use crate::error::ApiError;
use crate::model::{Caller, Error};
use crate::storage::spaces::{Resolution, SpaceType};

/// The header naming the kind of space.
pub const SPACE_TYPE: &str = "X-Space-Type";
/// The header naming the space.
pub const SPACE_ID: &str = "X-Space-ID";

/// The caller, resolved in the space the request names.
pub struct Space(pub Caller);

impl FromRequestParts<AppState> for Space {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = bearer(header).map_err(|e| {
            ApiError::Unauthorized(format!("{e}: send Authorization: Bearer <token>."))
        })?;
        let claims = state.verifier.verify(token).await.map_err(|e| match e {
            AuthError::Missing => {
                ApiError::Unauthorized("Send Authorization: Bearer <token>.".into())
            }
            AuthError::Invalid(_) => ApiError::Unauthorized(
                "The bearer token is invalid or expired: sign in again.".into(),
            ),
        })?;
        let get = |h: &str| {
            parts
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let kind = match get(SPACE_TYPE).map(str::to_ascii_lowercase).as_deref() {
            Some("personal") => SpaceType::Personal,
            Some("organization") => SpaceType::Organization,
            _ => return Err(ApiError::SpaceContextRequired),
        };
        let space = get(SPACE_ID).ok_or(ApiError::SpaceContextRequired)?;
        let resolved = state
            .spaces
            .resolve(&claims.sub, kind, space)
            .await
            .map_err(Error::from)?;
        match resolved {
            Resolution::Member(caller) => {
                tracing::Span::current().record("space_id", caller.scope.space_id.as_str());
                Ok(Self(caller))
            }
            Resolution::NotMember => Err(Error::Forbidden(
                "You are not a member of this space; ask its owner to invite you.".into(),
            )
            .into()),
            Resolution::Unknown => Err(Error::NotFound("space").into()),
        }
    }
}

fn header(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(Object::with_type(Type::String)))
        .build()
}

impl utoipa::IntoParams for Space {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            header(SPACE_TYPE, "`personal` or `organization`."),
            header(
                SPACE_ID,
                "The space id (for organization spaces also an organization id).",
            ),
        ]
    }
}
