//! Neo4j access. The only module that uses neo4rs. Cypher lives in `const`s next to the code
//! that runs it; every query on a tenant-scoped label binds `$tenant_id`/`$space_id` (a test
//! scans the sources for that).

pub mod databases;
pub mod history;
pub mod migrate;
pub mod saved;
pub mod spaces;

use neo4rs::{ConfigBuilder, Graph, Query, Row, query};

use crate::config::Neo4jArgs;

/// Errors talking to Neo4j.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neo4j cannot be reached, or no pooled connection became free within the acquire
    /// timeout: retrying later can succeed.
    #[error("neo4j unavailable: {0}")]
    Unavailable(String),
    /// The driver failed otherwise (protocol or a Cypher error).
    #[error("neo4j: {0}")]
    Neo4j(neo4rs::Error),
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

impl From<neo4rs::Error> for Error {
    fn from(e: neo4rs::Error) -> Self {
        use neo4rs::Error as N;
        match e {
            N::IOError { .. }
            | N::ConnectionError
            | N::IncompleteBoltExchange
            | N::ServerUnavailableError(_)
            | N::RoutingTableRefreshFailed(_)
            | N::RequestIgnoredError
            // Neo4j did not answer within --neo4j-timeout (connecting, or a query's answer):
            // busy or stalled, so retrying later can succeed.
            | N::ConnectionTimedOut => Self::Unavailable(e.to_string()),
            N::Neo4j(ref n) if n.kind() == neo4rs::Neo4jErrorKind::Transient => {
                Self::Unavailable(e.to_string())
            }
            other => Self::Neo4j(other),
        }
    }
}

impl From<neo4rs::DeError> for Error {
    fn from(e: neo4rs::DeError) -> Self {
        Self::Neo4j(e.into())
    }
}

impl Error {
    /// The Neo4j status code of a server-side failure (e.g.
    /// `Neo.ClientError.Schema.ConstraintValidationFailed`).
    pub fn neo4j_code(&self) -> Option<&str> {
        match self {
            Self::Neo4j(neo4rs::Error::Neo4j(e)) => Some(e.code()),
            _ => None,
        }
    }
}

/// Result with this module's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A pooled connection to the Aether graph.
///
/// Every query goes through [`Store::rows`]: its rows are read to the end and the pooled
/// connection is released before the caller can start another query, so one request never
/// holds a connection while it waits for a second one (sixteen such requests used to deadlock
/// a pool of sixteen).
///
/// Each query as a whole is bounded too ([`Store::bound`]): the driver bounds connecting and
/// each answer, but not Bolt's opening handshake, so a server that accepts connections and never
/// answers would otherwise hold a query (a background writer's, say) forever.
#[derive(Clone)]
pub struct Store {
    graph: Graph,
    bound: std::time::Duration,
}

impl Store {
    /// Builds the connection pool; connections open lazily, so this succeeds while Neo4j is down.
    pub fn connect(args: &Neo4jArgs) -> Result<Self> {
        let config = ConfigBuilder::default()
            .uri(args.uri.as_str())
            .user(args.user.as_str())
            .password(args.password.as_str())
            .max_connections(usize::from(args.max_connections))
            // Also the wait for each answer: a Neo4j that stops answering fails requests (503),
            // not hangs them. Generous, because a busy Neo4j on a loaded machine can pause for
            // seconds (garbage collection) and a slow answer beats a refusal.
            .connection_timeout(args.answer_timeout)
            // neo4rs wires `max_lifetime` as the pool's wait timeout (and uses it for nothing
            // else): how long a query waits for a free connection before it is refused.
            .max_lifetime(args.acquire_timeout)
            .build()?;
        Ok(Self {
            graph: Graph::connect(config)?,
            // Waiting for a connection, then at most three waits for Neo4j: connecting (and its
            // greeting), the query's first answer, the rest of its rows.
            bound: args.acquire_timeout + args.answer_timeout * 3,
        })
    }

    /// `work` within the store's bound; past it, Neo4j counts as unavailable.
    async fn bounded<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.bound, work)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unavailable(format!(
                    "no answer within {} s",
                    self.bound.as_secs()
                )))
            })
    }

    /// Runs `q` and returns all its rows; the connection is back in the pool when this returns.
    pub(crate) async fn rows(&self, q: Query) -> Result<Vec<Row>> {
        crate::metrics::graph_query();
        self.bounded(async {
            let mut stream = self.graph.execute(q).await?;
            let mut out = Vec::new();
            while let Some(row) = stream.next().await? {
                out.push(row);
            }
            Ok(out)
        })
        .await
    }

    /// The first row of `q`, if any (the rest are read and dropped).
    pub(crate) async fn first(&self, q: Query) -> Result<Option<Row>> {
        Ok(self.rows(q).await?.into_iter().next())
    }

    /// Runs `q` for its effect.
    pub(crate) async fn run(&self, q: Query) -> Result<()> {
        crate::metrics::graph_query();
        self.bounded(async {
            self.graph.run(q).await?;
            Ok(())
        })
        .await
    }

    /// Round trip to the server (`RETURN 1`), for readiness.
    pub async fn ping(&self) -> Result<()> {
        let row = self
            .first(query("RETURN 1 AS one"))
            .await?
            .ok_or(Error::NoRow)?;
        let one: i64 = row.get("one")?;
        debug_assert_eq!(one, 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    /// A Neo4j that is down, busy or stalled is "unavailable" (503 with `Retry-After`, retry
    /// later), not an internal error; a Cypher mistake stays an internal error.
    #[test]
    fn timeouts_and_outages_are_unavailable_and_cypher_errors_are_not() {
        for e in [
            neo4rs::Error::ConnectionTimedOut,
            neo4rs::Error::ConnectionError,
            neo4rs::Error::IncompleteBoltExchange,
            neo4rs::Error::RequestIgnoredError,
            std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
        ] {
            let text = e.to_string();
            assert!(
                matches!(Error::from(e), Error::Unavailable(_)),
                "{text} should be unavailable"
            );
        }
        assert!(matches!(
            Error::from(neo4rs::Error::UnexpectedMessage("x".into())),
            Error::Neo4j(_)
        ));
    }

    /// A "Neo4j" that accepts connections and never says a word (a wedged server, a port that
    /// swallows Bolt): a query is refused as unavailable within the store's bound, not held.
    #[tokio::test]
    async fn a_server_that_accepts_and_never_answers_is_unavailable_within_the_bound() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn);
            }
        });
        let args = crate::config::Neo4jArgs {
            uri: format!("bolt://{addr}"),
            user: "neo4j".into(),
            password: String::new(),
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_millis(200),
            answer_timeout: std::time::Duration::from_millis(300),
            startup_timeout: std::time::Duration::from_secs(1),
        };
        let store = super::Store::connect(&args).unwrap();
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), store.ping())
            .await
            .expect("the query was held past 10 s");
        assert!(
            matches!(outcome, Err(Error::Unavailable(_))),
            "{:?}",
            outcome.err()
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
    }

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
                    if [":Database", ":QueryExecution", ":SavedQuery"]
                        .iter()
                        .any(|label| literal.contains(label))
                    {
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
