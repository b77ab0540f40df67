//! `(:QueryExecution)` nodes: one per query run through the API, linked to its Database
//! (`-[:EXECUTED_ON]->`) and its User (`<-[:EXECUTED]-`). Read back only by the user who ran
//! them, newest first, with a keyset cursor (`executed_ns`, `id`). A run of a saved query also
//! points at it (`-[:RUN_OF]->`, and `saved_query_id`). Every query binds
//! `$tenant_id` and `$space_id`.

use std::collections::{BTreeMap, HashMap};

use neo4rs::{BoltType, query};

use super::{Error, Result, Store};
use crate::model::Scope;
use crate::model::history::{Execution, MAX_STATEMENT};

// A batch of one scope's runs (the recorder groups them by scope). A run whose Database is not
// in the scope (deleted meanwhile) is skipped. `q` is new, so its relationships are CREATEd.
// A plain run's row has no `saved_query_id`, so its node gets none: no entry in that index and
// nothing for the SavedQuery lookup to find (an empty id used to do both for every plain run;
// Neo4j's CPU per run fell ~13 % on the stack's Neo4j, batches of 250).
const RECORD: &str = "UNWIND $runs AS r \
    MATCH (d:Database {id: r.database_id, tenant_id: $tenant_id, space_id: $space_id}) \
    CREATE (q:QueryExecution {id: r.id, tenant_id: $tenant_id, space_id: $space_id, database_id: r.database_id, \
    database_name: d.name, user_id: r.user_id, statement: r.statement, status: r.status, error: r.error, \
    row_count: r.row_count, truncated: r.truncated, duration_ms: r.duration_ms, executed_at: r.executed_at, \
    executed_ns: r.executed_ns, saved_query_id: r.saved_query_id})-[:EXECUTED_ON]->(d) \
    WITH q, r OPTIONAL MATCH (u:User {id: r.user_id}) \
    FOREACH (_ IN CASE WHEN u IS NULL THEN [] ELSE [1] END | CREATE (u)-[:EXECUTED]->(q)) \
    WITH q, r OPTIONAL MATCH (sq:SavedQuery {id: r.saved_query_id, tenant_id: $tenant_id, space_id: $space_id}) \
    FOREACH (_ IN CASE WHEN sq IS NULL THEN [] ELSE [1] END | CREATE (q)-[:RUN_OF]->(sq)) \
    RETURN count(q) AS n";
const LIST: &str = "MATCH (q:QueryExecution {tenant_id: $tenant_id, space_id: $space_id, user_id: $user_id}) \
    WHERE ($database_id = '' OR q.database_id = $database_id) \
    AND ($after_ns < 0 OR q.executed_ns < $after_ns OR (q.executed_ns = $after_ns AND q.id < $after_id)) \
    RETURN q ORDER BY q.executed_ns DESC, q.id DESC LIMIT $limit";

/// Where a page starts: after this run (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// `executed_ns` of the last run seen.
    pub executed_ns: i64,
    /// Its id (breaks ties between runs of the same nanosecond).
    pub id: String,
}

impl Cursor {
    /// Opaque text form (hex of `<ns>:<id>`).
    pub fn encode(&self) -> String {
        format!("{}:{}", self.executed_ns, self.id)
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Parses [`Cursor::encode`]'s output; None when it is not one.
    pub fn decode(s: &str) -> Option<Self> {
        if !s.len().is_multiple_of(2) || s.len() > 256 {
            return None;
        }
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let text = String::from_utf8(bytes).ok()?;
        let (ns, id) = text.split_once(':')?;
        Some(Self {
            executed_ns: ns.parse().ok().filter(|n| *n >= 0)?,
            id: id.to_string(),
        })
    }
}

impl Store {
    /// Records runs, one write per scope; how many were written (runs whose Database is gone
    /// are skipped).
    pub async fn record_executions(&self, runs: &[Execution]) -> Result<i64> {
        let mut by_scope: BTreeMap<(&str, &str), Vec<BoltType>> = BTreeMap::new();
        for e in runs {
            let statement: String = e.statement.chars().take(MAX_STATEMENT).collect();
            let mut row: HashMap<&str, BoltType> = HashMap::from([
                ("id", e.id.as_str().into()),
                ("database_id", e.database_id.as_str().into()),
                ("user_id", e.user_id.as_str().into()),
                ("statement", statement.into()),
                ("status", e.status.as_str().into()),
                ("error", e.error.as_str().into()),
                ("row_count", e.row_count.into()),
                ("truncated", e.truncated.into()),
                ("duration_ms", e.duration_ms.into()),
                ("executed_at", e.executed_at.as_str().into()),
                ("executed_ns", e.executed_ns.into()),
            ]);
            if let Some(id) = e.saved_query_id.as_deref().filter(|id| !id.is_empty()) {
                row.insert("saved_query_id", id.into());
            }
            by_scope
                .entry((e.tenant_id.as_str(), e.space_id.as_str()))
                .or_default()
                .push(row.into());
        }
        let mut written = 0;
        for ((tenant_id, space_id), rows) in by_scope {
            let q = query(RECORD)
                .param("tenant_id", tenant_id)
                .param("space_id", space_id)
                .param("runs", rows);
            let n: i64 = self.first(q).await?.ok_or(Error::NoRow)?.get("n")?;
            written += n;
        }
        Ok(written)
    }

    /// Up to `limit` of `user_id`'s runs in the scope (on one database when `database_id` is
    /// not empty), newest first, after `after`.
    pub async fn list_executions(
        &self,
        s: &Scope,
        user_id: &str,
        database_id: &str,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<Execution>> {
        let q = query(LIST)
            .param("tenant_id", s.tenant_id.as_str())
            .param("space_id", s.space_id.as_str())
            .param("user_id", user_id)
            .param("database_id", database_id)
            .param("after_ns", after.map_or(-1, |c| c.executed_ns))
            .param("after_id", after.map_or("", |c| c.id.as_str()))
            .param("limit", limit);
        self.rows(q)
            .await?
            .iter()
            .map(|row| Ok(row.get::<Execution>("q")?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            executed_ns: 1_764_201_600_123_456_789,
            id: "0b0f…-id".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "zz", "abc", "3a", "2d313a78", &"00".repeat(200)] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
