//! Which DBHub serves a Database and how to reach it: the space's DBHubInstance (from a watch
//! cache, one API read on a miss), its endpoint (`status.endpoint`, or the configured override
//! for a service running outside the cluster), its bearer token (the instance's token Secret),
//! and the tool names DBHub gives the Database's source (`tools/list`, cached per instance and
//! refreshed when the set of served Databases or the endpoint changes). Sessions are reused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dbhub_operator::controller::dbhubinstance::{TOKEN_KEY, token_secret_name};
use dbhub_operator::crd::DBHubInstance;
use dbhub_operator::dbhub_config::entries;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
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
    /// Kubernetes could not be read.
    #[error("{0}")]
    Kube(String),
}

/// Where one Database's tools are.
pub struct Target {
    session: Arc<Cached>,
    /// `execute_sql` or `execute_sql_<id>`.
    pub execute_sql: String,
    /// `search_objects` or `search_objects_<id>`.
    pub search_objects: String,
    /// The DBHub source id of the Database.
    pub source_id: String,
}

struct Cached {
    key: String,
    session: Session,
    tools: Vec<String>,
    /// For unsuffixed tools: DBHub confirmed (`source_id` of a `SELECT 1`) that its one source
    /// is this Database, not one of a configuration it has not reloaded yet.
    verified: std::sync::atomic::AtomicBool,
}

/// DBHub sessions of the service, one per DBHubInstance.
pub struct Hubs {
    client: Client,
    namespace: String,
    endpoint_override: Option<String>,
    timeout: Duration,
    instances: Store<DBHubInstance>,
    sessions: tokio::sync::Mutex<HashMap<String, Arc<Cached>>>,
}

/// The endpoint for `instance`: the override with `{instance}` and `{namespace}` filled in, or
/// the instance's own `status.endpoint`.
pub fn endpoint_for(
    override_template: Option<&str>,
    instance: &DBHubInstance,
    namespace: &str,
) -> Option<String> {
    let name = instance.metadata.name.as_deref().unwrap_or_default();
    match override_template {
        Some(t) => Some(
            t.replace("{instance}", name)
                .replace("{namespace}", namespace),
        ),
        None => instance.status.as_ref()?.endpoint.clone(),
    }
}

/// Tool names for the Database `cr` among `served` (the instance's Databases, as configured)
/// given DBHub's `tools`: suffixed with the source id when DBHub serves several sources,
/// unsuffixed when it serves exactly this one. None when DBHub's tools do not match (it has not
/// loaded the configuration yet).
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

impl Hubs {
    /// Sessions with the DBHubs of `namespace`; `timeout` bounds connecting and each call (a
    /// query's own timeout is added by the caller).
    pub fn new(
        client: Client,
        namespace: &str,
        endpoint_override: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            instances: crate::kube::watch_cache(client.clone(), namespace),
            client,
            namespace: namespace.into(),
            endpoint_override: endpoint_override.filter(|s| !s.trim().is_empty()),
            timeout,
            sessions: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The base timeout of each DBHub call (a query's own timeout comes on top).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn instance(&self, name: &str) -> Result<DBHubInstance, HubError> {
        if let Some(i) = self
            .instances
            .get(&ObjectRef::new(name).within(&self.namespace))
        {
            return Ok((*i).clone());
        }
        let api: Api<DBHubInstance> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.get_opt(name).await {
            Ok(Some(i)) => Ok(i),
            Ok(None) => Err(HubError::NotServed(
                "no DBHub instance serves this space yet".into(),
            )),
            Err(e) => Err(HubError::Kube(format!(
                "could not read the DBHub instance from Kubernetes ({})",
                crate::kube::reason(&e)
            ))),
        }
    }

    async fn token(&self, instance: &str) -> Result<String, HubError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = api
            .get_opt(&token_secret_name(instance))
            .await
            .map_err(|e| {
                HubError::Kube(format!(
                    "could not read the DBHub token from Kubernetes ({})",
                    crate::kube::reason(&e)
                ))
            })?
            .ok_or_else(|| {
                HubError::NotServed("the DBHub instance has no access token yet".into())
            })?;
        secret
            .data
            .and_then(|mut d| d.remove(TOKEN_KEY))
            .and_then(|b| String::from_utf8(b.0).ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| HubError::NotServed("the DBHub instance's token Secret is empty".into()))
    }

    /// The session and tool names for Database `cr` in `instance`.
    pub async fn target(&self, instance: &str, cr: &str) -> Result<Target, HubError> {
        let inst = self.instance(instance).await?;
        let served = inst
            .status
            .as_ref()
            .map(|s| s.connected_databases.clone())
            .unwrap_or_default();
        if !served.iter().any(|n| n == cr) {
            return Err(HubError::NotServed(
                "DBHub does not serve this database yet (it is added after its connection check passes)"
                    .into(),
            ));
        }
        let endpoint = endpoint_for(self.endpoint_override.as_deref(), &inst, &self.namespace)
            .ok_or_else(|| HubError::NotServed("the DBHub instance has no endpoint yet".into()))?;
        let mut sorted = served.clone();
        sorted.sort();
        let key = format!("{endpoint}|{}", sorted.join(","));
        let cached = {
            let sessions = self.sessions.lock().await;
            sessions.get(instance).filter(|c| c.key == key).cloned()
        };
        let cached = match cached {
            Some(c) => c,
            None => {
                let token = self.token(instance).await?;
                let session = Session::connect(&endpoint, &token, self.timeout).await?;
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
                fresh
            }
        };
        let found = tools_for(cr, &served, &cached.tools);
        if let Some((exec, _, id)) = &found
            && exec == "execute_sql"
            && !cached.verified.load(std::sync::atomic::Ordering::Acquire)
        {
            let out = cached
                .session
                .call_within(exec, serde_json::json!({"sql": "SELECT 1"}), self.timeout)
                .await?;
            if out.get("source_id").and_then(Value::as_str) != Some(id.as_str()) {
                self.forget(instance).await;
                return Err(HubError::NotServed(
                    "DBHub is loading its new configuration; retry shortly".into(),
                ));
            }
            cached
                .verified
                .store(true, std::sync::atomic::Ordering::Release);
        }
        match found {
            Some((execute_sql, search_objects, source_id)) => Ok(Target {
                session: cached,
                execute_sql,
                search_objects,
                source_id,
            }),
            None => {
                self.forget(instance).await;
                Err(HubError::NotServed(
                    "DBHub is loading its new configuration; retry shortly".into(),
                ))
            }
        }
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
            Err(HubError::NotServed(_) | HubError::Kube(_)) => "not_served",
            Err(HubError::Mcp(McpError::Tool { .. })) => "tool_error",
            Err(HubError::Mcp(McpError::Unavailable(_))) => "unavailable",
            Err(HubError::Mcp(McpError::Timeout)) => "timeout",
            Err(HubError::Mcp(McpError::UnknownTool(_))) => "unknown_tool",
            Err(HubError::Mcp(McpError::Protocol(_))) => "protocol",
            Err(HubError::Mcp(McpError::TooLarge { .. })) => "too_large",
        };
        let name = match tool {
            Tool::Execute => "execute_sql",
            Tool::Search => "search_objects",
        };
        crate::metrics::mcp(name, outcome, started.elapsed().as_secs_f64());
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

    #[test]
    fn the_override_fills_in_instance_and_namespace() {
        let mut inst = DBHubInstance::new(
            "dbhub-s1",
            serde_json::from_value(serde_json::json!({})).unwrap(),
        );
        assert_eq!(endpoint_for(None, &inst, "ns"), None);
        inst.status = Some(dbhub_operator::crd::DBHubInstanceStatus {
            endpoint: Some("http://dbhub-s1.ns.svc.cluster.local:8080/mcp".into()),
            ..Default::default()
        });
        assert_eq!(
            endpoint_for(None, &inst, "ns").as_deref(),
            Some("http://dbhub-s1.ns.svc.cluster.local:8080/mcp")
        );
        assert_eq!(
            endpoint_for(
                Some("http://127.0.0.1:9/{namespace}/{instance}"),
                &inst,
                "ns"
            )
            .as_deref(),
            Some("http://127.0.0.1:9/ns/dbhub-s1")
        );
    }
}
