//! Read-only classification of SQL before it reaches DBHub: parsed with the engine's dialect
//! (sqlparser), every statement must be a plain read — SELECT/WITH without data-modifying CTEs,
//! `SELECT … INTO` or row locks, SHOW, DESCRIBE, or EXPLAIN without ANALYZE. Anything else,
//! including what cannot be parsed, is refused. This is the first of three lines (DBHub's
//! read-only tool and the engine's read-only transaction follow); side-effecting functions
//! called from a SELECT are left to those.
//!
//! Input is bounded before anything is built: bytes, statements and tokens ([`Limits`]). A
//! flat chain (`1+1+…`, `UNION ALL …`) parses into a tree as deep as it is long, and building,
//! walking or dropping it recurses per level; so anything above a few hundred tokens is parsed,
//! classified and dropped on a thread of its own with a large stack (at most two at a time),
//! never on a runtime worker.

use std::sync::LazyLock;

use dbhub_operator::crd::DatabaseType;
use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::{Dialect, MsSqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

mod rules;
use rules::Rule;
use tokio::sync::Semaphore;

/// How much SQL one request may send (settings with defaults in `config.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of SQL text.
    pub max_bytes: usize,
    /// Statements separated by `;`.
    pub max_statements: usize,
    /// Tokens (words, literals, operators, punctuation; not whitespace or comments).
    pub max_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 100_000,
            max_statements: 100,
            max_tokens: 20_000,
        }
    }
}

/// SQL refused before classification because it exceeds a [`Limits`] value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    /// More bytes than `max_bytes`.
    #[error(
        "the query is {found} bytes long; at most {limit} bytes are accepted (--query-max-bytes)"
    )]
    Bytes {
        /// The query's size in bytes.
        found: usize,
        /// The configured limit.
        limit: usize,
    },
    /// More statements than `max_statements`.
    #[error(
        "the query has {found} statements; at most {limit} are accepted (--query-max-statements)"
    )]
    Statements {
        /// How many the query has.
        found: usize,
        /// The configured limit.
        limit: usize,
    },
    /// More tokens than `max_tokens`.
    #[error(
        "the query has {found} tokens; at most {limit} are accepted (--query-max-tokens): split it or simplify it"
    )]
    Tokens {
        /// How many the query has.
        found: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// Up to this many tokens the tree is shallow enough for a runtime worker's stack.
const INLINE_TOKENS: usize = 256;
/// Stack of the classifier thread: ample for a tree as deep as `max_tokens` allows.
const DEEP_STACK: usize = 256 << 20;
/// Classifier threads running at once (the others wait their turn).
static DEEP_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(2));

/// What the statements would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Only reads; `statements` is how many.
    ReadOnly {
        /// Number of statements.
        statements: usize,
        /// The same read as a plain SELECT, when DBHub's read-only tool would refuse the form
        /// sent (a lone `VALUES …` or `TABLE t`).
        as_select: Option<String>,
    },
    /// Something writes (or might); the reason names the first such statement.
    Writes(String),
    /// Never run on any source ([`rules`] says why).
    Refused(String),
    /// Not parseable with the engine's dialect: not run (what cannot be analysed cannot be
    /// routed safely).
    Unparseable(String),
}

fn dialect(engine: DatabaseType) -> Box<dyn Dialect> {
    match engine {
        DatabaseType::Postgres => Box::new(PostgreSqlDialect {}),
        DatabaseType::Mysql | DatabaseType::Mariadb => Box::new(MySqlDialect {}),
        DatabaseType::Sqlserver => Box::new(MsSqlDialect {}),
        DatabaseType::Sqlite => Box::new(SQLiteDialect {}),
    }
}

/// Classifies `sql` for `engine` within `limits`.
pub async fn classify(
    sql: &str,
    engine: DatabaseType,
    limits: &Limits,
) -> Result<Verdict, TooLarge> {
    if sql.len() > limits.max_bytes {
        return Err(TooLarge::Bytes {
            found: sql.len(),
            limit: limits.max_bytes,
        });
    }
    // Tokenizing is a loop (no recursion, no tree): safe on any input within max_bytes.
    let tokens = match Tokenizer::new(dialect(engine).as_ref(), sql).tokenize_with_location() {
        Ok(t) => t,
        Err(e) => return Ok(Verdict::Unparseable(e.to_string())),
    };
    let significant: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    if significant.len() > limits.max_tokens {
        return Err(TooLarge::Tokens {
            found: significant.len(),
            limit: limits.max_tokens,
        });
    }
    let semicolons = significant
        .iter()
        .filter(|t| ***t == Token::SemiColon)
        .count();
    let trailing = significant.last().is_some_and(|t| **t == Token::SemiColon);
    let statements = semicolons + usize::from(!trailing);
    if statements > limits.max_statements {
        return Err(TooLarge::Statements {
            found: statements,
            limit: limits.max_statements,
        });
    }
    if significant.len() <= INLINE_TOKENS {
        return Ok(classify_tokens(tokens, engine, sql));
    }
    let owned = sql.to_string();
    Ok(on_deep_stack(move || classify_tokens(tokens, engine, &owned)).await)
}

/// Verdicts of statements classified before, by engine and exact text: a console, a dashboard
/// or a saved query sends the same SQL again and again, and its verdict cannot change (it
/// depends on the text, the engine's dialect and the limits alone). Only short statements are
/// kept ([`Verdicts::MAX_SQL`] bytes), at most [`Verdicts::MAX`], each for an hour.
pub struct Verdicts {
    limits: Limits,
    known: crate::ttl::TtlMap<(DatabaseType, String), Verdict>,
}

impl Verdicts {
    /// Longest statement remembered, in bytes.
    pub const MAX_SQL: usize = 2048;
    /// Verdicts remembered at most.
    pub const MAX: usize = 2048;

    /// An empty cache classifying within `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            known: crate::ttl::TtlMap::bounded(std::time::Duration::from_secs(3600), Self::MAX),
        }
    }

    /// [`classify`], answered from the cache when `sql` was classified for `engine` before.
    /// What could not be parsed is not kept (it may have failed for want of a thread).
    pub async fn classify(&self, sql: &str, engine: DatabaseType) -> Result<Verdict, TooLarge> {
        if sql.len() > Self::MAX_SQL {
            return classify(sql, engine, &self.limits).await;
        }
        let key = (engine, sql.to_string());
        if let Some(v) = self.known.get(&key) {
            return Ok(v);
        }
        let verdict = classify(sql, engine, &self.limits).await?;
        if !matches!(verdict, Verdict::Unparseable(_)) {
            self.known.insert(key, verdict.clone());
        }
        Ok(verdict)
    }
}

/// Runs `f` on a fresh thread with [`DEEP_STACK`] (everything it builds is dropped there too);
/// a panic inside counts as "could not be classified".
async fn on_deep_stack(f: impl FnOnce() -> Verdict + Send + 'static) -> Verdict {
    let _slot = DEEP_SLOTS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("sql-classifier".into())
        .stack_size(DEEP_STACK)
        .spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(out.unwrap_or_else(|_| {
                Verdict::Unparseable("the statement is too complex to analyse".into())
            }));
        });
    if spawned.is_err() {
        return Verdict::Unparseable("the statement could not be analysed right now".into());
    }
    rx.await
        .unwrap_or_else(|_| Verdict::Unparseable("the statement is too complex to analyse".into()))
}

/// PostgreSQL's and MySQL's `TABLE t` statement (which the parser takes only inside a query)
/// as `SELECT * FROM t`.
fn table_statement(tokens: &[TokenWithSpan]) -> Option<String> {
    use sqlparser::keywords::Keyword;
    let significant: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
        .collect();
    let [Token::Word(first), name @ ..] = significant.as_slice() else {
        return None;
    };
    let is_name = matches!(
        name,
        [Token::Word(_)] | [Token::Word(_), Token::Period, Token::Word(_)]
    );
    (first.keyword == Keyword::TABLE && is_name).then(|| {
        let name: String = name.iter().map(|t| t.to_string()).collect();
        format!("SELECT * FROM {name}")
    })
}

fn classify_tokens(tokens: Vec<TokenWithSpan>, engine: DatabaseType, sql: &str) -> Verdict {
    if let Some(select) = table_statement(&tokens) {
        return Verdict::ReadOnly {
            statements: 1,
            as_select: Some(select),
        };
    }
    let dialect = dialect(engine);
    let parsed = Parser::new(dialect.as_ref())
        .with_tokens_with_locations(tokens)
        .parse_statements();
    let statements = match parsed {
        Ok(s) => s,
        Err(e) => return Verdict::Unparseable(e.to_string()),
    };
    if statements.is_empty() {
        return Verdict::Unparseable("no statement".into());
    }
    let mut writes = None;
    for s in &statements {
        match rules::check(s) {
            Some(Rule::Refused(why)) => return Verdict::Refused(why),
            Some(Rule::Writes(why)) => {
                writes.get_or_insert(why);
            }
            None => {}
        }
        if let Some(why) = write_reason(s) {
            writes.get_or_insert(why);
        }
    }
    match writes {
        Some(why) => Verdict::Writes(why),
        None => Verdict::ReadOnly {
            as_select: match statements.as_slice() {
                [one] => select_form(one, sql),
                _ => None,
            },
            statements: statements.len(),
        },
    }
}

/// A lone `VALUES …` or `TABLE t` as the SELECT DBHub's read-only tool accepts.
fn select_form(s: &Statement, sql: &str) -> Option<String> {
    let Statement::Query(q) = s else { return None };
    match q.body.as_ref() {
        SetExpr::Values(_) => Some(format!(
            "SELECT * FROM ({}) AS \"values\"",
            sql.trim().trim_end_matches(';').trim()
        )),
        SetExpr::Table(t) => {
            let name = match (&t.schema_name, &t.table_name) {
                (Some(schema), Some(table)) => format!("{schema}.{table}"),
                (None, Some(table)) => table.to_string(),
                _ => return None,
            };
            Some(format!("SELECT * FROM {name}"))
        }
        _ => None,
    }
}

/// Why a statement is not a plain read (None when it is).
fn write_reason(s: &Statement) -> Option<String> {
    match s {
        Statement::Query(q) => query_write(q),
        Statement::Explain {
            analyze, statement, ..
        } => {
            if *analyze {
                Some("EXPLAIN ANALYZE executes its statement".into())
            } else {
                write_reason(statement)
            }
        }
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowCollation { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowViews { .. } => None,
        // What is left of SET after the rules is transaction-scoped (SET LOCAL …).
        Statement::Set(_) => None,
        other => Some(format!("{} is not a read", first_words(&other.to_string()))),
    }
}

fn query_write(q: &Query) -> Option<String> {
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            if let Some(why) = query_write(&cte.query) {
                return Some(format!("WITH {}: {why}", cte.alias.name));
            }
        }
    }
    if !q.locks.is_empty() {
        return Some("row locks (FOR UPDATE/SHARE) are not reads".into());
    }
    set_expr_write(&q.body)
}

fn set_expr_write(body: &SetExpr) -> Option<String> {
    match body {
        SetExpr::Select(select) => select.into.as_ref().map(|into| {
            if into.temporary {
                "SELECT … INTO TEMPORARY creates a temporary table".to_string()
            } else {
                "SELECT … INTO creates a table".to_string()
            }
        }),
        SetExpr::Query(q) => query_write(q),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_write(left).or_else(|| set_expr_write(right))
        }
        SetExpr::Values(_) | SetExpr::Table(_) => None,
        other => Some(format!("{} is not a read", first_words(&other.to_string()))),
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembered_verdicts_are_the_classifiers_and_bounded() {
        let v = Verdicts::new(Limits::default());
        let pg = DatabaseType::Postgres;
        for sql in [
            "SELECT 1",
            "DELETE FROM t",
            "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone",
            "COPY t TO PROGRAM 'x'",
        ] {
            let fresh = classify(sql, pg, &Limits::default()).await.unwrap();
            assert_eq!(v.classify(sql, pg).await.unwrap(), fresh, "{sql}");
            assert_eq!(
                v.classify(sql, pg).await.unwrap(),
                fresh,
                "{sql} (remembered)"
            );
        }
        // The same text for another engine is classified for that engine.
        let backticks = "SELECT `a` FROM t";
        let mysql = v.classify(backticks, DatabaseType::Mysql).await.unwrap();
        let postgres = v.classify(backticks, pg).await.unwrap();
        assert!(matches!(mysql, Verdict::ReadOnly { .. }), "{mysql:?}");
        assert!(matches!(postgres, Verdict::Unparseable(_)), "{postgres:?}");
        assert_eq!(v.known.len(), 5, "unparseable verdicts are not kept");
        for n in 0..Verdicts::MAX + 5 {
            v.classify(&format!("SELECT {n}"), pg).await.unwrap();
        }
        assert!(v.known.len() <= Verdicts::MAX);
        // Too large stays an error, cached or not.
        let huge = "SELECT 1;".repeat(200);
        assert!(v.classify(&huge, pg).await.is_err());
    }

    use DatabaseType::*;

    fn verdict(sql: &str, e: DatabaseType) -> Verdict {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(classify(sql, e, &Limits::default())).unwrap()
    }

    fn ro(sql: &str, e: DatabaseType) -> bool {
        matches!(verdict(sql, e), Verdict::ReadOnly { .. })
    }

    #[test]
    fn plain_reads_pass() {
        for sql in [
            "SELECT 1",
            "select * from orders where id = 3",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "SELECT a FROM t UNION SELECT b FROM u",
            "EXPLAIN SELECT * FROM t",
            "SELECT 1; SELECT 2",
        ] {
            assert!(ro(sql, Postgres), "{sql}");
        }
        assert!(ro("SHOW TABLES", Mariadb));
        assert_eq!(
            verdict("SELECT 1; SELECT 2;", Postgres),
            Verdict::ReadOnly {
                statements: 2,
                as_select: None
            }
        );
    }

    #[test]
    fn writes_and_disguised_writes_are_refused() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "DROP TABLE t",
            "CREATE TABLE x (a int)",
            "TRUNCATE t",
            "GRANT ALL ON t TO bob",
            "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone",
            "SELECT 1; DELETE FROM t",
            "SELECT * INTO copy FROM t",
            "SELECT * FROM t FOR UPDATE",
            "EXPLAIN ANALYZE DELETE FROM t",
            "EXPLAIN DELETE FROM t",
            "COPY t FROM '/etc/passwd'",
            "SET ROLE postgres",
            "BEGIN; DELETE FROM t; COMMIT",
        ] {
            assert!(!ro(sql, Postgres), "{sql} passed as read-only");
        }
        assert!(!ro("REPLACE INTO t VALUES (1)", Mariadb));
        assert!(!ro("LOAD DATA INFILE '/x' INTO TABLE t", Mysql));
    }

    #[test]
    fn a_lone_values_or_table_read_gets_a_select_form() {
        assert_eq!(
            verdict("VALUES (1), (2);", Postgres),
            Verdict::ReadOnly {
                statements: 1,
                as_select: Some("SELECT * FROM (VALUES (1), (2)) AS \"values\"".into())
            }
        );
        let Verdict::ReadOnly { as_select, .. } = verdict("TABLE public.orders", Postgres) else {
            panic!("TABLE is a read")
        };
        assert_eq!(as_select.as_deref(), Some("SELECT * FROM public.orders"));
        assert!(matches!(
            verdict("SELECT pg_advisory_lock(1)", Postgres),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn what_cannot_be_parsed_is_refused() {
        assert!(matches!(
            verdict("SELEC 1", Postgres),
            Verdict::Unparseable(_)
        ));
        assert!(matches!(verdict("", Postgres), Verdict::Unparseable(_)));
        assert!(matches!(verdict("   ;  ", Sqlite), Verdict::Unparseable(_)));
    }

    fn chain(terms: usize, sep: &str) -> String {
        let mut s = String::from("SELECT 1");
        for _ in 1..terms {
            s.push_str(sep);
            s.push('1');
        }
        s
    }

    #[test]
    fn oversized_input_is_refused_naming_the_limit() {
        let limits = Limits::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let run = |sql: String| rt.block_on(classify(&sql, Postgres, &limits));
        assert!(matches!(
            run(chain(200_000, "+")),
            Err(TooLarge::Bytes { .. })
        ));
        assert!(matches!(
            run(chain(12_000, "+")),
            Err(TooLarge::Tokens {
                found: 24_000,
                limit: 20_000
            })
        ));
        let many = "SELECT 1;".repeat(101);
        assert_eq!(
            run(many).unwrap_err(),
            TooLarge::Statements {
                found: 101,
                limit: 100
            }
        );
        assert!(matches!(
            run("SELECT 1;".repeat(100)),
            Ok(Verdict::ReadOnly {
                statements: 100,
                ..
            })
        ));
        let msg = run(chain(200_000, "+")).unwrap_err().to_string();
        assert!(
            msg.contains("100000") && msg.contains("--query-max-bytes"),
            "{msg}"
        );
    }

    /// Deep trees right below the limits — and far beyond them with the limits raised — are
    /// classified on the classifier's own thread without overflowing any stack.
    #[test]
    fn deep_trees_never_overflow_the_stack() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let at_limit = chain(9_999, "+");
        assert!(matches!(
            rt.block_on(classify(&at_limit, Postgres, &Limits::default())),
            Ok(Verdict::ReadOnly { statements: 1, .. })
        ));
        let huge = Limits {
            max_bytes: 10 << 20,
            max_statements: 100,
            max_tokens: 1_000_000,
        };
        for (sql, engine) in [
            (chain(200_000, "+"), Postgres),
            (chain(50_000, " UNION ALL SELECT "), Postgres),
            (chain(50_000, " UNION ALL SELECT "), Mariadb),
            (
                format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
                Postgres,
            ),
        ] {
            let v = rt.block_on(classify(&sql, engine, &huge)).unwrap();
            assert!(
                matches!(v, Verdict::ReadOnly { .. } | Verdict::Unparseable(_)),
                "{v:?}"
            );
        }
    }
}
