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
//!
//! `kc_spawn` and `kc_spawn_co` share one spawn path (`spawn_c_coroutine`), which can
//! hand out a `kcoro_t` for the coroutine (module `coro::registry`).
//! `kc_sched_enqueue_ready` and the `kc_sched_timer_*` calls unpark such handles; timers
//! sit on the runtime's timer wheel (`kcoro::Handle::unpark_at`).

use std::cell::Cell;
use std::ffi::{c_int, c_long, c_ulong, c_ulonglong, c_void};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kcoro::park::{Unpark as _, Unparker};
use kcoro::sync::{CancelToken, WaitGroup};
use kcoro::{Handle as RtHandle, Runtime, SpawnOptions};

use crate::coro::{self, KcoroT, registry};
use crate::error::{Error, code};
use crate::ffi;
use crate::handle::{self, Handle, Tagged};
use crate::layout::{KcSchedOpts, KcSchedStats, KcTimerHandle};

/// `void (*kc_task_fn)(void *)` and `kcoro_fn_t`.
pub type TaskFn = unsafe extern "C" fn(*mut c_void);

/// How long `kc_sched_shutdown` waits for its coroutines before it says on stderr what it
/// is waiting for (it goes on waiting).
const SHUTDOWN_NOTE_AFTER: Duration = Duration::from_secs(10);

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
struct Done(Option<Arc<WaitGroup>>);

impl Drop for Done {
    fn drop(&mut self) {
        // From the worker's stack: once `done` wakes the waiter, which may free the group's
        // owner (a scope, a bench) and exit, our reference to the group is on a thread's
        // own stack, where a leak checker scanning at exit finds it, not on the
        // coroutine's, which none scans.
        kcoro::coro::on_worker_stack(|| {
            if let Some(group) = self.0.take() {
                group.done();
            }
        });
    }
}

/// How a coroutine is spawned: its stack, its ambient cancel token, a wait group (a
/// scope's) that counts it besides its scheduler's, and whether the caller wants a
/// `kcoro_t` for it.
#[derive(Default)]
pub(crate) struct Spawn {
    /// Stack bytes; 0: the runtime's default.
    pub(crate) stack: usize,
    /// The ambient token: the coroutine's channel operations give up when it fires.
    pub(crate) token: Option<CancelToken>,
    /// Counted from the spawn until `body` has returned.
    pub(crate) group: Option<Arc<WaitGroup>>,
    /// Make a `kcoro_t` for the coroutine (module `coro::registry`).
    pub(crate) want_handle: bool,
    /// Return a join handle. Without one the coroutine is spawned detached: no join slot
    /// is allocated, so once the wait groups hear of its return it holds nothing that
    /// only its own stack points to (a program that drains or waits for a scope and
    /// exits at once leaks nothing).
    pub(crate) want_join: bool,
}

/// A coroutine [`spawn_body`] started.
pub(crate) struct Spawned {
    /// Its `kcoro_t` (NULL unless `Spawn::want_handle`).
    pub(crate) co: *mut KcoroT,
    /// With `Spawn::want_join`: finished once the coroutine has returned, been counted and
    /// let go of everything it held: what a stop that must free all it started waits on.
    pub(crate) join: Option<kcoro::JoinHandle<()>>,
}

/// The one spawn path of the C API: runs `body` as a coroutine on `sp`, counted by the
/// scheduler's drain group (and `how.group`) until it returns. With `how.want_handle`,
/// `co` is a new `kcoro_t` for it holding one reference for the caller (the coroutine
/// holds another until `body` returns); else NULL.
pub(crate) fn spawn_body(
    sp: *mut KcSched,
    how: Spawn,
    body: impl FnOnce() + Send + 'static,
) -> Result<Spawned, Error> {
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
    let co = if how.want_handle { coro::new_sched_handle(2) } else { std::ptr::null_mut() };
    let pending = how.want_handle.then(|| registry::Pending::new(co));
    s.live.add(1);
    let done = Done(Some(Arc::clone(&s.live)));
    let group_done = how.group.map(|g| {
        g.add(1);
        Done(Some(g))
    });
    let run = move || {
        // Dropped in reverse order: the handle's entry goes first (gone when a drain sees
        // us finish), then the scope hears of the return, then the scheduler.
        let _done = done;
        let _group_done = group_done;
        CURRENT.with(|c| c.set(sched));
        let _slot = registry::enter(sched, pending);
        body()
    };
    let r = if how.want_join {
        s.handle.spawn_with(opts, run).map(Some)
    } else {
        s.handle.spawn_detached(opts, run).map(|()| None)
    };
    // A failed spawn dropped the closure, and with it the guards (the counts are balanced)
    // and `pending` (the coroutine's reference); the caller's reference remains.
    match r {
        Ok(join) => Ok(Spawned { co, join }),
        Err(e) => {
            if !co.is_null() {
                // SAFETY: we hold the caller's reference of the handle made above.
                unsafe { coro::release(co) }?;
            }
            Err(e.into())
        }
    }
}

/// `kc_spawn_co`'s body, shared with `kc_scope_launch`: spawns `f(arg)` and sets
/// `*out_co`, if given, to a new `kcoro_t` for it (NULL on failure).
///
/// # Safety
/// `out_co` NULL or writable.
pub(crate) unsafe fn spawn_co(
    sp: *mut KcSched,
    f: Option<TaskFn>,
    arg: *mut c_void,
    how: Spawn,
    out_co: *mut *mut KcoroT,
) -> Result<c_int, Error> {
    // SAFETY: the caller's contract.
    unsafe { ffi::store(out_co, std::ptr::null_mut()) };
    let job = Job { f: f.ok_or(Error::Invalid("fn is NULL"))?, arg };
    let how = Spawn { want_handle: !out_co.is_null(), ..how };
    let co = spawn_body(sp, how, move || job.call())?.co;
    // SAFETY: the caller's contract.
    unsafe { ffi::store(out_co, co) };
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
/// running. Coroutines still parked are woken: the call they are parked in returns
/// `KC_ECANCELED`, and so does every later call of theirs that would park, until their
/// function returns. Returns once every coroutine has returned (a coroutine that never
/// does keeps it waiting: its C code may still use the scheduler and its channels); after
/// 10 s it says so on stderr, once.
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
            shutdown_noting_stragglers(rt);
        }
        // SAFETY: the C contract above.
        unsafe { handle::destroy(s) }
    })
}

/// Shuts `rt` down, waiting for every coroutine however long it takes, and says on stderr
/// when that passes [`SHUTDOWN_NOTE_AFTER`].
fn shutdown_noting_stragglers(rt: Runtime) {
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let note =
            std::thread::Builder::new().name("kcoro-shutdown-note".into()).spawn_scoped(s, move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    waiting.recv_timeout(SHUTDOWN_NOTE_AFTER)
                {
                    eprintln!(
                        "kcoro: kc_sched_shutdown has waited {} s for coroutines to return; a coroutine's \
                     calls fail with KC_ECANCELED once shutdown starts, and its function must return",
                        SHUTDOWN_NOTE_AFTER.as_secs()
                    );
                }
            });
        // Without the note's thread (none could start), the wait is the same.
        let _ = note;
        rt.shutdown_timeout(Duration::MAX);
        drop(done);
    });
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

/// Runs `fn(arg)` as a coroutine with a stack of `stack_size` bytes (0: 64 KiB). With
/// `out_co`, `*out_co` receives a `kcoro_t` for it (one reference, the caller's to
/// `kcoro_release`; NULL on failure): `kcoro_unpark`, `kcoro_is_parked`, timers and
/// `kc_sched_enqueue_ready` take it.
///
/// # Safety
/// As [`kc_spawn`]; `out_co` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_spawn_co(
    s: *mut KcSched,
    f: Option<TaskFn>,
    arg: *mut c_void,
    stack_size: usize,
    out_co: *mut *mut KcoroT,
) -> c_int {
    let how = Spawn { stack: stack_size, ..Spawn::default() };
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { spawn_co(s, f, arg, how, out_co) })
}

/// Lets other coroutines run (on a plain thread: `sched_yield`); in a manual coroutine,
/// `kcoro_yield` (back to its resumer).
#[unsafe(no_mangle)]
pub extern "C" fn kc_yield() {
    crate::coro::kcoro_yield();
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

/// Makes `co` runnable: `kcoro_unpark(co)` (a scheduler coroutine parked in `kcoro_park`
/// is queued on its worker; a manual one becomes resumable). `s` must be a live scheduler;
/// the coroutine's own scheduler is the one that runs it.
///
/// # Safety
/// `s` and `co` live handles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_sched_enqueue_ready(s: *mut KcSched, co: *mut KcoroT) {
    ffi::void(|| {
        // SAFETY: the C contract above.
        unsafe { handle::get(s) }?;
        // SAFETY: as above.
        unsafe { coro::get(co) }?.wake.unpark();
        Ok(())
    })
}

/// Arms a timer on `s`'s timer wheel that does `kcoro_unpark(co)` at `deadline`.
///
/// # Safety
/// `s` and `co` NULL or live handles.
unsafe fn arm_timer(s: *mut KcSched, co: *mut KcoroT, deadline: Instant) -> Result<KcTimerHandle, Error> {
    // SAFETY: the caller's contract.
    let s = unsafe { handle::get(s) }?;
    // SAFETY: as above.
    let wake = Arc::clone(&unsafe { coro::get(co) }?.wake);
    let timer = s.handle.unpark_at(deadline, Unparker::from_unpark(wake));
    // 0 means "no timer" in C, so ids are the wheel's key plus one.
    match timer.into_raw().checked_add(1) {
        Some(id) => Ok(KcTimerHandle { id }),
        None => {
            s.handle.cancel_timer(timer);
            Err(Error::NoMemory)
        }
    }
}

/// Unparks `co` (as `kcoro_unpark`) after `delay_ms` milliseconds (≤ 0: at the next turn
/// of the wheel), on `s`'s timer wheel: no thread per timer. Returns the timer (id 0 on
/// bad input).
///
/// # Safety
/// `s` and `co` NULL or live handles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_sched_timer_wake_after(
    s: *mut KcSched,
    co: *mut KcoroT,
    delay_ms: c_long,
) -> KcTimerHandle {
    ffi::value(KcTimerHandle { id: 0 }, || {
        let delay = Duration::from_millis(delay_ms.max(0) as u64);
        let deadline = Instant::now().checked_add(delay).ok_or(Error::Invalid("delay out of range"))?;
        // SAFETY: the C contract above.
        unsafe { arm_timer(s, co, deadline) }
    })
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock `Instant` reads on Linux).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// Unparks `co` (as `kcoro_unpark`) when `CLOCK_MONOTONIC` reaches `deadline_ns`
/// nanoseconds (a past deadline: at the next turn of the wheel). Returns the timer (id 0
/// on bad input).
///
/// # Safety
/// `s` and `co` NULL or live handles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_sched_timer_wake_at(
    s: *mut KcSched,
    co: *mut KcoroT,
    deadline_ns: c_ulonglong,
) -> KcTimerHandle {
    ffi::value(KcTimerHandle { id: 0 }, || {
        let (now_ns, now) = (monotonic_ns(), Instant::now());
        let wait = Duration::from_nanos(deadline_ns.saturating_sub(now_ns));
        let deadline = now.checked_add(wait).ok_or(Error::Invalid("deadline out of range"))?;
        // SAFETY: the C contract above.
        unsafe { arm_timer(s, co, deadline) }
    })
}

/// Disarms a timer of `s`: 0 if it had not fired (it never will), `-ENOENT` if it already
/// fired, was cancelled, or is unknown (id 0 included).
///
/// # Safety
/// `s` NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_sched_timer_cancel(s: *mut KcSched, t: KcTimerHandle) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let s = unsafe { handle::get(s) }?;
        let not_found = Error::Runtime(-libc::ENOENT);
        let raw = t.id.checked_sub(1).ok_or(not_found)?;
        if s.handle.cancel_timer(kcoro::TimerId::from_raw(raw)) { Ok(0) } else { Err(not_found) }
    })
}
