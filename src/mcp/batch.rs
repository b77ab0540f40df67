//! Calls to one DBHub gathered into JSON-RPC batches while it is busy.
//!
//! DBHub 1.4 builds a whole MCP server (its tools, their schemas, a transport) for every HTTP
//! request it serves, which is most of its ~0.5–1 ms of CPU per call; a batch of n calls pays for
//! that once (measured on DBHub 1.4.0 against the stack's PostgreSQL, `SELECT 1`: ~0.7 ms of
//! DBHub's CPU per call sent alone, ~0.3 per call in batches of 4, ~0.2 in batches of 16). So a
//! session sends a call at once while fewer than [`MAX_IN_FLIGHT`] of its requests are out, and
//! otherwise queues it: when a request finishes, what queued meanwhile goes out as one batch. A
//! lone caller never waits (the batch forms only while DBHub is already working), and a queued
//! call waits at most [`STRAGGLER`] for a free turn before it goes out anyway, so long-running
//! queries holding every turn hold nobody else up for longer than that. A batch can fail only
//! as a whole where a lone call would fail too (DBHub unreachable, the connection cut): the
//! size of one call's answer, its error or its slowness stays with that call.
//!
//! Batches are MCP 2025-03-26's (the revision whose servers must accept them); DBHub streams
//! each response of a batch as its call finishes, and each goes to its caller as soon as it is
//! read, so a slow query does not hold up the answers batched with it. A call whose caller gave
//! up while queued is not sent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderMap;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{DBHUB_MAX_REQUEST_BYTES, McpError, http, rpc};

/// Requests a session has out before it queues calls. Two lets a batch form while DBHub works
/// on another and go out the moment one comes back; with four, fewer calls queued at
/// concurrency 8 and it served 0.98–1.02x the direct requests/s against 1.11–1.19x with two (one
/// did as well as two; `cargo bench --bench e2e -- compare`, 2026-12-07).
pub const MAX_IN_FLIGHT: usize = 2;
/// How long a queued call waits for a turn before it is sent anyway.
pub const STRAGGLER: Duration = Duration::from_millis(5);
/// The most calls in one batch (DBHub's MCP SDK refuses larger ones with 400).
pub const MAX_BATCH: usize = 100;

/// What a session's calls share: where DBHub is, the headers of every request, and the queue.
pub struct Link {
    pub endpoint: Url,
    /// Authorization (sensitive), Accept, Content-Type, the protocol version, the session id
    /// when the server keeps sessions (DBHub does not).
    pub headers: HeaderMap,
    /// Whether the server takes batches (the negotiated revision has them).
    batches: bool,
    queue: Mutex<Queue>,
    batched_calls: AtomicU64,
}

#[derive(Default)]
struct Queue {
    in_flight: usize,
    waiting: VecDeque<Queued>,
}

/// A call waiting for its turn: request `id`, encoded.
struct Queued {
    id: u64,
    body: Vec<u8>,
    deadline: Instant,
    reply: oneshot::Sender<Result<String, McpError>>,
}

/// A call's turn: go now (holding one of the requests out), or wait for the response a batch
/// brings (the JSON text of the message answering it).
pub enum Turn {
    Now(Slot, Vec<u8>),
    Later(oneshot::Receiver<Result<String, McpError>>),
}

/// One of a session's requests out; giving it back sends what queued meanwhile.
pub struct Slot(Arc<Link>);

impl Drop for Slot {
    fn drop(&mut self) {
        let link = &self.0;
        let ready: Vec<_> = {
            let mut q = link.lock();
            q.in_flight -= 1;
            std::iter::from_fn(|| (q.in_flight < MAX_IN_FLIGHT).then(|| q.take()).flatten())
                .collect()
        };
        for batch in ready {
            link.send(batch);
        }
    }
}

impl Queue {
    /// The next batch from the front of the queue (callers that gave up are dropped), within
    /// [`MAX_BATCH`] calls and DBHub's request size; counted as out.
    fn take(&mut self) -> Option<Vec<Queued>> {
        let (mut batch, mut bytes) = (Vec::new(), 2);
        while let Some(next) = self.waiting.front() {
            if next.reply.is_closed() {
                self.waiting.pop_front();
                continue;
            }
            if !batch.is_empty()
                && (batch.len() == MAX_BATCH
                    || bytes + next.body.len() + 1 > DBHUB_MAX_REQUEST_BYTES)
            {
                break;
            }
            bytes += next.body.len() + 1;
            batch.extend(self.waiting.pop_front());
        }
        (!batch.is_empty()).then(|| {
            self.in_flight += 1;
            batch
        })
    }
}

/// One request's body: the message alone, or `[m1,m2,…]`.
fn body_of(batch: &mut [Queued]) -> Vec<u8> {
    if let [one] = batch {
        return std::mem::take(&mut one.body);
    }
    let mut body = Vec::with_capacity(batch.iter().map(|q| q.body.len() + 1).sum::<usize>() + 1);
    for (i, q) in batch.iter().enumerate() {
        body.push(if i == 0 { b'[' } else { b',' });
        body.extend_from_slice(&q.body);
    }
    body.push(b']');
    body
}

impl Link {
    pub fn new(endpoint: Url, headers: HeaderMap, batches: bool) -> Self {
        Self {
            endpoint,
            headers,
            batches,
            queue: Mutex::default(),
            batched_calls: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls this session has sent inside batches of two or more.
    pub fn batched_calls(&self) -> u64 {
        self.batched_calls.load(Ordering::Relaxed)
    }

    /// The turn of request `id` (encoded as `body`), whose caller waits until `deadline`.
    pub fn turn(self: &Arc<Self>, id: u64, body: Vec<u8>, deadline: Instant) -> Turn {
        let mut q = self.lock();
        if !self.batches || (q.in_flight < MAX_IN_FLIGHT && q.waiting.is_empty()) {
            q.in_flight += 1;
            return Turn::Now(Slot(self.clone()), body);
        }
        let (reply, answer) = oneshot::channel();
        q.waiting.push_back(Queued {
            id,
            body,
            deadline,
            reply,
        });
        Turn::Later(answer)
    }

    /// The answer of a queued call; after [`STRAGGLER`] without a turn, the front of the
    /// queue is sent anyway.
    pub async fn wait(
        self: &Arc<Self>,
        mut answer: oneshot::Receiver<Result<String, McpError>>,
    ) -> Result<String, McpError> {
        let lost = |_| Err(McpError::Unavailable("the call to DBHub was lost".into()));
        tokio::select! {
            biased;
            got = &mut answer => return got.unwrap_or_else(lost),
            () = tokio::time::sleep(STRAGGLER) => {}
        }
        let batch = self.lock().take();
        if let Some(batch) = batch {
            self.send(batch);
        }
        answer.await.unwrap_or_else(lost)
    }

    /// Sends `batch` (already counted as out) in a task of its own.
    fn send(self: &Arc<Self>, batch: Vec<Queued>) {
        let slot = Slot(self.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(post(slot, batch))),
            // No runtime (it is shutting down): nobody is left to answer.
            Err(_) => drop(batch),
        }
    }
}

/// POSTs `batch` and hands each response to its caller as it is read; callers left without one
/// get the failure.
async fn post(slot: Slot, mut batch: Vec<Queued>) {
    let link = &slot.0;
    let deadline = batch.iter().map(|q| q.deadline).max();
    let body = body_of(&mut batch);
    crate::metrics::mcp_request(batch.len());
    if batch.len() > 1 {
        link.batched_calls
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
    let mut waiting: Vec<_> = batch.into_iter().map(|q| (q.id, q.reply)).collect();
    let exchange = async {
        let answer = rpc::post(http(), &link.endpoint, &link.headers, body).await?;
        answer
            .messages(|text| {
                let Some(id) = rpc::response_id(text) else {
                    return;
                };
                if let Some(i) = waiting.iter().position(|(w, _)| *w == id) {
                    let (_, reply) = waiting.swap_remove(i);
                    let _ = reply.send(Ok(text.to_owned()));
                }
            })
            .await
    };
    let failure =
        match tokio::time::timeout_at(deadline.unwrap_or_else(Instant::now), exchange).await {
            Err(_) => McpError::Timeout,
            Ok(Err(e)) => e,
            Ok(Ok(())) => McpError::Protocol("the stream ended without the response".into()),
        };
    for (_, reply) in waiting {
        let _ = reply.send(Err(failure.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: u64, bytes: usize) -> (Queued, oneshot::Receiver<Result<String, McpError>>) {
        let (reply, rx) = oneshot::channel();
        let q = Queued {
            id,
            body: vec![b'x'; bytes],
            deadline: Instant::now(),
            reply,
        };
        (q, rx)
    }

    #[test]
    fn batches_keep_order_and_stay_within_the_count_and_size_dbhub_takes() {
        let mut q = Queue::default();
        let mut keep = Vec::new();
        for id in 0..(MAX_BATCH as u64 + 5) {
            let (entry, rx) = queued(id, 10);
            q.waiting.push_back(entry);
            keep.push(rx);
        }
        let first = q.take().unwrap();
        assert_eq!(first.len(), MAX_BATCH);
        assert_eq!(first[0].id, 0, "first come, first sent");
        assert_eq!(q.take().unwrap().len(), 5);
        assert!(q.take().is_none());
        assert_eq!(q.in_flight, 2, "each batch taken is counted as out");

        // 40 KiB calls: two fit DBHub's 100 KiB body with the brackets and comma, three do not.
        for id in 0..5 {
            let (entry, rx) = queued(id, 40 * 1024);
            q.waiting.push_back(entry);
            keep.push(rx);
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| q.take())
            .map(|mut b| {
                assert!(body_of(&mut b).len() <= DBHUB_MAX_REQUEST_BYTES);
                b.len()
            })
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[test]
    fn a_call_whose_caller_gave_up_is_not_sent() {
        let mut q = Queue::default();
        let (gone, rx) = queued(1, 10);
        drop(rx);
        let (kept, _rx) = queued(2, 10);
        q.waiting.extend([gone, kept]);
        let batch = q.take().unwrap();
        assert_eq!(batch.iter().map(|q| q.id).collect::<Vec<_>>(), [2]);
        let (gone, rx) = queued(3, 10);
        drop(rx);
        q.waiting.push_back(gone);
        assert!(q.take().is_none(), "nobody left to send for");
    }

    #[test]
    fn a_batch_is_a_json_array_of_the_messages_and_one_call_goes_alone() {
        let msg = |id: u64| {
            let (reply, _) = oneshot::channel();
            Queued {
                id,
                body: format!(r#"{{"id":{id}}}"#).into_bytes(),
                deadline: Instant::now(),
                reply,
            }
        };
        let mut two = [msg(1), msg(2)];
        assert_eq!(body_of(&mut two), br#"[{"id":1},{"id":2}]"#);
        let mut one = [msg(3)];
        assert_eq!(body_of(&mut one), br#"{"id":3}"#);
    }
}
