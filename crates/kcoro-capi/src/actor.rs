//! `kc_actor_*`: an actor is a coroutine on the default scheduler that parks on its
//! mailbox (a copy-mode or pointer-mode channel), copies each message into its own buffer
//! and calls `process(msg, user)`; a non-zero return stops it.
//!
//! # Handles
//! A `kc_actor_t` is not a pointer: it is the actor's id (a process-wide counter, never
//! reused), looked up in a registry of running actors. The entry goes when the actor
//! finishes, so nobody has to free a handle and no call on an old handle can touch freed
//! memory: on a finished actor, `kc_actor_stop` and `kc_actor_cancel` do nothing and
//! `kc_actor_on_done` calls its callback at once. (C programs of the old runtime call
//! `kc_actor_stop` and never touch the handle again; that is all they need to do.)
//!
//! # Ending
//! - `process` returns non-zero, or the mailbox is closed and drained (`KC_EPIPE`).
//! - `kc_actor_stop` (graceful): the actor handles the messages already in its mailbox,
//!   then finishes the first time a receive finds it empty; the mailbox is not closed.
//! - `kc_actor_cancel` (immediate): the actor finishes once the `process` call under way
//!   returns (that call's own channel operations return `KC_ECANCELED`); queued messages
//!   stay in the mailbox. So does the cancel token of `kc_actor_start_ex`, and the
//!   scope's cancellation for `kc_scope_actor`.
//!
//! # Protocol (on_done, exactly once per registration)
//! 1. Finishing sets `finished` and takes the callback list, both under `done`, then leaves
//!    the registry, then calls the callbacks.
//! 2. `kc_actor_on_done` looks the id up: a live entry → under `done`, push the callback if
//!    not `finished`, else call it; no entry but an id already handed out → call it at
//!    once (the actor finished).
//!
//! Either way the callback runs once, and after the actor stopped touching its mailbox.

use std::collections::HashMap;
use std::ffi::{c_int, c_long, c_void};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use kcoro::chan::{ChanError, Receiver};
use kcoro::sync::{self, CancelToken};

use crate::cancel;
use crate::chan::{self, Chan, Ends, recv};
use crate::elem::{Elem, Heap, Inline, PtrMsg};
use crate::error::Error;
use crate::ffi;
use crate::layout::{KcActorCtx, KcActorCtxEx};
use crate::sched::{self, Spawn};
use crate::scope::Scope;

/// `kc_actor_t`.
pub type KcActor = *mut c_void;

/// `int (*kc_actor_fn)(const void *msg, void *user)`.
type ProcessFn = unsafe extern "C" fn(*const c_void, *mut c_void) -> c_int;

/// `void (*cb)(void *)` of `kc_actor_on_done`, with its argument.
#[derive(Clone, Copy)]
struct OnDone {
    f: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
}

// SAFETY: the C caller hands `arg` to the callback on whichever thread the actor finishes
// on; that is the documented contract of kc_actor_on_done.
unsafe impl Send for OnDone {}

impl OnDone {
    fn call(self) {
        // SAFETY: the C caller registered a function of this signature, which accepts
        // `arg` and does not unwind.
        unsafe { (self.f)(self.arg) }
    }
}

#[derive(Default)]
struct DoneState {
    finished: bool,
    callbacks: Vec<OnDone>,
}

/// What the registry and the running actor share.
struct Shared {
    id: u64,
    /// Fires on cancel: ends the actor at once. The actor's ambient token.
    cancel: CancelToken,
    /// A child of `cancel`, fired by stop too: ends the actor's wait on an empty mailbox.
    stop: CancelToken,
    done: Mutex<DoneState>,
}

impl Shared {
    fn done(&self) -> MutexGuard<'_, DoneState> {
        // Every critical section is a flag store or a push/take: poisoning leaves it whole.
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Protocol step 1. Takes the actor's own reference: a callback may be what lets the
    /// program free everything and exit, so the actor holds nothing on the heap by then
    /// (the callbacks are copied to the stack and their list freed first; up to
    /// `ON_STACK` of them, more are called from the list).
    fn finish(self: Arc<Self>) {
        const ON_STACK: usize = 8;
        let mut callbacks = {
            let mut d = self.done();
            d.finished = true;
            std::mem::take(&mut d.callbacks)
        };
        registry().remove(&self.id);
        drop(self);
        let spill = callbacks.len().saturating_sub(ON_STACK);
        callbacks.drain(..spill).for_each(OnDone::call);
        let mut last = [None; ON_STACK];
        for (slot, cb) in last.iter_mut().zip(&callbacks) {
            *slot = Some(*cb);
        }
        drop(callbacks);
        last.into_iter().flatten().for_each(OnDone::call);
    }
}

/// Ids handed out so far are `1..NEXT_ID`.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The running actors by id. Never held while calling out to C.
fn registry() -> MutexGuard<'static, HashMap<u64, Arc<Shared>>> {
    static ACTORS: OnceLock<Mutex<HashMap<u64, Arc<Shared>>>> = OnceLock::new();
    // Every critical section is one insert, remove or get: poisoning leaves the map whole.
    ACTORS.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// What a handle names.
enum Lookup {
    Running(Arc<Shared>),
    Finished,
    Invalid,
}

fn lookup(a: KcActor) -> Lookup {
    let id = a as usize as u64;
    if let Some(s) = registry().get(&id) {
        return Lookup::Running(Arc::clone(s));
    }
    // SeqCst: pairs with the fetch_add in `start`; an id below it was handed out.
    if id != 0 && id < NEXT_ID.load(SeqCst) { Lookup::Finished } else { Lookup::Invalid }
}

/// The actor's own receiving end of its mailbox (a clone: the caller may destroy the
/// channel handle while the actor runs, though it then stops getting messages only when
/// the last sender is gone).
enum Mailbox {
    Small(Receiver<Inline<8>>),
    Medium(Receiver<Inline<64>>),
    Large(Receiver<Heap>),
    Ptr(Receiver<PtrMsg>),
}

impl Mailbox {
    /// The mailbox of `ch` and the message size; `msg_size` 0 means the element size.
    fn of(ch: &Chan, msg_size: usize) -> Result<(Mailbox, usize), Error> {
        if ch.zc.get().is_some() {
            return Err(Error::Invalid("an actor's mailbox cannot be a zero-copy channel"));
        }
        let size = if msg_size == 0 { ch.elem_sz } else { msg_size };
        if size != ch.elem_sz {
            return Err(Error::Invalid("msg_size differs from the mailbox's element size"));
        }
        let m = match &ch.ends {
            Ends::Small(p) => Mailbox::Small(p.rx.clone()),
            Ends::Medium(p) => Mailbox::Medium(p.rx.clone()),
            Ends::Large(p) => Mailbox::Large(p.rx.clone()),
            Ends::Ptr(p) => Mailbox::Ptr(p.rx.clone()),
        };
        Ok((m, size))
    }

    /// Receives one message into `buf` (exactly the element size).
    fn recv_into(&self, buf: &mut [u8], tmo: c_long, c: Option<&CancelToken>) -> Result<(), Error> {
        fn put<T: Elem>(v: T, buf: &mut [u8]) {
            buf.copy_from_slice(v.bytes(buf.len()));
        }
        match self {
            Mailbox::Small(rx) => put(recv(rx, tmo, c)?, buf),
            Mailbox::Medium(rx) => put(recv(rx, tmo, c)?, buf),
            Mailbox::Large(rx) => put(recv(rx, tmo, c)?, buf),
            Mailbox::Ptr(rx) => {
                let m = recv(rx, tmo, c)?;
                let words = [m.ptr as usize, m.len];
                for (dst, w) in buf.chunks_exact_mut(size_of::<usize>()).zip(words) {
                    dst.copy_from_slice(&w.to_ne_bytes());
                }
            }
        }
        Ok(())
    }
}

/// A 16-byte aligned chunk of the message buffer, so `process` may read any C type there.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Chunk([u8; 16]);

/// The running actor: everything the coroutine owns.
struct Loop {
    shared: Arc<Shared>,
    mailbox: Mailbox,
    size: usize,
    /// Per-receive bound in ms; `-1`: none.
    timeout: c_long,
    process: ProcessFn,
    user: *mut c_void,
}

// SAFETY: `user` is handed to `process` on the actor's thread: the documented contract of
// kc_actor_start (as kc_spawn's argument).
unsafe impl Send for Loop {}

impl Loop {
    fn run(self) {
        let Loop { shared, mailbox, size, timeout, process, user } = self;
        let mut chunks = vec![Chunk([0; 16]); size.div_ceil(16)];
        let buf_ptr = chunks.as_mut_ptr().cast::<u8>();
        // SAFETY: `chunks` holds at least `size` bytes, is initialised, and is only used
        // through this slice (and `process`'s read of it during the call) from here on.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf_ptr, size) };
        while !shared.cancel.is_cancelled() {
            let draining = shared.stop.is_cancelled();
            let (tmo, token) = if draining { (0, None) } else { (timeout, Some(&shared.stop)) };
            match mailbox.recv_into(buf, tmo, token) {
                Ok(()) => {
                    // SAFETY: the C caller gave a function of this signature; `buf` holds
                    // the message for the call.
                    if unsafe { process(buf.as_ptr().cast(), user) } != 0 {
                        break;
                    }
                }
                // An idle period: wait again.
                Err(Error::Chan(ChanError::Timeout)) => {}
                // Stop or cancel fired: the loop head tells which.
                Err(Error::Chan(ChanError::Canceled)) if shared.stop.is_cancelled() => {}
                // Drained after a stop, closed and drained, or anything else: done.
                Err(_) => break,
            }
        }
        drop(mailbox);
        drop(chunks);
        shared.finish();
    }
}

/// Starts an actor for `ctx` under `token` (fired by `kc_actor_cancel`), on the default
/// scheduler, or as a child of `scope`. Returns the handle.
pub(crate) fn start(ctx: &KcActorCtx, token: CancelToken, scope: Option<&Scope>) -> Result<KcActor, Error> {
    let process = ctx.process.ok_or(Error::Invalid("process is NULL"))?;
    // SAFETY: the C contract of the callers: `ctx.chan` is a live channel handle.
    let ch = unsafe { chan::chan(ctx.chan) }?;
    let (mailbox, size) = Mailbox::of(ch, ctx.msg_size)?;
    let sched = match scope {
        Some(s) => s.sched(),
        None => sched::kc_sched_default(),
    };
    let how = match scope {
        Some(s) => s.spawn_under(token.clone(), 0),
        None => Spawn { token: Some(token.clone()), ..Spawn::default() },
    };
    let id = NEXT_ID.fetch_add(1, SeqCst);
    let stop = token.child();
    let shared = Arc::new(Shared { id, cancel: token, stop, done: Mutex::default() });
    // In the registry before it can finish (protocol step 1 removes it).
    registry().insert(id, Arc::clone(&shared));
    let timeout = if ctx.timeout_ms > 0 { c_long::from(ctx.timeout_ms) } else { -1 };
    let actor = Loop { shared, mailbox, size, timeout, process, user: ctx.user };
    if let Err(e) = sched::spawn_body(sched, how, move || actor.run()).map(drop) {
        registry().remove(&id);
        return Err(e);
    }
    Ok(id as usize as KcActor)
}

/// A token for a new actor: a child of `parent`, else of the caller's ambient token (the
/// enclosing scope's, inside a scope child), else a root.
fn child_of(parent: Option<&CancelToken>) -> CancelToken {
    match parent {
        Some(p) => p.child(),
        None => sync::current_token().map_or_else(CancelToken::new, |t| t.child()),
    }
}

/// Starts an actor on `ctx->chan` (copy or pointer mode; `msg_size` must be the element
/// size, or 0 for it; for a pointer channel `process` gets a `struct kc_chan_ptrmsg`).
/// `timeout_ms` > 0 bounds each wait on the mailbox, after which the actor just waits
/// again: an idle actor never stops by itself (≤ 0: waits without a bound). The context is
/// copied. NULL on bad input.
///
/// # Safety
/// `ctx` NULL or readable, `ctx->chan` NULL or live; `process` callable with `user` from
/// another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_actor_start(ctx: *const KcActorCtx) -> KcActor {
    ffi::ptr(|| {
        // SAFETY: the C contract above.
        let ctx = unsafe { ctx.as_ref() }.ok_or(Error::Invalid("ctx is NULL"))?;
        start(ctx, child_of(None), None)
    })
}

/// [`kc_actor_start`] whose actor is also cancelled when `ctx->cancel` (NULL: none) fires.
///
/// # Safety
/// As [`kc_actor_start`]; `ctx->cancel` NULL or live (it may be destroyed later).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_actor_start_ex(ctx: *const KcActorCtxEx) -> KcActor {
    ffi::ptr(|| {
        // SAFETY: the C contract above.
        let ctx = unsafe { ctx.as_ref() }.ok_or(Error::Invalid("ctx is NULL"))?;
        // SAFETY: the C contract above.
        let parent = unsafe { cancel::optional(ctx.cancel) }?;
        start(&ctx.base, child_of(parent), None)
    })
}

/// Graceful stop: the actor handles what is queued in its mailbox, then finishes when it
/// finds the mailbox empty. Returns at once; a finished actor is left as it is.
#[unsafe(no_mangle)]
pub extern "C" fn kc_actor_stop(a: KcActor) {
    ffi::void(|| {
        if let Lookup::Running(s) = lookup(a) {
            s.stop.cancel();
        }
        Ok(())
    })
}

/// Immediate stop: the actor finishes once the `process` call under way returns; queued
/// messages stay in the mailbox. Returns at once.
#[unsafe(no_mangle)]
pub extern "C" fn kc_actor_cancel(a: KcActor) {
    ffi::void(|| {
        if let Lookup::Running(s) = lookup(a) {
            s.cancel.cancel();
        }
        Ok(())
    })
}

/// Calls `cb(arg)` once when the actor finishes (on the actor's thread, after it stopped
/// touching its mailbox), or at once on the caller's thread if it already has. Each call
/// registers one callback. NULL `cb` or a handle never handed out: nothing.
///
/// # Safety
/// `cb` callable with `arg` from any thread, not unwinding.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_actor_on_done(
    a: KcActor,
    cb: Option<unsafe extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
) {
    ffi::void(|| {
        let f = cb.ok_or(Error::Invalid("cb is NULL"))?;
        let on_done = OnDone { f, arg };
        match lookup(a) {
            Lookup::Running(s) => {
                let mut d = s.done();
                if d.finished {
                    drop(d);
                    on_done.call();
                } else {
                    d.callbacks.push(on_done);
                }
            }
            Lookup::Finished => on_done.call(),
            Lookup::Invalid => return Err(Error::Invalid("kc_actor_t")),
        }
        Ok(())
    })
}
