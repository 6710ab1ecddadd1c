//! `async` sends and receives: the same channel protocol, parked on a [`Waker`].
//!
//! A future keeps its slot on the heap (boxed when it first has to wait), so the future
//! itself may move between polls. A re-poll with a new waker replaces the registered one
//! ([`Signal`](crate::park::Signal) semantics). Dropping a parked future withdraws it:
//! it aborts its waiter, or — when a counterpart claimed it first — waits for the
//! claimer's few locked instructions to finish, then reports a delivered value as
//! undelivered (a send's value goes back to being dropped with the future).
//!
//! [`Waker`]: std::task::Waker

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::core::{Chan, RecvAttempt, SendAttempt};
use super::error::{ChanError, SendError};
use super::handle::Receiver;
use super::waiter::{Entry, Waiter};

/// The parked part of an async operation.
struct Parked<T> {
    waiter: Arc<Waiter>,
    slot: Box<UnsafeCell<Option<T>>>,
}

// SAFETY: the slot is only touched under the claim protocol (`waiter.rs`): by a claimer
// under the channel lock, or by us after DONE/ABORTED. It holds a `T: Send`.
unsafe impl<T: Send> Send for Parked<T> {}
// SAFETY: shared references never touch the slot.
unsafe impl<T: Send> Sync for Parked<T> {}

impl<T> Parked<T> {
    /// Registers `cx`'s waker; returns the slot's content once done.
    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.waiter.done().is_none()
            && self.waiter.register_waker(cx.waker())
            && self.waiter.done().is_none()
        {
            return Poll::Pending;
        }
        // SAFETY: done: the claimer finished with the slot (Acquire in `done`).
        Poll::Ready(unsafe { (*self.slot.get()).take() })
    }

    /// Withdraws a dropped operation; returns what the slot holds if it was claimed.
    fn withdraw(self, chan: &Chan<T>, sending: bool) -> Option<T> {
        if self.waiter.try_abort() {
            chan.abandon(&self.waiter, sending);
        } else {
            chan.wait_for_claimer();
        }
        let slot = *self.slot;
        slot.into_inner()
    }
}

/// Sends one value; see [`Sender::send_async`](super::Sender::send_async).
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    chan: &'a Chan<T>,
    value: Option<T>,
    parked: Option<Parked<T>>,
}

impl<'a, T> SendFuture<'a, T> {
    pub(crate) fn new(chan: &'a Arc<Chan<T>>, value: T) -> Self {
        SendFuture { chan, value: Some(value), parked: None }
    }
}

impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(p) = &this.parked {
            let left = std::task::ready!(p.poll_done(cx));
            this.parked = None;
            // Done: taken by a receiver, or left in place by a close.
            return Poll::Ready(match left {
                None => Ok(()),
                Some(v) => Err(SendError::new(ChanError::Closed, v)),
            });
        }
        let Some(v) = this.value.take() else {
            panic!("SendFuture polled after completion");
        };
        let chan = this.chan;
        let bytes = chan.measure(&v);
        let mut g = chan.lock();
        let v = match chan.try_send_locked(&mut g, v, bytes, None) {
            SendAttempt::Sent(after) => {
                drop(g);
                after.run(chan);
                return Poll::Ready(Ok(()));
            }
            SendAttempt::Closed(v) => return Poll::Ready(Err(chan.send_failed(g, ChanError::Closed, v))),
            SendAttempt::Full(v) => v,
        };
        let waiter = Waiter::for_future();
        let slot = Box::new(UnsafeCell::new(Some(v)));
        let wakes = chan.park_sender_locked(&mut g, Entry::new(&waiter, 0, slot.get(), bytes));
        drop(g);
        wakes.run();
        this.parked = Some(Parked { waiter, slot });
        Pin::new(this).poll(cx)
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(p) = self.parked.take() {
            drop(p.withdraw(self.chan, true));
        }
    }
}

/// The receive state machine shared by [`RecvFuture`] and [`RecvStream`].
struct RecvOp<T> {
    parked: Option<Parked<T>>,
}

impl<T> RecvOp<T> {
    fn poll(&mut self, chan: &Chan<T>, cx: &mut Context<'_>) -> Poll<Result<T, ChanError>> {
        if let Some(p) = &self.parked {
            let got = std::task::ready!(p.poll_done(cx));
            self.parked = None;
            // Done: filled by a sender, or left empty by a close.
            return Poll::Ready(got.ok_or(ChanError::Closed));
        }
        let mut g = chan.lock();
        match chan.try_recv_locked(&mut g, None) {
            RecvAttempt::Got(v, after) => {
                drop(g);
                after.run(chan);
                return Poll::Ready(Ok(v));
            }
            RecvAttempt::Closed => return Poll::Ready(Err(chan.recv_failed(g, ChanError::Closed))),
            RecvAttempt::Empty => {}
        }
        let waiter = Waiter::for_future();
        let slot = Box::new(UnsafeCell::new(None));
        let wakes = chan.park_receiver_locked(&mut g, Entry::new(&waiter, 0, slot.get(), 0));
        drop(g);
        wakes.run();
        self.parked = Some(Parked { waiter, slot });
        self.poll(chan, cx)
    }

    fn withdraw(&mut self, chan: &Chan<T>) {
        if let Some(p) = self.parked.take()
            && let Some(v) = p.withdraw(chan, false)
        {
            chan.abandoned_value(v);
        }
    }
}

/// Receives one value; see [`Receiver::recv_async`](super::Receiver::recv_async).
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    chan: &'a Chan<T>,
    op: RecvOp<T>,
}

impl<'a, T> RecvFuture<'a, T> {
    pub(crate) fn new(chan: &'a Arc<Chan<T>>) -> Self {
        Self::from_chan(chan)
    }

    pub(crate) fn from_chan(chan: &'a Chan<T>) -> Self {
        RecvFuture { chan, op: RecvOp { parked: None } }
    }
}

impl<T> Unpin for RecvFuture<'_, T> {}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, ChanError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.op.poll(this.chan, cx)
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        self.op.withdraw(self.chan);
    }
}

/// The values of a receiver as a `futures::Stream`; see [`Receiver::stream`].
pub struct RecvStream<T> {
    rx: Receiver<T>,
    op: RecvOp<T>,
}

impl<T> RecvStream<T> {
    pub(crate) fn new(rx: Receiver<T>) -> Self {
        RecvStream { rx, op: RecvOp { parked: None } }
    }
}

impl<T> Unpin for RecvStream<T> {}

impl<T> Stream for RecvStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        this.op.poll(&this.rx.chan, cx).map(Result::ok)
    }
}

impl<T> Drop for RecvStream<T> {
    fn drop(&mut self) {
        self.op.withdraw(&self.rx.chan);
    }
}

impl<T> std::fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture").field("parked", &self.parked.is_some()).finish()
    }
}

impl<T> std::fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture").field("parked", &self.op.parked.is_some()).finish()
    }
}

impl<T> std::fmt::Debug for RecvStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("parked", &self.op.parked.is_some()).finish()
    }
}
