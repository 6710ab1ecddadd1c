//! `kcoro_*` (`kcoro_core.h`): coroutine handles. A `kcoro_t *` names one of three things:
//! - a **manual** coroutine (`kcoro_create`), run by `kcoro_resume` on the caller's thread
//!   (module `manual`);
//! - a **scheduler** coroutine (`kc_spawn_co`, or `kcoro_current()` inside any spawned
//!   function), a kcoro coroutine on the scheduler's workers (module `registry`);
//! - a **thread main** (`kcoro_create_main`), the calling thread itself.
//!
//! Every handle is reference counted: `kcoro_create` and `kc_spawn_co` hand the caller one
//! reference, `kcoro_retain` adds one, `kcoro_release` (and `kcoro_destroy`, its old name)
//! drops one, and the last one frees the handle. `kcoro_current`, `kcoro_thread_main` and
//! `kcoro_create_main` return borrowed pointers. The running coroutine, its registry entry
//! and a thread's main slot hold references of their own.
//!
//! `kcoro_park`/`kcoro_unpark` use a token per handle (`Wake`), as `std::thread::park`
//! does: an unpark before the park makes the park return at once, unparks do not count up,
//! and `kcoro_park` returns only after an unpark (kcoro's own spurious wakes are absorbed).
//!
//! # Thread-locals
//! `RUNNING` is the manual coroutine running on this thread (innermost, as resumes nest),
//! set by the resumer around each switch; `MAIN` is this thread's main handle. Both are
//! read through non-inlined accessors and never held across a switch: a manual coroutine
//! may continue on another thread.

mod manual;
pub(crate) mod registry;

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use kcoro::park::{self, Unpark, Unparker};

use crate::error::Error;
use crate::ffi;
use crate::handle::{self, Handle, Tagged};
use crate::sched::TaskFn;
use manual::Manual;

/// What a `kcoro_t *` points to.
pub struct Co {
    refs: AtomicUsize,
    pub(crate) wake: Arc<Wake>,
    kind: Kind,
    /// `kcoro_set_name`; shown by `Debug`.
    name: Mutex<Option<CString>>,
}

enum Kind {
    Manual(Arc<Manual>),
    Sched,
    Main(ThreadId),
}

impl Handle for Co {
    const MAGIC: u64 = 0x6b63_6f72_6f5f_7431; // "kcoro_t1"
    const WHAT: &'static str = "kcoro_t";
}

/// The C handle type.
pub type KcoroT = Tagged<Co>;

impl std::fmt::Debug for Co {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Manual(_) => "manual",
            Kind::Sched => "scheduler",
            Kind::Main(_) => "thread main",
        };
        let name = self.name.lock().unwrap_or_else(|p| p.into_inner()).clone();
        f.debug_struct("Co").field("kind", &kind).field("name", &name).finish()
    }
}

/// The `kcoro_park`/`kcoro_unpark` token of one handle, and who to wake.
pub(crate) struct Wake {
    token: AtomicBool,
    /// Inside `kcoro_park` (scheduler coroutines and thread mains; manual coroutines report
    /// their own phase).
    parked: AtomicBool,
    /// Set once the target exists: at creation, or when a scheduler coroutine starts.
    target: OnceLock<Unparker>,
}

impl Wake {
    fn new(target: Option<Unparker>) -> Arc<Wake> {
        let w =
            Wake { token: AtomicBool::new(false), parked: AtomicBool::new(false), target: OnceLock::new() };
        if let Some(t) = target {
            let _ = w.target.set(t);
        }
        Arc::new(w)
    }

    /// Names the target once it exists (a scheduler coroutine, when it starts); an unpark
    /// that came earlier left its token, which the first park finds.
    pub(crate) fn set_target(&self, target: Unparker) {
        let _ = self.target.set(target);
    }

    /// `kcoro_park` on the calling coroutine or thread: `wait` parks it (and may return
    /// spuriously); we loop until our token is there, and consume it.
    fn park_until_unparked(&self, mut wait: impl FnMut()) {
        // Acquire: pairs with the Release in `unpark`, so what the unparker wrote is visible.
        if self.token.swap(false, Acquire) {
            return;
        }
        self.parked.store(true, Release);
        while !self.token.swap(false, Acquire) {
            wait();
        }
        self.parked.store(false, Release);
    }
}

impl Unpark for Wake {
    fn unpark(&self) {
        self.token.store(true, Release);
        if let Some(t) = self.target.get() {
            t.unpark();
        }
    }
}

/// A handle for a scheduler coroutine, holding `refs` references. Its wake target is
/// named when the coroutine starts ([`Wake::set_target`]).
pub(crate) fn new_sched_handle(refs: usize) -> *mut KcoroT {
    handle::into_raw(Co {
        refs: AtomicUsize::new(refs),
        wake: Wake::new(None),
        kind: Kind::Sched,
        name: Mutex::new(None),
    })
}

/// The value behind a handle.
///
/// # Safety
/// As `handle::get`: `p` null or a (possibly released) `kcoro_t` handle.
pub(crate) unsafe fn get<'a>(p: *const KcoroT) -> Result<&'a Co, Error> {
    // SAFETY: the caller's contract.
    unsafe { handle::get(p) }
}

/// Adds a reference.
///
/// # Safety
/// As [`get`].
pub(crate) unsafe fn retain(p: *const KcoroT) -> Result<(), Error> {
    // SAFETY: the caller's contract.
    let co = unsafe { get(p) }?;
    // Relaxed: the caller already holds a reference, which keeps the handle alive.
    co.refs.fetch_add(1, Relaxed);
    Ok(())
}

/// Drops a reference; the last one frees the handle.
///
/// # Safety
/// As [`get`], and the caller owns the reference it drops.
pub(crate) unsafe fn release(p: *mut KcoroT) -> Result<(), Error> {
    // SAFETY: the caller's contract.
    let co = unsafe { get(p) }?;
    // Release: our uses of the handle happen before the free; the Acquire fence in the
    // last releaser pairs with it (as `Arc`'s drop does).
    if co.refs.fetch_sub(1, Release) != 1 {
        return Ok(());
    }
    std::sync::atomic::fence(Acquire);
    // SAFETY: the count reached zero: no other reference exists.
    unsafe { handle::destroy(p) }
}

/// Drops a reference when it goes out of scope (resumes hold one while they run).
struct Held(*mut KcoroT);

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: `Held` is made only after a successful `retain` of this live handle.
        let _ = unsafe { release(self.0) };
    }
}

thread_local! {
    static RUNNING: Cell<*mut KcoroT> = const { Cell::new(std::ptr::null_mut()) };
    static MAIN: MainSlot = const { MainSlot(Cell::new(std::ptr::null_mut())) };
}

/// This thread's main handle; its reference is dropped when the thread ends.
struct MainSlot(Cell<*mut KcoroT>);

impl Drop for MainSlot {
    fn drop(&mut self) {
        let p = self.0.replace(std::ptr::null_mut());
        if !p.is_null() {
            // SAFETY: the slot owns one reference of a live handle.
            let _ = unsafe { release(p) };
        }
    }
}

#[inline(never)]
fn running() -> *mut KcoroT {
    RUNNING.try_with(Cell::get).unwrap_or(std::ptr::null_mut())
}

#[inline(never)]
fn set_running(p: *mut KcoroT) -> *mut KcoroT {
    RUNNING.try_with(|r| r.replace(p)).unwrap_or(std::ptr::null_mut())
}

#[inline(never)]
fn thread_main() -> *mut KcoroT {
    MAIN.try_with(|m| m.0.get()).unwrap_or(std::ptr::null_mut())
}

/// Replaces this thread's main (the slot takes over the caller's reference to `p`) and
/// returns the old one, whose reference the caller now owns.
#[inline(never)]
fn replace_thread_main(p: *mut KcoroT) -> Result<*mut KcoroT, Error> {
    MAIN.try_with(|m| m.0.replace(p)).map_err(|_| Error::Invalid("thread is exiting"))
}

/// This thread's main handle, made on first use.
fn thread_main_or_create() -> Result<*mut KcoroT, Error> {
    let p = thread_main();
    if !p.is_null() {
        return Ok(p);
    }
    let me = std::thread::current();
    let wake = Wake::new(Some(Unparker::from_unpark(Arc::new(ThreadWake(me.clone())))));
    let p = handle::into_raw(Co {
        refs: AtomicUsize::new(1),
        wake,
        kind: Kind::Main(me.id()),
        name: Mutex::new(None),
    });
    let old = replace_thread_main(p)?;
    debug_assert!(old.is_null());
    Ok(p)
}

/// Wakes a thread (a thread main's target). Built by hand so that a main made inside a
/// manual coroutine still names the thread, not the coroutine.
struct ThreadWake(std::thread::Thread);

impl Unpark for ThreadWake {
    fn unpark(&self) {
        self.0.unpark();
    }
}

/// What the caller is, for `kcoro_current`/`kcoro_park`/`kcoro_yield`.
enum Caller {
    /// A manual coroutine (its handle), running on this thread.
    Manual(*mut KcoroT),
    /// A scheduler coroutine.
    Sched,
    /// A plain thread.
    Thread,
    /// A kcoro coroutine of a runtime this library did not start (Rust code calling the C
    /// API): it has no handle here, and parking its thread would stall its worker.
    Foreign,
}

fn caller() -> Caller {
    let p = running();
    if !p.is_null() {
        return Caller::Manual(p);
    }
    match (kcoro::coro::current_id(), crate::sched::kc_sched_current().is_null()) {
        (Some(_), false) => Caller::Sched,
        (Some(_), true) => Caller::Foreign,
        (None, _) => Caller::Thread,
    }
}

/// The manual coroutine behind `co`.
fn manual(co: &Co) -> Result<&Arc<Manual>, Error> {
    match &co.kind {
        Kind::Manual(m) => Ok(m),
        _ => Err(Error::Invalid("not a coroutine made by kcoro_create")),
    }
}

/// Runs a manual coroutine until it yields, parks or returns (refused: nothing happens).
///
/// # Safety
/// `p` null or a `kcoro_t` handle.
unsafe fn resume(p: *mut KcoroT) -> Result<manual::Resumed, Error> {
    // SAFETY: the caller's contract.
    let co = unsafe { get(p) }?;
    let m = Arc::clone(manual(co)?);
    // SAFETY: `p` was just checked; the reference keeps it alive while the coroutine runs
    // (it may release its own handle meanwhile).
    unsafe { retain(p) }?;
    let _held = Held(p);
    let _running = Running(set_running(p));
    Ok(m.resume())
}

/// Restores the thread's previous running manual coroutine (also if a resume unwinds).
struct Running(*mut KcoroT);

impl Drop for Running {
    fn drop(&mut self) {
        set_running(self.0);
    }
}

/// `kcoro_t *kcoro_create(kcoro_fn_t fn, void *arg, size_t stack_size)`: a coroutine that
/// belongs to no scheduler; it starts at the first `kcoro_resume`. Stack 0: 64 KiB (at
/// least 16 KiB, with a guard page). NULL if `fn` is NULL or memory runs out.
#[unsafe(no_mangle)]
pub extern "C" fn kcoro_create(f: Option<TaskFn>, arg: *mut c_void, stack_size: usize) -> *mut KcoroT {
    ffi::ptr(|| {
        let f = f.ok_or(Error::Invalid("fn is NULL"))?;
        let m = Manual::new(f, arg, stack_size)?;
        let wake = Wake::new(Some(m.waker()));
        Ok(handle::into_raw(Co {
            refs: AtomicUsize::new(1),
            wake,
            kind: Kind::Manual(m),
            name: Mutex::new(None),
        }))
    })
}

/// Runs the manual coroutine `co` on the calling thread until it yields, parks or returns.
/// Does nothing if it is running (on any thread), finished, or parked and not yet woken
/// (by `kcoro_unpark`, a completed channel operation, or its wait's deadline passing), or
/// if `co` is not a manual coroutine.
///
/// # Safety
/// `co` NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcoro_resume(co: *mut KcoroT) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { resume(co) }.map(drop))
}

/// From a manual coroutine: back to its resumer, runnable again at once. From a scheduler
/// coroutine: `kc_yield`. From a plain thread: `sched_yield`.
#[unsafe(no_mangle)]
pub extern "C" fn kcoro_yield() {
    ffi::void(|| {
        let p = running();
        if p.is_null() {
            kcoro::yield_now();
            return Ok(());
        }
        // SAFETY: `RUNNING` names the live handle of the coroutine running here (its resumer
        // holds a reference). No value with a destructor is live across the switch below
        // (see `Drop for Manual`).
        let co = unsafe { get(p) }?;
        manual(co)?.yield_here();
        Ok(())
    })
}

/// `co` is a manual coroutine: runs it now (as `kcoro_resume`) and returns when it
/// suspends. Otherwise: unparks `co` (as `kcoro_unpark`) and yields the caller (as
/// `kcoro_yield`).
///
/// # Safety
/// `co` NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcoro_yield_to(co: *mut KcoroT) {
    ffi::void(|| {
        // SAFETY: the C contract above.
        let c = unsafe { get(co) }?;
        if let Kind::Manual(_) = c.kind {
            // SAFETY: as above.
            return unsafe { resume(co) }.map(drop);
        }
        c.wake.unpark();
        kcoro_yield();
        Ok(())
    })
}

/// Parks the caller until `kcoro_unpark` of its handle (a pending unpark returns at once):
/// a manual coroutine switches back to its resumer (and runs again at the first resume
/// after the unpark), a scheduler coroutine parks without blocking its worker, a plain
/// thread sleeps in the kernel (its handle is its thread main, made on first use).
#[unsafe(no_mangle)]
pub extern "C" fn kcoro_park() {
    ffi::void(|| {
        match caller() {
            Caller::Manual(p) => {
                // SAFETY: as in `kcoro_yield`; again nothing with a destructor is live here.
                let co = unsafe { get(p) }?;
                let m = manual(co)?;
                co.wake.park_until_unparked(|| m.park_here(None, true));
            }
            Caller::Sched => {
                let p = registry::current_or_register()?;
                // SAFETY: the registry keeps its handle alive until the function returns.
                let co = unsafe { get(p) }?;
                co.wake.park_until_unparked(park::park);
            }
            Caller::Thread => {
                let p = thread_main_or_create()?;
                // SAFETY: the thread's main slot keeps the handle alive.
                let co = unsafe { get(p) }?;
                co.wake.park_until_unparked(park::park);
            }
            Caller::Foreign => return Err(Error::Invalid("kcoro_park in a coroutine of another runtime")),
        }
        Ok(())
    })
}

/// Wakes `co` if parked in `kcoro_park` (or, for a manual coroutine, in any wait: it
/// becomes resumable), else leaves a token its next `kcoro_park` consumes. Never runs it.
///
/// # Safety
/// `co` NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcoro_unpark(co: *mut KcoroT) {
    ffi::void(|| {
        // SAFETY: the C contract above.
        unsafe { get(co) }?.wake.unpark();
        Ok(())
    })
}

/// 1 if `co` is parked and not yet woken: a manual coroutine in `kcoro_park` or any kcoro
/// wait (a resume would do nothing); a scheduler coroutine or thread in `kcoro_park`. Else
/// 0 (also for NULL or a bad handle).
///
/// # Safety
/// `co` NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcoro_is_parked(co: *const KcoroT) -> c_int {
    ffi::value(0, || {
        // SAFETY: the C contract above.
        let c = unsafe { get(co) }?;
        let parked = match &c.kind {
            Kind::Manual(m) => m.is_parked(),
            Kind::Sched | Kind::Main(_) => c.wake.parked.load(Acquire) && !c.wake.token.load(Acquire),
        };
        Ok(c_int::from(parked))
    })
}

/// The caller's handle (borrowed): the running manual coroutine, else the scheduler
/// coroutine (its handle made on first use, kept until its function returns), else this
/// thread's main if `kcoro_create_main` made one, else NULL (also in a kcoro coroutine of
/// a runtime this library did not start, where `kcoro_park` does nothing).
#[unsafe(no_mangle)]
pub extern "C" fn kcoro_current() -> *mut KcoroT {
    ffi::ptr(|| match caller() {
        Caller::Manual(p) => Ok(p),
        Caller::Sched => registry::current_or_register(),
        Caller::Thread => Ok(thread_main()),
        Caller::Foreign => Ok(std::ptr::null_mut()),
    })
}

/// This thread's main handle (borrowed), or NULL before `kcoro_create_main`.
#[unsafe(no_mangle)]
pub extern "C" fn kcoro_thread_main() -> *mut KcoroT {
    ffi::ptr(|| Ok(thread_main()))
}

/// Makes the calling thread a coroutine context and returns its main handle (borrowed; the
/// same one on every call from this thread, released when the thread ends). Channel
/// operations from it park the thread, as from any plain thread.
#[unsafe(no_mangle)]
pub extern "C" fn kcoro_create_main() -> *mut KcoroT {
    ffi::ptr(thread_main_or_create)
}

/// Makes `co` this thread's main handle (it must be a main handle made on this thread;
/// anything else is ignored), or with NULL forgets the thread's main (the handle lives on
/// while others hold references).
///
/// # Safety
/// `co` NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcoro_set_thread_main(co: *mut KcoroT) {
    ffi::void(|| {
        if !co.is_null() {
            // SAFETY: the C contract above.
            let c = unsafe { get(co) }?;
            if !matches!(c.kind, Kind::Main(t) if t == std::thread::current().id()) {
                return Err(Error::Invalid("not a main handle of this thread"));
            }
            if co == thread_main() {
                return Ok(());
            }
            // SAFETY: checked live just above; the slot takes this new reference.
            unsafe { retain(co) }?;
        }
        let old = replace_thread_main(co)?;
        if !old.is_null() {
            // SAFETY: the slot owned one reference of `old`.
            unsafe { release(old) }?;
        }
        Ok(())
    })
}

/// Adds a reference to `co`.
///
/// # Safety
/// `co` NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcoro_retain(co: *mut KcoroT) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { retain(co) })
}

/// Drops a reference to `co`; the last one frees it. Freeing a manual coroutine that is
/// suspended mid-function abandons the rest of it: suspended in `kcoro_yield`/`kcoro_park`
/// its stack is freed; suspended inside a channel operation or other wait its stack is
/// kept (leaked), since the wait may still be written to. A scheduler coroutine keeps
/// running; only the handle goes.
///
/// # Safety
/// `co` NULL or a live handle the caller holds a reference to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcoro_release(co: *mut KcoroT) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { release(co) })
}

/// The old name of [`kcoro_release`] (drops the caller's reference).
///
/// # Safety
/// As [`kcoro_release`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcoro_destroy(co: *mut KcoroT) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { release(co) })
}

/// Names `co` (copied; NULL clears it). The name shows in diagnostics only.
///
/// # Safety
/// `co` NULL or a live handle; `name` NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcoro_set_name(co: *mut KcoroT, name: *const c_char) {
    ffi::void(|| {
        // SAFETY: the C contract above.
        let c = unsafe { get(co) }?;
        // SAFETY: as above.
        let name = (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) }.to_owned());
        *c.name.lock().unwrap_or_else(|p| p.into_inner()) = name;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    static STEPS: AtomicU32 = AtomicU32::new(0);

    unsafe extern "C" fn two_steps(_: *mut c_void) {
        STEPS.fetch_add(1, SeqCst);
        kcoro_yield();
        STEPS.fetch_add(1, SeqCst);
    }

    #[test]
    fn resume_runs_to_each_yield_and_refuses_a_finished_coroutine() {
        let co = kcoro_create(Some(two_steps), std::ptr::null_mut(), 0);
        assert!(!co.is_null());
        // SAFETY: `co` is live until the release at the end.
        unsafe {
            assert_eq!(resume(co), Ok(manual::Resumed::Yielded));
            assert_eq!(STEPS.load(SeqCst), 1);
            assert_eq!(resume(co), Ok(manual::Resumed::Finished));
            assert_eq!(resume(co), Ok(manual::Resumed::Refused));
            assert_eq!(STEPS.load(SeqCst), 2);
            kcoro_release(co);
        }
    }

    #[test]
    fn a_coroutine_of_another_runtime_has_no_handle_and_does_not_park() {
        let rt = kcoro::Runtime::builder().workers(1).build().unwrap();
        let current = rt.block_on(|| {
            kcoro_park(); // refused: returns at once instead of stalling the worker
            kcoro_current() as usize
        });
        assert_eq!(current, 0);
    }

    #[test]
    fn debug_shows_kind_and_name() {
        let co = kcoro_create(Some(two_steps), std::ptr::null_mut(), 0);
        // SAFETY: live until released; the name is a C string literal.
        unsafe {
            kcoro_set_name(co, c"gen".as_ptr());
            assert_eq!(format!("{:?}", get(co).unwrap()), r#"Co { kind: "manual", name: Some("gen") }"#);
            kcoro_release(co); // never started: freed at once
        }
    }
}
