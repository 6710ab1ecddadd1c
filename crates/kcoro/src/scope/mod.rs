//! Structured concurrency: scopes whose children may borrow from the caller's stack, share
//! a cancel token, and are all joined before the scope returns.
//!
//! ```
//! let words = vec!["alpha", "beta", "gamma"];
//! let total = std::sync::atomic::AtomicUsize::new(0);
//! kcoro::run(move || {
//!     kcoro::scope(|s| {
//!         for w in &words {
//!             // Children borrow `words` and `total` from this stack frame.
//!             s.spawn(|| {
//!                 total.fetch_add(w.len(), std::sync::atomic::Ordering::Relaxed);
//!             });
//!         }
//!     })
//!     .unwrap();
//!     assert_eq!(total.into_inner(), 14);
//! });
//! ```
//!
//! # Failure
//! A child fails by returning `Err` (children return `()` or any `Result`, see
//! [`Outcome`]) or by panicking. Under [`Policy::FailFast`] (the default) the first
//! failure cancels the scope's token, so every sibling's blocking operation — channel
//! sends and receives, [`delay`](crate::delay), the `sync` primitives — returns
//! `Canceled` at once; under [`Policy::Supervise`] the siblings keep going. Either way
//! the scope joins every child, then re-raises the first panic or returns the first
//! error. Errors that follow a cancellation are its fallout and are not reported.
//!
//! # Cancellation
//! A scope's token is a child of the caller's ambient token (the enclosing scope's), so
//! cancelling an outer scope cancels inner ones — never the reverse. The body runs with
//! the scope's token as its ambient token. [`Scope::cancel`] stops the children and still
//! lets the scope return `Ok`; a cancellation from outside returns
//! [`ScopeError::Cancelled`], a passed deadline [`ScopeError::DeadlineExceeded`].

mod child;
mod produce;
mod state;

use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::*;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

pub use child::ScopedJoinHandle;
pub(crate) use child::is_shutting_down as child_is_shutting_down;
pub use produce::produce;

use crate::chan::{Builder, Receiver, Sender};
use crate::error::{Error, JoinError};
use crate::park::Unparker;
use crate::runtime::{Handle, SpawnOptions};
use crate::sync::{self, CancelToken};
use child::Packet;
use state::ScopeState;

/// A boxed error that can cross coroutines.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a child returns: `()` (it cannot fail but by panicking) or a `Result` whose error
/// fails the scope.
pub trait Outcome {
    /// The value the child's handle joins with.
    type Output;
    /// Splits the outcome into the joined value or the failure.
    fn into_result(self) -> Result<Self::Output, BoxError>;
}

impl Outcome for () {
    type Output = ();
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<T, E: Into<BoxError>> Outcome for Result<T, E> {
    type Output = T;
    fn into_result(self) -> Result<T, BoxError> {
        self.map_err(Into::into)
    }
}

/// What a child's failure does to its siblings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// The first failure cancels the scope (the default).
    #[default]
    FailFast,
    /// Failures are recorded; the other children keep running.
    Supervise,
}

/// Options of [`scope_with`].
#[derive(Debug, Clone, Default)]
pub struct ScopeOptions {
    policy: Policy,
    deadline: Option<Instant>,
}

impl ScopeOptions {
    /// Fail-fast, no deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the other children running when one fails.
    pub fn supervise(mut self) -> Self {
        self.policy = Policy::Supervise;
        self
    }

    /// Sets the failure policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Cancels the scope at `deadline`; the scope then returns
    /// [`ScopeError::DeadlineExceeded`].
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// [`deadline`](Self::deadline) `timeout` from now.
    pub fn timeout(self, timeout: Duration) -> Self {
        match crate::runtime::now().checked_add(timeout) {
            Some(d) => self.deadline(d),
            None => self,
        }
    }
}

/// Why a scope did not return its body's value.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// A child (or the body, through [`Scope::fail`]) failed; this is the first error.
    #[error("a scoped child failed: {0}")]
    Failed(#[source] BoxError),
    /// The scope was cancelled from outside (its enclosing scope or token).
    #[error("the scope was cancelled")]
    Cancelled,
    /// The scope's deadline passed before its children finished.
    #[error("the scope's deadline passed")]
    DeadlineExceeded,
    /// No runtime to run children on.
    #[error("cannot open a scope: {0}")]
    Runtime(#[source] Error),
}

impl ScopeError {
    /// The kcoro code: `-ECANCELED`, `-ETIME`, or the failure's.
    pub fn code(&self) -> i32 {
        match self {
            ScopeError::Failed(_) => crate::code::INVALID,
            ScopeError::Cancelled => crate::code::CANCELED,
            ScopeError::DeadlineExceeded => crate::code::TIMEOUT,
            ScopeError::Runtime(e) => e.code(),
        }
    }
}

/// A scope: spawns children that may borrow anything that outlives `'env`.
/// See the [module docs](self).
pub struct Scope<'scope, 'env: 'scope> {
    state: Arc<ScopeState>,
    handle: Handle,
    // Invariant in both lifetimes, as `std::thread::Scope` is, so neither can be shrunk
    // to let a child outlive what it borrows.
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// Runs `f` with a new fail-fast scope, joins every child it spawned, and returns `f`'s
/// value or the scope's first failure. See the [module docs](self).
///
/// # Panics
/// Re-raises the first panic of a child or of `f`, after every child has finished.
pub fn scope<'env, F, R>(f: F) -> Result<R, ScopeError>
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    scope_with(ScopeOptions::new(), f)
}

/// [`scope`] with a deadline: at `deadline` the scope is cancelled and returns
/// [`ScopeError::DeadlineExceeded`] once its children have finished.
pub fn scope_with_deadline<'env, F, R>(deadline: Instant, f: F) -> Result<R, ScopeError>
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    scope_with(ScopeOptions::new().deadline(deadline), f)
}

/// [`scope`] with options (policy, deadline).
pub fn scope_with<'env, F, R>(opts: ScopeOptions, f: F) -> Result<R, ScopeError>
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let handle = Handle::try_current().ok_or(ScopeError::Runtime(Error::NoRuntime))?;
    let token = sync::current_token().map_or_else(CancelToken::new, |parent| parent.child());
    let state = Arc::new(ScopeState::new(token.clone(), opts.policy));
    let deadline = opts.deadline.map(|d| DeadlineTimer::arm(&handle, &state, d));
    let scope = Scope { state, handle, _scope: PhantomData, _env: PhantomData };
    let body = sync::with_token(token, || catch_unwind(AssertUnwindSafe(|| f(&scope))));
    if body.is_err() {
        if child::is_shutting_down() {
            // Shutdown unwinds this coroutine: it must not park again (see `child`).
            drop(deadline);
            return body.map_or_else(|p| resume_unwind(p), Ok);
        }
        scope.state.token.cancel(); // a failed body leaves nobody to use the children
    }
    scope.state.wait_children();
    drop(deadline);
    let state = &scope.state;
    let mut failures = state.take_failures();
    let value = match body {
        Ok(v) => v,
        Err(payload) => resume_unwind(payload),
    };
    if let Some(p) = failures.panic.take() {
        resume_unwind(p);
    }
    if let Some(e) = failures.error.take() {
        return Err(ScopeError::Failed(e));
    }
    if state.deadline_hit.load(Acquire) {
        return Err(ScopeError::DeadlineExceeded);
    }
    if state.token.is_cancelled() && !state.cancelled_by_owner.load(Acquire) {
        return Err(ScopeError::Cancelled);
    }
    Ok(value)
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a child coroutine under the scope's token. It may borrow from `'env`; it
    /// returns `()` or a `Result` whose error fails the scope ([`Outcome`]).
    ///
    /// If the coroutine cannot be spawned, that is the scope's failure, and the handle
    /// joins with [`JoinError::Spawn`].
    #[track_caller]
    pub fn spawn<F, O>(&'scope self, f: F) -> ScopedJoinHandle<'scope, O::Output>
    where
        F: FnOnce() -> O + Send + 'scope,
        O: Outcome + 'scope,
        O::Output: Send + 'scope,
    {
        self.spawn_with(SpawnOptions::new(), f)
    }

    /// [`spawn`](Self::spawn) with options (stack size, name). The token is always the
    /// scope's.
    #[track_caller]
    pub fn spawn_with<F, O>(&'scope self, opts: SpawnOptions, f: F) -> ScopedJoinHandle<'scope, O::Output>
    where
        F: FnOnce() -> O + Send + 'scope,
        O: Outcome + 'scope,
        O::Output: Send + 'scope,
    {
        self.spawn_under(self.state.token.clone(), opts, f)
    }

    #[track_caller]
    pub(crate) fn spawn_under<F, O>(
        &'scope self,
        token: CancelToken,
        opts: SpawnOptions,
        f: F,
    ) -> ScopedJoinHandle<'scope, O::Output>
    where
        F: FnOnce() -> O + Send + 'scope,
        O: Outcome + 'scope,
        O::Output: Send + 'scope,
    {
        let packet = Packet::new(Arc::clone(&self.state));
        let main = child::child_main(f, Arc::clone(&packet));
        // SAFETY: the scope does not return before this child's packet is dropped, which
        // happens after `main` has been consumed or dropped (see `child`'s module docs), so
        // nothing `main` borrows is used after `'scope`.
        let spawned = unsafe { self.handle.spawn_detached_borrowing(opts.cancel_token(token), main) };
        if let Err(e) = spawned {
            self.state.failed(format!("cannot spawn a scoped child: {e}").into(), false);
            packet.complete(Err(JoinError::Spawn(e)));
        }
        ScopedJoinHandle::new(packet)
    }

    /// Starts a producer child: `f` sends into a new channel built from `chan` (a
    /// [`Kind`](crate::chan::Kind) or a [`Builder`]); the returned receiver reads it.
    /// The channel closes when `f` returns, fails or panics; cancelling the receiver
    /// (or dropping it) cancels the producer's token, stopping it. A producer error that
    /// follows the consumer's cancellation is not a failure of the scope.
    pub fn produce<T, F, O>(&'scope self, chan: impl Into<Builder<T>>, f: F) -> Receiver<T>
    where
        T: Send + 'scope,
        F: FnOnce(Sender<T>) -> O + Send + 'scope,
        O: Outcome + 'scope,
        O::Output: Send + 'scope,
    {
        let token = self.state.token.child();
        let (tx, rx) = chan.into().cancel_on_discard(token.clone()).build();
        drop(self.spawn_under(token, SpawnOptions::new(), move || f(tx)));
        rx
    }

    /// Cancels the scope: every child's blocking operations return `Canceled`. The scope
    /// still returns `Ok` (unless a child failed before).
    pub fn cancel(&self) {
        self.state.cancelled_by_owner.store(true, Release);
        self.state.token.cancel();
    }

    /// Fails the scope from its body, as a failing child would.
    pub fn fail(&self, error: impl Into<BoxError>) {
        self.state.failed(error.into(), self.state.token.is_cancelled());
    }

    /// The scope's token (a child of the caller's ambient token).
    pub fn token(&self) -> &CancelToken {
        &self.state.token
    }

    /// True once the scope is cancelled (by a failure, [`cancel`](Self::cancel), its
    /// deadline or its parent).
    pub fn is_cancelled(&self) -> bool {
        self.state.token.is_cancelled()
    }

    /// The failure policy.
    pub fn policy(&self) -> Policy {
        self.state.policy
    }
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("policy", &self.state.policy)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// A timer on the runtime's wheel that cancels a scope at its deadline: no coroutine, no
/// thread. Disarmed on drop.
struct DeadlineTimer {
    handle: Handle,
    key: crate::runtime::timer::TimerKey,
}

struct DeadlineFire(Arc<ScopeState>);

impl Wake for DeadlineFire {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.0.token.is_cancelled() {
            self.0.deadline_hit.store(true, Release);
            self.0.token.cancel();
        }
    }
}

impl DeadlineTimer {
    fn arm(handle: &Handle, state: &Arc<ScopeState>, deadline: Instant) -> DeadlineTimer {
        let waker = Waker::from(Arc::new(DeadlineFire(Arc::clone(state))));
        let key = handle.driver().timer_insert(deadline, Unparker::from_waker(waker));
        DeadlineTimer { handle: handle.clone(), key }
    }
}

impl Drop for DeadlineTimer {
    fn drop(&mut self) {
        self.handle.driver().timer_cancel(self.key);
    }
}
