//! The sending end: publish jobs that retry until stored, and the end's open record.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_nats::Subject;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use kcoro::chan::ChanError;
use kcoro::sync::CancelToken;
use serde::Serialize;

use super::state::QueueState;
use super::{GONE_AFTER, queue_subject};
use crate::codec::encode;
use crate::exec::Wait;
use crate::stats::{BridgeStats, Counters, bump};
use crate::{NatsError, SendError, Shared};

/// Longest wait between two publish attempts to a full stream.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Makes a sending end of queue `name` and records it open.
pub(super) fn open<T>(
    shared: &Arc<Shared>,
    name: &str,
    state: QueueState,
    dedupe_ids: bool,
) -> Result<WorkSender<T>, NatsError> {
    let id = shared.next_msg_id().replace('.', "_");
    let (registering, id_owned) = (state.clone(), id.clone());
    shared
        .exec
        .call(Wait::FOREVER, async move { registering.register(&id_owned).await })?
        .map_err(|e| NatsError::nats("open the sending end", e))?;
    let job = Job {
        js: shared.js.clone(),
        subject: crate::intern::publish_subject(&queue_subject(name)),
        queue: name.to_string(),
        dedupe_ids,
    };
    let core = SenderCore {
        shared: Arc::clone(shared),
        job,
        counters: Arc::new(Counters::default()),
        closed: AtomicBool::new(false),
        state,
        id,
    };
    Ok(WorkSender { core: Arc::new(core), _values: PhantomData })
}

/// What a failed publish attempt calls for.
enum Retry {
    /// The stream is full (discard-new refused the message).
    Full,
    /// No ack in time, or the connection broke: the message may or may not be stored.
    Unknown,
    /// No stream answered (it does not exist, or the server is still recovering it).
    NoStream,
    /// A real failure, reported to the caller.
    Fail,
}

fn classify(e: &jetstream::context::PublishError) -> Retry {
    match e.kind() {
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
            Retry::Unknown
        }
        PublishErrorKind::StreamNotFound => Retry::NoStream,
        _ => {
            let server = std::error::Error::source(e).and_then(|s| s.downcast_ref::<jetstream::Error>());
            match server {
                // 10077: the store refused the message; with discard-new that means
                // "maximum messages exceeded" (or bytes).
                Some(err) if err.error_code() == ErrorCode::STREAM_STORE_FAILED => {
                    let text = err.to_string();
                    if text.contains("maximum messages") || text.contains("maximum bytes") {
                        Retry::Full
                    } else {
                        Retry::Fail
                    }
                }
                _ => Retry::Fail,
            }
        }
    }
}

/// Where the publishes of one end go.
struct Job {
    js: jetstream::Context,
    /// Made once, interned (see `intern`): a `String` would clone by a copy and an
    /// allocation per publish.
    subject: Subject,
    queue: String,
    /// Publish with a `Nats-Msg-Id` ([`super::WorkQueueOptions::dedupe_ids`]).
    dedupe_ids: bool,
}

impl Job {
    /// Step 3 of the protocol: publish until stored or refused for good (`once`: one
    /// attempt, a full stream is `WouldBlock`). Polled by the sender itself, which drops
    /// it to give up.
    async fn publish(
        &self,
        payload: Bytes,
        id: Option<&str>,
        once: bool,
        counters: &Counters,
    ) -> Result<(), NatsError> {
        let mut backoff = Duration::from_millis(1);
        let mut no_stream_since: Option<Instant> = None;
        loop {
            let publish = PublishMessage::build().payload(payload.clone());
            let publish = match id {
                Some(id) => publish.message_id(id),
                None => publish,
            };
            let attempt = async { self.js.send_publish(self.subject.clone(), publish).await?.await };
            let err = match attempt.await {
                Ok(ack) => {
                    bump(if ack.duplicate { &counters.duplicates } else { &counters.published });
                    return Ok(());
                }
                Err(e) => e,
            };
            let failure = match classify(&err) {
                Retry::Full if once => Some(NatsError::Chan(ChanError::WouldBlock)),
                Retry::Full => {
                    bump(&counters.full_retries);
                    None
                }
                Retry::Unknown if once => Some(NatsError::nats("publish", err)),
                Retry::Unknown => {
                    bump(&counters.timeout_retries);
                    None
                }
                Retry::NoStream if once => Some(self.gone()),
                Retry::NoStream => {
                    let since = *no_stream_since.get_or_insert_with(Instant::now);
                    bump(&counters.timeout_retries);
                    (since.elapsed() >= GONE_AFTER).then(|| self.gone())
                }
                Retry::Fail => Some(NatsError::nats("publish", err)),
            };
            if let Some(e) = failure {
                bump(&counters.errors);
                return Err(e);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn gone(&self) -> NatsError {
        NatsError::Gone { what: "stream", name: self.queue.clone() }
    }
}

struct SenderCore {
    shared: Arc<Shared>,
    job: Job,
    counters: Arc<Counters>,
    closed: AtomicBool,
    state: QueueState,
    /// This end's name in the queue's open records.
    id: String,
}

impl SenderCore {
    /// Steps 2 and 3 for an encoded payload, on the caller; waits as `wait` allows.
    fn publish(&self, payload: Bytes, once: bool, wait: Wait<'_>) -> Result<(), NatsError> {
        self.shared.check_payload(payload.len())?;
        let id = self.job.dedupe_ids.then(|| self.shared.next_msg_id());
        self.shared.exec.here(wait, self.job.publish(payload, id.as_deref(), once, &self.counters))?
    }
}

impl Drop for SenderCore {
    /// A sending end that goes without closing stops counting as open (it will send no
    /// more), so it cannot hold the queue's end back forever.
    fn drop(&mut self) {
        if self.closed.load(Relaxed) {
            return;
        }
        let (state, id) = (self.state.clone(), std::mem::take(&mut self.id));
        let unregister = async move {
            let _ = state.unregister(&id).await;
        };
        // Waited for (bounded, as the connection's own drop), so a process that exits
        // after dropping its sender has removed the record; not on the executor's thread,
        // where waiting would wait for itself.
        if self.shared.exec.is_current_thread() {
            let _ = self.shared.exec.spawn(unregister);
        } else {
            let _ = self.shared.exec.call(Wait::timeout(crate::DRAIN_AT_DROP), unregister);
        }
    }
}

/// The sending end of a work queue. Cloneable; clones share the counters and the open
/// record.
pub struct WorkSender<T> {
    core: Arc<SenderCore>,
    _values: PhantomData<fn(T)>,
}

impl<T> Clone for WorkSender<T> {
    fn clone(&self) -> Self {
        WorkSender { core: Arc::clone(&self.core), _values: PhantomData }
    }
}

impl<T: Serialize + 'static> WorkSender<T> {
    fn send_inner(&self, value: T, once: bool, wait: Wait<'_>) -> Result<(), SendError<T>> {
        if self.core.closed.load(Relaxed) {
            return Err(SendError::new(NatsError::Chan(ChanError::Closed), value));
        }
        let payload = match encode(&value) {
            Ok(p) => p,
            Err(e) => return Err(SendError::new(e, value)),
        };
        self.core.publish(payload, once, wait).map_err(|e| SendError::new(e, value))
    }

    /// Sends, parking while the stream is full; returns once the server stored the
    /// message. While the server is unreachable it keeps retrying (the client
    /// reconnects); use [`send_timeout`](Self::send_timeout) to bound that. A stream the
    /// server has not known for [`GONE_AFTER`](super::GONE_AFTER) fails it with
    /// [`NatsError::Gone`].
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, false, Wait::FOREVER)
    }

    /// One attempt: a full stream fails with `WouldBlock` at once (the server's answer is
    /// still awaited).
    pub fn try_send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, true, Wait::FOREVER)
    }

    /// Sends, waiting at most `timeout`. A `Timeout` cannot tell whether the message was
    /// stored (an attempt may have been in flight); a retry of the same value would be a
    /// second message.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_inner(value, false, Wait::timeout(timeout))
    }

    /// Sends, waiting until `deadline` at most.
    pub fn send_deadline(&self, value: T, deadline: Instant) -> Result<(), SendError<T>> {
        self.send_inner(value, false, Wait::new(Some(deadline), None))
    }

    /// Sends, giving up with `Canceled` when `token` fires.
    pub fn send_cancellable(&self, value: T, token: &CancelToken) -> Result<(), SendError<T>> {
        self.send_inner(value, false, Wait::new(None, Some(token)))
    }

    /// Sends with a deadline and a token (cancellation wins).
    pub fn send_with(
        &self,
        value: T,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
    ) -> Result<(), SendError<T>> {
        self.send_inner(value, false, Wait::new(deadline, token))
    }
}

impl<T> WorkSender<T> {
    /// Closes this end (later sends from it fail with `Closed`) and records the close.
    /// The queue ends, and its receivers get `Closed` after draining, once no sending end
    /// anywhere is open and every message is acked: with several producers, the last to
    /// close ends it. Returns `false` if this end was already closed.
    pub fn close(&self) -> Result<bool, NatsError> {
        if self.core.closed.swap(true, Relaxed) {
            return Ok(false);
        }
        let (state, id) = (self.core.state.clone(), self.core.id.clone());
        self.core
            .shared
            .exec
            .call(Wait::FOREVER, async move { state.close(&id).await })?
            .map_err(|e| NatsError::nats("close", e))?;
        bump(&self.core.counters.end_markers);
        Ok(true)
    }

    /// True once [`close`](Self::close) was called on this end.
    pub fn is_closed(&self) -> bool {
        self.core.closed.load(Relaxed)
    }

    /// The bridge's counters for this end: stored, full retries, duplicates, errors.
    pub fn stats(&self) -> BridgeStats {
        self.core.counters.snapshot()
    }
}
