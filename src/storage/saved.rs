//! `(:SavedQuery)` nodes: `(:User)-[:OWNS]->(:SavedQuery)-[:QUERIES]->(:Database)`, in the
//! database's space and tenant; tags and teams are list properties so that Cypher filters on
//! them. Who may see one is decided here, in the query ([`VISIBLE`]), for reads and lists
//! alike. Every query binds `$tenant_id` and `$space_id`.

use k8s_openapi::jiff::Timestamp;
use neo4rs::Row;

use super::databases::{properties, scoped};
use super::{Error, Result, Store};
use crate::model::forms::stored_time;
use crate::model::saved::{Definition, Filter, Sort, SortBy};
use crate::model::{Listed, SavedQuery, Scope};

/// Whether `$user_id` sees `s`: the owner always, everyone for `public`, members of a listed
/// team for `shared`. Spelled out in [`GET`] and [`LIST`] (a test keeps them the same).
pub const VISIBLE: &str = "(s.owner_id = $user_id OR s.visibility = 'public' OR (s.visibility = 'shared' AND \
    EXISTS { MATCH (:User {id: $user_id})-[:MEMBER_OF]->(t:Team) WHERE t.id IN s.shared_with_teams }))";

const CREATE: &str = "MATCH (d:Database {id: $database_id, tenant_id: $tenant_id, space_id: $space_id}) \
    CREATE (s:SavedQuery {id: $id, tenant_id: $tenant_id, space_id: $space_id, owner_id: $owner_id, \
    created_at: $now, updated_at: $now, execution_count: 0, avg_duration_ms: 0.0, last_row_count: 0, \
    last_executed_at: '', last_executed_by: ''}) \
    SET s += $fields CREATE (s)-[:QUERIES]->(d) \
    WITH s OPTIONAL MATCH (u:User {id: $owner_id}) \
    FOREACH (_ IN CASE WHEN u IS NULL THEN [] ELSE [1] END | MERGE (u)-[:OWNS]->(s)) \
    RETURN s.id AS id";
const GET: &str = "MATCH (s:SavedQuery {id: $id, tenant_id: $tenant_id, space_id: $space_id})\
    -[:QUERIES]->(d:Database {tenant_id: $tenant_id, space_id: $space_id}) \
    OPTIONAL MATCH (o:User {id: s.owner_id}) \
    RETURN s, d.name AS database_name, coalesce(o.full_name, o.username, '') AS owner_name, \
    (s.owner_id = $user_id OR s.visibility = 'public' OR (s.visibility = 'shared' AND \
    EXISTS { MATCH (:User {id: $user_id})-[:MEMBER_OF]->(t:Team) WHERE t.id IN s.shared_with_teams })) AS visible";
// One query for the page and the total (see databases.rs); `{order}` is replaced by a
// [`Sort`]'s clause ([`clause`]), never by client text.
const LIST: &str = "MATCH (s:SavedQuery {tenant_id: $tenant_id, space_id: $space_id})\
    -[:QUERIES]->(d:Database {tenant_id: $tenant_id, space_id: $space_id}) \
    WHERE (s.owner_id = $user_id OR s.visibility = 'public' OR (s.visibility = 'shared' AND \
    EXISTS { MATCH (:User {id: $user_id})-[:MEMBER_OF]->(t:Team) WHERE t.id IN s.shared_with_teams })) \
    AND ($database_id = '' OR s.database_id = $database_id) \
    AND ($visibility = '' OR s.visibility = $visibility) \
    AND ($folder = '' OR s.folder = $folder) \
    AND ($owner_id = '' OR s.owner_id = $owner_id) \
    AND (size($tags) = 0 OR any(tag IN $tags WHERE tag IN s.tags)) \
    AND ($search = '' OR toLower(s.name) CONTAINS $search OR toLower(s.description) CONTAINS $search \
         OR toLower(s.query) CONTAINS $search) \
    OPTIONAL MATCH (o:User {id: s.owner_id}) \
    WITH s, d, o ORDER BY {order} \
    WITH collect(s) AS found, collect(d.name) AS names, collect(coalesce(o.full_name, o.username, '')) AS owners \
    RETURN size(found) AS total, found[$skip..$skip + $limit] AS page, \
    names[$skip..$skip + $limit] AS names, owners[$skip..$skip + $limit] AS owners";
const UPDATE: &str = "MATCH (s:SavedQuery {id: $id, tenant_id: $tenant_id, space_id: $space_id}) \
    MATCH (d:Database {id: $database_id, tenant_id: $tenant_id, space_id: $space_id}) \
    SET s += $fields, s.updated_at = $now \
    WITH s, d OPTIONAL MATCH (s)-[old:QUERIES]->(:Database {tenant_id: $tenant_id, space_id: $space_id}) \
    DELETE old WITH DISTINCT s, d MERGE (s)-[:QUERIES]->(d) RETURN s.id AS id";
const DELETE: &str = "MATCH (s:SavedQuery {id: $id, tenant_id: $tenant_id, space_id: $space_id}) \
    WITH s, s.id AS id DETACH DELETE s RETURN id";
// The first SET takes the node's write lock before the counters are read, so concurrent runs
// are counted one after the other (a plain read-then-write would lose updates).
const EXECUTED: &str = "MATCH (s:SavedQuery {id: $id, tenant_id: $tenant_id, space_id: $space_id}) \
    SET s.stats_lock = true \
    WITH s, coalesce(s.execution_count, 0) AS n, coalesce(s.avg_duration_ms, 0.0) AS avg \
    SET s.execution_count = n + 1, s.avg_duration_ms = (avg * n + $duration_ms) / (n + 1), \
    s.last_row_count = $row_count, s.last_executed_at = $now, s.last_executed_by = $user_id \
    REMOVE s.stats_lock RETURN s.execution_count AS n";

fn clause(sort: Sort) -> String {
    let column = match sort.by {
        SortBy::Name => "toLower(s.name)",
        SortBy::CreatedAt => "s.created_at",
        SortBy::UpdatedAt => "s.updated_at",
        SortBy::ExecutionCount => "s.execution_count",
        SortBy::LastExecutedAt => "s.last_executed_at",
    };
    let dir = if sort.ascending { "ASC" } else { "DESC" };
    format!("{column} {dir}, s.id {dir}")
}

/// One page of a list.
pub struct Page {
    /// The queries on the page.
    pub items: Vec<Listed>,
    /// How many the caller sees with the filter.
    pub total: i64,
}

/// One read saved query and whether the reader may see it.
pub struct Found {
    /// The query with its database's and owner's names.
    pub listed: Listed,
    /// Whether the reader sees it (otherwise it must be answered as not found).
    pub visible: bool,
}

/// One successful run, for the statistics.
pub struct Run<'a> {
    /// Who ran it.
    pub user_id: &'a str,
    /// Its wall time.
    pub duration_ms: i64,
    /// Rows it returned.
    pub row_count: i64,
    /// When it ran.
    pub at: Timestamp,
}

fn listed(row: &Row) -> Result<Listed> {
    Ok(Listed {
        query: row.get::<SavedQuery>("s")?,
        database_name: row.get("database_name")?,
        owner_name: row.get("owner_name")?,
    })
}

impl Store {
    /// Saves `q` on its database (None when that database is not in the scope).
    pub async fn create_saved_query(&self, q: &SavedQuery) -> Result<Option<String>> {
        let cypher = scoped(CREATE, &q.scope)
            .param("id", q.id.as_str())
            .param("database_id", q.definition.database_id.as_str())
            .param("owner_id", q.owner_id.as_str())
            .param("now", stored_time(q.created_at))
            .param("fields", properties(&q.definition));
        match self.first(cypher).await? {
            Some(row) => Ok(Some(row.get("id")?)),
            None => Ok(None),
        }
    }

    /// One saved query of the scope, as `user_id` would see it.
    pub async fn get_saved_query(
        &self,
        s: &Scope,
        id: &str,
        user_id: &str,
    ) -> Result<Option<Found>> {
        let q = scoped(GET, s).param("id", id).param("user_id", user_id);
        match self.first(q).await? {
            Some(row) => Ok(Some(Found {
                listed: listed(&row)?,
                visible: row.get("visible")?,
            })),
            None => Ok(None),
        }
    }

    /// A page of what `user_id` sees in the scope.
    pub async fn list_saved_queries(
        &self,
        s: &Scope,
        user_id: &str,
        filter: &Filter,
        sort: Sort,
        skip: i64,
        limit: i64,
    ) -> Result<Page> {
        let q = scoped(&LIST.replace("{order}", &clause(sort)), s)
            .param("user_id", user_id)
            .param("database_id", filter.database_id.as_str())
            .param("visibility", filter.visibility.as_str())
            .param("folder", filter.folder.as_str())
            .param("tags", filter.tags.clone())
            .param("owner_id", filter.owner_id.as_str())
            .param("search", filter.search.to_lowercase())
            .param("skip", skip)
            .param("limit", limit);
        let row = self.first(q).await?.ok_or(Error::NoRow)?;
        let page: Vec<SavedQuery> = row.get("page")?;
        let names: Vec<String> = row.get("names")?;
        let owners: Vec<String> = row.get("owners")?;
        Ok(Page {
            items: page
                .into_iter()
                .zip(names)
                .zip(owners)
                .map(|((query, database_name), owner_name)| Listed {
                    query,
                    database_name,
                    owner_name,
                })
                .collect(),
            total: row.get("total")?,
        })
    }

    /// Replaces the definition (and re-links the database); false when either is gone.
    pub async fn update_saved_query(
        &self,
        s: &Scope,
        id: &str,
        definition: &Definition,
        now: Timestamp,
    ) -> Result<bool> {
        let q = scoped(UPDATE, s)
            .param("id", id)
            .param("database_id", definition.database_id.as_str())
            .param("now", stored_time(now))
            .param("fields", properties(definition));
        Ok(self.first(q).await?.is_some())
    }

    /// Deletes it; false when it was not in the scope.
    pub async fn delete_saved_query(&self, s: &Scope, id: &str) -> Result<bool> {
        Ok(self
            .first(scoped(DELETE, s).param("id", id))
            .await?
            .is_some())
    }

    /// Counts one successful run into its statistics, atomically.
    pub async fn saved_query_executed(&self, s: &Scope, id: &str, run: &Run<'_>) -> Result<()> {
        let q = scoped(EXECUTED, s)
            .param("id", id)
            .param("user_id", run.user_id)
            .param("duration_ms", run.duration_ms as f64)
            .param("row_count", run.row_count)
            .param("now", stored_time(run.at));
        self.first(q).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_lists_share_one_visibility_rule() {
        let rule = VISIBLE.split_whitespace().collect::<Vec<_>>().join(" ");
        for (name, q) in [("GET", GET), ("LIST", LIST)] {
            let q = q.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(q.contains(&rule), "{name} spells visibility differently");
        }
    }

    #[test]
    fn the_order_clause_comes_from_the_enum_only() {
        let c = clause(Sort {
            by: SortBy::LastExecutedAt,
            ascending: false,
        });
        assert_eq!(c, "s.last_executed_at DESC, s.id DESC");
        assert!(LIST.contains("{order}"));
    }
}
