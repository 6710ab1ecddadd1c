//! Zero copy: `kc_chan_enable_zero_copy*`, zref and descriptor send/receive, and the
//! backend registry (`kc_zcopy_register`, `kc_zcopy_resolve`), over `kcoro::zcopy`.
//!
//! Enabling zero copy binds a fresh kcoro descriptor channel of the same kind and
//! capacity to the backend (the built-in `zref` keeps descriptors in the channel's own
//! buffer, every kind works); from then on the channel moves descriptors only. A zref
//! send is a descriptor of a bare pointer. Zero-length descriptors are `-EINVAL`; descriptor
//! operations on a channel with no backend bound are `KC_ENOTSUP`.

use std::ffi::{CStr, c_char, c_int, c_long, c_void};

use kcoro::sync::CancelToken;
use kcoro::zcopy::{self, BackendId, KcZcopyBackendOps, ZDesc};

use crate::cancel::{self, KcCancel};
use crate::chan::{Chan, KcChan, Pair, chan, recv, send};
use crate::error::Error;
use crate::ffi;
use crate::region;

fn desc_pair(ch: &Chan) -> Result<&Pair<ZDesc>, Error> {
    ch.zc.get().ok_or(Error::Unsupported("no zero-copy backend bound to the channel"))
}

/// # Safety
/// `ch`, `c` handles (or `c` NULL) as in `chan::chan`.
unsafe fn ends<'a>(
    ch: *mut KcChan,
    c: *const KcCancel,
) -> Result<(&'a Chan, Option<&'a CancelToken>), Error> {
    // SAFETY: forwarded contract.
    unsafe { Ok((chan(ch)?, cancel::optional(c)?)) }
}

/// Sends a descriptor, counted in flight while it names a registered region (`region`).
fn send_d(ch: &Chan, mut d: ZDesc, tmo: c_long, c: Option<&CancelToken>) -> Result<c_int, Error> {
    if d.len == 0 {
        return Err(Error::Invalid("zero-length descriptor"));
    }
    let tx = &desc_pair(ch)?.tx;
    region::hold(&mut d)?;
    if let Err(e) = send(tx, d, tmo, c) {
        region::release(&d);
        return Err(e.into());
    }
    Ok(0)
}

/// Receives a descriptor: its region span translated to a local address, no longer in flight.
fn recv_d(ch: &Chan, tmo: c_long, c: Option<&CancelToken>) -> Result<ZDesc, Error> {
    let mut d = recv(&desc_pair(ch)?.rx, tmo, c)?;
    region::arrive(&mut d);
    Ok(d)
}

/// Binds the built-in `zref` backend (idempotent). Only before the first operation.
///
/// # Safety
/// `ch` live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_enable_zero_copy(ch: *mut KcChan) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        unsafe { chan(ch) }?.enable_zero_copy(zcopy::ZREF, std::ptr::null())?;
        Ok(0)
    })
}

/// Binds backend `id`, passing `opts` to its `attach`. Unknown id: `-ENOENT`.
///
/// # Safety
/// `ch` live; `opts` whatever the backend's `attach` accepts.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_enable_zero_copy_backend(
    ch: *mut KcChan,
    id: c_int,
    opts: *const c_void,
) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        unsafe { chan(ch) }?.enable_zero_copy(BackendId::from_raw(id), opts)?;
        Ok(0)
    })
}

/// Registers a backend by name; returns its id (≥ 0) or a negative code (`-EINVAL` for
/// a bad name or missing send/recv, `-EEXIST` for a taken name).
///
/// # Safety
/// `name` NULL or a C string; `ops` NULL or a table whose functions stay callable for the
/// life of the process, from any thread, and never unwind.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_zcopy_register(
    name: *const c_char,
    ops: *const KcZcopyBackendOps,
    caps: u32,
) -> c_int {
    ffi::int(|| {
        if name.is_null() || ops.is_null() {
            return Err(Error::Invalid("NULL name or ops"));
        }
        // SAFETY: non-null C string by the contract above.
        let name =
            unsafe { CStr::from_ptr(name) }.to_str().map_err(|_| Error::Invalid("name is not UTF-8"))?;
        // SAFETY: non-null ops table with the lifetime the contract above promises.
        let id = unsafe { zcopy::register_c(name, &*ops, caps) }.map_err(|e| Error::Runtime(e.code()))?;
        Ok(id.as_raw())
    })
}

/// The id of a registered backend (`"zref"` is 0), or `-ENOENT`.
///
/// # Safety
/// `name` NULL or a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_zcopy_resolve(name: *const c_char) -> c_int {
    ffi::int(|| {
        if name.is_null() {
            return Err(Error::Invalid("name is NULL"));
        }
        // SAFETY: non-null C string by the contract above.
        let name =
            unsafe { CStr::from_ptr(name) }.to_str().map_err(|_| Error::Invalid("name is not UTF-8"))?;
        zcopy::resolve_backend(name).map(BackendId::as_raw).ok_or(Error::Runtime(-libc::ENOENT))
    })
}

/// Sends `(ptr, len)` without copying; ownership passes on success only.
///
/// # Safety
/// `ch` live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_send_zref(
    ch: *mut KcChan,
    ptr: *mut c_void,
    len: usize,
    timeout_ms: c_long,
) -> c_int {
    // SAFETY: the C contract above.
    unsafe { kc_chan_send_zref_c(ch, ptr, len, timeout_ms, std::ptr::null()) }
}

/// Cancellable [`kc_chan_send_zref`].
///
/// # Safety
/// `ch` live; `c` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_send_zref_c(
    ch: *mut KcChan,
    ptr: *mut c_void,
    len: usize,
    timeout_ms: c_long,
    c: *const KcCancel,
) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let (ch, c) = unsafe { ends(ch, c) }?;
        if ptr.is_null() {
            return Err(Error::Invalid("ptr is NULL"));
        }
        send_d(ch, ZDesc::from_ptr(ptr, len), timeout_ms, c)
    })
}

/// Receives a pointer sent by zref (or the address of a descriptor).
///
/// # Safety
/// `ch` live; `out_ptr` writable; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_recv_zref(
    ch: *mut KcChan,
    out_ptr: *mut *mut c_void,
    out_len: *mut usize,
    timeout_ms: c_long,
) -> c_int {
    // SAFETY: the C contract above.
    unsafe { kc_chan_recv_zref_c(ch, out_ptr, out_len, timeout_ms, std::ptr::null()) }
}

/// Cancellable [`kc_chan_recv_zref`].
///
/// # Safety
/// As [`kc_chan_recv_zref`]; `c` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_recv_zref_c(
    ch: *mut KcChan,
    out_ptr: *mut *mut c_void,
    out_len: *mut usize,
    timeout_ms: c_long,
    c: *const KcCancel,
) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let (ch, c) = unsafe { ends(ch, c) }?;
        if out_ptr.is_null() {
            return Err(Error::Invalid("out_ptr is NULL"));
        }
        let d = recv_d(ch, timeout_ms, c)?;
        // SAFETY: checked non-null / NULL-tolerant store; C passes writable pointers.
        unsafe {
            out_ptr.write(d.addr);
            ffi::store(out_len, d.len);
        }
        Ok(0)
    })
}

/// Sends a descriptor through the bound backend.
///
/// # Safety
/// `ch` live; `d` NULL or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_send_desc(ch: *mut KcChan, d: *const ZDesc, timeout_ms: c_long) -> c_int {
    // SAFETY: the C contract above.
    unsafe { kc_chan_send_desc_c(ch, d, timeout_ms, std::ptr::null()) }
}

/// Cancellable [`kc_chan_send_desc`].
///
/// # Safety
/// As [`kc_chan_send_desc`]; `c` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_send_desc_c(
    ch: *mut KcChan,
    d: *const ZDesc,
    timeout_ms: c_long,
    c: *const KcCancel,
) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let (ch, c) = unsafe { ends(ch, c) }?;
        // SAFETY: NULL-checked by `as_ref`; readable by the contract above.
        let d = unsafe { d.as_ref() }.ok_or(Error::Invalid("descriptor is NULL"))?;
        send_d(ch, *d, timeout_ms, c)
    })
}

/// Receives a descriptor through the bound backend.
///
/// # Safety
/// `ch` live; `d` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_recv_desc(ch: *mut KcChan, d: *mut ZDesc, timeout_ms: c_long) -> c_int {
    // SAFETY: the C contract above.
    unsafe { kc_chan_recv_desc_c(ch, d, timeout_ms, std::ptr::null()) }
}

/// Cancellable [`kc_chan_recv_desc`].
///
/// # Safety
/// As [`kc_chan_recv_desc`]; `c` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_recv_desc_c(
    ch: *mut KcChan,
    d: *mut ZDesc,
    timeout_ms: c_long,
    c: *const KcCancel,
) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let (ch, c) = unsafe { ends(ch, c) }?;
        if d.is_null() {
            return Err(Error::Invalid("descriptor is NULL"));
        }
        let got = recv_d(ch, timeout_ms, c)?;
        // SAFETY: checked non-null; writable by the contract above.
        unsafe { d.write(got) };
        Ok(0)
    })
}
