//! The query history is written off the request path: runs go into a bounded queue that one
//! task drains into Neo4j in batches (gathered for up to 250 ms; one `UNWIND` write per space),
//! so a response never waits for the graph. When the queue is full a run is dropped and counted
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

enum Msg {
    Run(Box<Execution>),
    Flush(oneshot::Sender<()>),
}

/// The sending side; the writer task runs until every sender is gone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
}

impl Recorder {
    /// Starts the writer over `store`.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, rx));
        Self { tx }
    }

    /// Queues `run`; never waits (a full queue drops it, counted).
    pub fn submit(&self, run: Execution) {
        if let Err(e) = self.tx.try_send(Msg::Run(Box::new(run))) {
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
        let sent = tokio::time::timeout(FLUSH_WAIT, self.tx.send(Msg::Flush(done))).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = tokio::time::timeout(FLUSH_WAIT, wait).await;
        }
    }
}

async fn write(store: Store, mut rx: mpsc::Receiver<Msg>) {
    while let Some(first) = rx.recv().await {
        let (mut runs, mut waiting) = (Vec::new(), Vec::new());
        let until = tokio::time::Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Run(r) => runs.push(*r),
                Msg::Flush(w) => waiting.push(w),
            }
            // A flush is answered now; otherwise gather until the batch is full or LINGER ends.
            if runs.len() < BATCH && waiting.is_empty() {
                next = tokio::time::timeout_at(until, rx.recv())
                    .await
                    .ok()
                    .flatten();
            } else if runs.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !runs.is_empty() {
            let n = runs.len() as u64;
            match store.record_executions(&runs).await {
                Ok(_) => crate::metrics::history("written", n),
                Err(e) => {
                    crate::metrics::history("dropped_failed", n);
                    tracing::warn!(error = %e, runs = n, "could not record query history");
                }
            }
        }
        for w in waiting {
            let _ = w.send(());
        }
    }
}
