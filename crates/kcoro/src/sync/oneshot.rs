//! A one-shot channel: one value from one [`Sender`] to one [`Receiver`], the reply to a
//! request. Cheaper than a `chan::buffered(1)` (one allocation, no queue, no waiter list)
//! and it says what it is: the sender is consumed by [`Sender::send`], and a sender dropped
//! unused closes the receiver at once, so nobody waits for a reply that cannot come.
//!
//! The receiver waits like every kcoro primitive: a coroutine parks, a thread blocks, an
//! async task awaits the receiver; a deadline or a cancel token (explicit, or
//! the caller's ambient one) ends the wait with the value still to come, so a caller can
//! give up, do something (send a cancel request), and wait again.
//!
//! ```
//! use kcoro::sync::oneshot;
//!
//! let (tx, mut rx) = oneshot::channel();
//! std::thread::spawn(move || tx.send(42).unwrap());
//! assert_eq!(rx.recv(), Ok(42));
//! assert_eq!(rx.try_recv(), Err(kcoro::chan::ChanError::Closed), "one value only");
//! ```
//!
//! # Invariants
//! - `value` is written at most once, before `signal.notify()`; a sender dropped unused
//!   notifies with `value` empty.
//! - The receiver reads `value` only after observing the notification.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::chan::ChanError;
use crate::coro::wait::{self, Wait};
use crate::park::{self, Signal};
use crate::sync::CancelToken;
use crate::sync::waiter::{WaitError, deadline_after, park_until_with};

struct Slot<T> {
    signal: Signal,
    value: Mutex<Option<T>>,
    receiver_gone: AtomicBool,
}

/// A sender and its receiver.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        signal: Signal::new(),
        value: Mutex::new(None),
        receiver_gone: AtomicBool::new(false),
    });
    (Sender { slot: Some(Arc::clone(&slot)) }, Receiver { slot })
}

/// Sends the one value. Dropping it unused closes the receiver.
pub struct Sender<T> {
    /// `None` once sent.
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Sender<T> {
    /// Sends `value`; gives it back if the receiver is gone.
    pub fn send(mut self, value: T) -> Result<(), T> {
        let Some(slot) = self.slot.take() else { return Err(value) };
        if slot.receiver_gone.load(Acquire) {
            return Err(value);
        }
        *slot.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        slot.signal.notify();
        Ok(())
    }

    /// True once the receiver is dropped: nobody will read what is sent.
    pub fn is_closed(&self) -> bool {
        self.slot.as_ref().is_none_or(|s| s.receiver_gone.load(Acquire))
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.signal.notify(); // unused: the receiver sees `Closed`
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("oneshot::Sender").field("sent", &self.slot.is_none()).finish()
    }
}

/// Receives the one value: by a blocking call, or by awaiting it (`rx.await`, or
/// `(&mut rx).await` to keep it for another wait). Every receive takes `&mut self`: a
/// [`Signal`] has one waiter.
pub struct Receiver<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Receiver<T> {
    /// The value if it was sent; `WouldBlock` if not yet, `Closed` if the sender was
    /// dropped unused or the value was already received.
    pub fn try_recv(&mut self) -> Result<T, ChanError> {
        if self.slot.signal.is_notified() { self.take() } else { Err(ChanError::WouldBlock) }
    }

    /// Waits for the value; `Closed` if the sender was dropped unused, `Canceled` if the
    /// caller's ambient token fired first.
    pub fn recv(&mut self) -> Result<T, ChanError> {
        self.recv_with(None, None)
    }

    /// [`recv`](Self::recv), giving up with `Timeout` after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, ChanError> {
        self.recv_with(deadline_after(timeout), None)
    }

    /// [`recv`](Self::recv) until `deadline` (if any), giving up with `Canceled` when
    /// `token` (or the ambient token) fires first. The value still comes after a timeout
    /// or a cancel: wait again to take it.
    pub fn recv_with(
        &mut self,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
    ) -> Result<T, ChanError> {
        self.recv_as(deadline, token, Wait::sync(wait::SYNC_ONESHOT))
    }

    /// [`recv_with`](Self::recv_with), saying what the wait is for (an actor's reply).
    pub(crate) fn recv_as(
        &mut self,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
        why: Wait,
    ) -> Result<T, ChanError> {
        let s = &self.slot;
        if !s.signal.is_notified() && s.signal.register(park::current()) {
            park_until_with(|| s.signal.is_notified(), deadline, token, why).map_err(|e| match e {
                WaitError::Timeout => ChanError::Timeout,
                WaitError::Cancelled => ChanError::Canceled,
            })?;
        }
        self.take()
    }

    /// After the notification: the value, or `Closed`.
    fn take(&self) -> Result<T, ChanError> {
        self.slot.value.lock().unwrap_or_else(PoisonError::into_inner).take().ok_or(ChanError::Closed)
    }
}

/// Ready with what [`recv`](Receiver::recv) returns, without the ambient token (an async
/// caller cancels by dropping the future).
impl<T> Future for Receiver<T> {
    type Output = Result<T, ChanError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.slot.signal.poll_wait(cx) {
            Poll::Ready(()) => Poll::Ready(self.take()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.slot.receiver_gone.store(true, Release);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("oneshot::Receiver").field("ready", &self.slot.signal.is_notified()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_value_sent_from_a_thread_reaches_a_coroutine() {
        let rt = crate::Runtime::builder().workers(2).build().unwrap_or_else(|e| panic!("{e}"));
        let (tx, mut rx) = channel();
        let waiting = rt.spawn(move || rx.recv_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(tx.send(7u32), Ok(()));
        assert_eq!(waiting.join().ok(), Some(Ok(7)));
    }

    #[test]
    fn a_dropped_sender_closes_the_receiver_at_once() {
        let (tx, mut rx) = channel::<u8>();
        let t = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(5));
        drop(tx);
        assert_eq!(t.join().ok(), Some(Err(ChanError::Closed)));
    }

    #[test]
    fn one_value_only() {
        let (tx, mut rx) = channel();
        assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
        assert_eq!(tx.send("a"), Ok(()));
        assert_eq!(rx.try_recv(), Ok("a"));
        assert_eq!(rx.try_recv(), Err(ChanError::Closed));
        assert_eq!(rx.recv(), Err(ChanError::Closed));
    }

    #[test]
    fn a_send_to_a_dropped_receiver_gives_the_value_back() {
        let (tx, rx) = channel();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(vec![1u8]), Err(vec![1u8]));
    }

    #[test]
    fn a_timeout_or_a_cancel_leaves_the_value_to_come() {
        let (tx, mut rx) = channel();
        assert_eq!(rx.recv_timeout(Duration::from_millis(5)), Err(ChanError::Timeout));
        let token = CancelToken::new();
        token.cancel();
        assert_eq!(rx.recv_with(None, Some(&token)), Err(ChanError::Canceled));
        let late = CancelToken::new();
        let canceller = std::thread::spawn({
            let late = late.clone();
            move || {
                std::thread::sleep(Duration::from_millis(5));
                late.cancel();
            }
        });
        assert_eq!(rx.recv_with(None, Some(&late)), Err(ChanError::Canceled), "a token firing while parked");
        assert!(canceller.join().is_ok());
        assert_eq!(tx.send(3), Ok(()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(3), "waited again after both");
    }

    #[test]
    fn an_ambient_token_ends_the_wait() {
        let rt = crate::Runtime::builder().workers(1).build().unwrap_or_else(|e| panic!("{e}"));
        let (tx, mut rx) = channel::<u8>();
        let token = CancelToken::new();
        let waiting = rt.spawn({
            let token = token.clone();
            move || crate::sync::with_token(token, || rx.recv())
        });
        std::thread::sleep(Duration::from_millis(5));
        token.cancel();
        assert_eq!(waiting.join().ok(), Some(Err(ChanError::Canceled)));
        drop(tx);
    }

    #[test]
    fn awaited_from_a_future() {
        let (tx, rx) = channel();
        let t = std::thread::spawn(move || crate::future::wait(rx));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(tx.send(9u64), Ok(()));
        assert_eq!(t.join().ok(), Some(Ok(Ok(9))));
    }
}
