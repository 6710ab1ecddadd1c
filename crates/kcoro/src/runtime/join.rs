//! Join handles: the one-shot slot a coroutine (or blocking job) leaves its outcome in.
//!
//! The producer side is a [`Completer`]; dropping it unfilled (a coroutine unwound before
//! it ever ran, a blocking job discarded at shutdown) reports `JoinError::Cancelled`, so a
//! joiner never waits forever. Waiting is a [`Signal`]: it parks a coroutine, parks a
//! thread, or returns `Pending` to an executor.
//!
//! # Invariants
//! - `value` is written once, before `signal.notify()`, and read once, after the joiner
//!   observed the notification (Release/Acquire through the signal's state).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::coro::wait::Wait;
use crate::error::JoinError;
use crate::park::Signal;

struct Inner<T> {
    signal: Signal,
    value: std::cell::UnsafeCell<Option<Result<T, JoinError>>>,
}

// SAFETY: `value` has one writer (the Completer, before notify) and one reader (the handle,
// after the notify is observed); the Signal orders them.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Inner<T> {}

/// Owned permission to wait for and take a coroutine's result.
///
/// `join()` parks the calling coroutine (or thread); `.await` works on any executor.
/// Dropping the handle detaches the coroutine; it keeps running.
pub struct JoinHandle<T> {
    inner: Arc<Inner<T>>,
    id: u64,
}

/// The producing end of a join slot.
pub(crate) struct Completer<T> {
    inner: Option<Arc<Inner<T>>>,
}

pub(crate) fn pair<T>(id: u64) -> (Completer<T>, JoinHandle<T>) {
    let inner = Arc::new(Inner { signal: Signal::new(), value: std::cell::UnsafeCell::new(None) });
    (Completer { inner: Some(Arc::clone(&inner)) }, JoinHandle { inner, id })
}

impl<T> Completer<T> {
    /// A completer nobody joins (a detached spawn): completing it does nothing.
    pub(crate) fn detached() -> Self {
        Completer { inner: None }
    }

    pub(crate) fn complete(mut self, v: Result<T, JoinError>) {
        if let Some(inner) = self.inner.take() {
            fill(&inner, v);
        }
    }

    /// Stores `v` for the joiner without telling it yet. Returns what tells it, or `None`
    /// when nobody can join any more (the handle is gone: `v` is dropped here and now).
    /// A coroutine tells its joiner from its worker's stack ([`Filled::notify`]), so that
    /// when `join` returns, the last reference the coroutine holds lives on a thread's
    /// own stack, where a leak checker scanning at exit finds it.
    pub(crate) fn fill(mut self, v: Result<T, JoinError>) -> Option<Filled<T>> {
        let inner = self.inner.take()?;
        if Arc::strong_count(&inner) == 1 {
            return None; // detached: `inner` and `v` go together, no one to wake
        }
        // SAFETY: the only writer, before notify; the reader waits for the notify.
        unsafe { *inner.value.get() = Some(v) };
        Some(Filled { inner })
    }
}

/// A join slot whose value is written and whose joiner is not told yet
/// ([`Completer::fill`]). Dropping it tells the joiner as well.
pub(crate) struct Filled<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Filled<T> {
    /// Wakes the joiner and lets go of the slot.
    pub(crate) fn notify(self) {
        drop(self);
    }
}

impl<T> Drop for Filled<T> {
    fn drop(&mut self) {
        self.inner.signal.notify();
    }
}

fn fill<T>(inner: &Inner<T>, v: Result<T, JoinError>) {
    // SAFETY: the only writer, before notify; the reader waits for the notify.
    unsafe { *inner.value.get() = Some(v) };
    inner.signal.notify();
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            fill(&inner, Err(JoinError::Cancelled));
        }
    }
}

impl<T> JoinHandle<T> {
    /// A handle that is already finished with `v` (used when spawning fails).
    pub(crate) fn ready(v: Result<T, JoinError>) -> Self {
        let (c, h) = pair(0);
        c.complete(v);
        h
    }

    /// The coroutine's id (0 for a coroutine that never spawned).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True once the coroutine has finished (returned, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.inner.signal.is_notified()
    }

    /// Waits for the coroutine and returns its value, or why there is none.
    pub fn join(self) -> Result<T, JoinError> {
        self.inner.signal.wait_as(Wait::join(self.id));
        self.take()
    }

    /// Like [`join`](Self::join), but also stops waiting once `stop()` holds after a wake
    /// (whoever makes it hold unparks the joiner); then the handle comes back.
    pub(crate) fn join_unless(self, stop: impl Fn() -> bool) -> Result<Result<T, JoinError>, Self> {
        let signal = &self.inner.signal;
        if signal.is_notified() || !signal.register(crate::park::current()) {
            return Ok(self.take());
        }
        while !signal.is_notified() {
            if stop() {
                return Err(self);
            }
            crate::park::park_as(Wait::join(self.id));
        }
        Ok(self.take())
    }

    /// Like [`join`](Self::join) with a time limit; on timeout the handle comes back.
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, JoinError>, Self> {
        match crate::runtime::now().checked_add(timeout) {
            Some(deadline) => self.join_deadline(deadline),
            None => Ok(self.join()),
        }
    }

    /// Like [`join`](Self::join) with a deadline; on timeout the handle comes back.
    pub fn join_deadline(self, deadline: Instant) -> Result<Result<T, JoinError>, Self> {
        if self.inner.signal.wait_deadline_as(deadline, Wait::join(self.id)) {
            Ok(self.take())
        } else {
            Err(self)
        }
    }

    fn take(&self) -> Result<T, JoinError> {
        // SAFETY: the signal is notified (Acquire), so the value was written and no one
        // writes it again; `self` is the only reader (JoinHandle is not Clone).
        let v = unsafe { (*self.inner.value.get()).take() };
        v.unwrap_or(Err(JoinError::Cancelled))
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.inner.signal.poll_wait(cx) {
            Poll::Ready(()) => Poll::Ready(self.take()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id).field("finished", &self.is_finished()).finish()
    }
}
