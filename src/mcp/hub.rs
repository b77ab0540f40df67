//! The DBHub sessions of the service, one per DBHubInstance: where an instance is and its token
//! come from a [`Directory`] (the Kubernetes side implements it); the tool names DBHub gives a
//! Database's source come from `tools/list`, cached per session and refreshed when the set of
//! served Databases or the endpoint changes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dbhub_operator::dbhub_config::entries;
use serde_json::Value;

use super::{ExecResult, McpError, Session};

/// Why a Database cannot be reached through DBHub right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// DBHub does not (yet) serve this Database: no instance, not in its configuration, no
    /// endpoint, or DBHub has not loaded the new configuration.
    #[error("{0}")]
    NotServed(String),
    /// Calling DBHub failed.
    #[error(transparent)]
    Mcp(#[from] McpError),
    /// The instance could not be looked up (Kubernetes unreachable).
    #[error("{0}")]
    Lookup(String),
}

/// Where a DBHubInstance's DBHub listens and which Databases its configuration holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The MCP endpoint URL.
    pub endpoint: String,
    /// Names of the Database CRs in its running configuration.
    pub served: Vec<String>,
}

/// What the hub needs to know from outside MCP.
pub trait Directory: Send + Sync + 'static {
    /// Where `instance` is and what it serves.
    fn placement(&self, instance: &str)
    -> impl Future<Output = Result<Placement, HubError>> + Send;
    /// The bearer token of `instance`.
    fn token(&self, instance: &str) -> impl Future<Output = Result<String, HubError>> + Send;
}

/// A Database's tools in one session.
struct Target {
    session: Arc<Cached>,
    execute_sql: String,
    search_objects: String,
}

struct Cached {
    key: String,
    session: Session,
    tools: Vec<String>,
    /// For unsuffixed tools: DBHub confirmed (`source_id` of a `SELECT 1`) that its one source
    /// is this Database, not one of a configuration it has not reloaded yet.
    verified: AtomicBool,
}

/// DBHub sessions, one per DBHubInstance.
pub struct Hubs<D> {
    directory: D,
    timeout: Duration,
    sessions: tokio::sync::Mutex<HashMap<String, Arc<Cached>>>,
}

/// Tool names for the Database `cr` among `served` (the instance's Databases, as configured)
/// given DBHub's `tools`: suffixed with the source id when DBHub serves several sources,
/// unsuffixed when it serves exactly this one. None when DBHub's tools do not match (it has not
/// loaded the configuration yet). Also returns the source id.
pub fn tools_for(
    cr: &str,
    served: &[String],
    tools: &[String],
) -> Option<(String, String, String)> {
    let ids = entries(served.iter().map(String::as_str));
    let id = ids.iter().find(|e| e.name == cr)?.id.clone();
    let has = |n: &str| tools.iter().any(|t| t == n);
    let (exec, search) = (format!("execute_sql_{id}"), format!("search_objects_{id}"));
    if has(&exec) && has(&search) {
        return Some((exec, search, id));
    }
    let single = served.len() == 1 && !tools.iter().any(|t| t.starts_with("execute_sql_"));
    (single && has("execute_sql") && has("search_objects"))
        .then(|| ("execute_sql".into(), "search_objects".into(), id))
}

fn loading() -> HubError {
    HubError::NotServed("DBHub is loading its new configuration; retry shortly.".into())
}

impl<D: Directory> Hubs<D> {
    /// Sessions through `directory`; `timeout` bounds connecting and each call (a query's own
    /// timeout is added by the caller).
    pub fn new(directory: D, timeout: Duration) -> Self {
        Self {
            directory,
            timeout,
            sessions: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The base timeout of each DBHub call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn target(&self, instance: &str, cr: &str) -> Result<Target, HubError> {
        let Placement { endpoint, served } = self.directory.placement(instance).await?;
        if !served.iter().any(|n| n == cr) {
            return Err(HubError::NotServed(
                "DBHub does not serve this database yet (it is added after its connection check passes); retry shortly."
                    .into(),
            ));
        }
        let mut sorted = served.clone();
        sorted.sort();
        let key = format!("{endpoint}|{}", sorted.join(","));
        let cached = {
            let sessions = self.sessions.lock().await;
            sessions.get(instance).filter(|c| c.key == key).cloned()
        };
        let cached = match cached {
            Some(c) => c,
            None => self.open(instance, &endpoint, key).await?,
        };
        let Some((exec, search, id)) = tools_for(cr, &served, &cached.tools) else {
            self.forget(instance).await;
            return Err(loading());
        };
        if exec == "execute_sql" && !cached.verified.load(Ordering::Acquire) {
            let out = cached
                .session
                .call_within(&exec, serde_json::json!({"sql": "SELECT 1"}), self.timeout)
                .await?;
            if out.get("source_id").and_then(Value::as_str) != Some(id.as_str()) {
                self.forget(instance).await;
                return Err(loading());
            }
            cached.verified.store(true, Ordering::Release);
        }
        Ok(Target {
            session: cached,
            execute_sql: exec,
            search_objects: search,
        })
    }

    async fn open(
        &self,
        instance: &str,
        endpoint: &str,
        key: String,
    ) -> Result<Arc<Cached>, HubError> {
        let token = self.directory.token(instance).await?;
        let session = Session::connect(endpoint, &token, self.timeout).await?;
        let tools = session.tool_names().await?;
        let fresh = Arc::new(Cached {
            key,
            session,
            tools,
            verified: Default::default(),
        });
        let old = self
            .sessions
            .lock()
            .await
            .insert(instance.to_string(), fresh.clone());
        if let Some(old) = old.and_then(Arc::into_inner) {
            old.session.close().await;
        }
        Ok(fresh)
    }

    /// Drops the cached session of `instance` (after a transport failure or a tool DBHub no
    /// longer has), so the next call reconnects and lists the tools again.
    pub async fn forget(&self, instance: &str) {
        self.sessions.lock().await.remove(instance);
    }

    /// Runs `sql` on Database `cr` of `instance`, waiting at most `extra` beyond the base
    /// timeout. A tool DBHub no longer knows (configuration reloaded) is looked up once more;
    /// nothing else is retried (a write must never run twice).
    pub async fn execute_sql(
        &self,
        instance: &str,
        cr: &str,
        sql: &str,
        extra: Duration,
    ) -> Result<ExecResult, HubError> {
        let args = serde_json::json!({ "sql": sql });
        let out = self.call(instance, cr, Tool::Execute, args, extra).await?;
        Ok(super::result::exec_result(out)?)
    }

    /// Calls `search_objects` on Database `cr` of `instance` with `args`.
    pub async fn search_objects(
        &self,
        instance: &str,
        cr: &str,
        args: Value,
    ) -> Result<Value, HubError> {
        self.call(instance, cr, Tool::Search, args, Duration::ZERO)
            .await
    }

    async fn call(
        &self,
        instance: &str,
        cr: &str,
        tool: Tool,
        args: Value,
        extra: Duration,
    ) -> Result<Value, HubError> {
        let started = std::time::Instant::now();
        let out = self.call_once(instance, cr, tool, args, extra).await;
        let outcome = match &out {
            Ok(_) => "ok",
            Err(HubError::NotServed(_) | HubError::Lookup(_)) => "not_served",
            Err(HubError::Mcp(e)) => e.metric_label(),
        };
        crate::metrics::mcp(tool.name(), outcome, started.elapsed().as_secs_f64());
        out
    }

    async fn call_once(
        &self,
        instance: &str,
        cr: &str,
        tool: Tool,
        args: Value,
        extra: Duration,
    ) -> Result<Value, HubError> {
        for attempt in 0..2 {
            let target = self.target(instance, cr).await?;
            let name = match tool {
                Tool::Execute => &target.execute_sql,
                Tool::Search => &target.search_objects,
            };
            let res = target
                .session
                .session
                .call_within(name, args.clone(), self.timeout + extra)
                .await;
            match res {
                Err(McpError::UnknownTool(_)) if attempt == 0 => self.forget(instance).await,
                Err(e @ (McpError::Unavailable(_) | McpError::UnknownTool(_))) => {
                    self.forget(instance).await;
                    return Err(e.into());
                }
                other => return Ok(other?),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }
}

#[derive(Clone, Copy)]
enum Tool {
    Execute,
    Search,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Self::Execute => "execute_sql",
            Self::Search => "search_objects",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_source_uses_unsuffixed_tools_several_use_the_source_id() {
        let one = names(&["db-abc"]);
        assert_eq!(
            tools_for("db-abc", &one, &names(&["execute_sql", "search_objects"])),
            Some((
                "execute_sql".into(),
                "search_objects".into(),
                "db_abc".into()
            ))
        );
        let two = names(&["db-abc", "db-def"]);
        let tools = names(&[
            "execute_sql_db_abc",
            "search_objects_db_abc",
            "execute_sql_db_def",
            "search_objects_db_def",
        ]);
        assert_eq!(
            tools_for("db-def", &two, &tools).map(|t| t.0),
            Some("execute_sql_db_def".into())
        );
    }

    #[test]
    fn tools_of_another_configuration_are_never_used() {
        // DBHub still runs the one-source config of someone else's database.
        let two = names(&["db-abc", "db-def"]);
        assert_eq!(
            tools_for("db-abc", &two, &names(&["execute_sql", "search_objects"])),
            None
        );
        // Not served at all.
        assert_eq!(
            tools_for("db-zzz", &two, &names(&["execute_sql_db_abc"])),
            None
        );
        // Suffixed tools of other sources only.
        let one = names(&["db-abc"]);
        assert_eq!(
            tools_for(
                "db-abc",
                &one,
                &names(&["execute_sql", "search_objects", "execute_sql_db_x"])
            ),
            None
        );
    }
}
