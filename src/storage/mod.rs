//! Neo4j access. The only module that uses neo4rs.

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
}

/// Result with this module's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A pooled connection to the Aether graph.
#[derive(Clone)]
pub struct Store {
    graph: Graph,
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
