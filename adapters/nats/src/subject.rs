//! Fan-out across hosts: core NATS subjects, at-most-once.
//!
//! A [`Publisher`] hands each encoded value to the executor through its named local
//! outbox (a buffered kcoro channel: a send parks only while the outbox is full) and one
//! task publishes them in order. Every [`Subscriber`] of the subject (on any host) gets
//! every value published after it subscribed, through its own named local buffer of
//! payloads as they arrived; the receiving caller decodes them, so the executor's thread,
//! which every end of the connection shares, only moves bytes. Nothing is stored: a
//! subscriber that is not connected, or too slow (the client's buffer overflows), misses
//! values.
//!
//! # Protocol
//! 1. *Subscribe*: the subscription is registered and flushed before
//!    [`Nats::subscriber`] returns, so every value published after that reaches it.
//! 2. *Publish*: the publishing task publishes in outbox order; [`Publisher::flush`]
//!    goes through the same outbox and returns once everything before it reached the
//!    server.
//! 3. *Close*: [`Publisher::close`] publishes the end marker; each subscriber that sees
//!    it unsubscribes and closes its local buffer (its users drain, then get `Closed`).

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_nats::Subject;
use bytes::Bytes;
use futures_util::StreamExt;
use kcoro::chan::{self, ChanError, Snapshot};
use kcoro::sync::CancelToken;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{check_subject, decode, encode, end_headers, is_end};
use crate::exec::{Reply, Wait, reply_pair};
use crate::stats::{BridgeStats, Counters, bump};
use crate::{Nats, NatsError, SendError, Shared};

/// Values queued to the executor per publisher before senders wait.
const OUTBOX: usize = 1024;

/// Values buffered per subscriber on this host.
const INBOX: usize = 1024;

enum Out {
    Value(Bytes),
    End,
    Flush(Reply<Result<(), NatsError>>),
}

impl Nats {
    /// A publisher and a subscriber of `subject` (see [`Nats::publisher`] and
    /// [`Nats::subscriber`]).
    pub fn subject<T>(&self, subject: &str) -> Result<(Publisher<T>, Subscriber<T>), NatsError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok((self.publisher(subject)?, self.subscriber(subject)?))
    }

    /// A publisher of `subject` (no wildcards).
    pub fn publisher<T: Serialize>(&self, subject: &str) -> Result<Publisher<T>, NatsError> {
        check_subject(subject, false)?;
        let (out, out_rx) =
            chan::Builder::<Out>::buffered(OUTBOX).name(format!("nats:sub:{subject}:out")).build();
        let counters = Arc::new(Counters::default());
        // Made once: a `Subject` clones by a reference count, a `String` by a copy.
        let (client, subj, c) = (self.shared.client.clone(), Subject::from(subject), Arc::clone(&counters));
        self.shared.exec.spawn(async move {
            while let Ok(item) = out_rx.recv_async().await {
                match item {
                    Out::Value(payload) => match client.publish(subj.clone(), payload).await {
                        Ok(()) => bump(&c.published),
                        Err(_) => bump(&c.errors),
                    },
                    Out::End => {
                        match client.publish_with_headers(subj.clone(), end_headers(), Bytes::new()).await {
                            Ok(()) => bump(&c.end_markers),
                            Err(_) => bump(&c.errors),
                        }
                    }
                    Out::Flush(reply) => {
                        reply.send(client.flush().await.map_err(|e| NatsError::nats("flush", e)))
                    }
                }
            }
        })?;
        let core =
            PublisherCore { shared: Arc::clone(&self.shared), out, counters, closed: AtomicBool::new(false) };
        Ok(Publisher { core: Arc::new(core), _values: PhantomData })
    }

    /// A subscriber of `subject` (wildcards allowed), receiving what is published from now
    /// on.
    pub fn subscriber<T>(&self, subject: &str) -> Result<Subscriber<T>, NatsError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        check_subject(subject, true)?;
        let client = self.shared.client.clone();
        let subj = subject.to_string();
        let mut sub = self
            .shared
            .exec
            .call(Wait::FOREVER, async move {
                let sub = client.subscribe(subj).await?;
                crate::setup::settled(&client).await?;
                Ok::<_, async_nats::Error>(sub)
            })?
            .map_err(|e| NatsError::nats("subscribe", e))?;
        let (local_tx, local) =
            chan::Builder::<Bytes>::buffered(INBOX).name(format!("nats:sub:{subject}")).build();
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        self.shared.exec.spawn(async move {
            while let Some(msg) = sub.next().await {
                bump(&c.delivered);
                if is_end(msg.headers.as_ref()) {
                    bump(&c.end_markers);
                    break;
                }
                if local_tx.send_async(msg.payload).await.is_err() {
                    break;
                }
            }
            let _ = sub.unsubscribe().await;
            local_tx.close();
        })?;
        Ok(Subscriber { local, counters, _shared: Arc::clone(&self.shared), _values: PhantomData })
    }
}

struct PublisherCore {
    shared: Arc<Shared>,
    out: chan::Sender<Out>,
    counters: Arc<Counters>,
    closed: AtomicBool,
}

/// The publishing end of a core subject. Cloneable; clones share the outbox.
pub struct Publisher<T> {
    core: Arc<PublisherCore>,
    _values: PhantomData<fn(T)>,
}

impl<T> Clone for Publisher<T> {
    fn clone(&self) -> Self {
        Publisher { core: Arc::clone(&self.core), _values: PhantomData }
    }
}

fn outbox_error(e: ChanError) -> NatsError {
    NatsError::Chan(e)
}

impl<T: Serialize + 'static> Publisher<T> {
    fn send_inner(&self, value: T, wait: Wait<'_>, try_only: bool) -> Result<(), SendError<T>> {
        if self.core.closed.load(Relaxed) {
            return Err(SendError::new(NatsError::Chan(ChanError::Closed), value));
        }
        let payload = match encode(&value).and_then(|p| self.core.shared.check_payload(p.len()).map(|()| p)) {
            Ok(p) => p,
            Err(e) => return Err(SendError::new(e, value)),
        };
        let sent = if try_only {
            self.core.out.try_send(Out::Value(payload))
        } else {
            self.core.out.send_with(Out::Value(payload), wait.deadline, wait.token)
        };
        sent.map_err(|e| SendError::new(outbox_error(e.kind()), value))
    }

    /// Publishes, parking only while the outbox is full. At most once: returning `Ok`
    /// means queued to the client, not received by anyone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::FOREVER, false)
    }

    /// Publishes if the outbox has room; else `WouldBlock`.
    pub fn try_send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::FOREVER, true)
    }

    /// Publishes, waiting at most `timeout` for outbox room.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::timeout(timeout), false)
    }

    /// Publishes, waiting until `deadline` at most for outbox room.
    pub fn send_deadline(&self, value: T, deadline: Instant) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::new(Some(deadline), None), false)
    }

    /// Publishes, giving up with `Canceled` when `token` fires.
    pub fn send_cancellable(&self, value: T, token: &CancelToken) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::new(None, Some(token)), false)
    }

    /// Publishes with a deadline and a token (cancellation wins).
    pub fn send_with(
        &self,
        value: T,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
    ) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::new(deadline, token), false)
    }
}

impl<T> Publisher<T> {
    /// Waits until everything this publisher sent before reached the server.
    pub fn flush(&self) -> Result<(), NatsError> {
        let (reply, mut rx) = reply_pair();
        self.core.out.send(Out::Flush(reply)).map_err(|e| outbox_error(e.kind()))?;
        rx.recv().map_err(|_| NatsError::Shutdown)?
    }

    /// Closes the subject: publishes the end marker after everything sent before (every
    /// subscriber drains up to it, then gets `Closed`) and fails later sends from this
    /// end. Returns `false` if already closed.
    pub fn close(&self) -> Result<bool, NatsError> {
        if self.core.closed.swap(true, Relaxed) {
            return Ok(false);
        }
        self.core.out.send(Out::End).map_err(|e| outbox_error(e.kind()))?;
        self.flush()?;
        Ok(true)
    }

    /// True once closed here.
    pub fn is_closed(&self) -> bool {
        self.core.closed.load(Relaxed)
    }

    /// The outbox's counters, as kcoro's registry lists them under
    /// `nats:sub:<subject>:out`.
    pub fn snapshot(&self) -> Snapshot {
        self.core.out.snapshot()
    }

    /// The bridge's counters: published, errors, end markers.
    pub fn stats(&self) -> BridgeStats {
        self.core.counters.snapshot()
    }
}

/// A subscriber of a core subject on this host. Cloneable; clones share one buffer (each
/// value goes to one of them). For another independent copy of the stream, subscribe
/// again.
///
/// The buffer holds payloads as they arrived; each receive decodes one on the caller. A
/// payload that is not a value of `T` (another program's publish, another type) is counted
/// in [`BridgeStats::decode_errors`] and skipped: the receive goes on to the next one,
/// within the same deadline.
pub struct Subscriber<T> {
    local: chan::Receiver<Bytes>,
    counters: Arc<Counters>,
    _shared: Arc<Shared>,
    _values: PhantomData<fn() -> T>,
}

impl<T> Clone for Subscriber<T> {
    fn clone(&self) -> Self {
        Subscriber {
            local: self.local.clone(),
            counters: Arc::clone(&self.counters),
            _shared: Arc::clone(&self._shared),
            _values: PhantomData,
        }
    }
}

impl<T: DeserializeOwned + 'static> Subscriber<T> {
    /// The first payload `next` yields that decodes as a `T`; the others are counted.
    fn decoded(&self, mut next: impl FnMut() -> Result<Bytes, ChanError>) -> Result<T, NatsError> {
        loop {
            if let Some(value) = self.value_of(&next().map_err(NatsError::Chan)?) {
                return Ok(value);
            }
        }
    }

    fn value_of(&self, payload: &Bytes) -> Option<T> {
        let value = decode(payload).ok();
        if value.is_none() {
            bump(&self.counters.decode_errors);
        }
        value
    }

    /// Receives, waiting for one; `Closed` after the end marker, once drained.
    pub fn recv(&self) -> Result<T, NatsError> {
        self.decoded(|| self.local.recv())
    }

    /// Receives one already delivered here; else `WouldBlock`.
    pub fn try_recv(&self) -> Result<T, NatsError> {
        self.decoded(|| self.local.try_recv())
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, NatsError> {
        self.recv_with(Instant::now().checked_add(timeout), None)
    }

    /// Receives, waiting until `deadline` at most.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, NatsError> {
        self.recv_with(Some(deadline), None)
    }

    /// Receives, giving up with `Canceled` when `token` fires.
    pub fn recv_cancellable(&self, token: &CancelToken) -> Result<T, NatsError> {
        self.recv_with(None, Some(token))
    }

    /// Receives with a deadline and a token (cancellation wins).
    pub fn recv_with(&self, deadline: Option<Instant>, token: Option<&CancelToken>) -> Result<T, NatsError> {
        self.decoded(|| self.local.recv_with(deadline, token))
    }

    /// A future receiving one, for async code on any executor.
    pub async fn recv_async(&self) -> Result<T, ChanError> {
        loop {
            if let Some(value) = self.value_of(&self.local.recv_async().await?) {
                return Ok(value);
            }
        }
    }
}

impl<T> Subscriber<T> {
    /// Stops receiving on this host (buffered values are dropped).
    pub fn close(&self) -> bool {
        self.local.cancel()
    }

    /// True once closed here or after the end marker.
    pub fn is_closed(&self) -> bool {
        self.local.is_closed()
    }

    /// The local buffer's counters, as kcoro's registry lists them under
    /// `nats:sub:<subject>`.
    pub fn snapshot(&self) -> Snapshot {
        self.local.snapshot()
    }

    /// The bridge's counters: delivered, decode errors, end markers.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }
}
