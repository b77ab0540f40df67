//! The DBHubInstance reconciler: select Databases, render DBHub's configuration, server-side
//! apply the owned ConfigMap, Secrets, Deployment and Service, and report status from the
//! Deployment. Applying identical content is a no-op on the apiserver, and status is written
//! only when it changed, so a steady cluster sees no writes.

mod objects;

pub use objects::{
    CONFIG_KEY, HASH_ANNOTATION, TOKEN_KEY, allowed_hosts, config_map_name, dsn_secret_name,
    endpoint, token_secret_name,
};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::credentials;
use super::{Error, MANAGER, Result, conditions};
use crate::crd::{DBHubInstance, DBHubInstanceStatus, Database, DatabasePhase, InstancePhase};
use crate::dbhub_config::{self, Entry};
use crate::dsn;

/// How long the controller waits after the last trigger of an instance before reconciling it:
/// Databases selected by one instance that become Connected one after another (a cold start, a
/// bulk import) give one new configuration, and one rollout, instead of one per Database. Only
/// changes that alter what the instance renders trigger it (see [`relevant`]), so a steady
/// cluster cannot keep postponing a reconcile.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// Shared state of the DBHubInstance controller.
pub struct Context {
    client: Client,
    databases: Store<Database>,
    /// Credentials Secrets, read once per change.
    secrets: credentials::SecretCache,
    /// Where connections may go (the pods' egress exceptions).
    policy: crate::policy::ConnectionPolicy,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: super::Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let scope = config.scope;
    let instances: Api<DBHubInstance> = scope.api(client.clone());
    let (db_reader, db_writer) = reflector::store();
    let db_events = watcher(
        scope.api::<Database>(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    // The cache keeps what selection and rendering read, not who wrote which field.
    .modify(|db| {
        db.managed_fields_mut().clear();
    })
    .reflect(db_writer)
    .flat_map({
        let seen = std::sync::Mutex::new(Seen::default());
        move |event| futures::stream::iter(relevant_change(&seen, event))
    });
    let (secret_reader, secret_writer) = reflector::store();
    let secrets = watcher(
        scope.api::<PartialObjectMeta<Secret>>(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(secret_writer)
    .touched_objects();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let controller = Controller::new(instances, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().debounce(DEBOUNCE));
    let inst_store = controller.store();
    let (by_db, by_secret) = (inst_store.clone(), inst_store);
    let dbs_for_secrets = db_reader.clone();
    let ctx = Arc::new(Context {
        client: client.clone(),
        databases: db_reader,
        secrets: credentials::SecretCache::new(secret_reader),
        policy: config.policy,
    });
    controller
        .owns(scope.api::<Deployment>(client.clone()), owned.clone())
        .owns(scope.api::<Service>(client.clone()), owned.clone())
        .owns(scope.api::<NetworkPolicy>(client.clone()), owned.clone())
        .owns(scope.api::<ConfigMap>(client.clone()), owned.clone())
        .owns(
            scope.api::<PartialObjectMeta<Secret>>(client.clone()),
            owned,
        )
        .watches_stream(db_events, move |db| selecting(&by_db, &db))
        .watches_stream(secrets, move |s| {
            let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
            let users = dbs_for_secrets.state();
            users
                .iter()
                .filter(|db| credentials::secret_ref(db).is_some_and(|(n, x)| n == ns && x == name))
                .flat_map(|db| selecting(&by_secret, db))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "dbhubinstance reconcile event");
            }
        })
        .await;
}

/// What of a Database an instance's configuration and status depend on: its labels (selection),
/// spec (the source and its credentials reference), phase (served or left out) and the TLS
/// mode its last check resolved. The periodic `lastChecked` writes change none of these.
fn relevant(db: &Database) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    db.metadata.labels.hash(&mut h);
    serde_json::to_string(&db.spec)
        .unwrap_or_default()
        .hash(&mut h);
    let status = db.status.as_ref();
    format!(
        "{:?} {:?}",
        status.and_then(|s| s.phase),
        status.and_then(|s| s.effective_ssl_mode)
    )
    .hash(&mut h);
    h.finish()
}

/// The last [`relevant`] hash and object seen of each Database, and during a (re-)list the
/// Databases listed so far.
#[derive(Default)]
struct Seen {
    last: std::collections::HashMap<ObjectRef<Database>, (u64, Database)>,
    listed: Option<std::collections::HashSet<ObjectRef<Database>>>,
}

/// A Database watch event as triggers: every deletion, and an applied object only when
/// [`relevant`] changed since the last one seen. When its labels changed, the object as it was
/// comes too, so the instances that selected it before (and must drop it) are triggered as well
/// as those that select it now. A Database the watch's re-list no longer holds (deleted while
/// the watch was down, which brings no deletion event) triggers as a deletion would, and is
/// forgotten.
fn relevant_change(
    seen: &std::sync::Mutex<Seen>,
    event: Result<watcher::Event<Database>, watcher::Error>,
) -> Vec<Result<Database, watcher::Error>> {
    let mut seen = seen.lock().unwrap();
    match event {
        Ok(watcher::Event::Apply(db) | watcher::Event::InitApply(db)) => {
            let key = ObjectRef::from_obj(&db);
            if let Some(listed) = seen.listed.as_mut() {
                listed.insert(key.clone());
            }
            let hash = relevant(&db);
            match seen.last.insert(key, (hash, db.clone())) {
                Some((old, _)) if old == hash => vec![],
                Some((_, was)) if was.metadata.labels != db.metadata.labels => {
                    vec![Ok(db), Ok(was)]
                }
                _ => vec![Ok(db)],
            }
        }
        Ok(watcher::Event::Delete(db)) => {
            seen.last.remove(&ObjectRef::from_obj(&db));
            vec![Ok(db)]
        }
        Ok(watcher::Event::Init) => {
            seen.listed = Some(Default::default());
            vec![]
        }
        Ok(watcher::Event::InitDone) => {
            let listed = seen.listed.take().unwrap_or_default();
            let gone: Vec<_> = seen
                .last
                .keys()
                .filter(|k| !listed.contains(*k))
                .cloned()
                .collect();
            gone.iter()
                .filter_map(|k| seen.last.remove(k))
                .map(|(_, db)| Ok(db))
                .collect()
        }
        Err(e) => vec![Err(e)],
    }
}

/// The instances (from the controller's cache) in `db`'s namespace whose selector matches it.
fn selecting(store: &Store<DBHubInstance>, db: &Database) -> Vec<ObjectRef<DBHubInstance>> {
    store
        .state()
        .iter()
        .filter(|i| i.namespace() == db.namespace() && dbhub_config::selects(&i.spec, db))
        .map(|i| ObjectRef::from_obj(i.as_ref()))
        .collect()
}

/// What goes into the configuration, and what was left out (with why).
struct Selection {
    serving: Vec<(Arc<Database>, Entry)>,
    left_out: Vec<String>,
}

fn select(ctx: &Context, inst: &DBHubInstance) -> Selection {
    let mut chosen: Vec<Arc<Database>> = ctx
        .databases
        .state()
        .into_iter()
        .filter(|db| db.namespace() == inst.namespace() && dbhub_config::selects(&inst.spec, db))
        .collect();
    chosen.sort_by_key(|db| db.name_any());
    let (ready, not): (Vec<_>, Vec<_>) = chosen.into_iter().partition(|db| {
        matches!(
            db.status.as_ref().and_then(|s| s.phase),
            Some(DatabasePhase::Connected | DatabasePhase::Degraded)
        )
    });
    let entries = dbhub_config::entries(
        ready
            .iter()
            .map(|db| db.metadata.name.as_deref().unwrap_or_default()),
    );
    let serving = ready
        .into_iter()
        .map(|db| {
            let e = entries
                .iter()
                .find(|e| Some(e.name.as_str()) == db.metadata.name.as_deref())
                .cloned()
                .unwrap();
            (db, e)
        })
        .collect();
    let left_out = not
        .iter()
        .map(|db| {
            let phase = db
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(DatabasePhase::Pending);
            format!("{} ({phase:?})", db.name_any())
        })
        .collect();
    Selection { serving, left_out }
}

/// The DSNs of the selected Databases, by environment variable: the read-only source's (with
/// the read-only login when there is one) and, for a writable Database, the writable source's.
/// A Database whose credentials can't be read right now is left out (and named).
async fn dsns(
    ctx: &Context,
    inst: &DBHubInstance,
    sel: &mut Selection,
) -> Result<(BTreeMap<String, String>, Vec<(Arc<Database>, Entry)>)> {
    let mut dsns = BTreeMap::new();
    let mut serving = Vec::new();
    for (db, entry) in sel.serving.drain(..) {
        let logins = match ctx.secrets.resolve(&ctx.client, &db).await {
            Ok(l) => l,
            Err(credentials::CredentialsError::Kube(e)) => return Err(Error::Kube(e)),
            Err(e) => {
                sel.left_out.push(format!("{} ({e})", db.name_any()));
                continue;
            }
        };
        // `allow`/`prefer` as the last check resolved them.
        let spec = dsn::effective_spec(&db);
        let read = dsn::build(&spec, logins.as_ref().map(|l| l.for_reads()));
        let (readonly, _) = dbhub_config::policy(&inst.spec, &db);
        let write = dsn::build(&spec, logins.as_ref().map(|l| &l.main));
        match (read, write) {
            (Ok(r), Ok(w)) => {
                dsns.insert(entry.env.clone(), r.expose().to_string());
                if !readonly {
                    dsns.insert(entry.write_env.clone(), w.expose().to_string());
                }
                serving.push((db, entry));
            }
            (Err(e), _) | (_, Err(e)) => sel.left_out.push(format!("{} ({e})", db.name_any())),
        }
    }
    Ok((dsns, serving))
}

async fn reconcile(inst: Arc<DBHubInstance>, ctx: Arc<Context>) -> Result<Action> {
    crate::metrics::reconcile("dbhubinstance", reconcile_once(inst, ctx)).await
}

async fn reconcile_once(inst: Arc<DBHubInstance>, ctx: Arc<Context>) -> Result<Action> {
    let ns = inst.namespace().ok_or(Error::NoNamespace)?;
    let name = inst.name_any();
    ctx.secrets.prune();
    let mut sel = select(&ctx, &inst);
    let (dsns, serving) = dsns(&ctx, &inst, &mut sel).await?;
    let pairs: Vec<(&Database, &Entry)> = serving.iter().map(|(d, e)| (d.as_ref(), e)).collect();
    let toml =
        dbhub_config::render(&inst.spec, &pairs).map_err(|e| Error::Render(e.to_string()))?;
    let hash = dbhub_config::hash(&toml, &dsns);
    let replicas = if serving.is_empty() {
        0
    } else {
        inst.spec.replicas
    };
    let env_names: Vec<String> = dsns.keys().cloned().collect();

    let pp = PatchParams::apply(MANAGER).force();
    let apply = |kind: &'static str, obj_name: String, value: serde_json::Value| {
        let client = ctx.client.clone();
        let (ns, pp) = (ns.clone(), pp.clone());
        async move {
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(client, &ns, &resource(kind));
            api.patch(&obj_name, &pp, &Patch::Apply(&value))
                .await
                .map(|_| ())
        }
    };
    apply(
        "ConfigMap",
        config_map_name(&name),
        objects::config_map(&inst, &toml),
    )
    .await?;
    apply(
        "Secret",
        dsn_secret_name(&name),
        objects::dsn_secret(&inst, &dsns),
    )
    .await?;
    ensure_token(&ctx.client, &inst, &ns).await?;
    apply("Service", name.clone(), objects::service(&inst)).await?;
    fence(&ctx, &inst, &ns).await?;
    apply(
        "Deployment",
        name.clone(),
        objects::deployment(&inst, replicas, &env_names, &hash),
    )
    .await?;

    let deployment = Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?;
    let connected: Vec<String> = serving.iter().map(|(d, _)| d.name_any()).collect();
    let new = next_status(
        &inst,
        deployment.as_ref(),
        replicas,
        connected,
        &sel.left_out,
    );
    if inst.status.as_ref().map(without_times) != Some(without_times(&new)) {
        let patch = serde_json::json!({"apiVersion": "dbhub.tas.io/v1alpha1", "kind": "DBHubInstance", "status": new});
        Api::<DBHubInstance>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &pp, &Patch::Apply(&patch))
            .await?;
    }
    tracing::info!(instance.namespace = %ns, instance.name = %name, sources = serving.len(), replicas, "dbhubinstance reconciled");
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// The status without condition timestamps, for change detection.
fn without_times(s: &DBHubInstanceStatus) -> DBHubInstanceStatus {
    let mut s = s.clone();
    for c in &mut s.conditions {
        c.last_transition_time =
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH);
    }
    s
}

/// Keeps the instance's NetworkPolicy as its spec says: applied when enabled, removed when not.
async fn fence(ctx: &Context, inst: &DBHubInstance, ns: &str) -> Result<()> {
    let settings = inst.spec.network_policy.clone().unwrap_or_default();
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), ns);
    let name = inst.name_any();
    if !settings.enabled {
        return match api.delete(&name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    let policy =
        objects::network_policy(inst, &settings.allow_from, ctx.policy.hosts.egress_denied());
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&policy),
    )
    .await?;
    Ok(())
}

fn resource(kind: &str) -> kube::api::ApiResource {
    let gvk = match kind {
        "Deployment" => kube::api::GroupVersionKind::gvk("apps", "v1", kind),
        _ => kube::api::GroupVersionKind::gvk("", "v1", kind),
    };
    kube::api::ApiResource::from_gvk(&gvk)
}

/// Creates `<name>-token` with a random token unless it exists: never re-applied, never rotated.
async fn ensure_token(client: &Client, inst: &DBHubInstance, ns: &str) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = token_secret_name(&inst.name_any());
    if api.get_metadata_opt(&name).await?.is_some() {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Render(format!("no randomness: {e}")))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret: Secret =
        serde_json::from_value(objects::token_secret(inst, &token)).expect("a valid Secret");
    match api
        .create(
            &PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &secret,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()), // created concurrently: keep that one
        Err(e) => Err(e.into()),
    }
}

fn next_status(
    inst: &DBHubInstance,
    deployment: Option<&Deployment>,
    replicas: i32,
    connected: Vec<String>,
    left_out: &[String],
) -> DBHubInstanceStatus {
    let name = inst.name_any();
    let ns = inst.namespace().unwrap_or_default();
    let ds = deployment
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    let available = ds.available_replicas.unwrap_or(0);
    let now = Timestamp::now();
    let generation = inst.metadata.generation;
    let (phase, reason, message) = if connected.is_empty() {
        (
            InstancePhase::Pending,
            "NoDatabases",
            "no Connected Database matches the selector; scaled to 0".to_string(),
        )
    } else if available >= replicas {
        (
            InstancePhase::Running,
            "Available",
            format!("{available}/{replicas} pods available"),
        )
    } else if available > 0 {
        (
            InstancePhase::Degraded,
            "PartiallyAvailable",
            format!("{available}/{replicas} pods available"),
        )
    } else {
        (
            InstancePhase::Pending,
            "Unavailable",
            format!("0/{replicas} pods available"),
        )
    };
    let mut s = inst.status.clone().unwrap_or_default();
    s.phase = Some(phase);
    s.replicas = ds.replicas.unwrap_or(0);
    s.available_replicas = available;
    s.connected_databases = connected;
    s.endpoint = Some(endpoint(&name, &ns, inst.spec.port));
    s.selector = Some(objects::selector(&name));
    s.observed_generation = generation;
    conditions::set(
        &mut s.conditions,
        "Ready",
        phase == InstancePhase::Running,
        reason,
        &message,
        generation,
        now,
    );
    let (sel_ok, sel_msg) = if left_out.is_empty() {
        (true, "every selected Database is served".to_string())
    } else {
        (false, format!("left out: {}", left_out.join(", ")))
    };
    let sel_reason = if sel_ok { "AllServed" } else { "SomeLeftOut" };
    conditions::set(
        &mut s.conditions,
        "DatabasesServed",
        sel_ok,
        sel_reason,
        &sel_msg,
        generation,
        now,
    );
    s
}

fn error_policy(inst: Arc<DBHubInstance>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(instance.name = %inst.name_any(), error = %error, kind = error.metric_label(), "dbhubinstance reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Database `ns/pg` labelled `env`, in `phase`, last checked at `checked`.
    fn db(env: &str, phase: &str, checked: &str) -> Database {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "Database",
            "metadata": {"name": "pg", "namespace": "ns", "labels": {"env": env}},
            "spec": {"type": "postgres", "host": "db.example", "database": "app",
                     "credentialsRef": {"name": "creds"}},
            "status": {"phase": phase, "lastChecked": checked, "latencyMs": 3}}))
        .unwrap()
    }

    fn triggers(seen: &std::sync::Mutex<Seen>, e: watcher::Event<Database>) -> bool {
        !relevant_change(seen, Ok(e)).is_empty()
    }

    #[test]
    fn only_changes_an_instance_renders_trigger_it() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let seen = std::sync::Mutex::new(Seen::default());
        let first = db("prod", "Connected", "2026-12-01T10:00:00Z");
        assert!(triggers(&seen, InitApply(first.clone())), "first sight");
        assert!(!triggers(&seen, Apply(first)), "same object again");
        let rechecked = db("prod", "Connected", "2026-12-01T10:02:30Z");
        assert!(!triggers(&seen, Apply(rechecked)), "lastChecked only");
        let failed = db("prod", "Failed", "2026-12-01T10:05:00Z");
        assert!(triggers(&seen, Apply(failed)), "phase");
        let relabelled = db("dev", "Failed", "2026-12-01T10:05:00Z");
        let both = relevant_change(&seen, Ok(Apply(relabelled.clone())));
        let labels: Vec<_> = both
            .iter()
            .map(|d| d.as_ref().unwrap().metadata.labels.clone().unwrap()["env"].clone())
            .collect();
        assert_eq!(
            labels,
            ["dev", "prod"],
            "labels: now and before (for the instance that drops it)"
        );
        let mut respec = relabelled;
        respec.spec.port = Some(6543);
        assert!(triggers(&seen, Apply(respec.clone())), "spec");
        assert!(triggers(&seen, Delete(respec.clone())), "deletion");
        assert!(
            triggers(&seen, Apply(respec.clone())),
            "re-created after deletion"
        );
        assert!(relevant_change(&seen, Ok(Init)).is_empty());
        assert!(!triggers(&seen, InitApply(respec)), "re-listed, unchanged");
        assert!(
            relevant_change(&seen, Ok(InitDone)).is_empty(),
            "nothing went"
        );
        // A re-list without it (deleted while the watch was down): a trigger, as for a deletion,
        // with the object as last seen; then it is forgotten.
        let mut other = db("prod", "Connected", "2026-12-01T10:00:00Z");
        other.metadata.name = Some("other".into());
        assert!(triggers(&seen, Apply(other.clone())), "another Database");
        assert!(relevant_change(&seen, Ok(Init)).is_empty());
        assert!(!triggers(&seen, InitApply(other)), "re-listed, unchanged");
        let gone = relevant_change(&seen, Ok(InitDone));
        let names: Vec<_> = gone
            .iter()
            .map(|d| d.as_ref().unwrap().metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["pg"], "the Database the re-list no longer holds");
        assert_eq!(seen.lock().unwrap().last.len(), 1, "and it is forgotten");
    }
}
