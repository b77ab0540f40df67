//! The query history is written off the request path: runs go into a bounded queue that one
//! task drains into Neo4j in batches (what arrives in the 250 ms after a batch's first run, or
//! until a flush; one `UNWIND` write per space and 512 runs), so a response never waits for the
//! graph. The queue holds 8 192 runs: more than that arriving while one batch is gathered and
//! written (above ~30 000 a second, or while Neo4j is slow to answer) is dropped and counted
//! (`aether_dbhub_history_entries_total{outcome="dropped_full"}`) instead of growing memory.
//! Reads of the history flush the queue first (a user sees their own last run), and shutdown
//! flushes it; a crash loses at most what was queued ([`QUEUE`] runs).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::model::Execution;
use crate::storage::Store;

/// Runs the queue holds at most.
pub const QUEUE: usize = 8192;
/// Runs one batch writes at most.
const BATCH: usize = 512;
/// How long the writer waits for more runs after the first of a batch. Measured on the stack's
/// Neo4j 5.26: a transaction costs ~2–3 ms of its CPU, each run in it ~0.13 ms, so 20 runs per
/// write cost ~0.25 ms each and 100 or more ~0.14 ms; at a few hundred queries a second this
/// gathers ~100 per write. Reads of the history flush first, so no user waits for it.
const LINGER: Duration = Duration::from_millis(250);
/// How long a flush waits for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

/// The sending side; the writer task runs until every sender is gone.
#[derive(Clone)]
pub struct Recorder {
    runs: mpsc::Sender<Box<Execution>>,
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

impl Recorder {
    /// Starts the writer over `store`.
    pub fn start(store: Store) -> Self {
        let (runs, runs_rx) = mpsc::channel(QUEUE);
        let (flushes, flushes_rx) = mpsc::channel(64);
        tokio::spawn(write(store, runs_rx, flushes_rx));
        Self { runs, flushes }
    }

    /// Queues `run`; never waits (a full queue drops it, counted).
    pub fn submit(&self, run: Execution) {
        if let Err(e) = self.runs.try_send(Box::new(run)) {
            crate::metrics::history("dropped_full", 1);
            if let mpsc::error::TrySendError::Full(_) = e {
                tracing::warn!(
                    queue = QUEUE,
                    "the query-history queue is full; a run was not recorded"
                );
            }
        }
    }

    /// Waits until everything queued before this call is written (or [`FLUSH_WAIT`] passed).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        let sent = tokio::time::timeout(FLUSH_WAIT, self.flushes.send(done)).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = tokio::time::timeout(FLUSH_WAIT, wait).await;
        }
    }
}

/// The writer. It is woken once per batch, not once per run: after the first run of a batch it
/// sleeps until [`LINGER`] has passed (or a flush comes), then takes everything queued, so a
/// query does not wake a second thread to hand over its history entry.
async fn write(
    store: Store,
    mut runs: mpsc::Receiver<Box<Execution>>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
) {
    loop {
        let (mut batch, mut waiting) = (Vec::new(), Vec::new());
        tokio::select! {
            biased;
            Some(w) = flushes.recv() => waiting.push(w),
            first = runs.recv() => match first {
                Some(r) => {
                    batch.push(*r);
                    let linger = tokio::time::sleep(LINGER);
                    tokio::select! {
                        () = linger => {}
                        Some(w) = flushes.recv() => waiting.push(w),
                    }
                }
                None => break,
            },
        }
        while let Ok(w) = flushes.try_recv() {
            waiting.push(w);
        }
        // Everything queued now, including whatever was queued before the flushes came.
        while batch.len() < QUEUE
            && let Ok(r) = runs.try_recv()
        {
            batch.push(*r);
        }
        for chunk in batch.chunks(BATCH) {
            record(&store, chunk).await;
        }
        for w in waiting {
            let _ = w.send(());
        }
    }
    // Every sender is gone and the queue is empty: nothing is left to write or to answer.
}

async fn record(store: &Store, runs: &[Execution]) {
    let n = runs.len() as u64;
    match store.record_executions(runs).await {
        Ok(_) => crate::metrics::history("written", n),
        Err(e) => {
            crate::metrics::history("dropped_failed", n);
            tracing::warn!(error = %e, runs = n, "could not record query history");
        }
    }
}
