//! Fan-out across hosts: core NATS subjects, at-most-once.
//!
//! A [`Publisher`] hands each encoded value to the client from the caller: the publish
//! future (a send on the client's command queue, which needs no tokio context) is polled
//! on the sending coroutine, so a send parks only while that queue is full. Every
//! [`Subscriber`] of the subject (on any host) gets every value published after it
//! subscribed: its receiving callers take the client's subscription in turn (one polls it,
//! the others wait in line behind a lock) and decode on their own thread. So the
//! executor's thread, which every end of the connection shares, only reads, parses and
//! writes: an extra hop there per message (an outbox task, a forwarding task) made it the
//! bottleneck, and let a fast publisher outrun the subscription it also served. Nothing
//! is stored: a subscriber that is not connected, or too slow (the client's buffer of
//! 65 536 messages overflows), misses values.
//!
//! # Protocol
//! 1. *Subscribe*: the subscription is registered and flushed before
//!    [`Nats::subscriber`] returns, so every value published after that reaches it.
//! 2. *Publish*: a publish is queued to the client in the caller's order (the client's
//!    command queue is FIFO); [`Publisher::flush`] goes through the same queue and returns
//!    once everything before it reached the server.
//! 3. *Close*: [`Publisher::close`] publishes the end marker; a subscriber whose receiver
//!    takes it unsubscribes, and every later receive there gets `Closed` (the values
//!    before the marker were taken first: the subscription is FIFO).

use std::future::poll_fn;
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_nats::Subject;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::task::AtomicWaker;
use kcoro::chan::ChanError;
use kcoro::sync::CancelToken;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{check_subject, decode, encode, end_headers, end_payload, is_end};
use crate::exec::{Wait, poll_once, wait_plain};
use crate::stats::{BridgeStats, Counters, bump};
use crate::{Nats, NatsError, SendError, Shared};

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
        let core = PublisherCore {
            shared: Arc::clone(&self.shared),
            // Made once, interned (see `intern`): cloned per publish by a pointer's copy.
            subject: crate::intern::publish_subject(subject),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        };
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
        let sub = self
            .shared
            .exec
            .call(Wait::FOREVER, async move {
                let sub = client.subscribe(subj).await?;
                crate::setup::settled(&client).await?;
                Ok::<_, async_nats::Error>(sub)
            })?
            .map_err(|e| NatsError::nats("subscribe", e))?;
        let core = SubscriberCore {
            shared: Arc::clone(&self.shared),
            incoming: tokio::sync::Mutex::new(Incoming { sub: Some(sub) }),
            closing: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            closing_waker: AtomicWaker::new(),
            counters: Counters::default(),
        };
        Ok(Subscriber { core: Arc::new(core), _values: PhantomData })
    }
}

struct PublisherCore {
    shared: Arc<Shared>,
    subject: Subject,
    counters: Counters,
    closed: AtomicBool,
}

impl PublisherCore {
    /// Hands `payload` (with `headers`) to the client, as `wait` allows, or only if the
    /// client's queue has room (`try_only`).
    fn publish(
        &self,
        payload: Bytes,
        headers: Option<async_nats::HeaderMap>,
        wait: Wait<'_>,
        try_only: bool,
    ) -> Result<(), NatsError> {
        let (client, subject) = (&self.shared.client, self.subject.clone());
        let handed = match headers {
            // The end marker: rare, so its larger future stays off the values' path.
            Some(h) => wait_plain(wait, client.publish_with_headers(subject, h, payload))?,
            None if try_only => {
                poll_once(client.publish(subject, payload)).ok_or(NatsError::Chan(ChanError::WouldBlock))?
            }
            // Pinned where it is made: the future (a few hundred bytes) is not copied again
            // on its way into the wait, which showed as `memmove` in profiles.
            None => wait_plain(wait, pin!(client.publish(subject, payload)))?,
        };
        handed.map_err(|e| {
            bump(&self.counters.errors);
            NatsError::nats("publish", e)
        })
    }
}

/// The publishing end of a core subject. Cloneable; clones share the counters and the
/// closed state.
pub struct Publisher<T> {
    core: Arc<PublisherCore>,
    _values: PhantomData<fn(T)>,
}

impl<T> Clone for Publisher<T> {
    fn clone(&self) -> Self {
        Publisher { core: Arc::clone(&self.core), _values: PhantomData }
    }
}

impl<T: Serialize + 'static> Publisher<T> {
    fn send_inner(&self, value: T, wait: Wait<'_>, try_only: bool) -> Result<(), SendError<T>> {
        if self.core.closed.load(Relaxed) {
            return Err(SendError::new(NatsError::Chan(ChanError::Closed), value));
        }
        let sent = encode(&value)
            .and_then(|p| self.core.shared.check_payload(p.len()).map(|()| p))
            .and_then(|p| self.core.publish(p, None, wait, try_only));
        match sent {
            Ok(()) => {
                bump(&self.core.counters.published);
                Ok(())
            }
            Err(e) => Err(SendError::new(e, value)),
        }
    }

    /// Publishes, parking only while the client's queue is full. At most once: returning
    /// `Ok` means queued to the client, not received by anyone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::FOREVER, false)
    }

    /// Publishes if the client's queue has room; else `WouldBlock`.
    pub fn try_send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::FOREVER, true)
    }

    /// Publishes, waiting at most `timeout` for room in the client's queue.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_inner(value, Wait::timeout(timeout), false)
    }

    /// Publishes, waiting until `deadline` at most for room in the client's queue.
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
    /// Waits until everything sent before (by any end of this connection) reached the
    /// server.
    pub fn flush(&self) -> Result<(), NatsError> {
        self.flush_with(Wait::FOREVER)
    }

    /// [`flush`](Self::flush), giving up with `Timeout` after `timeout` (a server that is
    /// stalled or away takes no bytes, and a plain flush waits for it).
    pub fn flush_timeout(&self, timeout: Duration) -> Result<(), NatsError> {
        self.flush_with(Wait::timeout(timeout))
    }

    fn flush_with(&self, wait: Wait<'_>) -> Result<(), NatsError> {
        wait_plain(wait, self.core.shared.client.flush())?.map_err(|e| NatsError::nats("flush", e))
    }

    /// Closes the subject: publishes the end marker after everything sent before (every
    /// subscriber drains up to it, then gets `Closed`) and fails later sends from this
    /// end. Returns `false` if already closed.
    pub fn close(&self) -> Result<bool, NatsError> {
        if self.core.closed.swap(true, Relaxed) {
            return Ok(false);
        }
        self.core.publish(end_payload(), Some(end_headers()), Wait::FOREVER, false)?;
        bump(&self.core.counters.end_markers);
        self.flush()?;
        Ok(true)
    }

    /// True once closed here.
    pub fn is_closed(&self) -> bool {
        self.core.closed.load(Relaxed)
    }

    /// The bridge's counters: published, errors, end markers.
    pub fn stats(&self) -> BridgeStats {
        self.core.counters.snapshot()
    }
}

/// The client's subscription, polled by one receiving caller at a time.
struct Incoming {
    /// `None` once unsubscribed (end marker, `close`, or the connection's end).
    sub: Option<async_nats::Subscriber>,
}

struct SubscriberCore {
    shared: Arc<Shared>,
    /// An async lock: its holder may wait (parked) for the next message, and receivers on
    /// any executor (`recv_async`) line up behind it.
    incoming: tokio::sync::Mutex<Incoming>,
    /// `close` ran: the holder stops waiting, the next one to hold the lock unsubscribes.
    closing: AtomicBool,
    /// The subscription is gone (for `is_closed` without the lock).
    ended: AtomicBool,
    /// The waiting holder's waker, for `close` to wake it.
    closing_waker: AtomicWaker,
    counters: Counters,
}

impl SubscriberCore {
    /// The next payload: waits for one while the subscription lasts; `Closed` after the
    /// end marker, `close` or the connection's end.
    async fn next_payload(&self) -> Result<Bytes, ChanError> {
        let mut incoming = self.incoming.lock().await;
        loop {
            let over = self.closing.load(Acquire) || self.ended.load(Acquire);
            let Some(sub) = incoming.sub.as_mut().filter(|_| !over) else {
                self.unsubscribe(&mut incoming);
                return Err(ChanError::Closed);
            };
            let next = poll_fn(|cx| match sub.poll_next_unpin(cx) {
                Poll::Ready(msg) => Poll::Ready(Some(msg)),
                // Registered only when about to wait: a message already there costs no
                // waker of our own.
                Poll::Pending => {
                    self.closing_waker.register(cx.waker());
                    if self.closing.load(Acquire) { Poll::Ready(None) } else { Poll::Pending }
                }
            })
            .await;
            match next {
                // `close` ran while waiting: the loop's top unsubscribes.
                None => continue,
                // The client ended the subscription (the connection closed for good).
                Some(None) => {
                    self.unsubscribe(&mut incoming);
                    return Err(ChanError::Closed);
                }
                Some(Some(msg)) => {
                    bump(&self.counters.delivered);
                    if is_end(msg.headers.as_ref(), &msg.payload) {
                        bump(&self.counters.end_markers);
                        self.unsubscribe(&mut incoming);
                        return Err(ChanError::Closed);
                    }
                    return Ok(msg.payload);
                }
            }
        }
    }

    /// Ends the subscription on this host: marked over, and the client's subscription
    /// dropped inside the bridge's tokio context. Its drop closes it at once and hands the
    /// server's unsubscribe to a task of its own, so nothing here waits: a receive that
    /// awaited the unsubscribe could be given up (a deadline, a dropped future) halfway,
    /// dropping the subscription outside that context (a panic), and a client whose
    /// queue is full (a stalled server) would hold the receive and `close` up.
    fn unsubscribe(&self, incoming: &mut Incoming) {
        self.ended.store(true, Release);
        if let Some(sub) = incoming.sub.take() {
            self.shared.exec.drop_here(sub);
        }
    }
}

impl Drop for SubscriberCore {
    fn drop(&mut self) {
        // The client's subscription unsubscribes when dropped, by spawning a task: that
        // needs the executor's context, which a coroutine's thread does not have.
        if let Some(sub) = self.incoming.get_mut().sub.take() {
            self.shared.exec.drop_here(sub);
        }
    }
}

/// A subscriber of a core subject on this host. Cloneable; clones share one
/// subscription (each value goes to one of them). For another independent copy of the
/// stream, subscribe again.
///
/// Each receive takes a payload from the client's subscription and decodes it on the
/// caller. A payload that is not a value of `T` (another program's publish, another type)
/// is counted in [`BridgeStats::decode_errors`] and skipped: the receive goes on to the
/// next one, within the same deadline.
pub struct Subscriber<T> {
    core: Arc<SubscriberCore>,
    _values: PhantomData<fn() -> T>,
}

impl<T> Clone for Subscriber<T> {
    fn clone(&self) -> Self {
        Subscriber { core: Arc::clone(&self.core), _values: PhantomData }
    }
}

impl<T: DeserializeOwned + 'static> Subscriber<T> {
    fn value_of(&self, payload: &Bytes) -> Option<T> {
        let value = decode(payload).ok();
        if value.is_none() {
            bump(&self.core.counters.decode_errors);
        }
        value
    }

    /// A future receiving one decoded value: the first payload that decodes as a `T`.
    async fn next_value(&self) -> Result<T, ChanError> {
        loop {
            if let Some(value) = self.value_of(&self.core.next_payload().await?) {
                return Ok(value);
            }
        }
    }

    /// Receives, waiting for one; `Closed` after the end marker, once drained.
    pub fn recv(&self) -> Result<T, NatsError> {
        self.recv_with(None, None)
    }

    /// Receives one already delivered here; else `WouldBlock`.
    pub fn try_recv(&self) -> Result<T, NatsError> {
        match poll_once(self.next_value()) {
            Some(got) => got.map_err(NatsError::Chan),
            None => Err(NatsError::Chan(ChanError::WouldBlock)),
        }
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
        wait_plain(Wait::new(deadline, token), pin!(self.next_value()))?.map_err(NatsError::Chan)
    }

    /// A future receiving one, for async code on any executor.
    pub async fn recv_async(&self) -> Result<T, ChanError> {
        self.next_value().await
    }
}

impl<T> Subscriber<T> {
    /// Stops receiving on this host: waiting receivers and every later one get `Closed`,
    /// and the subscription ends (values the client buffered for it are dropped). Returns
    /// `false` if already closed.
    pub fn close(&self) -> bool {
        if self.core.closing.swap(true, Release) || self.core.ended.load(Acquire) {
            return false;
        }
        self.core.closing_waker.wake();
        // Unsubscribed now if no receiver holds the subscription; else by that receiver.
        let _ = poll_once(self.core.next_payload());
        true
    }

    /// True once closed here or after the end marker.
    pub fn is_closed(&self) -> bool {
        self.core.closing.load(Acquire) || self.core.ended.load(Acquire)
    }

    /// The bridge's counters: delivered, decode errors, end markers.
    pub fn stats(&self) -> BridgeStats {
        self.core.counters.snapshot()
    }
}
