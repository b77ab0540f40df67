//! Running SQL on a registered database through its space's DBHub, and the caller's query
//! history. A run: the record must be Connected; the statement is classified (a read-only
//! database refuses non-reads before DBHub sees them; writes need the `update` permission);
//! DBHub runs it; the result is shaped (rows cut to the caller's row limit, the last statement
//! on top); every run — refused, failed or not — is recorded.

mod history;
pub mod recorder;
pub mod schema;
mod shape;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

pub use history::{HistoryPage, HistoryParams};
pub use shape::{QueryOutput, StatementOutput};

use crate::k8s::directory::Directory;
use crate::mcp::McpError;
use crate::mcp::hub::{HubError, Hubs, Source};
use crate::model::{Caller, Database, Error, Execution, FieldError, Permission, Result};
use crate::registry::Registry;
use crate::sql::{Limits, Verdict};
use crate::storage::Store;

/// The DBHub sessions of the service.
pub type DbHubs = Hubs<Directory>;

/// A query to run.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct QueryInput {
    /// SQL; several statements may be separated by `;`.
    #[schema(value_type = String, required = true)]
    pub query: Option<String>,
    /// Bind parameters: DBHub's execute_sql has none, so only an empty list (`[]`) or object
    /// (`{}`, what the frontend sends) or null is accepted.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub params: Option<Value>,
    /// Alias of `params`.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub parameters: Option<Value>,
    /// Row limit for this run; can only lower the database's `max_rows`.
    #[serde(default)]
    pub max_rows: Option<i64>,
    /// `read` (the default for what the service classifies as a read) runs on the database's
    /// read-only source, where the database itself refuses writes; `write` (the default for
    /// what it classifies as a write) runs on the writable source, and needs a writable
    /// database and the `update` permission (403 otherwise).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "write")]
    pub mode: Option<String>,
}

/// A successful run.
#[derive(Debug)]
pub struct Ran {
    /// What it returned.
    pub output: QueryOutput,
    /// When it started (as its history entry says).
    pub executed_at: String,
}

/// Where a statement is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// The read-only source, with the SQL to send (a SELECT form of VALUES/TABLE).
    Read(String),
    /// The writable source.
    Write,
}

/// The query use cases.
pub struct Queries {
    store: Store,
    recorder: recorder::Recorder,
    registry: Arc<Registry>,
    hubs: Arc<DbHubs>,
    verdicts: crate::sql::Verdicts,
}

/// Checks the body: the SQL, no bind parameters, the row limit.
fn validate(input: &QueryInput, db_max: u32) -> Result<(String, usize, Option<Source>)> {
    let mut errs = Vec::new();
    let mode = match input.mode.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(m) if m.eq_ignore_ascii_case("read") => Some(Source::Read),
        Some(m) if m.eq_ignore_ascii_case("write") => Some(Source::Write),
        Some(_) => {
            errs.push(FieldError::new("mode", "read or write"));
            None
        }
    };
    let sql = input
        .query
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_string();
    if sql.is_empty() {
        errs.push(FieldError::new("query", "required: the SQL to run"));
    }
    for (field, v) in [("params", &input.params), ("parameters", &input.parameters)] {
        let empty = match v {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(_) => false,
        };
        if !empty {
            errs.push(FieldError::new(
                field,
                "bind parameters are not supported: DBHub's execute_sql takes plain SQL only; \
                 send the query without parameters",
            ));
        }
    }
    let db_max = db_max as usize;
    let limit = match input.max_rows {
        None => db_max,
        Some(n) if n >= 1 => (n as usize).min(db_max),
        Some(_) => {
            errs.push(FieldError::new(
                "max_rows",
                "a whole number from 1 (it can only lower the database's limit)",
            ));
            db_max
        }
    };
    if errs.is_empty() {
        Ok((sql, limit, mode))
    } else {
        Err(Error::Invalid(errs))
    }
}

/// DBHub failures as use-case errors (never an internal error; never DBHub's text for
/// connection failures, which may carry connection details).
pub fn hub_error(e: HubError) -> Error {
    match e {
        HubError::NotServed(m) | HubError::Lookup(m) => Error::Unavailable(m),
        HubError::Mcp(e) => match e {
            McpError::Unavailable(m) => Error::Unavailable(format!("{m}; retry shortly.")),
            McpError::Timeout => Error::Timeout("DBHub did not answer in time.".into()),
            McpError::UnknownTool(_) => {
                Error::Unavailable("DBHub is loading its new configuration; retry shortly.".into())
            }
            McpError::Protocol(_) => Error::BadGateway("DBHub answered unexpectedly.".into()),
            McpError::TooLarge { bytes, limit } => Error::Invalid(vec![FieldError::new(
                "query",
                format!(
                    "the query is {bytes} bytes once encoded for DBHub, which accepts at most {limit} bytes per request: shorten it"
                ),
            )]),
            McpError::Tool { code, message } => match code.as_str() {
                "READONLY_VIOLATION" => Error::ReadOnly(format!(
                    "The database is read-only: {}",
                    crate::mcp::result::redact(&message)
                )),
                "EXECUTION_ERROR" | "SEARCH_ERROR" | "INVALID_ARGUMENTS" => {
                    Error::QueryFailed(crate::mcp::result::redact(&message))
                }
                "SCHEMA_NOT_FOUND" => Error::NotFound("schema"),
                other => Error::BadGateway(format!(
                    "The database could not be reached through DBHub ({other})."
                )),
            },
        },
    }
}

impl Queries {
    /// The use cases over these parts.
    pub fn new(store: Store, registry: Arc<Registry>, hubs: Arc<DbHubs>, limits: Limits) -> Self {
        Self {
            recorder: recorder::Recorder::start(store.clone()),
            store,
            registry,
            hubs,
            verdicts: crate::sql::Verdicts::new(limits),
        }
    }

    fn instance(&self, caller: &Caller) -> String {
        self.registry.cluster().instance_for(&caller.scope.space_id)
    }

    /// How long a run on `d` may take: the DBHub call's timeout plus the database's own query
    /// timeout, so the database's answer (or DBHub's cancellation) comes first.
    pub fn budget(&self, d: &Database) -> Duration {
        self.hubs.timeout()
            + Duration::from_secs(u64::from(d.settings.query_timeout))
            + Duration::from_secs(5)
    }

    /// Runs `input` on database `id` for `caller`; `on_budget` learns how long it may take
    /// once the database is known.
    pub async fn run(
        &self,
        caller: &Caller,
        id: &str,
        input: &QueryInput,
        on_budget: impl FnOnce(Duration),
    ) -> Result<QueryOutput> {
        Ok(self
            .run_as(caller, id, input, None, on_budget)
            .await?
            .output)
    }

    /// [`Queries::run`], recording the run as one of saved query `saved` when given.
    pub async fn run_as(
        &self,
        caller: &Caller,
        id: &str,
        input: &QueryInput,
        saved: Option<&str>,
        on_budget: impl FnOnce(Duration),
    ) -> Result<Ran> {
        let db = self.registry.connected(caller, id).await?;
        on_budget(self.budget(&db));
        let (sql, limit, mode) = validate(input, db.settings.max_rows)?;
        let started = Instant::now();
        let mut run = history::started(caller, &db, &sql);
        run.saved_query_id = saved.map(String::from);
        let (source, sent) = match self.route(caller, &db, &sql, mode).await {
            Ok(Route::Read(sent)) => (Source::Read, sent),
            Ok(Route::Write) => (Source::Write, sql.clone()),
            Err(e) => {
                run.error = e.to_string();
                self.record(&run);
                return Err(e);
            }
        };
        let query_timeout = Duration::from_secs(u64::from(db.settings.query_timeout));
        let out = self
            .hubs
            .execute_sql(
                &self.instance(caller),
                &db.cr_name,
                &sent,
                query_timeout,
                source,
            )
            .await;
        run.duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match out {
            Ok(result) => {
                let shaped = shape::shape(result, limit, run.duration_ms);
                (run.status, run.row_count, run.truncated) =
                    ("success".into(), shaped.row_count, shaped.truncated);
                self.record(&run);
                Ok(Ran {
                    output: shaped,
                    executed_at: run.executed_at,
                })
            }
            Err(e) => {
                let e = hub_error(e);
                (run.status, run.error) = ("error".into(), e.to_string());
                self.record(&run);
                Err(e)
            }
        }
    }

    /// Where `sql` goes on `db` for `caller`: the read-only source unless the statement is a
    /// write (by the classifier, or because the caller asked for `write`) on a writable
    /// database and the caller may write. What the service never runs is refused here.
    async fn route(
        &self,
        caller: &Caller,
        db: &Database,
        sql: &str,
        mode: Option<Source>,
    ) -> Result<Route> {
        let verdict = self
            .verdicts
            .classify(sql, db.settings.engine)
            .await
            .map_err(|e| Error::Invalid(vec![FieldError::new("query", e.to_string())]))?;
        let (writes, why, read_form) = match verdict {
            Verdict::Refused(why) => {
                return Err(Error::Forbidden(format!(
                    "This statement is never run through this service: {why}."
                )));
            }
            Verdict::Unparseable(e) => {
                return Err(Error::Invalid(vec![FieldError::new(
                    "query",
                    format!(
                        "could not be analysed ({e}); the service runs only statements it can analyse"
                    ),
                )]));
            }
            Verdict::ReadOnly { as_select, .. } => (false, String::new(), as_select),
            Verdict::Writes(why) => (true, why, None),
        };
        let write = match mode {
            Some(Source::Write) => true,
            Some(Source::Read) => false,
            None => writes,
        };
        if !write {
            return Ok(Route::Read(read_form.unwrap_or_else(|| sql.to_string())));
        }
        let why = if writes {
            why
        } else {
            "it was sent with mode write".into()
        };
        if db.settings.readonly {
            return Err(Error::ReadOnly(format!(
                "The database is read-only and the query is not a plain read: {why}."
            )));
        }
        if !caller.can(Permission::Update) {
            return Err(Error::Forbidden(format!(
                "Your role in this space ({}) may only run reads here, and the query is not a plain read: {why}.",
                caller.role.as_str()
            )));
        }
        Ok(Route::Write)
    }

    fn record(&self, run: &Execution) {
        self.recorder.submit(run.clone());
    }

    /// Writes out the queued history (reads of the history and shutdown call this).
    pub async fn flush_history(&self) {
        self.recorder.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> QueryInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn bind_parameters_empty_query_and_bad_limits_are_invalid() {
        for body in [
            json!({"query": "select 1", "params": [1]}),
            json!({"query": "select 1", "parameters": {"a": 1}}),
            json!({"query": "  "}),
            json!({"query": "select 1", "max_rows": 0}),
        ] {
            assert!(
                matches!(validate(&input(body.clone()), 100), Err(Error::Invalid(_))),
                "{body}"
            );
        }
        let ok = validate(
            &input(json!({"query": " select 1 ", "params": [], "max_rows": 5})),
            100,
        )
        .unwrap();
        assert_eq!(ok, ("select 1".to_string(), 5, None));
        // max_rows can only lower the database's limit.
        assert_eq!(
            validate(&input(json!({"query": "x", "max_rows": 5000})), 100)
                .unwrap()
                .1,
            100
        );
        let write = validate(&input(json!({"query": "x", "mode": "WRITE"})), 1).unwrap();
        assert_eq!(write.2, Some(Source::Write));
        assert!(matches!(
            validate(&input(json!({"query": "x", "mode": "sudo"})), 1),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn dbhub_failures_map_to_errors_that_are_not_internal() {
        let tool = |code: &str, msg: &str| {
            hub_error(HubError::Mcp(McpError::Tool {
                code: code.into(),
                message: msg.into(),
            }))
        };
        assert!(matches!(
            tool("READONLY_VIOLATION", "no"),
            Error::ReadOnly(_)
        ));
        let failed = tool("EXECUTION_ERROR", "relation \"x\" does not exist");
        assert_eq!(failed.to_string(), "relation \"x\" does not exist");
        assert!(matches!(failed, Error::QueryFailed(_)));
        let unreachable = tool("SOURCE_UNREACHABLE", "connect postgres://u:secret@h failed");
        assert!(!unreachable.to_string().contains("secret"));
        assert!(matches!(unreachable, Error::BadGateway(_)));
        assert!(matches!(tool("AUTH_FAILED", "x"), Error::BadGateway(_)));
        assert!(matches!(
            hub_error(HubError::Mcp(McpError::Unavailable("down".into()))),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            hub_error(HubError::Mcp(McpError::Timeout)),
            Error::Timeout(_)
        ));
        assert!(matches!(
            hub_error(HubError::NotServed("later".into())),
            Error::Unavailable(_)
        ));
    }
}
