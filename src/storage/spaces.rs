//! Resolves a caller's space context from Aether's graph (read-only for this service), as
//! aether-be models it: personal spaces on the User, organization spaces as `(:Space)` with
//! ownership or membership (directly or through the owning Organization).

use neo4rs::query;

use super::{Result, Store};
use crate::model::{Caller, Role, Scope};

fn member(user_id: String, space_id: String, tenant_id: String, role: &str) -> Resolution {
    Resolution::Member(Caller {
        user_id,
        scope: Scope {
            tenant_id,
            space_id,
        },
        role: Role::parse(role),
    })
}

/// Which kind of space the caller named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpaceType {
    /// The user's own space.
    Personal,
    /// An organization's (or team) space.
    Organization,
}

/// What the graph says about the caller and the space.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// The caller may act in the space with this role.
    Member(Caller),
    /// The space exists but the caller has no path to it.
    NotMember,
    /// No such space (or no such user).
    Unknown,
}

// Two index seeks (Aether has unique constraints on both properties), not a scan for an OR.
const USER: &str = "CALL { MATCH (u:User {keycloak_id: $sub}) RETURN u UNION MATCH (u:User {id: $sub}) RETURN u } \
    RETURN u.id AS id, u.personal_space_id AS psid, u.personal_tenant_id AS ptid LIMIT 1";

const ORG_SPACE: &str = "MATCH (u:User {id: $user_id}) \
    OPTIONAL MATCH (sp:Space {id: $space_id}) \
    OPTIONAL MATCH (u)-[own:OWNS]->(sp) \
    OPTIONAL MATCH (u)-[m:MEMBER_OF]->(sp) \
    OPTIONAL MATCH (u)-[om:MEMBER_OF]->(org:Organization) \
      WHERE sp.owner_type = 'organization' AND org.id = sp.owner_id \
    OPTIONAL MATCH (u)-[dm:MEMBER_OF]->(o2:Organization {id: $space_id}) \
    RETURN sp.id AS sid, sp.tenant_id AS tid, own IS NOT NULL AS owns, m.role AS mrole, om.role AS orole, \
           o2.id AS oid, coalesce(o2.tenant_id, o2.id) AS otid, dm.role AS drole LIMIT 1";

impl Store {
    /// Resolves `space_id` of `kind` for the token subject `sub`.
    pub async fn resolve_space(
        &self,
        sub: &str,
        kind: SpaceType,
        space_id: &str,
    ) -> Result<Resolution> {
        let Some(user) = self.first(query(USER).param("sub", sub)).await? else {
            return Ok(Resolution::Unknown);
        };
        let user_id: String = user.get("id").unwrap_or_default();
        if kind == SpaceType::Personal {
            let psid: Option<String> = user.get("psid").ok();
            let ptid: Option<String> = user.get("ptid").ok();
            return Ok(match (psid, ptid) {
                (Some(p), Some(t)) if p == space_id => member(user_id, p, t, "owner"),
                _ => Resolution::NotMember,
            });
        }
        let q = query(ORG_SPACE)
            .param("user_id", user_id.as_str())
            .param("space_id", space_id);
        let Some(r) = self.first(q).await? else {
            return Ok(Resolution::Unknown);
        };
        let opt = |k: &str| r.get::<Option<String>>(k).ok().flatten();
        if let (Some(sid), Some(tid)) = (opt("sid"), opt("tid")) {
            let owns: bool = r.get("owns").unwrap_or(false);
            let role = if owns {
                Some("owner".to_string())
            } else {
                opt("mrole").or_else(|| opt("orole"))
            };
            return Ok(match role {
                Some(role) => member(user_id, sid, tid, &role),
                None => Resolution::NotMember,
            });
        }
        if let (Some(oid), Some(otid), Some(role)) = (opt("oid"), opt("otid"), opt("drole")) {
            return Ok(member(user_id, oid, otid, &role));
        }
        Ok(if opt("oid").is_some() {
            Resolution::NotMember
        } else {
            Resolution::Unknown
        })
    }
}
