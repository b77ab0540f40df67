//! Neo4j access. The only module that uses neo4rs. Cypher lives in `const`s next to the code
//! that runs it; every query on a tenant-scoped label binds `$tenant_id`/`$space_id` (a test
//! scans the sources for that).

pub mod databases;
pub mod history;
pub mod migrate;
pub mod spaces;

use std::time::Duration;

use neo4rs::{ConfigBuilder, Graph, query};

use crate::config::Neo4jArgs;

/// Errors talking to Neo4j.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The driver failed (connection, protocol or a Cypher error).
    #[error("neo4j: {0}")]
    Neo4j(#[from] neo4rs::Error),
    /// A query returned no row where one was expected.
    #[error("neo4j: query returned no row")]
    NoRow,
    /// A migration cannot be applied.
    #[error("migration: {0}")]
    Migration(String),
    /// A uniqueness constraint refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
}

/// Result with this module's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A pooled connection to the Aether graph.
#[derive(Clone)]
pub struct Store {
    pub(crate) graph: Graph,
}

impl Store {
    /// Builds the connection pool; connections open lazily, so this succeeds while Neo4j is down.
    pub fn connect(args: &Neo4jArgs) -> Result<Self> {
        let config = ConfigBuilder::default()
            .uri(args.uri.as_str())
            .user(args.user.as_str())
            .password(args.password.as_str())
            .max_connections(16)
            .connection_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            graph: Graph::connect(config)?,
        })
    }

    /// Round trip to the server (`RETURN 1`), for readiness.
    pub async fn ping(&self) -> Result<()> {
        let mut rows = self.graph.execute(query("RETURN 1 AS one")).await?;
        let row = rows.next().await?.ok_or(Error::NoRow)?;
        let one: i64 = row.get("one").map_err(neo4rs::Error::from)?;
        debug_assert_eq!(one, 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// Aether's rule: every Cypher that touches a tenant-scoped label binds the tenant and the
    /// space. Scans every `const …: &str = "…";` in the sources.
    #[test]
    fn every_tenant_scoped_cypher_binds_tenant_and_space() {
        let mut checked = 0;
        let mut offenders = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices(": &str = \"") {
                    let body = &text[i + 10..];
                    let literal = &body[..body.find("\";").unwrap_or(body.len())];
                    if literal.contains(":Database") || literal.contains(":QueryExecution") {
                        checked += 1;
                        if !(literal.contains("$tenant_id") && literal.contains("$space_id")) {
                            offenders.push(format!("{}: {literal}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(
            checked >= 5,
            "the scan found only {checked} queries: is it still looking at the right files?"
        );
        assert!(
            offenders.is_empty(),
            "Cypher without tenant/space binding:\n{}",
            offenders.join("\n")
        );
    }
}
