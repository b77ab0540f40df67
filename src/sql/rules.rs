//! What this service never runs, on any source, and why — in one place.
//!
//! - **Session state** outlives the request on DBHub's pooled connection and would reach later
//!   queries of other users: `SET`/`RESET` without `LOCAL` (including `SET ROLE`,
//!   `SET SESSION AUTHORIZATION`, MySQL `SET NAMES`/`SET @v`), `set_config(…, false)`, session
//!   advisory locks (`pg_advisory_lock*`, `pg_try_advisory_lock*`, `pg_advisory_unlock*`, MySQL
//!   `GET_LOCK`/`RELEASE_LOCK`/`RELEASE_ALL_LOCKS`), `LISTEN`/`UNLISTEN`, `PREPARE`/`EXECUTE`/
//!   `DEALLOCATE`, `DECLARE … WITH HOLD`, temporary tables, MySQL user variables (`@v := …`,
//!   `SELECT … INTO @v`), `DISCARD`, and `DO` blocks (anonymous code can do any of these).
//! - **Escape hatches** reach outside the database or other sessions: `dblink*` (a second
//!   session escapes `BEGIN READ ONLY`), `pg_terminate_backend`, `pg_cancel_backend`, large
//!   objects (`lo_*`), server files (`pg_read_file`, `pg_read_binary_file`, `pg_ls_dir`,
//!   `pg_ls_*dir`, `pg_stat_file`, adminpack's `pg_file_*`), `pg_reload_conf`,
//!   `pg_rotate_logfile`, `COPY … TO/FROM` a file or `PROGRAM`, MySQL `LOAD_FILE`,
//!   `LOAD DATA`, `INTO OUTFILE/DUMPFILE`.
//! - **Known writers** that look like reads: `nextval`, `setval`, `pg_notify` — classified as
//!   writes (they need the writable source and the `update` permission).
//!
//! Names are matched on the parsed statement, normalised (case, quotes and back-quotes, schema
//! prefix), never on the text.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, ContextModifier, CopyTarget, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, ObjectName, Query, Set, SetExpr, Statement, Value, visit_expressions,
    visit_relations,
};

/// Functions that reach outside the database or into other sessions.
const ESCAPE_HATCHES: &[&str] = &[
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "load_file",
];
/// Prefixes of function families that do the same.
const ESCAPE_PREFIXES: &[&str] = &["dblink", "lo_", "pg_file_", "pg_ls_"];
/// Functions whose effect outlives the transaction on the pooled connection.
const SESSION_FUNCTIONS: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "get_lock",
    "release_lock",
    "release_all_locks",
];
/// Functions that write although they are called from a SELECT.
const WRITING_FUNCTIONS: &[&str] = &["nextval", "setval", "pg_notify"];

/// What the rules say about a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Never run, on any source (the reason says which rule).
    Refused(String),
    /// Writes, though it may look like a read.
    Writes(String),
}

/// The name of a function or relation, lower-case, without schema or quotes.
fn base_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
        .unwrap_or_default()
}

fn hatch(name: &str) -> bool {
    ESCAPE_HATCHES.contains(&name) || ESCAPE_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn session_state(why: &str) -> Rule {
    Rule::Refused(format!(
        "{why} changes session state that outlives the request on a pooled connection and would affect later queries of other users"
    ))
}

fn escape(what: &str) -> Rule {
    Rule::Refused(format!(
        "{what} reaches outside the database or into other sessions"
    ))
}

/// The rule a statement breaks at the statement level, if any.
fn statement_rule(s: &Statement) -> Option<Rule> {
    match s {
        Statement::Set(set) => set_rule(set),
        Statement::Reset(_) => Some(session_state("RESET")),
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => Some(session_state("LISTEN")),
        Statement::Prepare { .. } | Statement::Execute { .. } | Statement::Deallocate { .. } => {
            Some(session_state("PREPARE/EXECUTE/DEALLOCATE"))
        }
        Statement::Discard { .. } => Some(session_state("DISCARD")),
        Statement::Declare { stmts, .. } if stmts.iter().any(|d| d.hold == Some(true)) => {
            Some(session_state("DECLARE … WITH HOLD"))
        }
        Statement::CreateTable(t) if t.temporary => Some(session_state("a temporary table")),
        Statement::Copy { target, .. } => match target {
            CopyTarget::File { .. } | CopyTarget::Program { .. } => {
                Some(escape("COPY to or from a file or program"))
            }
            CopyTarget::Stdin | CopyTarget::Stdout => None,
        },
        Statement::LoadData { .. } => Some(escape("LOAD DATA")),
        Statement::Query(q) => select_into_rule(q),
        _ => None,
    }
}

/// `SELECT … INTO TEMPORARY t` (a session's temporary table) and MySQL's `SELECT … INTO @v`.
fn select_into_rule(q: &Query) -> Option<Rule> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let into = select.into.as_ref()?;
    if into.temporary {
        return Some(session_state("SELECT … INTO TEMPORARY"));
    }
    let user_variable = into.targets.iter().any(|t| match t {
        Expr::Identifier(i) => i.value.starts_with('@'),
        _ => false,
    });
    user_variable.then(|| session_state("SELECT … INTO @variable"))
}

fn set_rule(set: &Set) -> Option<Rule> {
    let local = |m: &Option<ContextModifier>| matches!(m, Some(ContextModifier::Local));
    match set {
        Set::SingleAssignment {
            scope, variable, ..
        } if !local(scope) => Some(session_state(&format!("SET {variable} (without LOCAL)"))),
        Set::SingleAssignment { .. } => None,
        Set::SetRole {
            context_modifier, ..
        } if !local(context_modifier) => Some(session_state("SET ROLE")),
        Set::SetRole { .. } => None,
        Set::SetTimeZone { local: true, .. } => None,
        Set::SetSessionAuthorization(_) => Some(session_state("SET SESSION AUTHORIZATION")),
        _ => Some(session_state("SET (without LOCAL)")),
    }
}

/// `set_config(name, value, is_local)` is session-wide unless `is_local` is literally true.
fn set_config_is_local(f: &Function) -> bool {
    let FunctionArguments::List(list) = &f.args else {
        return false;
    };
    match list.args.get(2) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => {
            matches!(v.value, Value::Boolean(true))
        }
        _ => false,
    }
}

fn function_rule(f: &Function) -> Option<Rule> {
    let name = base_name(&f.name);
    if hatch(&name) {
        return Some(escape(&format!("{name}()")));
    }
    if SESSION_FUNCTIONS.contains(&name.as_str()) {
        return Some(session_state(&format!("{name}()")));
    }
    if name == "set_config" && !set_config_is_local(f) {
        return Some(session_state("set_config(…) without is_local = true"));
    }
    if WRITING_FUNCTIONS.contains(&name.as_str()) {
        return Some(Rule::Writes(format!("{name}() writes")));
    }
    None
}

fn expression_rule(e: &Expr) -> Option<Rule> {
    match e {
        Expr::Function(f) => function_rule(f),
        Expr::BinaryOp {
            op: BinaryOperator::Assignment,
            ..
        } => Some(session_state("a user variable assignment (:=)")),
        _ => None,
    }
}

/// The first rule `s` breaks, looking at the statement, every expression and every relation
/// (table functions such as `FROM dblink(…)` or `FROM pg_ls_dir(…)`). A refusal wins over a
/// write.
pub fn check(s: &Statement) -> Option<Rule> {
    let mut found = statement_rule(s);
    if matches!(found, Some(Rule::Refused(_))) {
        return found;
    }
    let in_expressions = visit_expressions(s, |e| match expression_rule(e) {
        Some(r @ Rule::Refused(_)) => ControlFlow::Break(r),
        Some(w) => {
            found.get_or_insert(w);
            ControlFlow::Continue(())
        }
        None => ControlFlow::Continue(()),
    });
    if let ControlFlow::Break(r) = in_expressions {
        return Some(r);
    }
    let in_relations = visit_relations(s, |name| {
        let n = base_name(name);
        if hatch(&n) {
            ControlFlow::Break(escape(&format!("{n}()")))
        } else {
            ControlFlow::Continue(())
        }
    });
    if let ControlFlow::Break(r) = in_relations {
        return Some(r);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect};
    use sqlparser::parser::Parser;

    fn rule(sql: &str, mysql: bool) -> Option<Rule> {
        let statements = if mysql {
            Parser::parse_sql(&MySqlDialect {}, sql)
        } else {
            Parser::parse_sql(&PostgreSqlDialect {}, sql)
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        statements.iter().find_map(check)
    }

    #[test]
    fn session_state_and_escape_hatches_are_refused_however_they_are_spelled() {
        for sql in [
            "SET statement_timeout = 0",
            "SET SESSION statement_timeout = 0",
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "RESET ALL",
            "SELECT set_config('statement_timeout', '0', false)",
            "SELECT set_config('application_name', 'x', (1 = 1))",
            "SELECT pg_advisory_lock(1)",
            "SELECT \"PG_ADVISORY_LOCK\"(1)",
            "SELECT pg_catalog.pg_try_advisory_lock(1)",
            "LISTEN chan",
            "PREPARE p AS SELECT 1",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "CREATE TEMP TABLE t (a int)",
            "SELECT * INTO TEMPORARY t FROM x",
            "SELECT dblink_exec('host=x', 'DELETE FROM t')",
            "SELECT * FROM dblink('host=x', 'SELECT 1') AS t(a int)",
            "SELECT pg_terminate_backend(42)",
            "SELECT lo_create(0)",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT * FROM pg_ls_dir('/')",
            "SELECT pg_reload_conf()",
            "COPY t TO '/tmp/x'",
            "COPY t FROM PROGRAM 'id'",
            "SELECT (SELECT pg_cancel_backend(1))",
        ] {
            assert!(matches!(rule(sql, false), Some(Rule::Refused(_))), "{sql}");
        }
        for sql in [
            "SELECT `LOAD_FILE`('/etc/passwd')",
            "SELECT load_file('/etc/passwd')",
            "SELECT @v := 1",
            "SET @v = 1",
            "SET NAMES latin1",
            "SELECT GET_LOCK('a', 1)",
            "SELECT 1 INTO @v",
        ] {
            assert!(matches!(rule(sql, true), Some(Rule::Refused(_))), "{sql}");
        }
    }

    #[test]
    fn transaction_scoped_settings_and_plain_reads_pass_and_writers_are_named() {
        for sql in [
            "SET LOCAL statement_timeout = '1s'",
            "SELECT set_config('x.y', '1', true)",
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT 1",
            "SELECT currval('s')",
            "COPY t TO STDOUT",
        ] {
            assert_eq!(rule(sql, false), None, "{sql}");
        }
        for sql in [
            "SELECT nextval('s')",
            "SELECT setval('s', 4242)",
            "SELECT pg_notify('c', 'x')",
        ] {
            assert!(matches!(rule(sql, false), Some(Rule::Writes(_))), "{sql}");
        }
    }
}
