//! `kc_sched_*`, `kc_spawn`, `kc_spawn_co`, `kc_yield`, `kc_sleep_ms`: the scheduler is a
//! kcoro [`Runtime`]. `kc_sched_default()` starts one process-wide runtime on first use
//! (never shut down); `kc_sched_init` makes more.
//!
//! Each spawned C function runs as a kcoro coroutine: channel operations in it park the
//! coroutine, not its worker. A [`WaitGroup`] counts the functions spawned and not yet
//! returned; `kc_sched_drain` waits on it (parking, with the timer wheel for a bound).
//!
//! `kc_sched_current()` reads a per-thread pointer set when a spawned function starts.
//! That is sound because a started kcoro coroutine never leaves its worker thread, and a
//! worker thread belongs to one runtime.

use std::cell::Cell;
use std::ffi::{c_int, c_long, c_ulong, c_void};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kcoro::sync::{CancelToken, WaitGroup};
use kcoro::{Handle as RtHandle, Runtime, SpawnOptions};

use crate::error::{Error, code};
use crate::ffi;
use crate::handle::{self, Handle, Tagged};
use crate::layout::{KcSchedOpts, KcSchedStats};

/// `void (*kc_task_fn)(void *)` and `kcoro_fn_t`.
pub type TaskFn = unsafe extern "C" fn(*mut c_void);

/// How long `kc_sched_shutdown` waits for coroutines to reach a scheduling point.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// What a `kc_sched_t *` points to.
pub struct Sched {
    rt: Mutex<Option<Runtime>>,
    handle: RtHandle,
    live: Arc<WaitGroup>,
    is_default: bool,
}

impl Handle for Sched {
    const MAGIC: u64 = 0x6b63_5f73_6368_6431; // "kc_schd1"
    const WHAT: &'static str = "kc_sched_t";
}

/// The C handle type.
pub type KcSched = Tagged<Sched>;

thread_local! {
    /// The `kc_sched_t *` whose worker this thread is (0: none).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

fn start(opts: Option<&KcSchedOpts>, is_default: bool) -> Result<*mut KcSched, Error> {
    let mut b = Runtime::builder().name(if is_default { "kcoro-c" } else { "kcoro-c-sched" });
    if let Some(o) = opts.filter(|o| o.workers > 0) {
        b = b.workers(o.workers as usize);
    }
    let rt = b.build()?;
    let handle = rt.handle();
    Ok(handle::into_raw(Sched {
        rt: Mutex::new(Some(rt)),
        handle,
        live: Arc::new(WaitGroup::new()),
        is_default,
    }))
}

/// A C function and its argument, moved into a coroutine.
pub(crate) struct Job {
    pub(crate) f: TaskFn,
    pub(crate) arg: *mut c_void,
}

// SAFETY: the C caller hands `arg` to the function on another thread by spawning it; that
// is the documented contract of kc_spawn (the same as pthread_create's).
unsafe impl Send for Job {}

impl Job {
    /// Calls the function.
    pub(crate) fn call(self) {
        // SAFETY: the C caller passed a function of this signature and an argument it
        // accepts; the function must not unwind (C code cannot).
        unsafe { (self.f)(self.arg) }
    }
}

/// Marks a spawned function finished even if it unwinds.
struct Done(Arc<WaitGroup>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.done();
    }
}

/// How a coroutine is spawned: its stack, its ambient cancel token, and a wait group
/// (a scope's) that counts it besides its scheduler's.
#[derive(Default)]
pub(crate) struct Spawn {
    /// Stack bytes; 0: the runtime's default.
    pub(crate) stack: usize,
    /// The ambient token: the coroutine's channel operations give up when it fires.
    pub(crate) token: Option<CancelToken>,
    /// Counted from the spawn until `body` has returned.
    pub(crate) group: Option<Arc<WaitGroup>>,
}

/// The one spawn path of the C API: runs `body` as a coroutine on `sp`, counted by the
/// scheduler's drain group (and `how.group`) until it returns.
pub(crate) fn spawn_body(
    sp: *mut KcSched,
    how: Spawn,
    body: impl FnOnce() + Send + 'static,
) -> Result<(), Error> {
    // SAFETY: `sp` is a handle by the C contract of the callers.
    let s = unsafe { handle::get(sp) }?;
    let mut opts = SpawnOptions::new();
    if how.stack > 0 {
        opts = opts.stack_size(how.stack);
    }
    if let Some(t) = how.token {
        opts = opts.cancel_token(t);
    }
    let sched = sp as usize;
    s.live.add(1);
    let done = Done(Arc::clone(&s.live));
    let group_done = how.group.map(|g| {
        g.add(1);
        Done(g)
    });
    let r = s.handle.spawn_with(opts, move || {
        // Dropped in reverse order: the scope hears of the return before the scheduler.
        let _done = done;
        let _group_done = group_done;
        CURRENT.with(|c| c.set(sched));
        body()
    });
    // A failed spawn dropped the closure, and with it the guards: the counts are balanced.
    r.map(drop)?;
    Ok(())
}

/// `kc_spawn_co`'s body, shared with `kc_scope_launch`: spawns `f(arg)` and sets
/// `*out_co` (NULL: scheduler coroutines have no `kcoro_t` handle in this library).
///
/// # Safety
/// `out_co` NULL or writable.
pub(crate) unsafe fn spawn_co(
    sp: *mut KcSched,
    f: Option<TaskFn>,
    arg: *mut c_void,
    how: Spawn,
    out_co: *mut *mut c_void,
) -> Result<c_int, Error> {
    // SAFETY: the caller's contract.
    unsafe { ffi::store(out_co, std::ptr::null_mut()) };
    let job = Job { f: f.ok_or(Error::Invalid("fn is NULL"))?, arg };
    spawn_body(sp, how, move || job.call())?;
    Ok(0)
}

/// `kc_sched_t *kc_sched_init(const kc_sched_opts_t *opts)` (opts may be NULL).
///
/// # Safety
/// `opts` NULL or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_sched_init(opts: *const KcSchedOpts) -> *mut KcSched {
    // SAFETY: the C contract above.
    ffi::ptr(|| start(unsafe { opts.as_ref() }, false))
}

/// The process-wide scheduler, started on first use (NULL only if it cannot start).
#[unsafe(no_mangle)]
pub extern "C" fn kc_sched_default() -> *mut KcSched {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    ffi::ptr(|| {
        if let Some(p) = DEFAULT.get() {
            return Ok(*p as *mut KcSched);
        }
        let mut err = None;
        let p = *DEFAULT.get_or_init(|| match start(None, true) {
            Ok(p) => p as usize,
            Err(e) => {
                err = Some(e);
                0
            }
        });
        match (p, err) {
            (0, Some(e)) => Err(e),
            (0, None) => Err(Error::NoMemory),
            (p, _) => Ok(p as *mut KcSched),
        }
    })
}

/// The scheduler running the calling coroutine, or NULL on a plain thread.
#[unsafe(no_mangle)]
pub extern "C" fn kc_sched_current() -> *mut KcSched {
    ffi::ptr(|| Ok(CURRENT.with(Cell::get) as *mut KcSched))
}

/// Stops a scheduler made by `kc_sched_init` and frees it; the default one is left
/// running. Coroutines still parked are unwound.
///
/// # Safety
/// `s` NULL or live; not called from one of its own coroutines.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_sched_shutdown(s: *mut KcSched) {
    ffi::void(|| {
        // SAFETY: the C contract above.
        let sched = unsafe { handle::get(s) }?;
        if sched.is_default {
            return Ok(());
        }
        let rt = sched.rt.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rt) = rt {
            rt.shutdown_timeout(SHUTDOWN_WAIT);
        }
        // SAFETY: the C contract above.
        unsafe { handle::destroy(s) }
    })
}

/// Runs `fn(arg)` as a coroutine on the scheduler.
///
/// # Safety
/// `s` live; `fn` callable with `arg` from another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_spawn(s: *mut KcSched, f: Option<TaskFn>, arg: *mut c_void) -> c_int {
    // SAFETY: no out-pointer.
    ffi::int(|| unsafe { spawn_co(s, f, arg, Spawn::default(), std::ptr::null_mut()) })
}

/// Runs `fn(arg)` as a coroutine with a stack of `stack_size` bytes (0: 64 KiB).
/// `*out_co`, if given, is set to NULL: scheduler coroutines have no `kcoro_t` handle in
/// this library.
///
/// # Safety
/// As [`kc_spawn`]; `out_co` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_spawn_co(
    s: *mut KcSched,
    f: Option<TaskFn>,
    arg: *mut c_void,
    stack_size: usize,
    out_co: *mut *mut c_void,
) -> c_int {
    let how = Spawn { stack: stack_size, ..Spawn::default() };
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { spawn_co(s, f, arg, how, out_co) })
}

/// Lets other coroutines run (on a plain thread: `sched_yield`).
#[unsafe(no_mangle)]
pub extern "C" fn kc_yield() {
    ffi::void(|| {
        kcoro::yield_now();
        Ok(())
    })
}

/// Sleeps `ms` milliseconds, parking the coroutine (or thread); ≤ 0 returns at once.
#[unsafe(no_mangle)]
pub extern "C" fn kc_sleep_ms(ms: c_int) {
    ffi::void(|| {
        if ms > 0 {
            kcoro::sleep(Duration::from_millis(ms as u64));
        }
        Ok(())
    })
}

/// Waits until every function spawned on `s` has returned: 0, or `KC_ETIME` when the
/// bound runs out (timeout 0: just checks). Not from one of `s`'s own coroutines.
///
/// # Safety
/// `s` live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_sched_drain(s: *mut KcSched, timeout_ms: c_long) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let s = unsafe { handle::get(s) }?;
        let r = match timeout_ms {
            ms if ms < 0 => s.live.wait().map_err(|_| code::ECANCELED),
            ms => s.live.wait_timeout(Duration::from_millis(ms as u64)).map_err(|e| match e {
                kcoro::sync::WaitError::Timeout => code::ETIME,
                kcoro::sync::WaitError::Cancelled => code::ECANCELED,
            }),
        };
        Ok(r.err().unwrap_or(0))
    })
}

/// Fills `out` with the runtime's counters. kcoro has no fast path or donation counters:
/// those fields are 0.
///
/// # Safety
/// `s` live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_sched_get_stats(s: *mut KcSched, out: *mut KcSchedStats) {
    ffi::void(|| {
        // SAFETY: the C contract above.
        let s = unsafe { handle::get(s) }?;
        if out.is_null() {
            return Err(Error::Invalid("out is NULL"));
        }
        let st = s.handle.stats();
        let v = KcSchedStats {
            tasks_submitted: st.spawned as c_ulong,
            tasks_completed: st.completed as c_ulong,
            steals_probes: st.steal_probes as c_ulong,
            steals_succeeded: st.steals as c_ulong,
            steals_failures: st.steal_probes.saturating_sub(st.steals) as c_ulong,
            fastpath_hits: 0,
            fastpath_misses: 0,
            inject_pulls: st.inject_pulls as c_ulong,
            donations: 0,
        };
        // SAFETY: checked non-null.
        unsafe { out.write(v) };
        Ok(())
    })
}
