//! Buffered MPMC channels across hosts: a JetStream work-queue stream.
//!
//! The stream holds at most `capacity` messages and discards new ones when full, so the
//! server refuses a publish to a full queue; the sender's publish job then retries with
//! backoff on the executor while the sending coroutine stays parked on its reply (no
//! worker blocks). Receivers share one durable pull consumer with explicit acks: each
//! message goes to one receiver, and one not acked within `ack_wait` is redelivered.
//! [`Capacity::UnlimitedBytes`] makes the unlimited kind instead: a limits stream bounded
//! by bytes that drops its oldest messages, so a send never waits.
//!
//! # Protocol
//! 1. *Send*: the caller encodes the value, gives it a `Nats-Msg-Id` (connection prefix +
//!    sequence), hands it to the executor through the end's named local channel, and
//!    parks on a one-slot reply channel.
//! 2. *Publish job*: publish, await the server's ack; "maximum messages exceeded" → wait
//!    (1 ms doubling to 100 ms) and retry; no ack in time (server down, reconnecting) →
//!    retry with the same id, which the server's duplicate window turns into a no-op if
//!    the first one was stored; stop when the caller left.
//! 3. *Pull*: one task per receiving end pulls batches and sends each decoded message
//!    into the end's named local channel with `send_async` (a full local buffer stops
//!    the pulling). A message that does not decode is terminated (never redelivered).
//! 4. *Ack*: [`Delivery::ack`] hands the ack to the end's ack task (fire and forget, as
//!    the NATS ack itself); an ack that is lost means a redelivery, never a loss.
//! 5. *Close*: [`WorkSender::close`] publishes the end marker. The receiver that pulls it
//!    stops pulling (unsubscribing its pull requests), naks the marker so the next
//!    receiver pulls it too, and closes its local channel: its users drain what was
//!    delivered before the marker, then get `Closed`. The client sends that UNSUB from a
//!    task of its own, so the nak can overtake it and the server hand the marker back to
//!    a pull request nobody reads any more; it would then wait out `ack_wait`. So a
//!    receiver idle for [`IDLE_CHECK`] asks the server whether the marker is all that is
//!    left (nothing undelivered, the marker the only unacked message) and closes too.
//!
//! # Invariants
//! - A send that returned `Ok` ⇒ the server stored the message (file storage: it
//!   survives a server restart).
//! - A delivery dropped unacked ⇒ the server redelivers it after `ack_wait`; one left in
//!   a cancelled local buffer is nak'ed at once.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{Acker, PublishMessage};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{AckKind, ErrorCode};
use bytes::Bytes;
use futures_util::StreamExt;
use kcoro::chan::{self, ChanError, Snapshot};
use kcoro::sync::CancelToken;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, check_name, decode, encode, is_end};
use crate::exec::{Reply, Wait, reply_pair};
use crate::recv::recv_family;
use crate::stats::{BridgeStats, Counters, bump};
use crate::{Nats, NatsError, SendError, Shared};

/// Longest wait between two publish attempts to a full stream.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// How many times a publish is retried while the server answers "no stream" (a server
/// that is restarting answers so until its JetStream has recovered); then it fails.
const STREAM_NOT_FOUND_RETRIES: u32 = 40;

/// Publish requests queued to the executor per sending end before senders wait.
const OUTBOX: usize = 1024;
/// How long a receiver's pull may stay silent before it asks whether the queue is down
/// to its end marker (see the module's protocol, step 5).
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// How many messages a queue holds, and what a full one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Buffered: at most this many messages; a full queue parks senders.
    Messages(usize),
    /// Unlimited: a limits stream of at most this many bytes that drops its oldest
    /// messages; sends never wait (kcoro's unlimited kind, bounded where a server must be).
    UnlimitedBytes(u64),
}

/// How a work queue is declared and consumed.
#[derive(Debug, Clone)]
pub struct WorkQueueOptions {
    /// Size and overflow behaviour.
    pub capacity: Capacity,
    /// How long a delivered message may stay unacked before it is redelivered.
    pub ack_wait: Duration,
    /// Messages pulled ahead per receiving end (its local buffer).
    pub prefetch: usize,
    /// The durable consumer's name; receivers with the same name share the messages.
    pub consumer: String,
    /// Keep the stream in memory instead of files (faster, lost on a server restart).
    pub memory_storage: bool,
    /// Replicas of the stream in a JetStream cluster.
    pub replicas: usize,
}

impl WorkQueueOptions {
    /// A queue of `capacity` messages with the defaults: 30 s ack wait, prefetch 64, file
    /// storage, one replica, consumer `workers`.
    pub fn new(capacity: usize) -> Self {
        WorkQueueOptions {
            capacity: Capacity::Messages(capacity),
            ack_wait: Duration::from_secs(30),
            prefetch: 64,
            consumer: "workers".to_string(),
            memory_storage: false,
            replicas: 1,
        }
    }
}

fn queue_subject(name: &str) -> String {
    format!("kcoro.wq.{name}")
}

impl Nats {
    /// Both ends of a work queue of `capacity` messages (see [`Nats::work_queue_with`]).
    pub fn work_queue<T>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<(WorkSender<T>, WorkReceiver<T>), NatsError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        self.work_queue_with(name, WorkQueueOptions::new(capacity))
    }

    /// Both ends of the work queue `name` (a stream of that name on subject
    /// `kcoro.wq.<name>`), declared if it does not exist.
    pub fn work_queue_with<T>(
        &self,
        name: &str,
        opts: WorkQueueOptions,
    ) -> Result<(WorkSender<T>, WorkReceiver<T>), NatsError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok((self.work_sender(name, &opts)?, self.work_receiver(name, &opts)?))
    }

    /// A sending end only (a producer host).
    pub fn work_sender<T>(&self, name: &str, opts: &WorkQueueOptions) -> Result<WorkSender<T>, NatsError>
    where
        T: Serialize + Send + 'static,
    {
        self.declare_stream(name, opts)?;
        let (out, out_rx) =
            chan::Builder::<PubReq>::buffered(OUTBOX).name(format!("nats:wq:{name}:out")).build();
        let counters = Arc::new(Counters::default());
        let (js, subject, c) = (self.shared.js.clone(), queue_subject(name), Arc::clone(&counters));
        self.shared.exec.spawn(async move {
            while let Ok(req) = out_rx.recv_async().await {
                tokio::spawn(publish_job(js.clone(), subject.clone(), req, Arc::clone(&c)));
            }
        })?;
        let core =
            SenderCore { shared: Arc::clone(&self.shared), out, counters, closed: AtomicBool::new(false) };
        Ok(WorkSender { core: Arc::new(core), _values: PhantomData })
    }

    /// A receiving end only (a consumer host): joins the durable consumer and starts
    /// pulling.
    pub fn work_receiver<T>(&self, name: &str, opts: &WorkQueueOptions) -> Result<WorkReceiver<T>, NatsError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        check_name("consumer name", &opts.consumer)?;
        let stream = self.declare_stream(name, opts)?;
        let config = pull::Config {
            durable_name: Some(opts.consumer.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: opts.ack_wait,
            filter_subject: queue_subject(name),
            ..Default::default()
        };
        let consumer_name = opts.consumer.clone();
        let consumer = self
            .shared
            .exec
            .call(Wait::FOREVER, {
                let stream = stream.clone();
                async move { stream.get_or_create_consumer(&consumer_name, config).await }
            })?
            .map_err(|e| NatsError::nats("create consumer", e))?;

        let counters = Arc::new(Counters::default());
        let (acks, acks_rx) = chan::unlimited::<(Acker, AckKind)>();
        let undelivered_acks = acks.clone();
        let (local_tx, local) = chan::Builder::<Delivery<T>>::buffered(opts.prefetch.max(1))
            .name(format!("nats:wq:{name}"))
            // Deliveries left in a cancelled buffer go back to the server at once.
            .on_undelivered(move |d: Delivery<T>| d.settle(&undelivered_acks, AckKind::Nak(None)))
            .build();
        let c = Arc::clone(&counters);
        self.shared.exec.spawn(async move {
            while let Ok((acker, kind)) = acks_rx.recv_async().await {
                let nak = matches!(kind, AckKind::Nak(_));
                match acker.ack_with(kind).await {
                    Ok(()) => bump(if nak { &c.naks } else { &c.acks }),
                    Err(_) => bump(&c.errors),
                }
            }
        })?;
        let puller = Puller {
            client: self.shared.client.clone(),
            consumer,
            stream,
            local: local_tx,
            acks,
            counters: Arc::clone(&counters),
            prefetch: opts.prefetch,
        };
        self.shared.exec.spawn(puller.run())?;
        Ok(WorkReceiver { local, counters, _shared: Arc::clone(&self.shared) })
    }

    fn declare_stream(&self, name: &str, opts: &WorkQueueOptions) -> Result<stream::Stream, NatsError> {
        check_name("stream name", name)?;
        let mut config = stream::Config {
            name: name.to_string(),
            subjects: vec![queue_subject(name)],
            storage: if opts.memory_storage { StorageType::Memory } else { StorageType::File },
            num_replicas: opts.replicas.max(1),
            ..Default::default()
        };
        match opts.capacity {
            Capacity::Messages(n) => {
                config.retention = RetentionPolicy::WorkQueue;
                config.discard = DiscardPolicy::New;
                config.max_messages = i64::try_from(n.max(1)).unwrap_or(i64::MAX);
            }
            Capacity::UnlimitedBytes(bytes) => {
                config.retention = RetentionPolicy::Limits;
                config.discard = DiscardPolicy::Old;
                config.max_bytes = i64::try_from(bytes.max(1)).unwrap_or(i64::MAX);
            }
        }
        let js = self.shared.js.clone();
        self.shared
            .exec
            .call(Wait::FOREVER, async move { crate::setup::stream(&js, config).await })?
            .map_err(|e| NatsError::nats("create stream", e))
    }
}

/// One publish handed to the executor.
struct PubReq {
    payload: Bytes,
    headers: Option<async_nats::HeaderMap>,
    id: String,
    /// Try-send: one attempt, a full stream is `WouldBlock`.
    once: bool,
    reply: Reply<Result<(), NatsError>>,
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

fn classify(e: &async_nats::jetstream::context::PublishError) -> Retry {
    match e.kind() {
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
            Retry::Unknown
        }
        PublishErrorKind::StreamNotFound => Retry::NoStream,
        _ => {
            let server =
                std::error::Error::source(e).and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
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

/// Step 2 of the protocol: publish until stored, refused for good, or abandoned.
async fn publish_job(
    js: async_nats::jetstream::Context,
    subject: String,
    req: PubReq,
    counters: Arc<Counters>,
) {
    let mut backoff = Duration::from_millis(1);
    let mut no_stream = 0;
    loop {
        if req.reply.is_abandoned() {
            return;
        }
        let mut publish = PublishMessage::build().payload(req.payload.clone());
        if let Some(h) = &req.headers {
            publish = publish.headers(h.clone());
        }
        let publish = publish.message_id(&req.id);
        let attempt = async {
            let ack = js.send_publish(subject.clone(), publish).await?;
            ack.await
        };
        let err = match attempt.await {
            Ok(ack) => {
                bump(if ack.duplicate { &counters.duplicates } else { &counters.published });
                req.reply.send(Ok(()));
                return;
            }
            Err(e) => e,
        };
        let failure = match classify(&err) {
            Retry::Full if req.once => Some(NatsError::Chan(ChanError::WouldBlock)),
            Retry::Full => {
                bump(&counters.full_retries);
                None
            }
            Retry::Unknown if req.once => Some(NatsError::nats("publish", err)),
            Retry::Unknown => {
                bump(&counters.timeout_retries);
                None
            }
            Retry::NoStream if no_stream < STREAM_NOT_FOUND_RETRIES && !req.once => {
                no_stream += 1;
                bump(&counters.timeout_retries);
                None
            }
            Retry::NoStream | Retry::Fail => Some(NatsError::nats("publish", err)),
        };
        if let Some(e) = failure {
            bump(&counters.errors);
            req.reply.send(Err(e));
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

struct SenderCore {
    shared: Arc<Shared>,
    out: chan::Sender<PubReq>,
    counters: Arc<Counters>,
    closed: AtomicBool,
}

impl SenderCore {
    /// Steps 1 and 2 for an encoded payload; waits as `wait` allows.
    fn publish(
        &self,
        payload: Bytes,
        headers: Option<async_nats::HeaderMap>,
        once: bool,
        wait: Wait<'_>,
    ) -> Result<(), NatsError> {
        self.shared.check_payload(payload.len())?;
        let (reply, rx) = reply_pair();
        let req = PubReq { payload, headers, id: self.shared.next_msg_id(), once, reply };
        self.out.send_with(req, wait.deadline, wait.token).map_err(|e| match e.kind() {
            ChanError::Closed => NatsError::Chan(ChanError::Closed),
            other => NatsError::Chan(other),
        })?;
        match rx.recv_with(wait.deadline, wait.token) {
            Ok(r) => r,
            Err(ChanError::Closed) => Err(NatsError::Shutdown),
            Err(e) => Err(NatsError::Chan(e)),
        }
    }
}

/// The sending end of a work queue. Cloneable; clones share the outbox and counters.
pub struct WorkSender<T> {
    core: Arc<SenderCore>,
    _values: PhantomData<fn(T)>,
}

impl<T> Clone for WorkSender<T> {
    fn clone(&self) -> Self {
        WorkSender { core: Arc::clone(&self.core), _values: PhantomData }
    }
}

impl<T: Serialize> WorkSender<T> {
    fn send_inner(&self, value: T, once: bool, wait: Wait<'_>) -> Result<(), SendError<T>> {
        if self.core.closed.load(Relaxed) {
            return Err(SendError::new(NatsError::Chan(ChanError::Closed), value));
        }
        let payload = match encode(&value) {
            Ok(p) => p,
            Err(e) => return Err(SendError::new(e, value)),
        };
        self.core.publish(payload, None, once, wait).map_err(|e| SendError::new(e, value))
    }

    /// Sends, parking while the stream is full; returns once the server stored the
    /// message. While the server is unreachable it keeps retrying (the client
    /// reconnects); use [`send_timeout`](Self::send_timeout) to bound that.
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
    /// Closes the queue: publishes the end marker (receivers drain up to it, then get
    /// `Closed`) and fails later sends from this end. Senders on other hosts are not
    /// stopped (see docs/NATS.md). Returns `false` if this end was already closed.
    pub fn close(&self) -> Result<bool, NatsError> {
        if self.core.closed.swap(true, Relaxed) {
            return Ok(false);
        }
        self.core.publish(Bytes::new(), Some(codec::end_headers()), false, Wait::FOREVER)?;
        bump(&self.core.counters.end_markers);
        self.core.out.close();
        Ok(true)
    }

    /// True once [`close`](Self::close) was called on this end.
    pub fn is_closed(&self) -> bool {
        self.core.closed.load(Relaxed)
    }

    /// The local outbox's counters (sends handed to the executor), as kcoro's registry
    /// lists them under `nats:wq:<name>:out`.
    pub fn snapshot(&self) -> Snapshot {
        self.core.out.snapshot()
    }

    /// The bridge's counters for this end: stored, full retries, duplicates, errors.
    pub fn stats(&self) -> BridgeStats {
        self.core.counters.snapshot()
    }
}

/// A value taken from a work queue, to be acked once handled. Dereferences to the value.
/// Dropped unacked, it is redelivered after the queue's `ack_wait`.
pub struct Delivery<T> {
    value: T,
    acker: Acker,
    acks: chan::Sender<(Acker, AckKind)>,
    delivered: u64,
    stream_sequence: u64,
}

impl<T> Delivery<T> {
    fn settle(self, acks: &chan::Sender<(Acker, AckKind)>, kind: AckKind) {
        // Closed only when the bridge shuts down: the server redelivers after ack_wait.
        let _ = acks.send((self.acker, kind));
    }

    fn hand_over(self, kind: AckKind) -> Result<T, NatsError> {
        let Delivery { value, acker, acks, .. } = self;
        acks.send((acker, kind)).map_err(|_| NatsError::Shutdown)?;
        Ok(value)
    }

    /// Acknowledges: the message is done and leaves the queue. Returns the value.
    pub fn ack(self) -> Result<T, NatsError> {
        self.hand_over(AckKind::Ack)
    }

    /// Negative ack: redeliver now (to any receiver). Returns the value.
    pub fn nak(self) -> Result<T, NatsError> {
        self.hand_over(AckKind::Nak(None))
    }

    /// Terminates: never redeliver, though not handled. Returns the value.
    pub fn term(self) -> Result<T, NatsError> {
        self.hand_over(AckKind::Term)
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

impl<T> Deref for Delivery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// What the puller does after a message.
enum Step {
    Next,
    /// This end is closed or dropped here.
    Stop,
    /// The end marker came: it goes back to the queue for the other receivers.
    End(Box<Acker>),
}

/// Step 3: pulls messages into the end's local channel.
struct Puller<T> {
    client: async_nats::Client,
    consumer: async_nats::jetstream::consumer::Consumer<pull::Config>,
    stream: stream::Stream,
    local: chan::Sender<Delivery<T>>,
    acks: chan::Sender<(Acker, AckKind)>,
    counters: Arc<Counters>,
    prefetch: usize,
}

impl<T: DeserializeOwned + Send + 'static> Puller<T> {
    async fn run(self) {
        while !self.local.is_closed() {
            let batch = self.prefetch.max(1);
            let stream = self
                .consumer
                .stream()
                .max_messages_per_batch(batch)
                .expires(Duration::from_secs(5))
                .heartbeat(Duration::from_secs(2))
                .messages()
                .await;
            let mut messages = match stream {
                Ok(s) => s,
                Err(_) => {
                    // Server down or consumer not ready: the client reconnects meanwhile.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            loop {
                let item = match tokio::time::timeout(IDLE_CHECK, messages.next()).await {
                    Ok(Some(item)) => item,
                    // The pull ended (server restarted, consumer gone): pull again.
                    Ok(None) => break,
                    Err(_idle) => {
                        if self.only_the_end_marker_is_left().await {
                            bump(&self.counters.end_markers);
                            self.local.close();
                            return;
                        }
                        continue;
                    }
                };
                let Ok(msg) = item else {
                    // Missed heartbeats, a failed pull: the stream re-pulls by itself.
                    continue;
                };
                match self.deliver(msg).await {
                    Step::Next => {}
                    Step::Stop => return,
                    Step::End(marker) => {
                        // Unsubscribe our pull requests before the marker goes back, so
                        // the server hands it to another receiver, not to our dead inbox.
                        drop(messages);
                        let _ = self.client.flush().await;
                        match marker.ack_with(AckKind::Nak(None)).await {
                            Ok(()) => bump(&self.counters.naks),
                            Err(_) => bump(&self.counters.errors),
                        }
                        self.local.close();
                        return;
                    }
                }
            }
        }
    }

    /// True if the queue holds nothing but the end marker, delivered and unacked
    /// (markers are never acked): nothing undelivered, one message pending, and the
    /// last one delivered is a marker. Messages sent after the marker, or unacked ones
    /// that may yet be redelivered, keep it false.
    async fn only_the_end_marker_is_left(&self) -> bool {
        let Ok(info) = self.consumer.get_info().await else { return false };
        if info.num_pending != 0 || info.num_ack_pending != 1 {
            return false;
        }
        match self.stream.get_raw_message(info.delivered.stream_sequence).await {
            Ok(last) => is_end(Some(&last.headers)),
            Err(_) => false,
        }
    }

    /// Hands one message to the local channel.
    async fn deliver(&self, msg: async_nats::jetstream::Message) -> Step {
        let (delivered, stream_sequence) =
            msg.info().map_or((1, 0), |i| (i.delivered.max(1) as u64, i.stream_sequence));
        bump(&self.counters.delivered);
        if delivered > 1 {
            bump(&self.counters.redelivered);
        }
        let (msg, acker) = msg.split();
        if is_end(msg.headers.as_ref()) {
            bump(&self.counters.end_markers);
            return Step::End(Box::new(acker));
        }
        let value = match decode::<T>(&msg.payload) {
            Ok(v) => v,
            Err(_) => {
                bump(&self.counters.decode_errors);
                let _ = self.acks.send((acker, AckKind::Term));
                return Step::Next;
            }
        };
        let d = Delivery { value, acker, acks: self.acks.clone(), delivered, stream_sequence };
        match self.local.send_async(d).await {
            Ok(()) => Step::Next,
            Err(e) => {
                e.into_inner().settle(&self.acks, AckKind::Nak(None));
                Step::Stop
            }
        }
    }
}

/// The receiving end of a work queue. Cloneable; clones share one local buffer.
pub struct WorkReceiver<T> {
    local: chan::Receiver<Delivery<T>>,
    counters: Arc<Counters>,
    _shared: Arc<Shared>,
}

impl<T> Clone for WorkReceiver<T> {
    fn clone(&self) -> Self {
        WorkReceiver {
            local: self.local.clone(),
            counters: Arc::clone(&self.counters),
            _shared: Arc::clone(&self._shared),
        }
    }
}

recv_family!(WorkReceiver<T> => Delivery<T>);

impl<T> WorkReceiver<T> {
    /// Receives and acks at once (at-most-once handling from here on: a crash after this
    /// returns loses the value).
    pub fn recv_auto_ack(&self) -> Result<T, NatsError> {
        self.recv()?.ack()
    }

    /// Stops receiving on this host: buffered deliveries are nak'ed back to the queue.
    pub fn close(&self) -> bool {
        self.local.cancel()
    }

    /// True once closed here or after the end marker.
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

    /// The bridge's counters for this end: delivered, redelivered, acks, naks.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }
}
