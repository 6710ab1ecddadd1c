//! `kc_cancel_*`: cancel tokens are kcoro [`CancelToken`]s. Triggering one wakes every
//! operation waiting with it at once (no polling); a token made by `kc_cancel_ctx_init`
//! from a parent is cancelled when the parent is.

use std::ffi::{c_int, c_long};
use std::time::Duration;

use kcoro::sync::CancelToken;

use crate::error::{Error, code};
use crate::ffi;
use crate::handle::{self, Handle, Tagged};

/// What a `kc_cancel_t *` points to.
pub struct Cancel(pub(crate) CancelToken);

impl Handle for Cancel {
    const MAGIC: u64 = 0x6b63_5f63_616e_6331; // "kc_canc1"
    const WHAT: &'static str = "kc_cancel_t";
}

/// The C handle type.
pub type KcCancel = Tagged<Cancel>;

/// `kc_cancel_ctx_t`: a child token and the parent it was made from.
#[repr(C)]
#[derive(Debug)]
pub struct KcCancelCtx {
    /// The parent given to `kc_cancel_ctx_init` (may be NULL).
    pub parent: *const KcCancel,
    /// The token owned by the context.
    pub token: *mut KcCancel,
}

/// The token behind an optional handle: NULL means none.
///
/// # Safety
/// `c` is NULL or a handle as in [`handle::get`].
#[inline]
pub(crate) unsafe fn optional<'a>(c: *const KcCancel) -> Result<Option<&'a CancelToken>, Error> {
    if c.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    Ok(Some(&unsafe { handle::get(c) }?.0))
}

/// # Safety
/// `c` as in [`handle::get`].
unsafe fn token<'a>(c: *const KcCancel) -> Result<&'a CancelToken, Error> {
    // SAFETY: forwarded contract.
    Ok(&unsafe { handle::get(c) }?.0)
}

/// `int kc_cancel_init(kc_cancel_t **out)`: a new, untriggered token.
///
/// # Safety
/// `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_cancel_init(out: *mut *mut KcCancel) -> c_int {
    ffi::int(|| {
        if out.is_null() {
            return Err(Error::Invalid("out is NULL"));
        }
        // SAFETY: checked non-null; the caller passes a writable `kc_cancel_t **`.
        unsafe { out.write(handle::into_raw(Cancel(CancelToken::new()))) };
        Ok(0)
    })
}

/// Triggers the token (idempotent); every wait using it returns `KC_ECANCELED`.
///
/// # Safety
/// `c` NULL (ignored) or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_cancel_trigger(c: *mut KcCancel) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { token(c) }.map(CancelToken::cancel))
}

/// 1 if triggered, 0 if not (or for a bad handle).
///
/// # Safety
/// `c` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_cancel_is_set(c: *const KcCancel) -> c_int {
    // SAFETY: the C contract above.
    ffi::value(0, || unsafe { token(c) }.map(|t| t.is_cancelled() as c_int))
}

/// Waits until the token is triggered: 0 once it is; `KC_EAGAIN` for a try (timeout 0)
/// that finds it untriggered; `KC_ETIME` when a bounded wait runs out.
///
/// # Safety
/// `c` live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_cancel_wait(c: *const KcCancel, timeout_ms: c_long) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let t = unsafe { token(c) }?;
        match timeout_ms {
            0 if t.is_cancelled() => Ok(0),
            0 => Ok(code::EAGAIN),
            ms if ms < 0 => {
                t.cancelled();
                Ok(0)
            }
            ms => {
                let fired = match kcoro::now().checked_add(Duration::from_millis(ms as u64)) {
                    Some(deadline) => t.cancelled_deadline(deadline),
                    None => {
                        t.cancelled();
                        true
                    }
                };
                Ok(if fired { 0 } else { code::ETIME })
            }
        }
    })
}

/// Frees the token. Operations still waiting on it must have returned.
///
/// # Safety
/// `c` NULL (ignored) or live, and no longer used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_cancel_destroy(c: *mut KcCancel) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { handle::destroy(c) })
}

/// Fills `ctx` with a new token that is a child of `parent` (a root token if NULL).
///
/// # Safety
/// `ctx` NULL or writable; `parent` NULL or live (and outliving the context's use).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_cancel_ctx_init(ctx: *mut KcCancelCtx, parent: *const KcCancel) -> c_int {
    ffi::int(|| {
        if ctx.is_null() {
            return Err(Error::Invalid("ctx is NULL"));
        }
        // SAFETY: the C contract above.
        let child = match unsafe { optional(parent) }? {
            Some(p) => p.child(),
            None => CancelToken::new(),
        };
        let token = handle::into_raw(Cancel(child));
        // SAFETY: checked non-null; the caller passes a writable context.
        unsafe { ctx.write(KcCancelCtx { parent, token }) };
        Ok(0)
    })
}

/// Frees the context's token and clears the context.
///
/// # Safety
/// `ctx` NULL or a context filled by [`kc_cancel_ctx_init`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_cancel_ctx_destroy(ctx: *mut KcCancelCtx) {
    ffi::void(|| {
        if ctx.is_null() {
            return Err(Error::Invalid("ctx is NULL"));
        }
        // SAFETY: non-null and, by the C contract, a filled context.
        let ctx = unsafe { &mut *ctx };
        // SAFETY: the token was made by `kc_cancel_ctx_init`.
        let r = unsafe { handle::destroy(ctx.token) };
        ctx.token = std::ptr::null_mut();
        ctx.parent = std::ptr::null();
        r
    })
}
