//! Buffered MPMC channels across hosts: a JetStream work-queue stream.
//!
//! The stream holds at most `capacity` messages and discards new ones when full, so the
//! server refuses a publish to a full queue; the sender then retries with backoff, parked
//! between attempts (no worker blocks). Receivers share one durable pull consumer with explicit acks: each
//! message goes to one receiver, and one not acked within `ack_wait` is redelivered.
//! [`Capacity::UnlimitedBytes`] makes the unlimited kind instead: a limits stream bounded
//! by bytes that drops its oldest messages, so a send never waits.
//!
//! # Protocol
//! 1. *Open*: a sending end records itself open in the queue's state (see [`state`]); a
//!    receiving end notes the latest close it finds, which is history to it unless it is
//!    still draining.
//! 2. *Send*: the caller encodes the value (a frame, see `codec`), gives it a
//!    `Nats-Msg-Id` (connection prefix + sequence) and publishes it itself: the publish
//!    future is polled on the caller inside the executor's tokio context
//!    (`kcoro::compat::tokio`), so the hand-off to the client and the server's ack reach
//!    the sending coroutine directly, with no task or reply channel between.
//! 3. *Publish*: publish, await the server's ack; "maximum messages exceeded" → wait
//!    (1 ms doubling to 100 ms) and retry; no ack in time (server down, reconnecting) →
//!    retry with the same id, which the server's duplicate window turns into a no-op if
//!    the first one was stored; "no stream" for [`GONE_AFTER`] → the stream is gone; a
//!    caller that gives up (deadline, cancel token) drops the publish, which stops it.
//! 4. *Pull*: one task per receiving end pulls batches and sends each decoded message
//!    into the end's named local channel with `send_async` (a full local buffer stops
//!    the pulling). A message that does not decode is terminated (never redelivered).
//! 5. *Ack*: [`Delivery::ack`] sends the ack as a request and returns once the server
//!    answered; a delivery dropped unacked, or left in a cancelled local buffer, is nak'ed
//!    or redelivered after `ack_wait`.
//! 6. *Close*: [`WorkSender::close`] removes the end's open record, then records
//!    `closed`. A receiver idle for [`IDLE_CHECK`] reads, in this order, the close record,
//!    the open senders and the consumer; when a close it has not seen is recorded, no
//!    sender is open and the consumer has nothing pending and nothing unacked, it records
//!    `drained` (conditional on the close record it read, so one end records it) and
//!    closes its local channel: its users drain it, then get `Closed`. Every other
//!    receiver finds `drained` at its next check. The order of the reads matters: a
//!    sender's messages are stored before its close record, so a consumer read after the
//!    close record counts them.
//! 7. *Gone*: a receiver whose consumer or stream the server has not known for
//!    [`GONE_AFTER`] (deleted, or a memory-storage server restarted) fails its users with
//!    [`NatsError::Gone`], as a send to a stream that is gone does.
//!
//! # Invariants
//! - A send that returned `Ok` ⇒ the server stored the message (file storage: it
//!   survives a server restart).
//! - A receiver returns `Closed` ⇒ a close was recorded after it opened (or while it
//!   drained), no sender was open, and every message stored before was acked.
//! - An `ack` that returned `Ok` ⇒ the server took the ack.

mod receiver;
mod sender;
pub(crate) mod state;

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::check_name;
use crate::exec::Wait;
use crate::{Nats, NatsError};

pub use receiver::{Delivery, WorkReceiver};
pub use sender::WorkSender;
use state::QueueState;

/// How long the server may answer "no such stream" or "no such consumer" before an end
/// reports the queue gone. A restarting server answers so until its JetStream has
/// recovered its streams, which takes a moment, not this long.
pub const GONE_AFTER: Duration = Duration::from_secs(5);

/// How long a receiver's pull may stay silent before it checks whether the queue has
/// ended or is gone (see the module's protocol, steps 6 and 7).
pub const IDLE_CHECK: Duration = Duration::from_millis(500);

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
    /// Hand a message that does not decode to a receiver as a [`NatsError::Codec`] (it is
    /// terminated either way, and counted in `decode_errors`); by default it is skipped.
    pub undecodable_as_errors: bool,
    /// Give every publish a `Nats-Msg-Id` (on by default), so that a publish retried after
    /// its acknowledgement was lost (a timeout, a reconnect) is dropped by the server as a
    /// duplicate. It costs the server a quarter more CPU per message (measured with
    /// nats-server 2.9 on `kcoro-bench nats`'s `wq_64`); without it a retried publish may
    /// store its message twice, and a receiver sees it twice.
    pub dedupe_ids: bool,
}

impl WorkQueueOptions {
    /// A queue of `capacity` messages with the defaults: 30 s ack wait, prefetch 64, file
    /// storage, one replica, consumer `workers`, undecodable messages skipped, publishes
    /// with dedupe ids.
    pub fn new(capacity: usize) -> Self {
        WorkQueueOptions {
            capacity: Capacity::Messages(capacity),
            ack_wait: Duration::from_secs(30),
            prefetch: 64,
            consumer: "workers".to_string(),
            memory_storage: false,
            replicas: 1,
            undecodable_as_errors: false,
            dedupe_ids: true,
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

    /// A sending end only (a producer host). It counts as open, holding the queue's end
    /// back, until it is closed or its last handle drops.
    pub fn work_sender<T>(&self, name: &str, opts: &WorkQueueOptions) -> Result<WorkSender<T>, NatsError>
    where
        T: Serialize + Send + 'static,
    {
        self.declare_stream(name, opts)?;
        let state = self.queue_state(name, opts)?;
        sender::open(&self.shared, name, state, opts.dedupe_ids)
    }

    /// A receiving end only (a consumer host): joins the durable consumer and starts
    /// pulling.
    pub fn work_receiver<T>(&self, name: &str, opts: &WorkQueueOptions) -> Result<WorkReceiver<T>, NatsError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        check_name("consumer name", &opts.consumer)?;
        let stream = self.declare_stream(name, opts)?;
        let state = self.queue_state(name, opts)?;
        let config = pull::Config {
            durable_name: Some(opts.consumer.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: opts.ack_wait,
            filter_subject: queue_subject(name),
            ..Default::default()
        };
        let consumer_name = opts.consumer.clone();
        let consumer_stream = stream.clone();
        let consumer = self
            .shared
            .exec
            .call(Wait::FOREVER, async move { stream.get_or_create_consumer(&consumer_name, config).await })?
            .map_err(|e| NatsError::nats("create consumer", e))?;
        receiver::open(&self.shared, name, opts, consumer, consumer_stream, state)
    }

    /// Closes the work queue `name` for every sender, open or dead: its receivers end once
    /// every message is acked. For a queue whose sender died without closing (a killed
    /// producer stays counted open); a sender that is alive keeps sending, and its
    /// messages hold the end back as they are stored.
    pub fn close_work_queue(&self, name: &str) -> Result<(), NatsError> {
        check_name("stream name", name)?;
        let state = self.queue_state(name, &WorkQueueOptions::new(1))?;
        self.shared
            .exec
            .call(Wait::FOREVER, async move { state.close_all().await })?
            .map_err(|e| NatsError::nats("close work queue", e))
    }

    fn queue_state(&self, name: &str, opts: &WorkQueueOptions) -> Result<QueueState, NatsError> {
        let (js, name, replicas) = (self.shared.js.clone(), name.to_string(), opts.replicas);
        self.shared
            .exec
            .call(Wait::FOREVER, async move { QueueState::open(&js, &name, replicas).await })?
            .map_err(|e| NatsError::nats("create the queue state stream", e))
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
