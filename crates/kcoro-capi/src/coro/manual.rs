//! Manually resumed coroutines (`kcoro_create`/`kcoro_resume`): a C function on its own
//! stack (corosensei, guard page below), run on whichever thread resumes it until it
//! yields, parks or returns. It belongs to no scheduler: kcoro's waits inside it go through
//! the park hook (`kcoro::park::enter_external`), so a channel operation that must wait
//! switches back to the resumer, and the counterpart that completes it only marks it ready.
//!
//! # States
//! ```text
//!  phase \ event | resume (any thread)         | yield (on it) | park (on it)          | unpark (any thread)
//!  Created       | -> Running                  | impossible    | impossible            | token = true
//!  Running       | refused                     | -> Yielded    | token ? consume : -> Parked | token = true
//!  Yielded       | -> Running                  | impossible    | impossible            | token = true
//!  Parked        | token or deadline passed ?  | impossible    | impossible            | token = true
//!                |   -> Running : refused      |               |                       |
//!  Finished      | refused                     | impossible    | impossible            | ignored
//! ```
//!
//! # Invariants
//! - `phase == Running` ⇔ one resumer owns `body` and the coroutine runs on its thread; only
//!   that resumer (and the coroutine itself, through `yielder`) touches `body`/`yielder`.
//! - `body` is `None` only after the function returned (`Finished`).
//! - A parked coroutine runs again only after an unpark or past its deadline: a resume
//!   before that is refused, so resumes never make a wait return spuriously.

use std::cell::{Cell, UnsafeCell};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use kcoro::park::{self, ExternalCoroutine, Unpark, Unparker};

use crate::error::Error;
use crate::sched::TaskFn;

/// Why the coroutine switched back to its resumer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Suspend {
    /// `kcoro_yield`: runnable again at once.
    Yield,
    /// Waiting for an unpark (or `deadline`). `explicit`: parked by `kcoro_park` itself, so
    /// no Rust object with a destructor lives on the stack (see `Drop for Manual`).
    Park { deadline: Option<Instant>, explicit: bool },
}

type Body = Coroutine<*const Manual, Suspend, (), DefaultStack>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Created,
    Running,
    Yielded,
    Parked { deadline: Option<Instant>, explicit: bool },
    Finished,
}

/// What a resume did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resumed {
    /// Not runnable (running, finished, or parked and not woken): nothing happened.
    Refused,
    Yielded,
    Parked,
    Finished,
}

/// The part an unparker holds: the phase and the wake token.
struct RunState {
    st: Mutex<St>,
}

struct St {
    phase: Phase,
    /// An unpark not yet consumed by a park or a resume.
    token: bool,
}

impl RunState {
    fn lock(&self) -> MutexGuard<'_, St> {
        // Nothing panics while holding it; recover from poisoning anyway.
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Unpark for RunState {
    fn unpark(&self) {
        self.lock().token = true;
    }
}

/// Whether a wait's deadline (if any) has passed.
fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// A manually resumed coroutine.
pub(crate) struct Manual {
    run: Arc<RunState>,
    body: UnsafeCell<Option<Body>>,
    /// Written by the coroutine when it starts; read only by the coroutine itself.
    yielder: Cell<*const Yielder<*const Manual, Suspend>>,
}

// SAFETY: `body` and `yielder` are touched only by the resumer that moved `phase` to
// `Running` under `run.st` (and by the coroutine it runs, on that same thread), or by `Drop`
// with `&mut self`; the lock hands them from one resumer to the next. Running the coroutine
// on another thread than last time is the documented C contract (one resumer at a time);
// kcoro's own frames on its stack hold no thread-bound state across a park (the thread-local
// rule of kcoro's runtime/context.rs, which makes them safe under migration).
unsafe impl Send for Manual {}
// SAFETY: as above; the shared state is behind the mutex.
unsafe impl Sync for Manual {}

impl Manual {
    /// A coroutine that will run `f(arg)` on a stack of `stack` bytes (0: 64 KiB).
    pub(crate) fn new(f: TaskFn, arg: *mut std::ffi::c_void, stack: usize) -> Result<Arc<Manual>, Error> {
        let size = if stack == 0 { kcoro::coro::stack::DEFAULT_STACK_SIZE } else { stack };
        let stack =
            DefaultStack::new(size.max(kcoro::coro::stack::MIN_STACK_SIZE)).map_err(|_| Error::NoMemory)?;
        let arg = arg as usize; // a plain word, so the closure is `'static`
        let body = Body::with_stack(stack, move |y: &Yielder<*const Manual, Suspend>, me: *const Manual| {
            // SAFETY: the first resume passes the `Manual` that owns this coroutine; it
            // outlives the run (the resumer holds a reference).
            unsafe { (*me).yielder.set(y) };
            // SAFETY: the C caller passed a function of this signature and an argument it
            // accepts; C code cannot unwind.
            unsafe { f(arg as *mut std::ffi::c_void) };
        });
        Ok(Arc::new(Manual {
            run: Arc::new(RunState { st: Mutex::new(St { phase: Phase::Created, token: false }) }),
            body: UnsafeCell::new(Some(body)),
            yielder: Cell::new(std::ptr::null()),
        }))
    }

    /// The unparker that marks it ready (what kcoro's waits inside it register).
    pub(crate) fn waker(&self) -> Unparker {
        Unparker::from_unpark(Arc::clone(&self.run) as Arc<dyn Unpark>)
    }

    /// Runs the coroutine on this thread until it yields, parks or returns.
    pub(crate) fn resume(self: &Arc<Self>) -> Resumed {
        {
            let mut st = self.run.lock();
            match st.phase {
                Phase::Created | Phase::Yielded => {}
                Phase::Parked { deadline, .. } => {
                    if st.token {
                        st.token = false;
                    } else if !passed(deadline) {
                        return Resumed::Refused;
                    }
                }
                Phase::Running | Phase::Finished => return Resumed::Refused,
            }
            st.phase = Phase::Running;
        }
        // SAFETY: we moved `phase` to `Running`: `body` is ours until we move it on.
        let body = unsafe { &mut *self.body.get() };
        let Some(b) = body.as_mut() else {
            self.run.lock().phase = Phase::Finished;
            return Resumed::Finished;
        };
        let result = {
            let _inside = park::enter_external(Arc::clone(self) as Arc<dyn ExternalCoroutine>);
            b.resume(Arc::as_ptr(self))
        };
        let mut st = self.run.lock();
        match result {
            CoroutineResult::Yield(Suspend::Yield) => {
                st.phase = Phase::Yielded;
                Resumed::Yielded
            }
            CoroutineResult::Yield(Suspend::Park { deadline, explicit }) => {
                // A token that raced in after the park's check stays set: the next resume runs it.
                st.phase = Phase::Parked { deadline, explicit };
                Resumed::Parked
            }
            CoroutineResult::Return(()) => {
                st.phase = Phase::Finished;
                drop(st);
                *body = None; // the stack is freed now, on the resumer's stack
                Resumed::Finished
            }
        }
    }

    /// True while parked and not yet woken (no token, deadline not passed).
    pub(crate) fn is_parked(&self) -> bool {
        let st = self.run.lock();
        match st.phase {
            Phase::Parked { deadline, .. } => !st.token && !passed(deadline),
            _ => false,
        }
    }

    /// Parks the running coroutine: returns at once on a pending token or a passed
    /// deadline, else switches back to the resumer. Call only from the coroutine itself.
    pub(crate) fn park_here(&self, deadline: Option<Instant>, explicit: bool) {
        {
            let mut st = self.run.lock();
            if st.token {
                st.token = false;
                return;
            }
            if passed(deadline) {
                return;
            }
        } // the guard is gone before the switch: nothing with a destructor stays behind
        self.suspend(Suspend::Park { deadline, explicit });
    }

    /// Switches back to the resumer, runnable again at once. Call only from the coroutine.
    pub(crate) fn yield_here(&self) {
        self.suspend(Suspend::Yield);
    }

    fn suspend(&self, why: Suspend) {
        let y = self.yielder.get();
        assert!(!y.is_null(), "Manual::suspend: the coroutine has not started");
        // SAFETY: callers run on this coroutine's stack (it is the thread's running manual
        // coroutine), where the yielder stored at its start lives until it returns.
        unsafe { (*y).suspend(why) };
    }
}

impl ExternalCoroutine for Manual {
    fn park(&self, deadline: Option<Instant>) {
        self.park_here(deadline, false);
    }

    fn unparker(&self) -> Unparker {
        self.waker()
    }
}

impl Drop for Manual {
    /// The last reference is gone. A coroutine that never started or has finished is simply
    /// freed. One suspended in `kcoro_yield`/`kcoro_park` is abandoned where it stands and
    /// its stack freed: only C frames and destructor-free Rust frames are on it, as when the
    /// old runtime freed a suspended coroutine. One suspended inside a kcoro wait (a channel
    /// operation, select, sleep) keeps its stack, leaked: the wait is still registered
    /// with a channel that may write into it.
    fn drop(&mut self) {
        let phase = self.run.lock().phase;
        let Some(mut body) = self.body.get_mut().take() else { return };
        match phase {
            Phase::Created | Phase::Finished => drop(body),
            Phase::Yielded | Phase::Parked { explicit: true, .. } => {
                // SAFETY: suspended in `yield_here`/`park_here` called from `kcoro_yield` or
                // `kcoro_park`, whose frames hold nothing with a destructor (see `park_here`),
                // and C frames have none: abandoning them is sound.
                unsafe { body.force_reset() };
                drop(body);
            }
            Phase::Parked { explicit: false, .. } | Phase::Running => std::mem::forget(body),
        }
    }
}
