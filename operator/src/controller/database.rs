//! The Database reconciler: resolve credentials, check the connection, record the outcome in
//! status (only when it changed), emit an Event on each phase transition, and come back after
//! `healthCheckInterval` (sooner, with backoff, while failing for a passing cause).
//!
//! Good manners at scale: checks are bounded in all and per server ([`limiter`]); a restart
//! (or a new leader) does not re-check a Connected Database whose last check is recent and
//! whose spec and credentials Secret are unchanged — it resumes the schedule at
//! `lastChecked + interval`; busy or restarting servers are transient (Pending before the first
//! success, Degraded after it), never Failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};

use super::credentials::{self, CredentialsError};
use super::{Error, MANAGER, Result, conditions};
use crate::crd::{Database, DatabasePhase, DatabaseStatus, SslMode};
use crate::probe::{self, ProbeError, Probed};

/// The condition reporting the read-only login, when one is configured.
const READONLY_LOGIN: &str = "ReadOnlyLogin";

mod limiter;

use limiter::Limiter;
pub use limiter::ProbeLimits;

/// How long a reconcile after start-up waits for the Secret metadata cache before deciding
/// whether a check is due.
const SECRETS_SYNC_WAIT: Duration = Duration::from_secs(10);

/// How soon a Database whose credentials could not be used is checked again when its Secret
/// lies outside the watched namespace (no watch event would tell of a fix, e.g. the
/// `allowed-namespaces` annotation being added); no connection is opened until they are usable.
const UNWATCHED_SECRET_RECHECK: Duration = Duration::from_secs(15);

/// Shared state of the Database controller.
pub struct Context {
    client: Client,
    recorder: Recorder,
    /// Consecutive failed checks per Database (namespace/name), for Degraded backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The controller's cache of Databases (to forget failures of deleted ones).
    known: reflector::Store<Database>,
    /// Where connections may go.
    policy: crate::policy::ConnectionPolicy,
    /// Slots of the running connection checks.
    limiter: Limiter,
    /// Metadata of the Secrets in scope (their resourceVersions tell credential changes).
    secrets: reflector::Store<PartialObjectMeta<Secret>>,
    /// The one namespace watched; None: all.
    watched: Option<String>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: super::Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let dbs: Api<Database> = config.scope.api(client.clone());
    let secrets: Api<PartialObjectMeta<Secret>> = config.scope.api(client.clone());
    let (reader, writer) = reflector::store();
    // Status writes (ours included) do not change the generation: only spec changes, Secret
    // changes and the requeue timer trigger a check.
    let trigger = watcher(dbs, watcher::Config::default())
        .default_backoff()
        // The cache keeps what checks read, not who wrote which field.
        .modify(|db| {
            db.managed_fields_mut().clear();
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let index = reader.clone();
    let (secret_reader, secret_writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: super::recorder(client),
        failures: Default::default(),
        known: reader.clone(),
        policy: config.policy,
        limiter: Limiter::new(config.probes),
        secrets: secret_reader,
        watched: config.scope.namespace.clone(),
    });
    Controller::for_stream(trigger, reader)
        // Metadata only (and without managed fields): the operator never caches Secret data.
        .watches_stream(
            watcher(secrets, watcher::Config::default())
                .default_backoff()
                .modify(|s| {
                    s.managed_fields_mut().clear();
                })
                .reflect(secret_writer)
                .touched_objects(),
            move |secret| {
                users_of(
                    &index,
                    &secret.namespace().unwrap_or_default(),
                    &secret.name_any(),
                )
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "database reconcile event");
            }
        })
        .await;
}

/// The Databases (from the controller's cache) whose credentials live in Secret `ns/name`.
fn users_of(store: &reflector::Store<Database>, ns: &str, name: &str) -> Vec<ObjectRef<Database>> {
    store
        .state()
        .iter()
        .filter(|db| credentials::secret_ref(db).is_some_and(|(n, s)| n == ns && s == name))
        .map(|db| ObjectRef::from_obj(db.as_ref()))
        .collect()
}

/// What one check found. `readonly` is the read-only login's result, when one is configured.
enum Outcome {
    Connected {
        probed: Probed,
        readonly: Option<bool>,
        /// resourceVersion of the credentials Secret (None for sqlite).
        credentials_version: Option<String>,
    },
    Failed {
        reason: &'static str,
        message: String,
        permanent: bool,
        credentials_ok: bool,
        readonly: Option<bool>,
    },
}

async fn reconcile(db: Arc<Database>, ctx: Arc<Context>) -> Result<Action> {
    crate::metrics::reconcile("database", reconcile_once(db, ctx)).await
}

async fn reconcile_once(db: Arc<Database>, ctx: Arc<Context>) -> Result<Action> {
    let ns = db.namespace().ok_or(Error::NoNamespace)?;
    let key = format!("{ns}/{}", db.name_any());
    if let Some(wait) = not_due(&db, &ctx, &key).await {
        tracing::debug!(db.namespace = %ns, db.name = %db.name_any(), in_secs = wait.as_secs(), "checked recently and unchanged; resuming the schedule");
        return Ok(Action::requeue(wait));
    }
    let outcome = check(&db, &ctx).await?;
    let failures = {
        let mut map = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
        match &outcome {
            Outcome::Connected { .. } => {
                map.remove(&key);
                0
            }
            Outcome::Failed { .. } => {
                // Entries of Databases deleted while failing would stay forever otherwise.
                if map.len() >= ctx.known.state().len() {
                    map.retain(|k, _| {
                        k.split_once('/').is_some_and(|(ns, name)| {
                            ctx.known.get(&ObjectRef::new(name).within(ns)).is_some()
                        })
                    });
                }
                let n = map.entry(key.clone()).or_default();
                *n += 1;
                *n
            }
        }
    };
    let old = db.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let new = next_status(&old, &outcome, db.meta().generation, now);
    let interval = Duration::from_secs(db.spec.health_check_interval.max(10) as u64);
    if needs_write(&old, &new, interval, now) {
        let api: Api<Database> = Api::namespaced(ctx.client.clone(), &ns);
        // Server-side apply of the whole status: fields left out (e.g. latencyMs after a
        // failure) are removed, which a merge patch would not do.
        let patch = serde_json::json!({ "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "Database", "status": new });
        api.patch_status(
            &db.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    if old.phase != new.phase {
        publish_transition(&ctx.recorder, &db, &new).await;
    }
    let phase = new.phase.unwrap_or(DatabasePhase::Pending);
    tracing::info!(db.namespace = %ns, db.name = %db.name_any(), phase = ?phase, message = new.message.as_deref().unwrap_or_default(), "database checked");
    let mut next = next_check(phase, failures, &outcome, interval, &key);
    if matches!(
        outcome,
        Outcome::Failed {
            credentials_ok: false,
            ..
        }
    ) && !ctx.sees_secret_of(&db)
    {
        next = next.min(UNWATCHED_SECRET_RECHECK);
    }
    Ok(Action::requeue(next))
}

impl Context {
    /// Whether the Secret watch covers the namespace of `db`'s credentials Secret.
    fn sees_secret_of(&self, db: &Database) -> bool {
        match (&self.watched, credentials::secret_ref(db)) {
            (Some(watched), Some((ns, _))) => *watched == ns,
            _ => true,
        }
    }
}

/// When a Database is not due for a check — Connected, its last check younger than the
/// interval's lower jitter bound, the spec generation and the credentials Secret's
/// resourceVersion what that check saw, and no failure since in this process — how long until
/// it is (`lastChecked + interval`, jittered). Spares a restarted operator (or a new leader, or
/// a watch re-list) from re-checking every Database at once.
async fn not_due(db: &Database, ctx: &Context, key: &str) -> Option<Duration> {
    let status = db.status.as_ref()?;
    if status.phase != Some(DatabasePhase::Connected)
        || status.observed_generation != db.meta().generation
        || ctx
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    {
        return None;
    }
    let last: Timestamp = status.last_checked.as_deref()?.parse().ok()?;
    let age = Duration::try_from(Timestamp::now().duration_since(last)).ok()?;
    let interval = Duration::from_secs(db.spec.health_check_interval.max(10) as u64);
    if age >= interval.mul_f64(0.9) {
        return None;
    }
    if let Some((ns, name)) = credentials::secret_ref(db) {
        // At start-up the Secret cache may still be filling.
        let _ = tokio::time::timeout(SECRETS_SYNC_WAIT, ctx.secrets.wait_until_ready()).await;
        let secret = ctx.secrets.get(&ObjectRef::new(&name).within(&ns))?;
        if secret.resource_version() != status.credentials_version {
            return None;
        }
    } else if status.credentials_version.is_some() {
        return None;
    }
    Some(
        jitter(interval, key)
            .saturating_sub(age)
            .max(Duration::from_secs(1)),
    )
}

/// The server a check connects to (its host and port, or the SQLite file).
fn server_of(db: &Database) -> String {
    let spec = &db.spec;
    format!(
        "{}:{}",
        spec.host.as_deref().unwrap_or_default(),
        spec.port
            .map(|p| p.to_string())
            .unwrap_or_else(|| spec.database.clone().unwrap_or_default())
    )
}

async fn check(db: &Database, ctx: &Context) -> Result<Outcome> {
    // A burst of reconciles resolves names and reads Secrets a bounded number at a time.
    let prepare = ctx.limiter.prepare().await;
    // Resolved again before every check: a name that now points somewhere refused is caught.
    if let Err(refused) = ctx.policy.check(&db.spec).await {
        return Ok(Outcome::Failed {
            reason: refused.reason(),
            message: refused.to_string(),
            permanent: true,
            credentials_ok: true,
            readonly: None,
        });
    }
    let (logins, credentials_version) = match credentials::resolve_versioned(&ctx.client, db).await
    {
        Ok(c) => c,
        Err(CredentialsError::Kube(e)) => return Err(Error::Kube(e)),
        Err(e) => {
            return Ok(Outcome::Failed {
                reason: e.reason(),
                message: e.to_string(),
                permanent: true,
                credentials_ok: false,
                readonly: None,
            });
        }
    };
    drop(prepare);
    // Both logins' connections hold one slot: at most `per_server` at once to this server.
    let _slot = ctx.limiter.acquire(&server_of(db)).await;
    let probed = match probe::probe(&db.spec, logins.as_ref().map(|l| &l.main)).await {
        Ok(p) => p,
        Err(e) => return Ok(failed(&e, "", None)),
    };
    // Reads go through the read-only login: both must work for the database to be usable.
    let Some(readonly) = logins.as_ref().and_then(|l| l.readonly.as_ref()) else {
        return Ok(Outcome::Connected {
            probed,
            readonly: None,
            credentials_version,
        });
    };
    Ok(match probe::probe(&db.spec, Some(readonly)).await {
        Ok(_) => Outcome::Connected {
            probed,
            readonly: Some(true),
            credentials_version,
        },
        Err(e) => failed(&e, "the read-only login: ", Some(false)),
    })
}

fn failed(e: &ProbeError, which: &str, readonly: Option<bool>) -> Outcome {
    Outcome::Failed {
        reason: e.reason(),
        message: format!("{which}{e}"),
        permanent: e.is_permanent(),
        credentials_ok: true,
        readonly,
    }
}

/// The status after this check. A transient failure (busy, unreachable, timed out) is Degraded
/// after an earlier success and Pending (with the reason in Ready) before one, however often it
/// repeats; Failed is for causes a user must fix.
fn next_status(
    old: &DatabaseStatus,
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) -> DatabaseStatus {
    let mut s = old.clone();
    s.last_checked = Some(now.to_string());
    s.observed_generation = generation;
    let readonly = match outcome {
        Outcome::Connected { readonly, .. } | Outcome::Failed { readonly, .. } => *readonly,
    };
    match readonly {
        Some(ok) => {
            let (reason, message) = if ok {
                ("Connected", "the read-only login connected")
            } else {
                ("LoginFailed", "the read-only login failed; see Ready")
            };
            conditions::set(
                &mut s.conditions,
                READONLY_LOGIN,
                ok,
                reason,
                message,
                generation,
                now,
            );
        }
        None => s.conditions.retain(|c| c.type_ != READONLY_LOGIN),
    }
    match outcome {
        Outcome::Connected {
            probed: p,
            credentials_version,
            ..
        } => {
            let said = connected_message(p.ssl_mode);
            s.credentials_version = credentials_version.clone();
            s.phase = Some(DatabasePhase::Connected);
            s.message = Some(said.into());
            s.server_version = Some(p.server_version.clone());
            s.latency_ms = Some(p.latency.as_millis() as i64);
            s.effective_ssl_mode = p.ssl_mode;
            conditions::set(
                &mut s.conditions,
                "CredentialsResolved",
                true,
                "Resolved",
                "credentials read",
                generation,
                now,
            );
            conditions::set(
                &mut s.conditions,
                "Ready",
                true,
                "Connected",
                said,
                generation,
                now,
            );
        }
        Outcome::Failed {
            reason,
            message,
            permanent,
            credentials_ok,
            ..
        } => {
            s.phase = Some(phase_after_failure(*permanent, old.phase));
            s.credentials_version = None;
            s.message = Some(message.clone());
            s.latency_ms = None;
            let (ok, cred_reason, cred_msg) = if *credentials_ok {
                (true, "Resolved", "credentials read")
            } else {
                (false, *reason, message.as_str())
            };
            conditions::set(
                &mut s.conditions,
                "CredentialsResolved",
                ok,
                cred_reason,
                cred_msg,
                generation,
                now,
            );
            conditions::set(
                &mut s.conditions,
                "Ready",
                false,
                reason,
                message,
                generation,
                now,
            );
        }
    }
    s
}

/// The phase after a failed check of a Database that was in phase `was`: Failed for a cause a
/// user must fix (`permanent`); otherwise Degraded when it had connected, Pending when it never
/// had. The reconciler and the API's on-demand check both decide by this.
pub fn phase_after_failure(permanent: bool, was: Option<DatabasePhase>) -> DatabasePhase {
    match (permanent, was) {
        (true, _) => DatabasePhase::Failed,
        (false, Some(DatabasePhase::Connected | DatabasePhase::Degraded)) => {
            DatabasePhase::Degraded
        }
        (false, _) => DatabasePhase::Pending,
    }
}

/// Write when anything but the volatile fields (lastChecked, latencyMs, credentialsVersion)
/// changed, or when the
/// last recorded check is older than half the interval (so lastChecked stays truthful).
fn needs_write(
    old: &DatabaseStatus,
    new: &DatabaseStatus,
    interval: Duration,
    now: Timestamp,
) -> bool {
    let stable = |s: &DatabaseStatus| DatabaseStatus {
        last_checked: None,
        latency_ms: None,
        // A touched Secret (a label, an annotation) is not news worth a write of its own.
        credentials_version: None,
        ..s.clone()
    };
    if stable(old) != stable(new) {
        return true;
    }
    let last = old
        .last_checked
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    match last {
        Some(t) => now.duration_since(t).as_secs() >= (interval.as_secs() / 2) as i64,
        None => true,
    }
}

/// When to check again: the interval (±10 % jitter) when healthy or permanently failed; while
/// failing transiently, 5 s doubling per failure, capped at the interval.
fn next_check(
    phase: DatabasePhase,
    failures: u32,
    outcome: &Outcome,
    interval: Duration,
    key: &str,
) -> Duration {
    let transient = matches!(
        outcome,
        Outcome::Failed {
            permanent: false,
            ..
        }
    );
    if transient && phase != DatabasePhase::Connected {
        let backoff = Duration::from_secs(5u64 << failures.saturating_sub(1).min(10));
        return backoff.min(interval);
    }
    jitter(interval, key)
}

/// ±10 % of `interval`, varying by object and time so checks of many Databases spread out.
fn jitter(interval: Duration, key: &str) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    Timestamp::now().as_nanosecond().hash(&mut h);
    let spread = interval.as_millis() as u64 / 5; // 20 % window
    let offset = h.finish() % spread.max(1);
    interval - Duration::from_millis(spread / 2) + Duration::from_millis(offset)
}

/// An Event for entering Connected (Normal), Degraded or Failed (Warning); staying Pending
/// while a server is busy makes none (the Ready condition says why).
async fn publish_transition(recorder: &Recorder, db: &Database, new: &DatabaseStatus) {
    let phase = new.phase.unwrap_or(DatabasePhase::Pending);
    if phase == DatabasePhase::Pending {
        return;
    }
    let type_ = if phase == DatabasePhase::Connected {
        EventType::Normal
    } else {
        EventType::Warning
    };
    let event = Event {
        type_,
        reason: format!("{phase:?}"),
        note: new.message.clone(),
        action: "CheckConnection".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &db.object_ref(&())).await {
        tracing::warn!(db.name = %db.name_any(), error = %e, "could not record an Event");
    }
}

fn error_policy(db: Arc<Database>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(db.name = %db.name_any(), error = %error, kind = error.metric_label(), "database reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}

/// What a successful check says about TLS (`allow`/`prefer` resolve to one or the other).
fn connected_message(mode: Option<SslMode>) -> &'static str {
    match mode {
        Some(SslMode::Disable) => "connected without TLS",
        Some(_) => "connected with TLS",
        None => "connected",
    }
}

#[cfg(test)]
mod tests;
