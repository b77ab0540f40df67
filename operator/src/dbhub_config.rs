//! DBHub's configuration for one instance, as pure functions: which Databases a selector
//! picks, their source ids, the policy each gets, and the TOML (rendered with the `toml` crate,
//! DSNs as `${DBHUB_DSN_<ID>}` placeholders that DBHub expands from its environment).
//!
//! Every Database gets a read-only source (`execute_sql` with `readonly = true`, so DBHub runs
//! each call in the engine's read-only transaction, plus `search_objects`); a writable one gets
//! a second, writable source (`<id>_write`, `execute_sql` only). Reads therefore never reach a
//! writable connection: a write disguised as a read fails inside the database.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crd::{DBHubInstanceSpec, Database, DatabaseType};

/// One Database as it goes into the configuration. Both source ids are allocated whether or
/// not the Database is writable, so a change of policy never renumbers another's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The Database's name.
    pub name: String,
    /// Id of its read-only source (`[a-z0-9_]`, unique within the instance).
    pub id: String,
    /// Environment variable holding the read-only source's DSN.
    pub env: String,
    /// Id of its writable source (present in the configuration only when it is writable).
    pub write_id: String,
    /// Environment variable holding the writable source's DSN.
    pub write_env: String,
}

/// Whether `db` matches the instance's selector (labels AND names; absent = everything).
pub fn selects(spec: &DBHubInstanceSpec, db: &Database) -> bool {
    let Some(sel) = &spec.database_selector else {
        return true;
    };
    let labels = db.metadata.labels.clone().unwrap_or_default();
    let by_labels = sel
        .match_labels
        .as_ref()
        .is_none_or(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let name = db.metadata.name.as_deref().unwrap_or_default();
    let by_names = sel
        .match_names
        .as_ref()
        .is_none_or(|names| names.iter().any(|n| n == name));
    by_labels && by_names
}

/// Source ids for these Database names: lower-case, every character outside `[a-z0-9]` as `_`,
/// made unique with `_2`, `_3`, … (so `a-b` and `a.b` never collide, before or after DBHub's own
/// normalisation). Deterministic: names are taken in sorted order.
pub fn entries<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Entry> {
    let sorted: BTreeSet<&str> = names.into_iter().collect();
    let mut taken = BTreeSet::new();
    sorted
        .into_iter()
        .map(|name| {
            let mut base: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
                base.insert_str(0, "db_");
            }
            let id = unique(&mut taken, &base);
            let write_id = unique(&mut taken, &format!("{id}_write"));
            let env_of = |id: &str| format!("DBHUB_DSN_{}", id.to_ascii_uppercase());
            Entry {
                name: name.to_string(),
                env: env_of(&id),
                write_env: env_of(&write_id),
                id,
                write_id,
            }
        })
        .collect()
}

/// `base`, or `base_2`, `base_3`, … — the first not taken yet (then taken).
fn unique(taken: &mut BTreeSet<String>, base: &str) -> String {
    let mut id = base.to_string();
    let mut n = 2;
    while !taken.insert(id.clone()) {
        id = format!("{base}_{n}");
        n += 1;
    }
    id
}

#[derive(Serialize)]
struct Toml<'a> {
    sources: Vec<Source<'a>>,
    tools: Vec<Tool<'a>>,
}

#[derive(Serialize)]
struct Source<'a> {
    id: &'a str,
    dsn: String,
    lazy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    connection_timeout: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_timeout: Option<i64>,
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'static str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    readonly: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_rows: Option<i64>,
}

/// The effective policy for a Database: its own settings over the instance's defaults.
pub fn policy(spec: &DBHubInstanceSpec, db: &Database) -> (bool, i32) {
    let defaults = spec.default_policy.clone().unwrap_or_default();
    (
        db.spec.readonly.unwrap_or(defaults.readonly),
        db.spec.max_rows.unwrap_or(defaults.max_rows),
    )
}

/// Renders the TOML for these Databases (each paired with its entry).
pub fn render(
    spec: &DBHubInstanceSpec,
    dbs: &[(&Database, &Entry)],
) -> Result<String, toml::ser::Error> {
    let mut doc = Toml {
        sources: Vec::new(),
        tools: Vec::new(),
    };
    for (db, e) in dbs {
        let (readonly, max_rows) = policy(spec, db);
        let sqlite = db.spec.db_type == DatabaseType::Sqlite;
        let source = |id, env: &str| Source {
            id,
            dsn: format!("${{{env}}}"),
            // Without lazy, one unreachable database keeps DBHub from starting at all.
            lazy: true,
            description: db.spec.description.as_deref(),
            connection_timeout: db.spec.connection_timeout.into(),
            query_timeout: (!sqlite).then_some(db.spec.query_timeout.into()),
        };
        doc.sources.push(source(&e.id, &e.env));
        doc.tools.push(Tool {
            name: "execute_sql",
            source: &e.id,
            readonly: Some(true),
            max_rows: Some(max_rows.into()),
        });
        // A source with any [[tools]] gets only those: list search_objects too.
        doc.tools.push(Tool {
            name: "search_objects",
            source: &e.id,
            readonly: None,
            max_rows: None,
        });
        if !readonly {
            doc.sources.push(source(&e.write_id, &e.write_env));
            doc.tools.push(Tool {
                name: "execute_sql",
                source: &e.write_id,
                readonly: Some(false),
                max_rows: Some(max_rows.into()),
            });
        }
    }
    toml::to_string(&doc)
}

/// A short, stable digest of the configuration and DSNs: a pod-template annotation, so any
/// change to either rolls the pods.
pub fn hash(config: &str, dsns: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(config.as_bytes());
    for (k, v) in dsns {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
    }
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests;
