//! Who is calling and in which space: the bearer token (401 when absent or invalid), then
//! `X-Space-Type` + `X-Space-ID` resolved against the graph to a tenant and a role.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use crate::auth::{AuthError, bearer};
use crate::error::ApiError;
use crate::storage::spaces::{Resolution, SpaceType};

/// What a role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// List and read records; run read-only queries.
    Read,
    /// Register databases.
    Create,
    /// Edit records; run queries that write.
    Update,
    /// Remove records.
    Delete,
}

/// The caller in a space.
#[derive(Debug, Clone)]
pub struct SpaceContext {
    /// The caller's Aether user id.
    pub user_id: String,
    /// The space.
    pub space_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// owner, admin, member or viewer.
    pub role: String,
}

impl SpaceContext {
    /// Whether the role grants `p` (owner/admin: all; member: read, create, update; others: read).
    pub fn can(&self, p: Permission) -> bool {
        match self.role.as_str() {
            "owner" | "admin" => true,
            "member" => p != Permission::Delete,
            _ => p == Permission::Read,
        }
    }

    /// 403 unless the role grants `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.can(p) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                format!("role {} may not {p:?} in this space", self.role).to_lowercase(),
            ))
        }
    }

    /// The graph scope of this space.
    pub fn scope(&self) -> crate::storage::databases::Scope<'_> {
        crate::storage::databases::Scope {
            tenant_id: &self.tenant_id,
            space_id: &self.space_id,
        }
    }
}

impl FromRequestParts<AppState> for SpaceContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = bearer(header).map_err(|e| ApiError::Unauthorized(e.to_string()))?;
        let claims = state.verifier.verify(token).await.map_err(|e| match e {
            AuthError::Missing => ApiError::Unauthorized(e.to_string()),
            AuthError::Invalid(_) => ApiError::Unauthorized("invalid or expired token".into()),
        })?;
        let get = |h: &str| {
            parts
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let kind = match get("x-space-type").map(str::to_ascii_lowercase).as_deref() {
            Some("personal") => SpaceType::Personal,
            Some("organization") => SpaceType::Organization,
            _ => return Err(ApiError::SpaceContextRequired),
        };
        let space = get("x-space-id").ok_or(ApiError::SpaceContextRequired)?;
        match state.store.resolve_space(&claims.sub, kind, space).await? {
            Resolution::Member {
                space_id,
                tenant_id,
                user_id,
                role,
            } => {
                tracing::Span::current().record("space_id", space_id.as_str());
                Ok(Self {
                    user_id,
                    space_id,
                    tenant_id,
                    role: role.to_ascii_lowercase(),
                })
            }
            Resolution::NotMember => Err(ApiError::Forbidden(
                "you are not a member of this space".into(),
            )),
            Resolution::Unknown => Err(ApiError::NotFound("space")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(role: &str) -> SpaceContext {
        SpaceContext {
            user_id: "u".into(),
            space_id: "s".into(),
            tenant_id: "t".into(),
            role: role.into(),
        }
    }

    #[test]
    fn roles_map_to_permissions() {
        use Permission::*;
        let all = [Read, Create, Update, Delete];
        let grants = |r: &str| {
            all.iter()
                .filter(|p| ctx(r).can(**p))
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(grants("owner"), all);
        assert_eq!(grants("admin"), all);
        assert_eq!(grants("member"), [Read, Create, Update]);
        assert_eq!(grants("viewer"), [Read]);
        assert_eq!(grants("something-new"), [Read]);
    }
}
