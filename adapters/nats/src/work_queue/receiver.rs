//! The receiving end: the puller that feeds the local buffer, the end-of-queue and
//! gone checks, and deliveries whose acks the server confirms.

use std::ops::Deref;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::Subject;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use kcoro::chan::{self, ChanError, Snapshot};
use kcoro::sync::CancelToken;
use serde::de::DeserializeOwned;

use super::state::{Close, QueueState};
use super::{GONE_AFTER, IDLE_CHECK, WorkQueueOptions};
use crate::codec::decode;
use crate::exec::{Reply, Wait, reply_pair};
use crate::stats::{BridgeStats, Counters, bump};
use crate::{NatsError, Shared};

/// What the local buffer holds: a delivery, or (with `undecodable_as_errors`) why a
/// message could not be one.
type Item<T> = Result<Delivery<T>, NatsError>;

/// An ack, nak or term on its way to the server; `done` hears the server's answer.
struct Settle {
    reply: Subject,
    kind: AckKind,
    done: Option<Reply<Result<(), NatsError>>>,
}

/// Makes a receiving end over `consumer` and starts its puller and its ack task.
pub(super) fn open<T: DeserializeOwned + Send + 'static>(
    shared: &Arc<Shared>,
    name: &str,
    opts: &WorkQueueOptions,
    consumer: consumer::Consumer<pull::Config>,
    stream: stream::Stream,
    state: QueueState,
) -> Result<WorkReceiver<T>, NatsError> {
    let reading = state.clone();
    let baseline = shared
        .exec
        .call(Wait::FOREVER, async move { reading.last_close().await })?
        .map_err(|e| NatsError::nats("read the queue state", e))?
        .baseline();
    let counters = Arc::new(Counters::default());
    let (acks, acks_rx) = chan::unlimited::<Settle>();
    let undelivered_acks = acks.clone();
    let (local_tx, local) = chan::Builder::<Item<T>>::buffered(opts.prefetch.max(1))
        .name(format!("nats:wq:{name}"))
        // Deliveries left in a cancelled buffer go back to the server at once.
        .on_undelivered(move |item: Item<T>| {
            if let Ok(d) = item {
                d.settle_unconfirmed(&undelivered_acks, AckKind::Nak(None));
            }
        })
        .build();
    let (client, c, timeout) = (shared.client.clone(), Arc::clone(&counters), shared.ack_timeout);
    shared.exec.spawn(async move {
        while let Ok(settle) = acks_rx.recv_async().await {
            // A settle nobody waits for is a publish onto the connection: done here, in
            // order, without a task each. One that waits for the server's answer gets a
            // task, so a slow answer holds up no other.
            if settle.done.is_some() {
                tokio::spawn(send_settle(client.clone(), settle, Arc::clone(&c), timeout));
            } else {
                send_settle(client.clone(), settle, Arc::clone(&c), timeout).await;
            }
        }
    })?;
    let gone = Arc::new(OnceLock::new());
    let puller = Puller {
        consumer,
        stream,
        state,
        baseline,
        local: local_tx,
        acks,
        counters: Arc::clone(&counters),
        prefetch: opts.prefetch,
        undecodable_as_errors: opts.undecodable_as_errors,
        gone: Arc::clone(&gone),
        queue: name.to_string(),
    };
    shared.exec.spawn(puller.run())?;
    Ok(WorkReceiver { local, counters, gone, _shared: Arc::clone(shared) })
}

/// Sends one settle: as a request when someone waits for the server's answer (the
/// server answers an ack with a reply subject once it has processed it), else as a plain
/// publish.
async fn send_settle(client: async_nats::Client, settle: Settle, counters: Arc<Counters>, timeout: Duration) {
    let nak = matches!(settle.kind, AckKind::Nak(_));
    let payload = Bytes::from(settle.kind);
    let result = match &settle.done {
        Some(_) => match tokio::time::timeout(timeout, client.request(settle.reply, payload)).await {
            Ok(answer) => answer.map(drop).map_err(|e| NatsError::nats("ack", e)),
            Err(_) => Err(NatsError::nats("ack", format!("no answer from the server within {timeout:?}"))),
        },
        None => client.publish(settle.reply, payload).await.map_err(|e| NatsError::nats("ack", e)),
    };
    match &result {
        Ok(()) => bump(if nak { &counters.naks } else { &counters.acks }),
        Err(_) => bump(&counters.errors),
    }
    if let Some(done) = settle.done {
        done.send(result);
    }
}

/// A value taken from a work queue, to be acked once handled. Dereferences to the value.
/// Dropped unacked, it is redelivered after the queue's `ack_wait`.
pub struct Delivery<T> {
    value: T,
    reply: Subject,
    acks: chan::Sender<Settle>,
    delivered: u64,
    stream_sequence: u64,
}

impl<T> Delivery<T> {
    fn settle_unconfirmed(self, acks: &chan::Sender<Settle>, kind: AckKind) {
        // Closed only when the bridge shuts down: the server redelivers after ack_wait.
        let _ = acks.send(Settle { reply: self.reply, kind, done: None });
    }

    /// Hands the settle to the ack task and waits for the server's answer.
    fn settle(self, kind: AckKind) -> Result<T, NatsError> {
        let Delivery { value, reply, acks, .. } = self;
        let (done, mut answer) = reply_pair();
        acks.send(Settle { reply, kind, done: Some(done) }).map_err(|_| NatsError::Shutdown)?;
        match answer.recv() {
            Ok(result) => result.map(|()| value),
            Err(_) => Err(NatsError::Shutdown),
        }
    }

    /// Acknowledges: the message is done and leaves the queue. Returns the value once the
    /// server has taken the ack; an error means it may be redelivered.
    pub fn ack(self) -> Result<T, NatsError> {
        self.settle(AckKind::Ack)
    }

    /// Acknowledges without waiting for the server: the ack is queued to the connection
    /// at once, in order, but nothing tells whether the server took it (as async-nats's
    /// `Message::ack`). Saves the round trip of [`ack`](Self::ack) per message; an ack
    /// lost on the way (the connection dropped, the process exited first) means the
    /// message is redelivered after `ack_wait`.
    pub fn ack_unconfirmed(self) -> T {
        let Delivery { value, reply, acks, .. } = self;
        // Closed only when the bridge shuts down: the server redelivers after ack_wait.
        let _ = acks.send(Settle { reply, kind: AckKind::Ack, done: None });
        value
    }

    /// Negative ack: redeliver now (to any receiver). Returns the value once the server
    /// has taken it.
    pub fn nak(self) -> Result<T, NatsError> {
        self.settle(AckKind::Nak(None))
    }

    /// Terminates: never redeliver, though not handled. Returns the value once the server
    /// has taken it.
    pub fn term(self) -> Result<T, NatsError> {
        self.settle(AckKind::Term)
    }

    /// How many times the server has delivered this message (1 the first time).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The message's sequence number in the stream.
    pub fn stream_sequence(&self) -> u64 {
        self.stream_sequence
    }

    /// The value, without acking (it will be redelivered after `ack_wait`).
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("value", &self.value)
            .field("delivered", &self.delivered)
            .field("stream_sequence", &self.stream_sequence)
            .finish_non_exhaustive()
    }
}

impl<T> Deref for Delivery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// What a check of the queue's state found.
enum Check {
    /// Nothing to do: keep pulling.
    Open,
    /// The queue ended (drained after a close).
    Ended,
    /// The consumer or the stream has been gone for [`GONE_AFTER`].
    Gone(&'static str),
}

/// Pulls messages into the end's local buffer (step 4), and checks when idle (steps 6
/// and 7).
struct Puller<T> {
    consumer: consumer::Consumer<pull::Config>,
    stream: stream::Stream,
    state: QueueState,
    /// Closes at or below this sequence were over before this end opened.
    baseline: u64,
    local: chan::Sender<Item<T>>,
    acks: chan::Sender<Settle>,
    counters: Arc<Counters>,
    prefetch: usize,
    undecodable_as_errors: bool,
    gone: Arc<OnceLock<NatsError>>,
    queue: String,
}

impl<T: DeserializeOwned + Send + 'static> Puller<T> {
    async fn run(self) {
        let mut missing_since = None;
        while !self.local.is_closed() {
            let pulled = self
                .consumer
                .stream()
                .max_messages_per_batch(self.prefetch.max(1))
                .expires(Duration::from_secs(5))
                .heartbeat(Duration::from_secs(2))
                .messages()
                .await;
            let mut messages = match pulled {
                Ok(s) => s,
                Err(_) => {
                    // Server down, consumer not ready or gone: the client reconnects
                    // meanwhile; a consumer that stays gone is reported.
                    if self.finish_if_over(&mut missing_since).await {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            loop {
                match tokio::time::timeout(IDLE_CHECK, messages.next()).await {
                    Ok(Some(Ok(msg))) => {
                        if !self.deliver(msg).await {
                            // Our side closed: what this pull already holds goes back now,
                            // not when its `ack_wait` runs out.
                            nak_pulled(&mut messages).await;
                            return;
                        }
                    }
                    // The pull ended (server restarted, consumer gone): pull again.
                    Ok(None) => break,
                    // Missed heartbeats, a failed pull, a deleted consumer, or silence.
                    Ok(Some(Err(_))) | Err(_) => {
                        if self.local.is_closed() || self.finish_if_over(&mut missing_since).await {
                            // What the server pushed meanwhile goes straight back.
                            nak_pulled(&mut messages).await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Checks the queue and, if it ended or is gone, closes the local buffer (its users
    /// drain it, then get `Closed` or the failure). True if so.
    async fn finish_if_over(&self, missing_since: &mut Option<Instant>) -> bool {
        match self.check(missing_since).await {
            Check::Open => false,
            Check::Ended => {
                bump(&self.counters.end_markers);
                self.local.close();
                true
            }
            Check::Gone(what) => {
                let _ = self.gone.set(NatsError::Gone { what, name: self.queue.clone() });
                bump(&self.counters.errors);
                self.local.close();
                true
            }
        }
    }

    /// Step 6 and 7: the close record, then the open senders, then the consumer (in
    /// this order; see the module's protocol).
    async fn check(&self, missing_since: &mut Option<Instant>) -> Check {
        let close = self.state.last_close().await.unwrap_or(Close::Never);
        if let Close::Drained(d) = close
            && d > self.baseline
        {
            return Check::Ended;
        }
        let closing = match close {
            Close::Closed(c) if c > self.baseline => Some(c),
            _ => None,
        };
        let senders_open = match closing {
            Some(_) => self.state.open_senders().await.unwrap_or(1),
            None => 1,
        };
        let info = match self.consumer.get_info().await {
            Ok(info) => {
                *missing_since = None;
                info
            }
            Err(e) => {
                let what = match e.kind() {
                    async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound => "consumer",
                    async_nats::jetstream::context::ConsumerInfoErrorKind::StreamNotFound => "stream",
                    // Server away or slow: nothing is known.
                    _ => return Check::Open,
                };
                let since = *missing_since.get_or_insert_with(Instant::now);
                return if since.elapsed() >= GONE_AFTER { Check::Gone(what) } else { Check::Open };
            }
        };
        self.remove_acked_leftovers(info.ack_floor.stream_sequence).await;
        match closing {
            Some(c) if senders_open == 0 && info.num_pending == 0 && info.num_ack_pending == 0 => {
                match self.state.mark_drained(c).await {
                    Ok(true) => Check::Ended,
                    // Another end recorded it (found at the next check), or a sender
                    // closed again since.
                    Ok(false) | Err(_) => Check::Open,
                }
            }
            _ => Check::Open,
        }
    }

    /// Removes messages at or below the consumer's ack floor (all acked) that are still in
    /// the stream. nats-server 2.9 can restart from a crash with such messages (the
    /// consumer's acks were written, the stream's deletes not yet): they are never
    /// delivered again, but count against the queue's capacity. Only for work-queue
    /// retention, whose one consumer is this one; a limits stream keeps what was read.
    async fn remove_acked_leftovers(&self, ack_floor: u64) {
        if ack_floor == 0 {
            return;
        }
        let mut stream = self.stream.clone();
        let Ok(info) = stream.info().await else { return };
        if info.config.retention != RetentionPolicy::WorkQueue
            || info.state.messages == 0
            || info.state.first_sequence > ack_floor
        {
            return;
        }
        // Keeps every message from `ack_floor + 1` on: only acked ones go.
        if let Ok(purged) = stream.purge().sequence(ack_floor + 1).await {
            self.counters.acked_leftovers.fetch_add(purged.purged, Relaxed);
        }
    }

    /// Hands one message to the local buffer. False when this end is closed here.
    async fn deliver(&self, msg: async_nats::jetstream::Message) -> bool {
        let (delivered, stream_sequence) =
            msg.info().map_or((1, 0), |i| (i.delivered.max(1) as u64, i.stream_sequence));
        bump(&self.counters.delivered);
        if delivered > 1 {
            bump(&self.counters.redelivered);
        }
        let Some(reply) = msg.reply.clone() else {
            // A pull delivery always has one; without it nothing can be acked.
            bump(&self.counters.errors);
            return true;
        };
        let item = match decode::<T>(&msg.payload) {
            Ok(value) => Ok(Delivery { value, reply, acks: self.acks.clone(), delivered, stream_sequence }),
            Err(e) => {
                bump(&self.counters.decode_errors);
                let _ = self.acks.send(Settle { reply, kind: AckKind::Term, done: None });
                if !self.undecodable_as_errors {
                    return true;
                }
                Err(e)
            }
        };
        match self.local.send_async(item).await {
            Ok(()) => true,
            Err(e) => {
                if let Ok(d) = e.into_inner() {
                    d.settle_unconfirmed(&self.acks, AckKind::Nak(None));
                }
                false
            }
        }
    }
}

/// Gives back (naks) what a pull has already received and nobody will deliver.
async fn nak_pulled(messages: &mut async_nats::jetstream::consumer::pull::Stream) {
    while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
    }
}

/// The receiving end of a work queue. Cloneable; clones share one local buffer.
pub struct WorkReceiver<T> {
    local: chan::Receiver<Item<T>>,
    counters: Arc<Counters>,
    /// Set when the consumer or the stream went away: what `Closed` means then.
    gone: Arc<OnceLock<NatsError>>,
    _shared: Arc<Shared>,
}

impl<T> Clone for WorkReceiver<T> {
    fn clone(&self) -> Self {
        WorkReceiver {
            local: self.local.clone(),
            counters: Arc::clone(&self.counters),
            gone: Arc::clone(&self.gone),
            _shared: Arc::clone(&self._shared),
        }
    }
}

impl<T> WorkReceiver<T> {
    /// A local result as the caller sees it: a closed buffer of a queue that went away
    /// is that failure.
    fn lift(&self, r: Result<Item<T>, ChanError>) -> Result<Delivery<T>, NatsError> {
        match r {
            Ok(item) => item,
            Err(ChanError::Closed) => match self.gone.get() {
                Some(NatsError::Gone { what, name }) => Err(NatsError::Gone { what, name: name.clone() }),
                _ => Err(NatsError::Chan(ChanError::Closed)),
            },
            Err(e) => Err(NatsError::Chan(e)),
        }
    }

    /// Receives, waiting for one; `Closed` once the queue ended and this host's buffer is
    /// drained; [`NatsError::Gone`] if the queue's consumer or stream went away.
    pub fn recv(&self) -> Result<Delivery<T>, NatsError> {
        self.lift(self.local.recv())
    }

    /// Receives one already delivered here; else `WouldBlock`.
    pub fn try_recv(&self) -> Result<Delivery<T>, NatsError> {
        self.lift(self.local.try_recv())
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Delivery<T>, NatsError> {
        self.lift(self.local.recv_timeout(timeout))
    }

    /// Receives, waiting until `deadline` at most.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Delivery<T>, NatsError> {
        self.lift(self.local.recv_deadline(deadline))
    }

    /// Receives, giving up with `Canceled` when `token` fires.
    pub fn recv_cancellable(&self, token: &CancelToken) -> Result<Delivery<T>, NatsError> {
        self.lift(self.local.recv_cancellable(token))
    }

    /// Receives with a deadline and a token (cancellation wins).
    pub fn recv_with(
        &self,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
    ) -> Result<Delivery<T>, NatsError> {
        self.lift(self.local.recv_with(deadline, token))
    }

    /// Receives in async code, on any executor.
    pub async fn recv_async(&self) -> Result<Delivery<T>, NatsError> {
        self.lift(self.local.recv_async().await)
    }

    /// Receives and acks at once (at-most-once handling from here on: a crash after this
    /// returns loses the value).
    pub fn recv_auto_ack(&self) -> Result<T, NatsError> {
        self.recv()?.ack()
    }

    /// Stops receiving on this host: buffered deliveries are nak'ed back to the queue.
    pub fn close(&self) -> bool {
        self.local.cancel()
    }

    /// True once closed here, after the queue ended, or once it went away.
    pub fn is_closed(&self) -> bool {
        self.local.is_closed()
    }

    /// Deliveries pulled and not yet received on this host.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    /// True if nothing is pulled and waiting.
    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }

    /// The local buffer's counters, as kcoro's registry lists them under `nats:wq:<name>`.
    pub fn snapshot(&self) -> Snapshot {
        self.local.snapshot()
    }

    /// The bridge's counters for this end: delivered, redelivered, acks, naks, decode
    /// errors.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }
}
