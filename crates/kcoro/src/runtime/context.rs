//! Thread-local context: which worker this thread is, and which coroutine it is running.
//!
//! # The TLS rule
//! A coroutine may suspend inside any of these calls and, with migration enabled, resume on
//! another thread. LLVM is free to compute a thread-local's address once and reuse it
//! across what it sees as an ordinary call — the context switch — so a reference obtained
//! before a suspension could point at the *old* thread's slot afterwards. Therefore:
//! - every access goes through an `#[inline(never)]` accessor that reads the slot afresh;
//! - no reference into TLS is returned or held: accessors return raw pointers or clones;
//! - callers re-read the context after anything that may suspend.

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::coro::task::Task;
use crate::runtime::worker::Worker;

thread_local! {
    static WORKER: Cell<*const Worker> = const { Cell::new(std::ptr::null()) };
    static TASK: Cell<*const Task> = const { Cell::new(std::ptr::null()) };
}

/// The worker running on this thread, if any. Valid for the life of the worker thread.
#[inline(never)]
pub(crate) fn current_worker() -> Option<NonNull<Worker>> {
    NonNull::new(WORKER.with(|w| w.get()).cast_mut())
}

#[inline(never)]
pub(crate) fn set_worker(w: *const Worker) {
    WORKER.with(|c| c.set(w));
}

/// The coroutine running on this thread, if any; valid until it next suspends.
#[inline(never)]
pub(crate) fn current_task_ptr() -> Option<NonNull<Task>> {
    NonNull::new(TASK.with(|t| t.get()).cast_mut())
}

/// A counted reference to the running coroutine.
pub(crate) fn current_task() -> Option<Arc<Task>> {
    current_task_ptr().map(|p| {
        // SAFETY: the running task is kept alive by the worker's reference, which it holds
        // for the whole resume; we add one count for the returned Arc.
        unsafe {
            Arc::increment_strong_count(p.as_ptr());
            Arc::from_raw(p.as_ptr())
        }
    })
}

/// Marks `task` as running on this thread (null when the worker takes over again).
/// Returns the previous value so nested resumes (shutdown unwinding) can restore it.
///
/// Only called on the worker's (or shutdown's) own stack, so inlining would be sound, but
/// measured slower (code layout around the switch); kept out of line like the rest.
#[inline(never)]
pub(crate) fn set_task(task: *const Task) -> *const Task {
    TASK.with(|c| c.replace(task))
}
