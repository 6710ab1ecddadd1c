//! One scoped child: the packet its result travels in, and the handle that joins it.
//!
//! # Soundness of borrowing
//! A child's closure may borrow from the scope's environment (`'scope`), but the runtime
//! wants `'static` closures. The closure goes onto the coroutine's stack with its lifetime
//! unchecked (`Shared::spawn_detached_borrowing`); this is sound because the scope does
//! not return (normally or by unwinding) until every packet is dropped, and a packet is
//! dropped only after the child's closure has been consumed and its result dropped or
//! taken (see `state.rs`). The one exception is runtime shutdown,
//! which unwinds coroutines in an order of its own; see `docs/ARCHITECTURE.md`.

use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Outcome;
use super::state::ScopeState;
use crate::error::JoinError;
use crate::park::Signal;

pub(crate) struct Packet<T> {
    scope: Arc<ScopeState>,
    signal: Signal,
    result: Mutex<Option<Result<T, JoinError>>>,
}

impl<T> Packet<T> {
    pub(crate) fn new(scope: Arc<ScopeState>) -> Arc<Self> {
        scope.child_started();
        Arc::new(Packet { scope, signal: Signal::new(), result: Mutex::new(None) })
    }

    pub(crate) fn complete(&self, r: Result<T, JoinError>) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.signal.notify();
    }
}

impl<T> Drop for Packet<T> {
    fn drop(&mut self) {
        // An unjoined result is dropped here, while the scope still waits: it may borrow.
        let r = self.result.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| drop(r))) {
            self.scope.panicked(p);
        }
        self.scope.child_exited();
    }
}

/// The body of a child coroutine: runs `f`, reports failure to the scope, fills `packet`.
/// The child runs with its own token (the scope's, or a producer's) as its ambient token.
pub(crate) fn child_main<F, O>(f: F, packet: Arc<Packet<O::Output>>) -> impl FnOnce() + Send
where
    F: FnOnce() -> O + Send,
    O: Outcome,
    O::Output: Send,
{
    move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let result = match r {
            Ok(outcome) => match outcome.into_result() {
                Ok(v) => Ok(v),
                Err(e) => {
                    // Read here, not cloned at spawn: a clone per child is a reference
                    // count bounced between the spawning and the running worker.
                    let cancelled = crate::sync::current_token().is_some_and(|t| t.is_cancelled());
                    packet.scope.failed(e, cancelled);
                    Err(JoinError::Failed)
                }
            },
            Err(payload) => {
                if is_shutting_down() {
                    // Runtime shutdown is unwinding this coroutine: let it through.
                    drop(packet);
                    resume_unwind(payload);
                }
                packet.scope.panicked(payload);
                Err(JoinError::Panicked(Box::new("the child's panic was re-raised by its scope")))
            }
        };
        packet.complete(result);
    }
}

/// True while runtime shutdown unwinds the running coroutine: it must not park again.
pub(crate) fn is_shutting_down() -> bool {
    crate::coro::is_unwinding_at_shutdown()
}

/// Joins one child of a [`Scope`](super::Scope). Dropping it detaches nothing: the scope
/// joins every child anyway.
pub struct ScopedJoinHandle<'scope, T> {
    packet: Arc<Packet<T>>,
    _scope: PhantomData<&'scope ()>,
}

impl<'scope, T> ScopedJoinHandle<'scope, T> {
    pub(crate) fn new(packet: Arc<Packet<T>>) -> Self {
        ScopedJoinHandle { packet, _scope: PhantomData }
    }

    /// Waits for the child and takes its value. A child that returned an error or
    /// panicked gives `Failed` or `Panicked`; the error or panic itself goes to the scope,
    /// which reports it.
    pub fn join(self) -> Result<T, JoinError> {
        self.packet.signal.wait();
        self.take()
    }

    /// [`join`](Self::join) with a time limit; gives the handle back on timeout.
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, JoinError>, Self> {
        match crate::runtime::now().checked_add(timeout) {
            Some(d) => self.join_deadline(d),
            None => Ok(self.join()),
        }
    }

    /// [`join`](Self::join) until `deadline`; gives the handle back if it passes.
    pub fn join_deadline(self, deadline: Instant) -> Result<Result<T, JoinError>, Self> {
        if self.packet.signal.wait_deadline(deadline) { Ok(self.take()) } else { Err(self) }
    }

    /// True once the child has finished.
    pub fn is_finished(&self) -> bool {
        self.packet.signal.is_notified()
    }

    fn take(&self) -> Result<T, JoinError> {
        let mut slot = self.packet.result.lock().unwrap_or_else(|p| p.into_inner());
        slot.take().unwrap_or(Err(JoinError::Cancelled))
    }
}

impl<T> std::fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedJoinHandle").field("finished", &self.is_finished()).finish()
    }
}
