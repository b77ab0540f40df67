//! The reconcilers at scale: 2 000 Databases (all on the stack's PostgreSQL, on the bridge
//! address pods reach) and 50 DBHubInstances (40 Databases each, by label) reconciled by a
//! release `aether-dbhub operator` from cold, with every instance's DBHub running in its real pod
//! on the node; then a steady window; then a restart (SIGKILL, as a failed leader). Prints the
//! time until every Database is Connected, every instance's configuration holds its 40, every
//! instance is Running with a Ready pod, and every instance has answered `SELECT 1` on one of its
//! sources through its Service; the peak number of connections PostgreSQL saw from the
//! operator's login, checks and non-Connected transitions, API writes in the steady window,
//! checks in the first minute after the restart, and RSS.

use std::time::{Duration, Instant};

use dbhub_operator::crd::{DBHubInstance, Database, DatabasePhase};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use aether_dbhub::mcp::Session;
use dbhub_operator::crd::InstancePhase;

use crate::stats::rss_mib;
use crate::support::dbhub::{free_port, serve_instance};
use crate::support::kube::TestNamespace;
use crate::support::operator::{labelled_database, pg_spec};
use crate::support::stack;

const DATABASES: usize = 2000;
const INSTANCES: usize = 50;
const STEADY: Duration = Duration::from_secs(300);
/// The Databases' `healthCheckInterval`: long enough that no check falls due in the steady
/// window after a cold start of a few minutes (by design a check writes `lastChecked` once per
/// half interval, so with the 300 s default a 5 minute window always holds due checks).
const INTERVAL: i64 = 1800;
const AFTER_RESTART: Duration = Duration::from_secs(60);

struct Operator {
    child: tokio::process::Child,
    metrics: String,
}

impl Operator {
    async fn start(ns: &str) -> Self {
        let port = free_port();
        let child = crate::harness::command(&["--log", "error", "operator"], ns)
            .env("AETHER_DBHUB_OPERATOR_LISTEN", format!("127.0.0.1:{port}"))
            .spawn()
            .expect("starting aether-dbhub operator");
        Self {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Connection checks this process ran (the probe histogram's counts).
    async fn checks(&self) -> u64 {
        let Ok(r) = reqwest::get(&self.metrics).await else {
            return 0;
        };
        r.text()
            .await
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("dbhub_operator_probe_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// Samples how many connections PostgreSQL has from `user` every 20 ms; the peak so far.
fn sample_connections(user: String, stop: Arc<AtomicBool>) -> Arc<AtomicI64> {
    let peak = Arc::new(AtomicI64::new(0));
    let out = peak.clone();
    tokio::spawn(async move {
        let mut admin = sqlx::PgConnection::connect(&crate::support::pg_admin_db_url())
            .await
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
                    .bind(&user)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap_or(0);
            peak.fetch_max(n, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    out
}

/// Sum of the resourceVersions of every object the reconcilers own or write in `ns`, and
/// how many Events there are (a write of any of them changes the first, a new Event the second).
async fn write_marks(client: &kube::Client, ns: &str) -> (u128, usize) {
    async fn sum<K>(api: Api<K>) -> u128
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        list(&api)
            .await
            .iter()
            .filter_map(|o| o.meta().resource_version.as_deref()?.parse::<u128>().ok())
            .sum()
    }
    let total = sum(Api::<Database>::namespaced(client.clone(), ns)).await
        + sum(Api::<DBHubInstance>::namespaced(client.clone(), ns)).await
        // The Deployments' generation: their status is the controller-manager's to write.
        + list(&Api::<Deployment>::namespaced(client.clone(), ns))
            .await
            .iter()
            .filter_map(|d| d.metadata.generation)
            .map(|g| g as u128)
            .sum::<u128>()
        + sum(Api::<ConfigMap>::namespaced(client.clone(), ns)).await
        + sum(Api::<Service>::namespaced(client.clone(), ns)).await
        + sum(Api::<Secret>::namespaced(client.clone(), ns)).await;
    let events = list(&Api::<Event>::namespaced(client.clone(), ns))
        .await
        .len();
    (total, events)
}

/// Every object of `api`; a failed list (an apiserver busy with the burst answers some with
/// 504 or cuts them short) is retried.
async fn list<K>(api: &Api<K>) -> Vec<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    loop {
        match api.list(&ListParams::default()).await {
            Ok(l) => return l.items,
            Err(e) => {
                eprintln!("(list failed, retrying: {e})");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Forwards to instance `i`'s Service once its rollout is complete and runs `SELECT 1` on one
/// of its sources over MCP; true when DBHub answered.
async fn answers(ns: &TestNamespace, i: usize) -> bool {
    let hub = serve_instance(ns, &format!("hub-{i}"), free_port()).await;
    let Ok(session) = Session::connect(&hub.url(), &hub.token, Duration::from_secs(10)).await
    else {
        return false;
    };
    let Ok(tools) = session.tool_names().await else {
        return false;
    };
    let Some(tool) = tools
        .iter()
        .find(|t| t.starts_with("execute_sql_") && !t.ends_with("_write"))
    else {
        return false;
    };
    session.execute_sql(tool, "SELECT 1").await.is_ok()
}

/// Connected Databases, instances whose configuration holds all of theirs, instances Running
/// with at least one available replica (a Ready pod of the current or the previous
/// configuration), and Failed Databases.
async fn progress(dbs: &Api<Database>, insts: &Api<DBHubInstance>) -> (usize, usize, usize, usize) {
    let all = list(dbs).await;
    let connected = all
        .iter()
        .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DatabasePhase::Connected))
        .count();
    let failed = all
        .iter()
        .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DatabasePhase::Failed))
        .count();
    let statuses: Vec<_> = list(insts)
        .await
        .into_iter()
        .filter_map(|i| i.status)
        .collect();
    let served = statuses
        .iter()
        .filter(|s| s.connected_databases.len() == DATABASES / INSTANCES)
        .count();
    let running = statuses
        .iter()
        .filter(|s| s.phase == Some(InstancePhase::Running) && s.available_replicas >= 1)
        .count();
    (connected, served, running, failed)
}

pub async fn run() {
    crate::support::crds::ensure_installed().await;
    let ns = TestNamespace::new("scale").await;
    let client = ns.client.clone();
    let s = stack();
    crate::support::operator::app_secret(&ns.api(), "creds").await;
    let insts: Api<DBHubInstance> = ns.api();
    for i in 0..INSTANCES {
        let inst: DBHubInstance = serde_json::from_value(json!({
            "apiVersion": "dbhub.tas.io/v1alpha1", "kind": "DBHubInstance",
            "metadata": {"name": format!("hub-{i}")},
            "spec": {"databaseSelector": {"matchLabels": {"group": format!("g{i}")}}}}))
        .unwrap();
        insts.create(&PostParams::default(), &inst).await.unwrap();
    }
    let dbs: Api<Database> = ns.api();
    let created = Instant::now();
    stream::iter(0..DATABASES)
        .for_each_concurrent(16, |i| {
            let dbs = dbs.clone();
            async move {
                let mut spec = pg_spec("creds");
                spec["healthCheckInterval"] = json!(INTERVAL);
                let labels = json!({"group": format!("g{}", i % INSTANCES)});
                labelled_database(&dbs, &format!("db-{i}"), labels, spec).await;
            }
        })
        .await;
    println!(
        "{DATABASES} Databases and {INSTANCES} DBHubInstances created in {:.1} s (the operator not yet running)",
        created.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let peak = sample_connections(s.get("STACK_DB_USER").to_string(), stop.clone());
    let op = Operator::start(&ns.name).await;
    let started = Instant::now();
    let (mut all_connected, mut all_served, mut all_running) = (None, None, None);
    let mut failed_seen = 0;
    while all_running.is_none() && started.elapsed() < Duration::from_secs(600) {
        let (connected, served, running, failed) = progress(&dbs, &insts).await;
        failed_seen = failed_seen.max(failed);
        if connected == DATABASES && all_connected.is_none() {
            all_connected = Some(started.elapsed());
        }
        if all_connected.is_some() && served == INSTANCES && all_served.is_none() {
            all_served = Some(started.elapsed());
        }
        if all_served.is_some() && running == INSTANCES {
            all_running = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every instance's current configuration rolled out and answering through its Service.
    let answered = stream::iter(0..INSTANCES)
        .map(|i| {
            let ns = &ns;
            async move { answers(ns, i).await }
        })
        .buffer_unordered(8)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let all_answered = started.elapsed();
    // Each template change of a Deployment (a new configuration hash) makes a ReplicaSet.
    let replica_sets = list(&ns.api::<k8s_openapi::api::apps::v1::ReplicaSet>())
        .await
        .len();
    let cold_checks = op.checks().await;
    let (_, warnings_cold) = write_marks(&client, &ns.name).await;
    let rss_cold = rss_mib(op.pid());
    let secs = |d: Option<Duration>| {
        d.map_or("never (600 s)".to_string(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        })
    };
    println!("from cold (limits: 32 checks at once, 4 per server):");
    println!("  all {DATABASES} Connected after {}", secs(all_connected));
    println!(
        "  all {INSTANCES} instances' configurations holding their {} after {}",
        DATABASES / INSTANCES,
        secs(all_served)
    );
    println!(
        "  all {INSTANCES} instances Running with a Ready DBHub pod after {}",
        secs(all_running)
    );
    println!(
        "  {answered} of {INSTANCES} instances answered SELECT 1 through their Service (current configuration rolled out) after {:.1} s",
        all_answered.as_secs_f64()
    );
    println!(
        "  ReplicaSets {replica_sets} for {INSTANCES} Deployments (one per pod template the cold start went through)"
    );
    println!(
        "  checks {cold_checks}; most Databases Failed at one time {failed_seen}; Events {warnings_cold}; peak connections from the login (the operator's checks, and the DBHub pods' once they answer) {}",
        peak.load(Ordering::Relaxed)
    );
    println!("  operator RSS after the burst {rss_cold:.1} MiB");

    // Steady: nothing changes, nothing is due. First the rollouts finish (old pods gone).
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(300) {
        let pods = list(&ns.api::<k8s_openapi::api::core::v1::Pod>()).await;
        if pods.len() == INSTANCES && pods.iter().all(|p| p.metadata.deletion_timestamp.is_none()) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "  old pods gone {:.1} s after the last instance answered",
        settle.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let marks = write_marks(&client, &ns.name).await;
    let before = op.checks().await;
    tokio::time::sleep(STEADY).await;
    let after = write_marks(&client, &ns.name).await;
    println!(
        "steady {} s: API writes by the reconcilers: {} (objects' resourceVersions {}; new Events {}); checks {}; RSS {:.1} MiB",
        STEADY.as_secs(),
        if after == marks { "0" } else { "some" },
        if after.0 == marks.0 {
            "unchanged"
        } else {
            "changed"
        },
        after.1 - marks.1,
        op.checks().await - before,
        rss_mib(op.pid())
    );

    // A restart, as a failover would do it.
    drop(op);
    tokio::time::sleep(Duration::from_millis(500)).await;
    peak.store(0, Ordering::Relaxed);
    let op = Operator::start(&ns.name).await;
    tokio::time::sleep(AFTER_RESTART).await;
    let (connected, served, _, failed) = progress(&dbs, &insts).await;
    println!(
        "restart (SIGKILL, then a new process): checks in the first {} s {}; peak connections {}; Connected {connected}, instances serving {served}, Failed {failed}; RSS {:.1} MiB",
        AFTER_RESTART.as_secs(),
        op.checks().await,
        peak.load(Ordering::Relaxed),
        rss_mib(op.pid())
    );
    stop.store(true, Ordering::Relaxed);
    drop(op);

    // The instances first (garbage collection takes their Deployments, pods and Services),
    // then the namespace goes with the rest when `ns` is dropped.
    let _ = insts
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await;
}
