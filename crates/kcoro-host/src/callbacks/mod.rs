//! The `extern "C"` functions plugins call, one file per family of layouts: [`kcoro`] for
//! kcoro's version 1 and nylon-ring's early layouts (they share the host vtable), and
//! [`nylon`] for nylon-ring 0.1 and 0.2.
//!
//! Every function catches panics, accepts a null or retired `host_ctx` (the call is
//! dropped and counted, never a crash), and reaches the context through [`with_ctx`].

pub(crate) mod kcoro;
pub(crate) mod nylon;

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::ctx::{HostCtx, sync_call};
use crate::gate::Gate;

/// Runs `f`, turning a panic into `fallback`: no unwind may cross the C boundary.
///
/// Always inlined, like [`with_ctx`]: left out of line, the closures' captures were written
/// field by field and read back as one wide load (a store-forwarding stall) on every reply,
/// about 15 ns of an empty call.
#[inline(always)]
pub(crate) fn guarded<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Runs `f` with the context behind `host_ctx`: directly when this thread is inside a
/// host → plugin call of that instance, else through its gate. `None` for a null
/// `host_ctx` or a retired instance (counted by the gate).
///
/// # Safety
/// `host_ctx` must be null or a pointer this host handed a plugin.
#[inline(always)]
pub(crate) unsafe fn with_ctx<T>(host_ctx: *mut c_void, f: impl FnOnce(&HostCtx) -> T) -> Option<T> {
    let sync = sync_call();
    if !host_ctx.is_null() && std::ptr::eq(sync.gate, host_ctx as *const Gate) {
        // SAFETY: this thread is inside a host → plugin call of the instance behind this
        // gate (`InCall`), and that call holds the instance and its context.
        return Some(f(unsafe { &*sync.ctx }));
    }
    // SAFETY: forwarded to the caller; gates are never freed.
    let gate = unsafe { Gate::from_raw(host_ctx) }?;
    let entered = gate.enter()?;
    Some(f(entered.ctx()))
}
