//! What a scope's children share: the token, the count of live children, and the first
//! failure.
//!
//! # Invariants
//! - `running` counts child packets not yet dropped. A packet is dropped only after its
//!   child's closure and result are gone, so `running == 0` means nothing borrowed from the
//!   scope's environment is still reachable.
//! - The owner stores its unparker before re-checking `running`; a child that brings the
//!   count to zero locks `owner` after its decrement. Either the owner sees zero, or the
//!   child sees the unparker: no lost wake-up.
//! - A failure is *first* only if it happens before the child's own token was cancelled;
//!   errors that follow a cancellation are its fallout, counted as suppressed.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Mutex, MutexGuard};

use super::{BoxError, Policy};
use crate::park::{self, Unparker};
use crate::sync::CancelToken;

type Panic = Box<dyn Any + Send + 'static>;

pub(crate) struct ScopeState {
    pub(crate) token: CancelToken,
    pub(crate) policy: Policy,
    running: AtomicUsize,
    owner: Mutex<Option<Unparker>>,
    failures: Mutex<Failures>,
    /// The scope's deadline fired (set before the token is cancelled).
    pub(crate) deadline_hit: AtomicBool,
    /// `Scope::cancel` was called: a cancellation the scope asked for, not a failure.
    pub(crate) cancelled_by_owner: AtomicBool,
}

#[derive(Default)]
pub(crate) struct Failures {
    pub(crate) error: Option<BoxError>,
    pub(crate) panic: Option<Panic>,
    pub(crate) suppressed: usize,
}

impl ScopeState {
    pub(crate) fn new(token: CancelToken, policy: Policy) -> Self {
        ScopeState {
            token,
            policy,
            running: AtomicUsize::new(0),
            owner: Mutex::new(None),
            failures: Mutex::new(Failures::default()),
            deadline_hit: AtomicBool::new(false),
            cancelled_by_owner: AtomicBool::new(false),
        }
    }

    fn failures(&self) -> MutexGuard<'_, Failures> {
        // Every update replaces whole fields: a poisoned lock is still consistent.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn take_failures(&self) -> Failures {
        std::mem::take(&mut *self.failures())
    }

    pub(crate) fn child_started(&self) {
        self.running.fetch_add(1, AcqRel);
    }

    /// A child (or the body) failed. `after_cancel`: its token had already fired, so this
    /// is fallout of a cancellation, not a cause.
    pub(crate) fn failed(&self, error: BoxError, after_cancel: bool) {
        let mut f = self.failures();
        let first = !after_cancel && f.error.is_none() && f.panic.is_none();
        if first {
            f.error = Some(error);
        } else {
            f.suppressed += 1;
        }
        drop(f);
        if first && self.policy == Policy::FailFast {
            self.token.cancel();
        }
    }

    /// A child (or the body) panicked. The first panic is re-raised by the scope; a panic
    /// cancels the siblings under `FailFast` whether or not it is the first.
    pub(crate) fn panicked(&self, payload: Panic) {
        let mut f = self.failures();
        let extra = if f.panic.is_none() {
            f.panic = Some(payload);
            None
        } else {
            f.suppressed += 1;
            Some(payload)
        };
        drop(f);
        if let Some(p) = extra {
            // A payload's destructor could panic too; that one is dropped silently.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(p)));
        }
        if self.policy == Policy::FailFast {
            self.token.cancel();
        }
    }

    pub(crate) fn child_exited(&self) {
        if self.running.fetch_sub(1, AcqRel) == 1 {
            let owner = self.owner.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(u) = owner {
                u.unpark();
            }
        }
    }

    /// Parks until every child packet is gone. Not cancellable: the children borrow from
    /// the caller's stack, and the scope's token is what makes them finish.
    pub(crate) fn wait_children(&self) {
        if self.running.load(Acquire) == 0 {
            return;
        }
        *self.owner.lock().unwrap_or_else(|p| p.into_inner()) = Some(park::current());
        while self.running.load(Acquire) != 0 {
            park::park_as(crate::coro::wait::Wait::SCOPE);
        }
        *self.owner.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
