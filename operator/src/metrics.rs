//! Prometheus metrics of the reconcilers: reconcile count, errors and duration per controller,
//! connection-check latency per engine and outcome, and whether this process holds the
//! leader lease. Process-wide; [`register`] adds them to a registry for `/metrics`.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `controller="database"|"dbhubinstance"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    /// `database` or `dbhubinstance`.
    pub controller: String,
}

/// `engine`, `outcome="ok"|"error"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabel {
    /// postgres, mysql, mariadb, sqlserver, sqlite.
    pub engine: String,
    /// ok or error.
    pub outcome: String,
}

/// A histogram family whose members share [`seconds`] buckets.
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets in seconds, shared by every histogram of the project.
pub fn seconds() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The reconcilers' metrics.
pub struct Metrics {
    reconciles: Family<ControllerLabel, Counter>,
    errors: Family<ControllerLabel, Counter>,
    duration: Histograms<ControllerLabel>,
    probe: Histograms<ProbeLabel>,
    probes_waiting: Gauge,
    probe_wait: Histogram,
    leader: Gauge,
}

/// The process-wide instance.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        reconciles: Family::default(),
        errors: Family::default(),
        duration: Family::new_with_constructor(seconds),
        probe: Family::new_with_constructor(seconds),
        probes_waiting: Gauge::default(),
        probe_wait: seconds(),
        leader: Gauge::default(),
    })
}

/// Adds the reconcilers' metrics to `registry`.
pub fn register(registry: &mut Registry) {
    let m = metrics();
    registry.register(
        "dbhub_operator_reconciles",
        "Reconciliations run, per controller",
        m.reconciles.clone(),
    );
    registry.register(
        "dbhub_operator_reconcile_errors",
        "Reconciliations that ended in an error, per controller",
        m.errors.clone(),
    );
    registry.register(
        "dbhub_operator_reconcile_duration_seconds",
        "Time one reconciliation took, per controller",
        m.duration.clone(),
    );
    registry.register(
        "dbhub_operator_probe_duration_seconds",
        "Time a database connection check took, per engine and outcome",
        m.probe.clone(),
    );
    registry.register(
        "dbhub_operator_probes_waiting",
        "Connection checks waiting for a slot (the global or their server's limit)",
        m.probes_waiting.clone(),
    );
    registry.register(
        "dbhub_operator_probe_wait_seconds",
        "Time a connection check waited for its slot",
        m.probe_wait.clone(),
    );
    registry.register(
        "dbhub_operator_leader",
        "Whether this process reconciles: holds the leader lease, or runs without leader election",
        m.leader.clone(),
    );
}

/// Runs one reconciliation of `controller`, counting it, its error and its duration.
pub async fn reconcile<T, E>(
    controller: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let m = metrics();
    let label = ControllerLabel {
        controller: controller.into(),
    };
    let started = Instant::now();
    let out = fut.await;
    m.reconciles.get_or_create(&label).inc();
    if out.is_err() {
        m.errors.get_or_create(&label).inc();
    }
    m.duration
        .get_or_create(&label)
        .observe(started.elapsed().as_secs_f64());
    out
}

/// Records one connection check.
pub fn probe(engine: &str, ok: bool, seconds: f64) {
    let label = ProbeLabel {
        engine: engine.into(),
        outcome: if ok { "ok" } else { "error" }.into(),
    };
    metrics().probe.get_or_create(&label).observe(seconds);
}

/// A connection check waiting for its slot: counted in `probes_waiting` while it lives, its
/// wait observed when it ends.
pub struct Waiting(Instant);

impl Waiting {
    /// Starts waiting.
    pub fn start() -> Self {
        metrics().probes_waiting.inc();
        Self(Instant::now())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let m = metrics();
        m.probes_waiting.dec();
        m.probe_wait.observe(self.0.elapsed().as_secs_f64());
    }
}

/// Sets whether this process is the one reconciling.
pub fn set_leader(leader: bool) {
    metrics().leader.set(i64::from(leader));
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[tokio::test]
    async fn reconciles_and_probes_show_up_in_the_text_format() {
        let _ = reconcile("unit", async { Ok::<_, ()>(()) }).await;
        let _ = reconcile("unit", async { Err::<(), _>(()) }).await;
        probe("postgres", true, 0.004);
        let mut reg = Registry::default();
        register(&mut reg);
        let mut text = String::new();
        encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("dbhub_operator_reconciles_total{controller=\"unit\"} 2"),
            "{text}"
        );
        assert!(text.contains("dbhub_operator_reconcile_errors_total{controller=\"unit\"} 1"));
        assert!(text.contains(
            "dbhub_operator_probe_duration_seconds_count{engine=\"postgres\",outcome=\"ok\"} 1"
        ));
    }
}
