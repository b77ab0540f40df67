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

/// Which of a Database's DBHub sources a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The read-only source (DBHub's read-only tool, the engine's read-only transaction, and
    /// the read-only login when there is one).
    Read,
    /// The writable source (writable Databases only).
    Write,
}

/// The tool names DBHub gives one Database, and its read-only source's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `execute_sql` on the read-only source (`execute_sql` or `execute_sql_<id>`).
    pub read: String,
    /// `execute_sql` on the writable source, when DBHub has one for this Database.
    pub write: Option<String>,
    /// `search_objects` (on the read-only source).
    pub search: String,
    /// The read-only source's id.
    pub source_id: String,
}

/// A Database's tools in one session.
struct Target {
    session: Arc<Cached>,
    tools: Tools,
}

struct Cached {
    /// What the session was opened for: the endpoint and the served Databases (sorted).
    endpoint: String,
    served: Vec<String>,
    session: Session,
    tools: Vec<String>,
    /// [`tools_for`] per Database, worked out once per session (it depends on the served
    /// Databases and DBHub's tools alone, both fixed for a session).
    resolved: std::sync::Mutex<HashMap<String, Option<Tools>>>,
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
/// unsuffixed when it serves exactly this one (a read-only Database alone in its instance).
/// None when DBHub's tools do not match (it has not loaded the configuration yet).
pub fn tools_for(cr: &str, served: &[String], tools: &[String]) -> Option<Tools> {
    let ids = entries(served.iter().map(String::as_str));
    let entry = ids.iter().find(|e| e.name == cr)?;
    let has = |n: &str| tools.iter().any(|t| t == n);
    let (read, search) = (
        format!("execute_sql_{}", entry.id),
        format!("search_objects_{}", entry.id),
    );
    let write = format!("execute_sql_{}", entry.write_id);
    if has(&read) && has(&search) {
        return Some(Tools {
            read,
            search,
            write: has(&write).then_some(write),
            source_id: entry.id.clone(),
        });
    }
    let single = served.len() == 1 && !tools.iter().any(|t| t.starts_with("execute_sql_"));
    (single && has("execute_sql") && has("search_objects")).then(|| Tools {
        read: "execute_sql".into(),
        search: "search_objects".into(),
        write: None,
        source_id: entry.id.clone(),
    })
}

impl Cached {
    fn tools_for(&self, cr: &str) -> Option<Tools> {
        let mut resolved = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = resolved.get(cr) {
            return t.clone();
        }
        let t = tools_for(cr, &self.served, &self.tools);
        resolved.insert(cr.to_string(), t.clone());
        t
    }
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
        let Placement {
            endpoint,
            mut served,
        } = self.directory.placement(instance).await?;
        if !served.iter().any(|n| n == cr) {
            return Err(HubError::NotServed(
                "DBHub does not serve this database yet (it is added after its connection check passes); retry shortly."
                    .into(),
            ));
        }
        if !served.is_sorted() {
            served.sort();
        }
        let cached = {
            let sessions = self.sessions.lock().await;
            sessions
                .get(instance)
                .filter(|c| c.endpoint == endpoint && c.served == served)
                .cloned()
        };
        let cached = match cached {
            Some(c) => c,
            None => self.open(instance, endpoint, served).await?,
        };
        let Some(tools) = cached.tools_for(cr) else {
            self.forget(instance).await;
            return Err(loading());
        };
        if tools.read == "execute_sql" && !cached.verified.load(Ordering::Acquire) {
            let out = cached
                .session
                .call_within(
                    &tools.read,
                    &serde_json::json!({"sql": "SELECT 1"}),
                    self.timeout,
                )
                .await?;
            if out.get("source_id").and_then(Value::as_str) != Some(tools.source_id.as_str()) {
                self.forget(instance).await;
                return Err(loading());
            }
            cached.verified.store(true, Ordering::Release);
        }
        Ok(Target {
            session: cached,
            tools,
        })
    }

    async fn open(
        &self,
        instance: &str,
        endpoint: String,
        served: Vec<String>,
    ) -> Result<Arc<Cached>, HubError> {
        let token = self.directory.token(instance).await?;
        let session = Session::connect(&endpoint, &token, self.timeout).await?;
        let tools = session.tool_names().await?;
        let fresh = Arc::new(Cached {
            endpoint,
            served,
            session,
            tools,
            resolved: Default::default(),
            verified: Default::default(),
        });
        self.sessions
            .lock()
            .await
            .insert(instance.to_string(), fresh.clone());
        Ok(fresh)
    }

    /// Drops the cached session of `instance` (after a transport failure or a tool DBHub no
    /// longer has), so the next call reconnects and lists the tools again.
    pub async fn forget(&self, instance: &str) {
        self.sessions.lock().await.remove(instance);
    }

    /// Runs `sql` on the `source` of Database `cr` of `instance`, waiting at most `extra`
    /// beyond the base timeout. A tool DBHub no longer knows (configuration reloaded) is looked
    /// up once more; nothing else is retried (a write must never run twice).
    pub async fn execute_sql(
        &self,
        instance: &str,
        cr: &str,
        sql: &str,
        extra: Duration,
        source: Source,
    ) -> Result<ExecResult, HubError> {
        let args = serde_json::json!({ "sql": sql });
        let out = self
            .call(instance, cr, Tool::Execute(source), args, extra)
            .await?;
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
                Tool::Execute(Source::Read) => &target.tools.read,
                Tool::Execute(Source::Write) => match &target.tools.write {
                    Some(w) => w,
                    None => return Err(loading()),
                },
                Tool::Search => &target.tools.search,
            };
            let res = target
                .session
                .session
                .call_within(name, &args, self.timeout + extra)
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
    Execute(Source),
    Search,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Self::Execute(_) => "execute_sql",
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
            Some(Tools {
                read: "execute_sql".into(),
                write: None,
                search: "search_objects".into(),
                source_id: "db_abc".into()
            })
        );
        let two = names(&["db-abc", "db-def"]);
        let tools = names(&[
            "execute_sql_db_abc",
            "search_objects_db_abc",
            "execute_sql_db_def",
            "search_objects_db_def",
            "execute_sql_db_def_write",
        ]);
        let def = tools_for("db-def", &two, &tools).unwrap();
        assert_eq!(def.read, "execute_sql_db_def");
        assert_eq!(def.write.as_deref(), Some("execute_sql_db_def_write"));
        assert_eq!(tools_for("db-abc", &two, &tools).unwrap().write, None);
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
