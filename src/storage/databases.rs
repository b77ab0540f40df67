//! `(:Database)` records: one per registered connection, in its space and tenant, linked to the
//! Space (`-[:BELONGS_TO]->`) and the owner (`<-[:OWNS]-`) when those nodes exist. Credentials
//! are never stored here (only `has_password`). Every query binds `$tenant_id` and `$space_id`.

use k8s_openapi::jiff::Timestamp;
use neo4rs::{BoltType, Query, query};

use super::{Error, Result, Store};
use crate::model::forms::stored_time;
use crate::model::{Database, Observed, Scope, Settings};

/// One page of records.
pub struct Page {
    /// The records, newest first.
    pub items: Vec<Database>,
    /// How many exist in the space.
    pub total: i64,
}

const CREATE: &str = "CREATE (d:Database {id: $id, tenant_id: $tenant_id, space_id: $space_id, owner_id: $owner_id, \
    cr_name: $cr_name, created_at: $now, updated_at: $now}) \
    SET d += $fields, d += $observed \
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
// The database's history goes first, a chunk per transaction (a single transaction deleting a
// long history runs out of Neo4j's transaction memory: 150 000 runs did on the stack's server).
const DELETE_RUNS: &str = "MATCH (q:QueryExecution {tenant_id: $tenant_id, space_id: $space_id, database_id: $id}) \
    WITH q LIMIT $chunk DETACH DELETE q RETURN count(*) AS n";
/// Runs deleted per transaction.
const RUNS_PER_DELETE: i64 = 10_000;
// Then what is left of its history, its saved queries and the record.
const DELETE: &str = "MATCH (d:Database {id: $id, tenant_id: $tenant_id, space_id: $space_id}) \
    OPTIONAL MATCH (q:QueryExecution {tenant_id: $tenant_id, space_id: $space_id, database_id: $id}) \
    WITH d, collect(q) AS runs FOREACH (r IN runs | DETACH DELETE r) \
    WITH d OPTIONAL MATCH (sq:SavedQuery {tenant_id: $tenant_id, space_id: $space_id, database_id: $id}) \
    WITH d, collect(sq) AS saved FOREACH (x IN saved | DETACH DELETE x) \
    WITH d, d.id AS id DETACH DELETE d RETURN id";
// Only a newer observation replaces the stored one (timestamps are stored so that their text
// sorts as they do).
const MIRROR_STATUS: &str = "MATCH (d:Database {id: $id, tenant_id: $tenant_id, space_id: $space_id}) \
    WHERE coalesce(d.last_checked, '') < $observed.last_checked \
    SET d += $observed RETURN d.id AS id";
const NAME_TAKEN: &str = "MATCH (d:Database {tenant_id: $tenant_id, space_id: $space_id, name: $name}) \
    WHERE d.id <> $id RETURN count(d) AS n";

/// Neo4j's code for a uniqueness constraint refusing a write.
const CONSTRAINT_VIOLATED: &str = "Neo.ClientError.Schema.ConstraintValidationFailed";

pub(super) fn scoped(q: &str, s: &Scope) -> Query {
    query(q)
        .param("tenant_id", s.tenant_id.as_str())
        .param("space_id", s.space_id.as_str())
}

/// The graph properties of `value` (a flat struct: strings, numbers, booleans, lists of
/// strings), named as its serde form names them — the same names the record is read back with.
pub(super) fn properties<T: serde::Serialize>(value: &T) -> BoltType {
    let map: std::collections::HashMap<String, BoltType> = match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| {
                let bolt: BoltType = match v {
                    serde_json::Value::String(s) => s.into(),
                    serde_json::Value::Bool(b) => b.into(),
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => i.into(),
                        None => n.as_f64()?.into(),
                    },
                    // Lists of strings (tags, teams) are Neo4j list properties.
                    serde_json::Value::Array(items) => items
                        .into_iter()
                        .map(|i| i.as_str().map(String::from))
                        .collect::<Option<Vec<String>>>()?
                        .into(),
                    _ => return None,
                };
                Some((k, bolt))
            })
            .collect(),
        _ => Default::default(),
    };
    map.into()
}

impl Store {
    async fn one(&self, q: Query) -> Result<Option<Database>> {
        match self.first(q).await? {
            Some(row) => Ok(Some(row.get::<Database>("d")?)),
            None => Ok(None),
        }
    }

    /// Whether another record in the space already has `name`.
    pub async fn name_taken(&self, s: &Scope, name: &str, except_id: &str) -> Result<bool> {
        let q = scoped(NAME_TAKEN, s)
            .param("name", name)
            .param("id", except_id);
        let n: i64 = self.first(q).await?.ok_or(Error::NoRow)?.get("n")?;
        Ok(n > 0)
    }

    /// Creates the record and links it to its Space and owner when they exist.
    pub async fn create_database(&self, d: &Database) -> Result<Database> {
        let q = scoped(CREATE, &d.scope)
            .param("id", d.id.as_str())
            .param("owner_id", d.owner_id.as_str())
            .param("cr_name", d.cr_name.as_str())
            .param("now", stored_time(d.created_at))
            .param("fields", properties(&d.settings))
            .param("observed", properties(&d.observed));
        match self.one(q).await {
            Ok(rec) => rec.ok_or(Error::NoRow),
            Err(e) if e.neo4j_code() == Some(CONSTRAINT_VIOLATED) => Err(Error::Conflict(format!(
                "A database named {:?} already exists in this space; pick another name.",
                d.settings.name
            ))),
            Err(e) => Err(e),
        }
    }

    /// One record, if it is in the scope.
    pub async fn get_database(&self, s: &Scope, id: &str) -> Result<Option<Database>> {
        self.one(scoped(GET, s).param("id", id)).await
    }

    /// A page of the space's records, newest first.
    pub async fn list_databases(&self, s: &Scope, skip: i64, limit: i64) -> Result<Page> {
        let q = scoped(LIST, s).param("skip", skip).param("limit", limit);
        let row = self.first(q).await?.ok_or(Error::NoRow)?;
        Ok(Page {
            items: row.get("page")?,
            total: row.get("total")?,
        })
    }

    /// Replaces the editable part of a record.
    pub async fn update_settings(
        &self,
        s: &Scope,
        id: &str,
        settings: &Settings,
        now: Timestamp,
    ) -> Result<Option<Database>> {
        let q = scoped(UPDATE, s)
            .param("id", id)
            .param("now", stored_time(now))
            .param("fields", properties(settings));
        self.one(q).await
    }

    /// Deletes the record, its query history and its saved queries; false when it was not in
    /// the scope.
    /// `progress` is called after each chunk of runs deleted.
    pub async fn delete_database(&self, s: &Scope, id: &str, progress: impl Fn()) -> Result<bool> {
        loop {
            let q = scoped(DELETE_RUNS, s)
                .param("id", id)
                .param("chunk", RUNS_PER_DELETE);
            let n: i64 = self.first(q).await?.ok_or(Error::NoRow)?.get("n")?;
            progress();
            if n < RUNS_PER_DELETE {
                break;
            }
        }
        Ok(self
            .first(scoped(DELETE, s).param("id", id))
            .await?
            .is_some())
    }

    /// Copies the reconciler's verdict onto the node; writes only when something differs.
    pub async fn mirror_status(&self, s: &Scope, id: &str, observed: &Observed) -> Result<bool> {
        let q = scoped(MIRROR_STATUS, s)
            .param("id", id)
            .param("observed", properties(observed));
        Ok(self.first(q).await?.is_some())
    }
}
