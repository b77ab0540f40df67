//! `(:Database)` records: one per registered connection, in its space and tenant. Credentials
//! are never stored here (only `has_password`). Every query binds `$tenant_id` and `$space_id`.

use neo4rs::{Query, query};
use serde::{Deserialize, Serialize};

use super::{Error, Result, Store};

/// The stored record (snake_case, as in the graph).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Record id (UUID).
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Space.
    pub space_id: String,
    /// The user who registered it.
    pub owner_id: String,
    /// Display name, unique in the space.
    pub name: String,
    /// postgres, mysql, mariadb, sqlserver or sqlite.
    #[serde(rename = "type")]
    pub db_type: String,
    /// Host (empty for sqlite).
    pub host: String,
    /// Port (0 for sqlite).
    pub port: i64,
    /// Database name, or the sqlite file path.
    pub database: String,
    /// User name (empty for sqlite).
    pub username: String,
    /// Whether a password is kept in the Secret.
    pub has_password: bool,
    /// disable, require, verify-ca, verify-full or empty.
    pub ssl_mode: String,
    /// Read-only policy.
    pub readonly: bool,
    /// Row limit.
    pub max_rows: i64,
    /// Seconds.
    pub connection_timeout: i64,
    /// Seconds.
    pub query_timeout: i64,
    /// Free text.
    pub description: String,
    /// JSON object as a string (Neo4j has no map properties).
    pub labels: String,
    /// Pending, Connected, Failed or Degraded (mirrored from the CR).
    pub status: String,
    /// Status message (never a secret).
    pub status_message: String,
    /// RFC 3339, or empty.
    pub last_checked: String,
    /// Name of the Database CR.
    pub cr_name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// One page of records.
pub struct Page {
    /// The records, newest first.
    pub items: Vec<Record>,
    /// How many exist in the space.
    pub total: i64,
}

const CREATE: &str = "CREATE (d:Database {id: $id, tenant_id: $tenant_id, space_id: $space_id, owner_id: $owner_id, \
    cr_name: $cr_name, status: 'Pending', status_message: '', last_checked: '', created_at: $now, updated_at: $now}) \
    SET d += $fields \
    WITH d OPTIONAL MATCH (sp:Space {id: $space_id}) \
    FOREACH (_ IN CASE WHEN sp IS NULL THEN [] ELSE [1] END | MERGE (d)-[:BELONGS_TO]->(sp)) \
    WITH d OPTIONAL MATCH (u:User {id: $owner_id}) \
    FOREACH (_ IN CASE WHEN u IS NULL THEN [] ELSE [1] END | MERGE (u)-[:OWNS]->(d)) \
    RETURN d";
const GET: &str =
    "MATCH (d:Database {id: $id, tenant_id: $tenant_id, space_id: $space_id}) RETURN d";
// One query for the page and the total: a second query would need a second pooled
// connection while the first is still held.
const LIST: &str = "MATCH (d:Database {tenant_id: $tenant_id, space_id: $space_id}) \
    WITH d ORDER BY d.created_at DESC, d.id WITH collect(d) AS found \
    RETURN size(found) AS total, found[$skip..$skip + $limit] AS page";
const UPDATE: &str = "MATCH (d:Database {id: $id, tenant_id: $tenant_id, space_id: $space_id}) \
    SET d += $fields, d.updated_at = $now RETURN d";
const DELETE: &str = "MATCH (d:Database {id: $id, tenant_id: $tenant_id, space_id: $space_id}) \
    OPTIONAL MATCH (q:QueryExecution {tenant_id: $tenant_id, space_id: $space_id, database_id: $id}) \
    WITH d, d.id AS id, collect(q) AS runs FOREACH (r IN runs | DETACH DELETE r) \
    DETACH DELETE d RETURN id";
const MIRROR_STATUS: &str = "MATCH (d:Database {id: $id, tenant_id: $tenant_id, space_id: $space_id}) \
    WHERE d.status <> $status OR d.status_message <> $message OR d.last_checked <> $checked \
    SET d.status = $status, d.status_message = $message, d.last_checked = $checked RETURN d.id AS id";
const NAME_TAKEN: &str = "MATCH (d:Database {tenant_id: $tenant_id, space_id: $space_id, name: $name}) \
    WHERE d.id <> $id RETURN count(d) AS n";

/// Neo4j's code for a uniqueness constraint refusing a write.
const CONSTRAINT_VIOLATED: &str = "Neo.ClientError.Schema.ConstraintValidationFailed";

/// Where a record lives.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// Tenant.
    pub tenant_id: &'a str,
    /// Space.
    pub space_id: &'a str,
}

fn scoped(q: &str, s: &Scope<'_>) -> Query {
    query(q)
        .param("tenant_id", s.tenant_id)
        .param("space_id", s.space_id)
}

fn fields(r: &Record) -> neo4rs::BoltType {
    let map: std::collections::HashMap<&str, neo4rs::BoltType> = [
        ("name", r.name.clone().into()),
        ("type", r.db_type.clone().into()),
        ("host", r.host.clone().into()),
        ("port", r.port.into()),
        ("database", r.database.clone().into()),
        ("username", r.username.clone().into()),
        ("has_password", r.has_password.into()),
        ("ssl_mode", r.ssl_mode.clone().into()),
        ("readonly", r.readonly.into()),
        ("max_rows", r.max_rows.into()),
        ("connection_timeout", r.connection_timeout.into()),
        ("query_timeout", r.query_timeout.into()),
        ("description", r.description.clone().into()),
        ("labels", r.labels.clone().into()),
    ]
    .into_iter()
    .collect();
    map.into()
}

impl Store {
    async fn one(&self, q: Query) -> Result<Option<Record>> {
        match self.first(q).await? {
            Some(row) => Ok(Some(row.get::<Record>("d")?)),
            None => Ok(None),
        }
    }

    /// Whether another record in the space already has `name`.
    pub async fn name_taken(&self, s: &Scope<'_>, name: &str, except_id: &str) -> Result<bool> {
        let q = scoped(NAME_TAKEN, s)
            .param("name", name)
            .param("id", except_id);
        let n: i64 = self.first(q).await?.ok_or(Error::NoRow)?.get("n")?;
        Ok(n > 0)
    }

    /// Creates the record (status Pending) and links it to its Space and owner when they exist.
    pub async fn create_database(&self, r: &Record) -> Result<Record> {
        let s = Scope {
            tenant_id: &r.tenant_id,
            space_id: &r.space_id,
        };
        let q = scoped(CREATE, &s)
            .param("id", r.id.as_str())
            .param("owner_id", r.owner_id.as_str())
            .param("cr_name", r.cr_name.as_str())
            .param("now", r.created_at.as_str())
            .param("fields", fields(r));
        match self.one(q).await {
            Ok(rec) => rec.ok_or(Error::NoRow),
            Err(e) if e.neo4j_code() == Some(CONSTRAINT_VIOLATED) => Err(Error::Conflict(format!(
                "a database named {:?} already exists in this space",
                r.name
            ))),
            Err(e) => Err(e),
        }
    }

    /// One record, if it is in the scope.
    pub async fn get_database(&self, s: &Scope<'_>, id: &str) -> Result<Option<Record>> {
        self.one(scoped(GET, s).param("id", id)).await
    }

    /// A page of the space's records, newest first.
    pub async fn list_databases(&self, s: &Scope<'_>, skip: i64, limit: i64) -> Result<Page> {
        let q = scoped(LIST, s).param("skip", skip).param("limit", limit);
        let row = self.first(q).await?.ok_or(Error::NoRow)?;
        Ok(Page {
            items: row.get("page")?,
            total: row.get("total")?,
        })
    }

    /// Rewrites the editable fields.
    pub async fn update_database(&self, r: &Record) -> Result<Option<Record>> {
        let s = Scope {
            tenant_id: &r.tenant_id,
            space_id: &r.space_id,
        };
        self.one(
            scoped(UPDATE, &s)
                .param("id", r.id.as_str())
                .param("now", r.updated_at.as_str())
                .param("fields", fields(r)),
        )
        .await
    }

    /// Deletes the record; false when it was not in the scope.
    pub async fn delete_database(&self, s: &Scope<'_>, id: &str) -> Result<bool> {
        Ok(self
            .first(scoped(DELETE, s).param("id", id))
            .await?
            .is_some())
    }

    /// Copies the reconciler's verdict onto the node; writes only when something differs.
    pub async fn mirror_status(
        &self,
        s: &Scope<'_>,
        id: &str,
        status: &str,
        message: &str,
        checked: &str,
    ) -> Result<bool> {
        let q = scoped(MIRROR_STATUS, s)
            .param("id", id)
            .param("status", status)
            .param("message", message)
            .param("checked", checked);
        Ok(self.first(q).await?.is_some())
    }
}
