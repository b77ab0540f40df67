//! Graph migrations: `migrations/V<NNNN>__<name>.cypher`, embedded at build time, applied in
//! order, each recorded as an `(:AetherDbhubMigration {version, name, checksum})` node. An
//! applied migration whose file changed afterwards stops start-up (checksum mismatch).

use neo4rs::query;
use sha2::{Digest, Sha256};

use super::{Error, Result, Store};

/// One migration file.
pub struct Migration {
    /// Version number (from `V<NNNN>`).
    pub version: i64,
    /// Name (after `__`).
    pub name: &'static str,
    /// The Cypher text: statements separated by `;` (so none may contain one), `//` comment
    /// lines ignored.
    pub text: &'static str,
}

/// Every migration, in order. Add new files here.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "constraints",
        text: include_str!("../../migrations/V0001__constraints.cypher"),
    },
    Migration {
        version: 2,
        name: "query_history",
        text: include_str!("../../migrations/V0002__query_history.cypher"),
    },
    Migration {
        version: 3,
        name: "saved_queries",
        text: include_str!("../../migrations/V0003__saved_queries.cypher"),
    },
];

/// Neo4j's code for a schema rule another replica created at the same moment.
const SCHEMA_RULE_EXISTS: &str = "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists";

const APPLIED: &str =
    "MATCH (m:AetherDbhubMigration {version: $version}) RETURN m.checksum AS checksum";
const RECORD: &str = "MERGE (m:AetherDbhubMigration {version: $version}) \
    ON CREATE SET m.name = $name, m.checksum = $checksum, m.applied_at = datetime()";

impl Migration {
    /// Hex SHA-256 of the text.
    pub fn checksum(&self) -> String {
        Sha256::digest(self.text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The statements, comments removed.
    pub fn statements(&self) -> Vec<String> {
        statements(self.text)
    }
}

/// The `;`-separated statements of a Cypher script, `//` comment lines removed.
pub fn statements(text: &str) -> Vec<String> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    body.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Applies what is missing; returns how many migrations ran.
pub async fn run(store: &Store) -> Result<usize> {
    let mut ran = 0;
    for m in MIGRATIONS {
        if let Some(row) = store
            .first(query(APPLIED).param("version", m.version))
            .await?
        {
            let recorded: String = row.get("checksum")?;
            if recorded != m.checksum() {
                return Err(Error::Migration(format!(
                    "migration V{:04}__{} changed after it was applied (checksum differs); add a new migration instead",
                    m.version, m.name
                )));
            }
            continue;
        }
        for statement in m.statements() {
            match store.run(query(&statement)).await {
                // Another replica applying the same schema statement at the same moment.
                Err(e) if e.neo4j_code() == Some(SCHEMA_RULE_EXISTS) => {}
                other => other?,
            }
        }
        let record = query(RECORD)
            .param("version", m.version)
            .param("name", m.name)
            .param("checksum", m.checksum());
        store.run(record).await?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "graph migration applied"
        );
        ran += 1;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_split_into_statements() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(!m.statements().is_empty());
            assert!(m.statements().iter().all(|s| !s.contains("//")));
        }
    }

    #[test]
    fn every_migration_file_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let files = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(files, MIGRATIONS.len());
    }
}
