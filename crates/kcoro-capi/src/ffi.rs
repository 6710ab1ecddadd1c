//! The boundary: every entry point runs its body through one of these, so a panic (a bug
//! in the library) becomes a code instead of unwinding into C, which would abort.

use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, code};

/// Runs `f`; `Ok(v)` → `v`, `Err(e)` → `e.code()`, the scheduler's shutdown unwinding the
/// calling coroutine → `KC_ECANCELED`, any other panic → `-ENOTRECOVERABLE`.
///
/// Shutdown unwinds a parked coroutine from its park; the unwind cannot go on through the
/// C caller's frames, so it ends here and the C code gets `KC_ECANCELED`. Every later call
/// that would park unwinds (and so fails) the same way until the C function returns.
#[inline]
pub(crate) fn int(f: impl FnOnce() -> Result<c_int, Error>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => e.code(),
        Err(_) if kcoro::coro::is_unwinding_at_shutdown() => code::ECANCELED,
        Err(_) => code::ENOTRECOVERABLE,
    }
}

/// Runs `f` for an entry point returning nothing; errors and panics are dropped (the C
/// signature has no way to report them, and the bad input was refused).
pub(crate) fn void(f: impl FnOnce() -> Result<(), Error>) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// Runs `f` for an entry point returning a pointer; errors and panics give null.
pub(crate) fn ptr<T>(f: impl FnOnce() -> Result<*mut T, Error>) -> *mut T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(p)) => p,
        _ => std::ptr::null_mut(),
    }
}

/// Runs `f` for an entry point returning a value; errors and panics give `fallback`.
pub(crate) fn value<T>(fallback: T, f: impl FnOnce() -> Result<T, Error>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        _ => fallback,
    }
}

/// Writes `v` through `out` if it is not null.
///
/// # Safety
/// `out` is null or valid for a write of `T`.
pub(crate) unsafe fn store<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: the caller promises a non-null `out` is writable.
        unsafe { out.write(v) };
    }
}

/// Writes a result through the required out-pointer `out`: `-EINVAL` if it is null.
///
/// # Safety
/// `out` is null or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, v: T) -> Result<c_int, Error> {
    if out.is_null() {
        return Err(Error::Invalid("out is NULL"));
    }
    // SAFETY: checked non-null; the caller promises it is writable.
    unsafe { out.write(v) };
    Ok(0)
}
