//! Coroutines: stacks (pooled, guard-paged), the park state machine, the task the
//! scheduler moves around, stack-overflow reporting, and running stack-hungry code (panic
//! hooks, backtraces) on the worker's stack.

pub(crate) mod overflow;
pub(crate) mod panic_hook;
pub(crate) mod prefetch;
pub mod stack;
pub(crate) mod state;
pub(crate) mod task;
pub(crate) mod wait;

/// The id of the running kcoro coroutine, unique among the coroutines of its runtime
/// (ids are not reused), or `None` outside one: on a plain thread, and inside an external
/// coroutine ([`park::enter_external`](crate::park::enter_external)).
pub fn current_id() -> Option<u64> {
    // SAFETY: the task running on this thread is alive while it runs.
    crate::runtime::context::current_task_ptr().map(|t| unsafe { t.as_ref() }.id())
}

/// Whether the running coroutine is being unwound by its runtime's shutdown.
///
/// Shutdown unwinds each coroutine still parked from its suspension point, with a panic
/// payload of its own, and unwinds it again at every later park until it returns. Code
/// that must not let an unwind pass (a C boundary) catches it; when this is true, what it
/// caught is that unwind: it should report cancellation and stop parking.
pub fn is_unwinding_at_shutdown() -> bool {
    // SAFETY: the task running on this thread is alive while it runs.
    crate::runtime::context::current_task_ptr().is_some_and(|t| unsafe { t.as_ref() }.is_cancelling())
}

/// Runs `f` on the worker thread's stack when called from a coroutine, else just runs it.
///
/// A coroutine's stack is small (64 KiB by default); a few things need far more than that
/// by surprise, such as symbolising a backtrace (`format!("{}", Backtrace::force_capture())`
/// loads and parses the binary's debug info) or a deeply recursive parser. `f` runs to
/// completion on the stack of the worker that resumed the coroutine, on the same thread,
/// and its panics propagate to the caller as usual.
///
/// # Panics
/// If `f` tries to suspend the coroutine (park, sleep, yield, a blocking channel
/// operation): the worker's stack cannot be switched away from mid-call.
///
/// ```
/// let text = kcoro::run(|| {
///     let bt = std::backtrace::Backtrace::force_capture(); // capturing is cheap
///     kcoro::coro::on_worker_stack(|| bt.to_string())       // symbolising is not
/// });
/// assert!(!text.is_empty());
/// ```
pub fn on_worker_stack<R>(f: impl FnOnce() -> R) -> R {
    match crate::runtime::context::current_task_ptr() {
        // SAFETY: the task running on this thread is alive while it runs.
        Some(task) => unsafe { task.as_ref() }.on_parent_stack(f),
        None => f(),
    }
}

/// Runs `f` with at least `min_stack` bytes of stack: in place when the caller has that
/// much left, on a plain thread, or a coroutine spawned with a large stack
/// ([`SpawnOptions::stack_size`](crate::SpawnOptions::stack_size)); else on the worker's
/// stack, as [`on_worker_stack`] does. The switch there and back costs about 85
/// instructions (docs/BENCHMARKS.md, plugin suite); the look at the stack that decides is
/// the one `on_worker_stack` makes anyway. A plain thread's stack is not measured.
///
/// # Panics
/// If `f` tries to suspend the coroutine, in place as on the worker's stack.
///
/// ```
/// let deep = |n: u32| -> u32 { (0..n).sum() }; // stand-in for stack-hungry code
/// let big = kcoro::SpawnOptions::new().stack_size(2 << 20);
/// let sum = kcoro::run(move || {
///     let child = kcoro::spawn_with(big, move || kcoro::coro::with_stack(1 << 20, || deep(100)));
///     child.expect("spawned").join().expect("joined")
/// });
/// assert_eq!(sum, 4950);
/// ```
#[inline]
pub fn with_stack<R>(min_stack: usize, f: impl FnOnce() -> R) -> R {
    match crate::runtime::context::current_task_ptr() {
        // SAFETY: the task running on this thread is alive while it runs.
        Some(task) => unsafe { task.as_ref() }.with_stack(min_stack, f),
        None => f(),
    }
}

/// Makes the current panic hook run on the worker's stack when a coroutine panics.
///
/// Every [`Runtime`](crate::Runtime) does this when it starts, for whatever hook is
/// installed then (std's default one included). A program that installs its own hook with
/// `std::panic::set_hook` *after* starting a runtime calls this once afterwards; until it
/// does, that hook runs on the panicking coroutine's small stack. Idempotent.
pub fn contain_panic_hook() {
    panic_hook::contain();
}
