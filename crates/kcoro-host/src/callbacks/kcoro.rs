//! Callbacks of kcoro's version 1 (`send_result` and the [`KcHostApi`] extension) and of
//! nylon-ring's early layouts, which received the same version-1 host vtable.
//!
//! Statuses arrive in the plugin's layout's numbering and are read through its
//! [`crate::layout::Codes`]; a `send_result` on a full stream waits for room (version 1
//! has no way to say no), `try_send` and `send_owned` answer `Backpressure`.

use std::ffi::c_void;

use kcoro_abi::{KcHostApi, KcReleaseFn, NrBytes, NrHostExt, NrHostVTable, NrStatus, NrStr};

use super::{guarded, with_ctx};
use crate::ctx::Full;
use crate::payload::{Owned, Payload, Release};

/// The host vtable of kcoro's version 1 and the early nylon-ring layouts.
pub(crate) static HOST_VTABLE: NrHostVTable = NrHostVTable { send_result };

/// What `attach` hands an extended kcoro plugin.
pub(crate) static HOST_API: KcHostApi = KcHostApi {
    struct_size: std::mem::size_of::<KcHostApi>() as u32,
    flags: 0,
    state: NrHostExt { set_state, get_state },
    send_owned,
    try_send,
    _reserved: [0; 4],
};

/// The state table of nylon-ring's early layouts, which their plugins found through a
/// pointer inside `host_ctx` ([`crate::gate`]): `get_state` as kcoro's, and a `set_state`
/// that answers an empty view, as those hosts did (kcoro's returns the stored value).
pub(crate) static EARLY_HOST_EXT: NrHostExt = NrHostExt { set_state: early_set_state, get_state };

unsafe extern "C" fn send_result(host_ctx: *mut c_void, sid: u64, status: NrStatus, payload: NrBytes) {
    guarded((), || {
        // SAFETY: the ABI: `payload` is readable for this call.
        let bytes = unsafe { payload.as_slice() };
        // SAFETY: the ABI: `host_ctx` is the one this host handed the plugin. (A version-1
        // sender learns nothing: the answer is dropped.)
        let _ = unsafe {
            with_ctx(host_ctx, |ctx| {
                let _ = ctx.deliver(sid, ctx.codes.decode(status.0), || Payload::copy_of(bytes), Full::Wait);
            })
        };
    })
}

unsafe extern "C" fn try_send(
    host_ctx: *mut c_void,
    sid: u64,
    status: NrStatus,
    payload: NrBytes,
) -> NrStatus {
    guarded(NrStatus::Err, || {
        // SAFETY: the ABI: `payload` is readable for this call.
        let bytes = unsafe { payload.as_slice() };
        // SAFETY: as in `send_result`.
        unsafe {
            with_ctx(host_ctx, |ctx| {
                let got =
                    ctx.deliver(sid, ctx.codes.decode(status.0), || Payload::copy_of(bytes), Full::Refuse);
                NrStatus(ctx.codes.encode(got.unwrap_or(NrStatus::Backpressure)))
            })
        }
        .unwrap_or(NrStatus::Invalid)
    })
}

unsafe extern "C" fn send_owned(
    host_ctx: *mut c_void,
    sid: u64,
    status: NrStatus,
    payload: NrBytes,
    release: Option<KcReleaseFn>,
    release_ctx: *mut c_void,
) -> NrStatus {
    guarded(NrStatus::Err, || {
        let release = release.map_or(Release::Nothing, |f| Release::Kcoro(f, release_ctx));
        // SAFETY: the extension's contract: the buffer stays valid until released.
        let owned = unsafe { Owned::new(payload.ptr, payload.len as usize, release) };
        // SAFETY: as in `send_result`. An unknown or retired host drops `owned` unused:
        // released, as promised for an unknown sid.
        let got = unsafe {
            with_ctx(host_ctx, move |ctx| {
                let data = || Payload::owned(owned.keep_mapped(ctx.pin_lib()));
                match ctx.deliver(sid, ctx.codes.decode(status.0), data, Full::Refuse) {
                    Ok(s) => NrStatus(ctx.codes.encode(s)),
                    Err(refused) => {
                        // Not taken: the plugin keeps its buffer.
                        if let Some(o) = refused.into_owned() {
                            o.disown();
                        }
                        NrStatus::Backpressure
                    }
                }
            })
        };
        got.unwrap_or(NrStatus::Invalid)
    })
}

unsafe extern "C" fn set_state(host_ctx: *mut c_void, sid: u64, key: NrStr, value: NrBytes) -> NrBytes {
    guarded(NrBytes::EMPTY, || {
        // SAFETY: the ABI: both views are readable for this call.
        let (key, value) = unsafe { (key.as_bytes(), value.as_slice()) };
        // SAFETY: as in `send_result`.
        let view = unsafe {
            with_ctx(host_ctx, |ctx| {
                let Some(mut slot) = ctx.table.get(sid) else { return NrBytes::EMPTY };
                let stored: Box<[u8]> = value.into();
                let view = NrBytes::from_slice(&stored);
                slot.state.get_or_insert_with(Default::default).insert(key.into(), stored);
                view
            })
        };
        view.unwrap_or(NrBytes::EMPTY)
    })
}

unsafe extern "C" fn get_state(host_ctx: *mut c_void, sid: u64, key: NrStr) -> NrBytes {
    guarded(NrBytes::EMPTY, || {
        // SAFETY: the ABI: the key view is readable for this call.
        let key = unsafe { key.as_bytes() };
        // SAFETY: as in `send_result`.
        let view = unsafe {
            with_ctx(host_ctx, |ctx| {
                let Some(slot) = ctx.table.get(sid) else { return NrBytes::EMPTY };
                // The boxed value does not move until the key is set again or the sid
                // ends, which is the lifetime the extension promises for the view.
                slot.state
                    .as_ref()
                    .and_then(|m| m.get(key))
                    .map_or(NrBytes::EMPTY, |v| NrBytes::from_slice(v))
            })
        };
        view.unwrap_or(NrBytes::EMPTY)
    })
}

unsafe extern "C" fn early_set_state(host_ctx: *mut c_void, sid: u64, key: NrStr, value: NrBytes) -> NrBytes {
    // SAFETY: the same contract as kcoro's `set_state`; only the answer differs.
    let _ = unsafe { set_state(host_ctx, sid, key, value) };
    NrBytes::EMPTY
}
