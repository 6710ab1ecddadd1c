//! Callbacks of nylon-ring 0.1 and 0.2: their host vtables and the state table nylon-ring
//! plugins find at `host_ctx` + 24 ([`crate::gate`]).
//!
//! As nylon-ring's own host does:
//! - every payload passed by value is consumed whatever the answer (an owned `NrVec` or
//!   `NrOwnedBytes` is released if the host does not keep it);
//! - a full stream answers `Backpressure` (6) and drops the frame, it never waits;
//! - `set_state` answers a status and `get_state` an owned copy (a host `NrVec`).
//!
//! The host keeps an owned reply without copying it and releases it when the reader
//! drops the reply. Statuses cross in nylon-ring's numbering both ways.

use std::ffi::c_void;

use kcoro_abi::nylon::{self, NrBufferLease, NrOwnedBytes, NrVec, NyHostExt, NyStatus, NyStr};
use kcoro_abi::{NrBytes, NrStatus};

use super::{guarded, with_ctx};
use crate::ctx::{Full, HostCtx, sync_call};
use crate::payload::Frame;
use crate::payload::{Owned, Payload, Release};
use crate::table::{self, Kind};

/// The host vtable of nylon-ring 0.1.
pub(crate) static HOST_VTABLE_V01: nylon::v01::NyHostVTable = nylon::v01::NyHostVTable { send_result };

/// The host vtable of nylon-ring 0.2.
pub(crate) static HOST_VTABLE_V2: nylon::v2::NyHostVTable =
    nylon::v2::NyHostVTable { send_result, send_result_owned, acquire_result_buffer, commit_result_buffer };

/// The state table every gate carries for nylon-ring plugins.
pub(crate) const HOST_EXT: NyHostExt = NyHostExt { set_state, get_state };

fn answer(s: NrStatus) -> NyStatus {
    NyStatus::from_kcoro(s)
}

/// Delivers what `make` builds under nylon-ring's rules: a refused payload is dropped
/// (released), and so is the plugin's buffer when there is no context to build it for
/// (`unused` releases it).
///
/// # Safety
/// `host_ctx` as for [`with_ctx`].
#[inline(always)]
unsafe fn deliver(
    host_ctx: *mut c_void,
    sid: u64,
    status: NyStatus,
    make: impl FnOnce(&HostCtx) -> Payload,
    unused: impl FnOnce(),
) -> NyStatus {
    // SAFETY: forwarded to the caller.
    let got = unsafe {
        with_ctx(host_ctx, |ctx| {
            // A refused payload is dropped (released) here: nylon-ring's host consumes the
            // payload whatever it answers.
            ctx.deliver(sid, status.to_kcoro(), || make(ctx), Full::Refuse).unwrap_or(NrStatus::Backpressure)
        })
    };
    match got {
        Some(s) => answer(s),
        None => {
            unused();
            NyStatus::Invalid
        }
    }
}

unsafe extern "C" fn send_result(
    host_ctx: *mut c_void,
    sid: u64,
    status: NyStatus,
    payload: NrVec,
) -> NyStatus {
    guarded(NyStatus::Err, || {
        if payload.ptr.is_null() && payload.len > 0 {
            return NyStatus::Invalid; // a view of nothing: nothing to read, nothing to free
        }
        let drop_fn = payload.drop_fn.filter(|_| payload.owned == 1);
        if let (Some(f), 0) = (drop_fn, payload.len) {
            // SAFETY: nylon-ring's contract for an owned `NrVec`: freed once through its own
            // `drop_fn`; with nothing to keep, at once.
            unsafe { f(payload.ptr, payload.len, payload.cap) };
        }
        let make = |ctx: &HostCtx| vec_payload(&payload, drop_fn, ctx);
        let unused = || {
            if let (Some(f), true) = (drop_fn, payload.len > 0) {
                // SAFETY: as above: the one release of a buffer nobody took.
                unsafe { f(payload.ptr, payload.len, payload.cap) };
            }
        };
        // The fast path, spelled out: a reply from inside `handle` is built in the caller's
        // own slot. (Through `deliver`'s closures it was built on the stack and copied, and
        // the copy's wide load stalled on the narrow stores before it.)
        let sync = sync_call();
        if !host_ctx.is_null() && std::ptr::eq(sync.gate, host_ctx as *const crate::gate::Gate) {
            // SAFETY: this thread is inside a host → plugin call of this instance (`InCall`),
            // which holds its context.
            let ctx = unsafe { &*sync.ctx };
            // SAFETY: `sync` is this thread's current call; the slot is used right here.
            if let Some(reply) = unsafe { sync.reply_for(ctx, sid) } {
                if reply.is_some() {
                    unused();
                    return answer(ctx.dropped());
                }
                *reply = Some(Frame { status: status.to_kcoro(), data: vec_payload(&payload, drop_fn, ctx) });
                return NyStatus::Ok;
            }
        }
        // SAFETY: the ABI: `host_ctx` is the one this host handed the plugin.
        unsafe { deliver(host_ctx, sid, status, make, unused) }
    })
}

/// What an `NrVec` reply becomes: kept without a copy when owned (`drop_fn`), else copied.
#[inline(always)]
fn vec_payload(payload: &NrVec, drop_fn: Option<kcoro_abi::nylon::NrVecDropFn>, ctx: &HostCtx) -> Payload {
    if payload.len == 0 {
        return Payload::empty();
    }
    match drop_fn {
        // SAFETY: nylon-ring's contract for an owned `NrVec`: its bytes stay valid until
        // its own `drop_fn` runs, which `Owned` calls once.
        Some(f) => Payload::owned(
            unsafe { Owned::new(payload.ptr, payload.len, Release::NyVec(f, payload.cap)) }
                .keep_mapped(ctx.pin_lib()),
        ),
        // SAFETY: a borrowed (or owned but never freed) vector is readable for this call;
        // it is copied before returning.
        None => Payload::copy_of(unsafe { std::slice::from_raw_parts(payload.ptr, payload.len) }),
    }
}

unsafe extern "C" fn send_result_owned(
    host_ctx: *mut c_void,
    sid: u64,
    status: NyStatus,
    payload: NrOwnedBytes,
) -> NyStatus {
    guarded(NyStatus::Err, || {
        let release = payload.release.map_or(Release::Nothing, |f| Release::NyOwned(f, payload.owner_ctx));
        let Ok(len) = usize::try_from(payload.len) else { return NyStatus::Invalid };
        let len = if payload.ptr.is_null() { 0 } else { len };
        // SAFETY: nylon-ring 0.2's contract: the bytes stay valid and unchanged until
        // `release` runs (forever without one). `Owned` releases them exactly once: when the
        // reader drops them, here if the host does not keep them.
        let owned = unsafe { Owned::new(payload.ptr, len, release) };
        let cell = std::cell::Cell::new(Some(owned));
        let make = |ctx: &HostCtx| {
            cell.take().map_or(Payload::empty(), |o| Payload::owned(o.keep_mapped(ctx.pin_lib())))
        };
        // SAFETY: as in `send_result`; `cell` drops (releases) an unused buffer.
        unsafe { deliver(host_ctx, sid, status, make, || drop(cell.take())) }
    })
}

unsafe extern "C" fn acquire_result_buffer(host_ctx: *mut c_void, sid: u64, capacity: u64) -> NrBufferLease {
    guarded(NrBufferLease::FAILED, || {
        // SAFETY: as in `send_result`.
        let lease = unsafe {
            with_ctx(host_ctx, |ctx| {
                if table::is_inline(sid) {
                    return lease_inline(ctx, sid, capacity);
                }
                let Some(mut slot) = ctx.table.get(sid) else { return NrBufferLease::FAILED };
                if slot.kind != Kind::Unary || slot.ended || slot.lease.is_some() {
                    return NrBufferLease::FAILED;
                }
                let Some((buf, lease)) = new_lease(capacity) else { return NrBufferLease::FAILED };
                slot.lease = Some(buf);
                lease
            })
        };
        lease.unwrap_or(NrBufferLease::FAILED)
    })
}

/// A host buffer of `capacity` bytes and the lease that lends it; `None` for a size the
/// host cannot allocate (the lease is refused instead of aborting).
fn new_lease(capacity: u64) -> Option<(Vec<u8>, NrBufferLease)> {
    let mut buf = Vec::new();
    if !usize::try_from(capacity).is_ok_and(|c| buf.try_reserve_exact(c).is_ok()) {
        return None;
    }
    let lease =
        NrBufferLease { ptr: buf.as_mut_ptr(), cap: buf.capacity() as u64, token: buf.as_ptr() as u64 };
    Some((buf, lease))
}

/// A lease for the inline-only call `sid`: only from inside its `handle`, on its thread,
/// before its reply, one at a time (the rules a slot's lease keeps).
fn lease_inline(ctx: &HostCtx, sid: u64, capacity: u64) -> NrBufferLease {
    // SAFETY: `sync_call()` is this thread's current call; the slot is only read here.
    let this_call = unsafe { sync_call().reply_for(ctx, sid) };
    if !this_call.is_some_and(|reply| reply.is_none()) || ctx.has_inline_lease(sid) {
        return NrBufferLease::FAILED;
    }
    let Some((buf, lease)) = new_lease(capacity) else { return NrBufferLease::FAILED };
    ctx.keep_inline_lease(sid, buf);
    lease
}

unsafe extern "C" fn commit_result_buffer(
    host_ctx: *mut c_void,
    sid: u64,
    status: NyStatus,
    token: u64,
    initialized_len: u64,
) -> NyStatus {
    guarded(NyStatus::Err, || {
        let commit = |ctx: &crate::ctx::HostCtx| {
            let fits = |buf: &Vec<u8>| usize::try_from(initialized_len).is_ok_and(|n| n <= buf.capacity());
            let buf = if table::is_inline(sid) {
                match ctx.take_inline_lease(sid, token, fits) {
                    Some(Ok(buf)) => buf,
                    Some(Err(())) => return NrStatus::Invalid, // still leased, as below
                    None => {
                        ctx.release_orphan(token); // the call returned first
                        return ctx.dropped();
                    }
                }
            } else {
                let Some(mut slot) = ctx.table.get(sid) else {
                    // The call ended first: the plugin's commit says it is done with the
                    // orphaned buffer, which can go now.
                    ctx.release_orphan(token);
                    return ctx.dropped();
                };
                let Some(buf) = slot.lease.take() else { return NrStatus::Invalid };
                if buf.as_ptr() as u64 != token || !fits(&buf) {
                    slot.lease = Some(buf); // still leased: a corrected commit may follow
                    return NrStatus::Invalid;
                }
                buf
            };
            let mut buf = buf;
            // SAFETY: within the capacity (`fits`), and the plugin's commit says it wrote
            // that prefix (bytes need no other validity).
            unsafe { buf.set_len(initialized_len as usize) };
            ctx.deliver(sid, status.to_kcoro(), || Payload::from(buf), Full::Refuse)
                .unwrap_or(NrStatus::Backpressure)
        };
        // SAFETY: as in `send_result`.
        let got = unsafe { with_ctx(host_ctx, commit) };
        answer(got.unwrap_or(NrStatus::Invalid))
    })
}

unsafe extern "C" fn set_state(host_ctx: *mut c_void, sid: u64, key: NyStr, value: NrBytes) -> NyStatus {
    guarded(NyStatus::Err, || {
        // SAFETY: the ABI: both views are readable for this call.
        let (key, value) = unsafe { (key.as_bytes(), value.as_slice()) };
        if std::str::from_utf8(key).is_err() {
            return NyStatus::Invalid;
        }
        // SAFETY: as in `send_result`.
        let got = unsafe {
            with_ctx(host_ctx, |ctx| {
                let Some(mut slot) = ctx.table.get(sid) else { return NrStatus::Invalid };
                slot.state.get_or_insert_with(Default::default).insert(key.into(), value.into());
                NrStatus::Ok
            })
        };
        answer(got.unwrap_or(NrStatus::Invalid))
    })
}

unsafe extern "C" fn get_state(host_ctx: *mut c_void, sid: u64, key: NyStr) -> NrVec {
    guarded(NrVec::EMPTY, || {
        // SAFETY: the ABI: the key view is readable for this call.
        let key = unsafe { key.as_bytes() };
        // SAFETY: as in `send_result`.
        let copy = unsafe {
            with_ctx(host_ctx, |ctx| {
                let slot = ctx.table.get(sid)?;
                slot.state.as_ref()?.get(key).map(|v| v.to_vec())
            })
        };
        copy.flatten().map_or(NrVec::EMPTY, host_vec)
    })
}

/// A host-owned `NrVec`: the plugin frees it through [`drop_host_vec`], this host's code.
fn host_vec(v: Vec<u8>) -> NrVec {
    if v.is_empty() {
        return NrVec::EMPTY;
    }
    let mut v = std::mem::ManuallyDrop::new(v);
    NrVec {
        ptr: v.as_mut_ptr(),
        len: v.len(),
        cap: v.capacity(),
        owned: 1,
        _reserved: [0; 7],
        drop_fn: Some(drop_host_vec),
    }
}

unsafe extern "C" fn drop_host_vec(ptr: *mut u8, len: usize, cap: usize) {
    guarded((), || {
        if !ptr.is_null() && cap != 0 {
            // SAFETY: the parts `host_vec` took apart, given back once by the plugin.
            drop(unsafe { Vec::from_raw_parts(ptr, len, cap) });
        }
    })
}
