//! Panic hooks run on the worker's stack, not on the coroutine's.
//!
//! A panic runs the process's panic hook on the panicking stack before unwinding starts.
//! std's default hook captures and symbolises a backtrace when `RUST_BACKTRACE` is set,
//! which loads and parses the binary's debug info: far more stack than a 16 or 64 KiB
//! coroutine has, so the guard page is hit and the process aborts instead of the panic
//! surfacing through `join()`.
//!
//! # How
//! [`contain`] replaces the installed hook (the default one included) with a wrapper that
//! owns it. On a panic the wrapper asks whether the thread is running a coroutine *on the
//! coroutine's own stack*; if so it runs the wrapped hook through corosensei's
//! `on_parent_stack` (the worker thread's stack, several MiB), else it calls it directly.
//! corosensei links the two stacks for the unwinder, so a backtrace captured on the worker
//! stack walks on into the coroutine's frames: the hook prints what it would have printed
//! on a thread. Paths that do not panic pay nothing: the hook is consulted only on a panic.
//!
//! # Invariants
//! - The wrapper never wraps itself: [`contain`] recognises the installed hook as ours by
//!   the address of its boxed closure (`OURS`), so repeated calls are idempotent.
//! - `contain` runs under `INSTALL_LOCK`, so two runtimes starting at once cannot each take
//!   the hook and lose one of them. (A program calling `std::panic::set_hook` concurrently
//!   can still race with it; std offers no atomic update on stable.)

use std::panic::{self, PanicHookInfo};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::*};

use crate::runtime::context;

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Address of the boxed wrapper closure [`contain`] installed last (0: none).
static OURS: AtomicUsize = AtomicUsize::new(0);
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Wraps the installed panic hook so that it runs on the worker's stack when a coroutine
/// panics. Idempotent; a no-op on a thread that is panicking (std forbids touching the
/// hook then).
pub(crate) fn contain() {
    if std::thread::panicking() {
        return;
    }
    let _serial = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let current = panic::take_hook();
    if hook_addr(&current) == OURS.load(Acquire) {
        panic::set_hook(current);
        return;
    }
    let wrapper: Hook = Box::new(move |info| run_contained(&current, info));
    OURS.store(hook_addr(&wrapper), Release);
    panic::set_hook(wrapper);
}

fn hook_addr(hook: &Hook) -> usize {
    let p: *const (dyn Fn(&PanicHookInfo<'_>) + Sync + Send) = &**hook;
    p.cast::<()>() as usize
}

fn run_contained(hook: &Hook, info: &PanicHookInfo<'_>) {
    let Some(task) = context::current_task_ptr() else {
        return hook(info);
    };
    // SAFETY: the task running on this thread is alive while it runs, and a panic hook
    // runs synchronously inside it.
    let task = unsafe { task.as_ref() };
    task.on_parent_stack(|| hook(info));
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn contain_is_idempotent_and_keeps_the_program_hook() {
        use std::sync::atomic::AtomicBool;
        static CALLED: AtomicBool = AtomicBool::new(false);
        let saved = panic::take_hook();
        panic::set_hook(Box::new(|_| CALLED.store(true, SeqCst)));
        contain();
        let first = OURS.load(SeqCst);
        contain();
        assert_eq!(OURS.load(SeqCst), first, "a second contain() wrapped the wrapper");
        let r = std::thread::spawn(|| panic!("contained")).join();
        assert!(r.is_err());
        assert!(CALLED.load(SeqCst), "the program's hook did not run behind the wrapper");
        // Put the test harness's hook back, contained like any other.
        panic::set_hook(saved);
        contain();
    }
}
