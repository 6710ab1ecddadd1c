//! The public ends of a channel. Both are cloneable (MPMC); the last sender dropped closes
//! the channel, the last receiver dropped cancels it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{Chan, Until, Wait};
use super::error::{ChanError, SendError};
use super::flavor::Kind;
use super::future::{RecvFuture, RecvStream, SendFuture};
use super::stats::Snapshot;
use crate::loom::atomic::Ordering::*;
use crate::sync::CancelToken;

/// The sending end of a channel.
pub struct Sender<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

/// The receiving end of a channel.
pub struct Receiver<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

pub(crate) fn pair<T>(chan: Arc<Chan<T>>) -> (Sender<T>, Receiver<T>) {
    (Sender { chan: Arc::clone(&chan) }, Receiver { chan })
}

fn deadline_after(d: Duration) -> Until {
    match crate::runtime::now().checked_add(d) {
        Some(t) => Until::At(t),
        None => Until::Forever,
    }
}

impl<T> Sender<T> {
    /// Sends, waiting while the channel is full (or, for rendezvous, until a receiver
    /// takes the value). Fails only if the channel is closed.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.chan.send(value, Wait::FOREVER)
    }

    /// Sends only if that needs no waiting; else fails with `WouldBlock`. On a rendezvous
    /// channel this succeeds only if a receiver is already waiting.
    pub fn try_send(&self, value: T) -> Result<(), SendError<T>> {
        self.chan.send(value, Wait::TRY)
    }

    /// Sends, waiting at most `timeout`; fails with `Timeout` after it.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.chan.send(value, Wait::until(deadline_after(timeout)))
    }

    /// Sends, waiting until `deadline` at most.
    pub fn send_deadline(&self, value: T, deadline: Instant) -> Result<(), SendError<T>> {
        self.chan.send(value, Wait::until(Until::At(deadline)))
    }

    /// Sends, giving up with `Canceled` as soon as `token` is cancelled.
    pub fn send_cancellable(&self, value: T, token: &CancelToken) -> Result<(), SendError<T>> {
        self.chan.send(value, Wait::cancel(token))
    }

    /// Sends with both a deadline and a token; cancellation wins over the deadline.
    pub fn send_with(
        &self,
        value: T,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
    ) -> Result<(), SendError<T>> {
        let until = deadline.map_or(Until::Forever, Until::At);
        self.chan.send(value, Wait { until, cancel: token })
    }

    /// A future that sends `value`; works on any executor. Dropping it before it
    /// completes withdraws the value.
    pub fn send_async(&self, value: T) -> SendFuture<'_, T> {
        SendFuture::new(&self.chan, value)
    }

    /// Closes the channel: later sends fail, receivers drain then fail, waiters wake.
    /// Returns `false` if it was already closed.
    pub fn close(&self) -> bool {
        self.chan.close(false)
    }

    /// True once closed (or cancelled).
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Values buffered now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buffer capacity (0 for rendezvous, 1 for conflated); `None` for unlimited.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// `zcopy::CAP_*` bits: zero copy, pointer descriptors.
    pub fn capabilities(&self) -> u32 {
        self.chan.capabilities()
    }

    /// The channel's kind.
    pub fn kind(&self) -> Kind {
        self.chan.kind()
    }

    /// A consistent copy of the channel's counters.
    pub fn snapshot(&self) -> Snapshot {
        self.chan.snapshot()
    }

    /// True if both ends belong to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Receiver<T> {
    /// Receives, waiting for a value; fails with `Closed` once the channel is closed and
    /// drained.
    pub fn recv(&self) -> Result<T, ChanError> {
        self.chan.recv(Wait::FOREVER)
    }

    /// Receives only if a value is ready; else `WouldBlock` (or `Closed`).
    pub fn try_recv(&self) -> Result<T, ChanError> {
        self.chan.recv(Wait::TRY)
    }

    /// Takes a value if one is ready now (counted as a receive, as [`try_recv`]'s would
    /// be), else `None` with nothing counted: for a caller that, finding nothing, waits
    /// in a way of its own (in a coroutine it spawns, say), so that the wait, not this
    /// look, is the one receive the counters show. An empty or closed channel answers
    /// `None` alike; the wait that follows reports which.
    ///
    /// [`try_recv`]: Self::try_recv
    pub fn take_ready(&self) -> Option<T> {
        self.chan.take_ready()
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, ChanError> {
        self.chan.recv(Wait::until(deadline_after(timeout)))
    }

    /// Receives, waiting until `deadline` at most.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, ChanError> {
        self.chan.recv(Wait::until(Until::At(deadline)))
    }

    /// Receives, giving up with `Canceled` as soon as `token` is cancelled.
    pub fn recv_cancellable(&self, token: &CancelToken) -> Result<T, ChanError> {
        self.chan.recv(Wait::cancel(token))
    }

    /// Receives with both a deadline and a token; cancellation wins over the deadline.
    pub fn recv_with(&self, deadline: Option<Instant>, token: Option<&CancelToken>) -> Result<T, ChanError> {
        let until = deadline.map_or(Until::Forever, Until::At);
        self.chan.recv(Wait { until, cancel: token })
    }

    /// A future that receives one value; works on any executor.
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture::new(&self.chan)
    }

    /// A `futures::Stream` of the values, ending when the channel is closed and drained.
    pub fn stream(&self) -> RecvStream<T> {
        RecvStream::new(self.clone())
    }

    /// A blocking iterator, ending when the channel is closed and drained.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the values ready now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// Cancels the channel (Kotlin sense): closes it and drops every buffered value,
    /// passing each to the undelivered callback. Returns `false` if it was already closed
    /// (buffered values are still dropped).
    pub fn cancel(&self) -> bool {
        self.chan.close(true)
    }

    /// Closes the channel from the receiving side, keeping buffered values to drain.
    pub fn close(&self) -> bool {
        self.chan.close(false)
    }

    /// True once closed (or cancelled).
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Values buffered now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buffer capacity (0 for rendezvous, 1 for conflated); `None` for unlimited.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// `zcopy::CAP_*` bits: zero copy, pointer descriptors.
    pub fn capabilities(&self) -> u32 {
        self.chan.capabilities()
    }

    /// The channel's kind.
    pub fn kind(&self) -> Kind {
        self.chan.kind()
    }

    /// A consistent copy of the channel's counters.
    pub fn snapshot(&self) -> Snapshot {
        self.chan.snapshot()
    }

    /// True if both ends belong to the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, Relaxed);
        Sender { chan: Arc::clone(&self.chan) }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.receivers.fetch_add(1, Relaxed);
        Receiver { chan: Arc::clone(&self.chan) }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // AcqRel: the last sender sees every other sender's drop before closing.
        if self.chan.senders.fetch_sub(1, AcqRel) == 1 {
            self.chan.close(false);
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.chan.receivers.fetch_sub(1, AcqRel) == 1 {
            self.chan.close(true);
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("kind", &self.kind()).field("closed", &self.is_closed()).finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("kind", &self.kind()).field("closed", &self.is_closed()).finish()
    }
}

/// Blocking iterator over a receiver; see [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator over a receiver; see [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Owning blocking iterator; see [`Receiver::into_iter`](IntoIterator::into_iter).
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}
