//! `kc_scope_*`: scopes that are not lexically bound. A C scope is a kcoro [`CancelToken`]
//! and a [`WaitGroup`] of the children it started; the children run on the default
//! scheduler (`kc_sched_default()`) with the scope's token as their ambient token, so
//! their channel operations, sleeps and waits end with `KC_ECANCELED` once the scope is
//! cancelled.
//!
//! Unlike `kcoro::scope`, nothing borrows from a stack frame: every child owns what it
//! runs (a C function and its argument), so the scope is a handle like any other, and
//! `kc_scope_destroy` is where it joins.
//!
//! # Invariants
//! - The scope's token is a child of the parent token given to `kc_scope_init` (else of
//!   the caller's ambient token, else a root): cancelling a parent cancels the scope.
//! - `group`'s count = children started and not yet returned (a failed spawn is not
//!   counted: `sched::spawn_body` balances it).
//! - `token` (the `kc_cancel_t` of `kc_scope_token`) lives until the scope is destroyed,
//!   which happens only after every child has returned.
//!
//! # Protocol (destroy)
//! 1. Cancel the token: every child's blocking operation returns `KC_ECANCELED`.
//! 2. Wait for the group to reach zero, shielded from the caller's own ambient token, so
//!    a cancelled caller still waits (no child may outlive the handle it was given).
//! 3. Free the token handle, then the scope.

use std::ffi::{c_int, c_long, c_void};
use std::sync::Arc;
use std::time::Duration;

use kcoro::sync::{self, CancelToken, WaitError, WaitGroup};

use crate::actor::{self, KcActor};
use crate::cancel::{self, Cancel, KcCancel};
use crate::chan::{Chan, KcChan};
use crate::coro::KcoroT;
use crate::error::{Error, code};
use crate::ffi;
use crate::handle::{self, Handle, Tagged};
use crate::layout::KcActorCtx;
use crate::sched::{self, KcSched, Spawn, TaskFn};

/// `int (*kc_producer_fn)(kc_chan_t *ch, void *user)`.
pub type ProducerFn = unsafe extern "C" fn(*mut KcChan, *mut c_void) -> c_int;

/// What a `kc_scope_t *` points to.
pub struct Scope {
    /// The `kc_cancel_t` handed out by `kc_scope_token`; owned, freed on drop.
    token: *mut KcCancel,
    /// Counts the children still running.
    group: Arc<WaitGroup>,
    /// The scheduler the children run on (the default one).
    sched: *mut KcSched,
}

impl Handle for Scope {
    const MAGIC: u64 = 0x6b63_5f73_636f_7031; // "kc_scop1"
    const WHAT: &'static str = "kc_scope_t";
}

/// The C handle type.
pub type KcScope = Tagged<Scope>;

impl Scope {
    /// The scope's token (a clone shares the flag).
    pub(crate) fn cancel_token(&self) -> Result<CancelToken, Error> {
        // SAFETY: `token` was made by `kc_scope_init` and is freed only by `drop`.
        Ok(unsafe { handle::get(self.token) }?.0.clone())
    }

    /// How a child of this scope is spawned: under `token` (the scope's or a child of it),
    /// counted by the scope's group.
    pub(crate) fn spawn_under(&self, token: CancelToken, stack: usize) -> Spawn {
        Spawn { stack, token: Some(token), group: Some(Arc::clone(&self.group)), ..Spawn::default() }
    }

    /// The default scheduler the children run on.
    pub(crate) fn sched(&self) -> *mut KcSched {
        self.sched
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // SAFETY: made by `kc_scope_init`, freed only here.
        let _ = unsafe { handle::destroy(self.token) };
    }
}

/// # Safety
/// `s` as in [`handle::get`].
unsafe fn scope<'a>(s: *const KcScope) -> Result<&'a Scope, Error> {
    // SAFETY: forwarded contract.
    unsafe { handle::get(s) }
}

/// `int kc_scope_init(kc_scope_t **out, const kc_cancel_t *parent)`: a scope whose token is
/// a child of `parent` (NULL: of the caller's ambient token, e.g. the enclosing scope's
/// when called from one of its children; else a root token). Nest scopes by passing
/// `kc_scope_token(outer)`.
///
/// # Safety
/// `out` NULL or writable; `parent` NULL or live (it may be destroyed later: the scope's
/// token keeps its link to it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_scope_init(out: *mut *mut KcScope, parent: *const KcCancel) -> c_int {
    ffi::int(|| {
        if out.is_null() {
            return Err(Error::Invalid("out is NULL"));
        }
        // SAFETY: the C contract above.
        let token = match unsafe { cancel::optional(parent) }? {
            Some(p) => p.child(),
            None => sync::current_token().map_or_else(CancelToken::new, |t| t.child()),
        };
        let sched = sched::kc_sched_default();
        if sched.is_null() {
            return Err(Error::NoMemory);
        }
        let token = handle::into_raw(Cancel(token));
        let s = handle::into_raw(Scope { token, group: Arc::new(WaitGroup::new()), sched });
        // SAFETY: checked non-null above.
        unsafe { ffi::write_out(out, s) }
    })
}

/// Cancels the scope: its token (and every token made from it) fires.
///
/// # Safety
/// `s` NULL (ignored) or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_scope_cancel(s: *mut KcScope) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { scope(s) }?.cancel_token().map(|t| t.cancel()))
}

/// Runs `fn(arg)` as a child coroutine of the scope (stack 0: 64 KiB). `*out_co`, if
/// given, receives a `kcoro_t` for it, as from `kc_spawn_co` (the caller's reference,
/// released with `kcoro_release`). A cancelled scope still starts it; its
/// blocking operations then return `KC_ECANCELED` at once.
///
/// # Safety
/// `s` live; `fn` callable with `arg` from another thread; `out_co` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_scope_launch(
    s: *mut KcScope,
    f: Option<TaskFn>,
    arg: *mut c_void,
    stack_size: usize,
    out_co: *mut *mut KcoroT,
) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let s = unsafe { scope(s) }?;
        let how = s.spawn_under(s.cancel_token()?, stack_size);
        // SAFETY: the C contract above.
        unsafe { sched::spawn_co(s.sched(), f, arg, how, out_co) }
    })
}

/// An actor that is a child of the scope (see `kc_actor_start`): cancelled with it, and
/// waited for by `kc_scope_wait_all` and `kc_scope_destroy`. NULL on bad input.
///
/// # Safety
/// `s` live; `ctx` as for `kc_actor_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_scope_actor(s: *mut KcScope, ctx: *const KcActorCtx) -> KcActor {
    ffi::ptr(|| {
        // SAFETY: the C contract above.
        let s = unsafe { scope(s) }?;
        // SAFETY: the C contract above.
        let ctx = unsafe { ctx.as_ref() }.ok_or(Error::Invalid("ctx is NULL"))?;
        actor::start(ctx, s.cancel_token()?.child(), Some(s))
    })
}

/// The producer coroutine's share of the channel: the C handle it passes to `fn`, and its
/// own clone of the sending end, which it closes when `fn` returns. Closing through the
/// clone means the caller may destroy the handle as soon as a receive reports
/// `KC_EPIPE`: the producer touches nothing of the handle after `fn` returned.
struct Producer {
    f: ProducerFn,
    user: *mut c_void,
    ch: *mut KcChan,
    close: Box<dyn FnOnce() + Send>,
}

// SAFETY: `user` and `ch` are handed to the producer function on another thread, the
// contract of kc_scope_produce (as kc_spawn's); the channel handle is `Sync`.
unsafe impl Send for Producer {}

impl Producer {
    fn run(self) {
        // SAFETY: the C caller passed a producer of this signature; `ch` is live until the
        // caller destroys it, which it may do only after the producer finished (C contract).
        unsafe { (self.f)(self.ch, self.user) };
        (self.close)();
    }
}

/// Starts `fn(ch, user)` as a child of the scope on a new copy-mode channel
/// (`kc_chan_make(kind, elem_sz, capacity)`) and returns the channel; it is closed when
/// `fn` returns (its return value is ignored). The caller receives from it and destroys
/// it, once a receive returned `KC_EPIPE` or the scope was waited for. NULL on bad input.
///
/// # Safety
/// `s` live; `fn` callable with the channel and `user` from another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_scope_produce(
    s: *mut KcScope,
    kind: c_int,
    elem_sz: usize,
    capacity: usize,
    f: Option<ProducerFn>,
    user: *mut c_void,
) -> *mut KcChan {
    ffi::ptr(|| {
        // SAFETY: the C contract above.
        let s = unsafe { scope(s) }?;
        let f = f.ok_or(Error::Invalid("fn is NULL"))?;
        let chan = Chan::new_copy(kind, elem_sz, capacity)?;
        let close = chan.closer();
        let ch = handle::into_raw(chan);
        let job = Producer { f, user, ch, close };
        let how = s.spawn_under(s.cancel_token()?, 0);
        if let Err(e) = sched::spawn_body(s.sched(), how, move || job.run()).map(drop) {
            // SAFETY: made above and never handed out: the failed spawn dropped its copy.
            let _ = unsafe { handle::destroy(ch) };
            return Err(e);
        }
        Ok(ch)
    })
}

/// Waits until every child of the scope has returned: 0, `KC_ETIME` when the bound runs
/// out (timeout 0: checks; < 0: no bound), `KC_ECANCELED` when the caller's own ambient
/// token fires. Parks. Not from one of the scope's own children.
///
/// # Safety
/// `s` live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_scope_wait_all(s: *mut KcScope, timeout_ms: c_long) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let s = unsafe { scope(s) }?;
        let r = match timeout_ms {
            ms if ms < 0 => s.group.wait().map_err(|_| WaitError::Cancelled),
            ms => s.group.wait_timeout(Duration::from_millis(ms as u64)),
        };
        Ok(match r {
            Ok(()) => 0,
            Err(WaitError::Timeout) => code::ETIME,
            Err(WaitError::Cancelled) => code::ECANCELED,
        })
    })
}

/// Cancels the scope, waits for every child to return (however long that takes), then
/// frees the scope and its token. Safe with children still running: they are cancelled
/// first. Not from one of the scope's own children (that would wait for itself).
///
/// # Safety
/// `s` NULL (ignored) or live; not used afterwards, nor its token.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_scope_destroy(s: *mut KcScope) {
    ffi::void(|| {
        // SAFETY: the C contract above.
        let sc = unsafe { scope(s) }?;
        sc.cancel_token()?.cancel();
        // Shielded: a caller under a cancelled token must still wait (protocol step 2).
        let _ = sync::with_token(CancelToken::new(), || sc.group.wait());
        // SAFETY: the C contract above; every child has returned.
        unsafe { handle::destroy(s) }
    })
}

/// The scope's token, for `kc_chan_*_c`, `kc_cancel_is_set` and `kc_cancel_wait` (and as
/// the parent of nested scopes); valid until `kc_scope_destroy`. NULL for a bad handle.
/// Do not destroy it: the scope owns it.
///
/// # Safety
/// `s` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_scope_token(s: *const KcScope) -> *const KcCancel {
    // SAFETY: the C contract above.
    ffi::ptr(|| unsafe { scope(s) }.map(|s| s.token)).cast_const()
}
