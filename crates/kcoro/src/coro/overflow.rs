//! Stack-overflow reporting: a SIGSEGV/SIGBUS handler that recognises a fault in the guard
//! page of the coroutine running on this thread, prints
//! `kcoro: coroutine <id> (<name>) overflowed its <N> KiB stack` and aborts.
//!
//! The handler runs on the thread's alternate signal stack (std installs one on every
//! thread it spawns; workers get their own here too), since the faulting stack is full.
//! It reads the running-task pointer the worker already keeps in a const-initialised
//! thread-local (`runtime::context`), then that task's immutable fields, formats into a
//! fixed buffer and calls `write(2)` and `abort(3)`: async-signal-safe throughout. Faults
//! elsewhere go to the previously installed handler (std's reports thread stack overflows),
//! or to the default action.

use std::sync::Once;

use crate::coro::task::Task;
use crate::runtime::context;

static INSTALL: Once = Once::new();
// SAFETY: all-zero bytes are a valid `sigaction` (SIG_DFL, empty mask, no flags).
static mut PREV_SEGV: libc::sigaction = unsafe { std::mem::zeroed() };
// SAFETY: as above.
static mut PREV_BUS: libc::sigaction = unsafe { std::mem::zeroed() };

/// Installs the handler once per process. Idempotent.
pub(crate) fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: we build a fully initialised sigaction and save the previous ones in
        // statics written only here, under `Once`, before any fault can consult them.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGSEGV, &sa, &raw mut PREV_SEGV);
            libc::sigaction(libc::SIGBUS, &sa, &raw mut PREV_BUS);
        }
    });
}

/// An alternate signal stack for the current thread, released on drop.
pub(crate) struct AltStack {
    map: *mut libc::c_void,
    len: usize,
}

impl AltStack {
    /// Installs an alternate signal stack unless the thread already has one.
    pub(crate) fn ensure() -> Option<AltStack> {
        // SAFETY: querying the current altstack with a null new-stack pointer.
        unsafe {
            let mut old: libc::stack_t = std::mem::zeroed();
            if libc::sigaltstack(std::ptr::null(), &mut old) == 0 && old.ss_flags & libc::SS_DISABLE == 0 {
                return None;
            }
        }
        let len = 64 << 10;
        // SAFETY: fresh anonymous mapping.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let st = libc::stack_t { ss_sp: map, ss_flags: 0, ss_size: len };
        // SAFETY: `map` is a live mapping of `len` bytes owned by the returned guard.
        unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) };
        Some(AltStack { map, len })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: disable the altstack before unmapping the memory it points to.
        unsafe {
            let st = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
            libc::sigaltstack(&st, std::ptr::null_mut());
            libc::munmap(self.map, self.len);
        }
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(task) = context::current_task_ptr() {
        // SAFETY: the task running on this thread is alive while it runs, and the fields
        // read here are immutable after construction.
        let task = unsafe { task.as_ref() };
        let (lo, hi) = task.guard_range();
        if addr >= lo && addr < hi {
            report_overflow(task);
        }
    }
    // Not ours: hand over to whoever was installed before, or die by the default action.
    // SAFETY: PREV_* were written once before the handler was installed.
    let prev = unsafe { if sig == libc::SIGSEGV { PREV_SEGV } else { PREV_BUS } };
    if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
        // SAFETY: restoring the default action; returning re-executes the faulting access.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler is a live SA_SIGINFO handler.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the previous handler is a live one-argument handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(sig);
    }
}

/// Async-signal-safe: formats into a stack buffer, writes to stderr, aborts.
fn report_overflow(task: &Task) -> ! {
    let mut buf = [0u8; 512];
    let mut w = Writer { buf: &mut buf, len: 0 };
    w.put(b"kcoro: coroutine ");
    w.num(task.id());
    if let Some(name) = task.name() {
        w.put(b" (");
        w.put(&name.as_bytes()[..name.len().min(200)]);
        w.put(b")");
    }
    w.put(b" overflowed its ");
    w.num(task.stack_kib() as u64);
    w.put(b" KiB stack\n");
    let len = w.len;
    // SAFETY: write(2) and abort(3) are async-signal-safe.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::abort();
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn num(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.put(&digits[i..]);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn writer_formats_numbers_and_truncates() {
        let mut buf = [0u8; 8];
        let mut w = Writer { buf: &mut buf, len: 0 };
        w.num(0);
        w.num(1234567890);
        assert_eq!(&buf[..], b"01234567");
    }
}
