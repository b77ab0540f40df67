//! Read-only classification of SQL before it reaches DBHub: parsed with the engine's dialect
//! (sqlparser), every statement must be a plain read — SELECT/WITH without data-modifying CTEs,
//! `SELECT … INTO` or row locks, SHOW, DESCRIBE, or EXPLAIN without ANALYZE. Anything else,
//! including what cannot be parsed, is refused. This is the first of three lines (DBHub's
//! read-only tool and the engine's read-only transaction follow); side-effecting functions
//! called from a SELECT are left to those.

use dbhub_operator::crd::DatabaseType;
use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::{Dialect, MsSqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

/// What the statements would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Only reads; `statements` is how many.
    ReadOnly {
        /// Number of statements.
        statements: usize,
    },
    /// Something writes (or might); the reason names the first such statement.
    Writes(String),
    /// Not parseable with the engine's dialect: treated as a write.
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

/// Classifies `sql` for `engine`.
pub fn classify(sql: &str, engine: DatabaseType) -> Verdict {
    let statements = match Parser::parse_sql(dialect(engine).as_ref(), sql) {
        Ok(s) => s,
        Err(e) => return Verdict::Unparseable(e.to_string()),
    };
    if statements.is_empty() {
        return Verdict::Unparseable("no statement".into());
    }
    for s in &statements {
        if let Some(why) = write_reason(s) {
            return Verdict::Writes(why);
        }
    }
    Verdict::ReadOnly {
        statements: statements.len(),
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
        SetExpr::Select(select) => select
            .into
            .as_ref()
            .map(|_| "SELECT … INTO creates a table".to_string()),
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

    use DatabaseType::*;

    fn ro(sql: &str, e: DatabaseType) -> bool {
        matches!(classify(sql, e), Verdict::ReadOnly { .. })
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
            classify("SELECT 1; SELECT 2", Postgres),
            Verdict::ReadOnly { statements: 2 }
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
    fn what_cannot_be_parsed_is_refused() {
        assert!(matches!(
            classify("SELEC 1", Postgres),
            Verdict::Unparseable(_)
        ));
        assert!(matches!(classify("", Postgres), Verdict::Unparseable(_)));
        assert!(matches!(
            classify("   ;  ", Sqlite),
            Verdict::Unparseable(_)
        ));
    }
}
