//! Who is calling, in which space, with which role — and what each role may do (Aether's
//! owner/admin/member/viewer; any other role acts as a viewer).

use super::Scope;

/// What a role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// List and read records; run read-only queries.
    Read,
    /// Register databases and test connections before registering them.
    Create,
    /// Edit records; run queries that write.
    Update,
    /// Remove records (with their Secrets, CRs and query history).
    Delete,
}

impl Permission {
    fn verb(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Create => "create",
            Self::Update => "change",
            Self::Delete => "delete",
        }
    }
}

/// A caller's role in a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything (owns the space).
    Owner,
    /// Everything an owner may.
    Admin,
    /// Everything but delete.
    Member,
    /// Read only; also any role this service does not know.
    Viewer,
}

impl Role {
    /// The role named in Aether's graph (case-insensitive; unknown names read as viewer).
    pub fn parse(name: &str) -> Self {
        match name.trim().to_ascii_lowercase().as_str() {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            "member" => Self::Member,
            _ => Self::Viewer,
        }
    }

    /// The name as Aether's graph and error messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    /// Whether the role grants `p`.
    pub fn grants(self, p: Permission) -> bool {
        match self {
            Self::Owner | Self::Admin => true,
            Self::Member => p != Permission::Delete,
            Self::Viewer => p == Permission::Read,
        }
    }
}

/// The caller of a request, resolved in the space it named.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's Aether user id.
    pub user_id: String,
    /// The space and its tenant.
    pub scope: Scope,
    /// The caller's role there.
    pub role: Role,
}

impl Caller {
    /// Whether the caller's role grants `p`.
    pub fn can(&self, p: Permission) -> bool {
        self.role.grants(p)
    }

    /// [`super::Error::Forbidden`] unless the role grants `p` (on databases).
    pub fn require(&self, p: Permission) -> super::Result<()> {
        self.require_on(p, "databases")
    }

    /// [`super::Error::Forbidden`] unless the role grants `p` on `what` (a plural noun).
    pub fn require_on(&self, p: Permission, what: &str) -> super::Result<()> {
        if self.can(p) {
            Ok(())
        } else {
            Err(super::Error::Forbidden(format!(
                "Your role in this space ({}) may not {} {what} here; ask an owner or admin of the space.",
                self.role.as_str(),
                p.verb()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_permissions() {
        use Permission::*;
        let all = [Read, Create, Update, Delete];
        let grants = |r: &str| {
            all.iter()
                .filter(|p| Role::parse(r).grants(**p))
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(grants("owner"), all);
        assert_eq!(grants("Admin"), all);
        assert_eq!(grants("member"), [Read, Create, Update]);
        assert_eq!(grants("viewer"), [Read]);
        assert_eq!(grants("something-new"), [Read]);
    }
}
