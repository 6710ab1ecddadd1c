//! kcoro's additive extensions to version 1.
//!
//! # Negotiation
//! 1. A plugin that wants the extensions returns a [`KcPluginInfo`]: the version-1
//!    [`NrPluginInfo`] with `struct_size >= size_of::<KcPluginInfo>()` and one more field,
//!    a pointer to its [`KcPluginExt`]. A version-1 host reads only the first 56 bytes and
//!    never looks further, so the plugin still loads there (without the extensions).
//! 2. The host reads `ext` only when `struct_size` says it is there, and reads each field of
//!    `KcPluginExt` only when `KcPluginExt::struct_size` covers it.
//! 3. After a successful `init`, the host calls `ext.attach(plugin_ctx, host_ctx, api)` with
//!    its [`KcHostApi`], valid until `shutdown` returns. A plugin loaded by a version-1
//!    host is simply never attached; it must keep working with `send_result` alone.
//!
//! # What each extension buys
//! - **Entry ids.** `entries[i]` names entry `i`; the host resolves a name once and calls
//!   `handle_id(plugin_ctx, i, ...)`, so dispatch needs no string compare.
//! - **Per-sid state** ([`KcHostApi::state`]), freed by the host when the call or stream ends.
//! - **Owned replies** ([`KcHostApi::send_owned`]): the host keeps the plugin's buffer and
//!   calls the plugin's release function when the consumer is done with it: zero copies.
//! - **Backpressure** ([`KcHostApi::try_send`]): a full stream returns
//!   [`NrStatus::Backpressure`] instead of blocking the calling thread.

use std::ffi::c_void;

use crate::{NrBytes, NrHostExt, NrPluginInfo, NrRequest, NrStatus, NrStr};

/// The version-1 info followed by the extension pointer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KcPluginInfo {
    pub base: NrPluginInfo,
    /// The plugin's extension table; may be null.
    pub ext: *const KcPluginExt,
}

/// `attach(plugin_ctx, host_ctx, api)`: the host's extension table, valid until shutdown.
pub type KcAttachFn = unsafe extern "C" fn(*mut c_void, *mut c_void, *const KcHostApi) -> NrStatus;
/// `handle_id(plugin_ctx, entry_id, sid, req, payload)`: `handle` by entry id.
pub type KcHandleIdFn = unsafe extern "C" fn(*mut c_void, u32, u64, *const NrRequest, NrBytes) -> NrStatus;

/// What a plugin offers beyond version 1.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KcPluginExt {
    /// `sizeof(KcPluginExt)` as the plugin knows it.
    pub struct_size: u32,
    /// Reserved for capability bits; zero.
    pub flags: u32,
    pub attach: Option<KcAttachFn>,
    /// Entry names; the index is the entry id. May be null when `entries_len` is 0.
    pub entries: *const NrStr,
    pub entries_len: u32,
    pub _reserved0: u32,
    pub handle_id: Option<KcHandleIdFn>,
    pub _reserved: [u64; 4],
}

/// Frees a buffer passed to [`KcHostApi::send_owned`]; called exactly once, from any thread.
pub type KcReleaseFn = unsafe extern "C" fn(*mut c_void);

/// `send_owned(host_ctx, sid, status, payload, release, release_ctx)`.
pub type KcSendOwnedFn =
    unsafe extern "C" fn(*mut c_void, u64, NrStatus, NrBytes, Option<KcReleaseFn>, *mut c_void) -> NrStatus;
/// `try_send(host_ctx, sid, status, payload)`.
pub type KcTrySendFn = unsafe extern "C" fn(*mut c_void, u64, NrStatus, NrBytes) -> NrStatus;

/// The host's table for plugins that negotiated the extensions.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KcHostApi {
    /// `sizeof(KcHostApi)` as the host knows it.
    pub struct_size: u32,
    /// Reserved for capability bits; zero.
    pub flags: u32,
    /// Per-sid state.
    pub state: NrHostExt,
    /// Like `send_result`, but the host takes `payload` without copying and calls
    /// `release(release_ctx)` once nobody reads it. Returns `Ok` when taken; `Invalid` for an
    /// unknown or finished sid (released before returning); `Backpressure` when the stream
    /// is full (not taken: the caller still owns the buffer).
    pub send_owned: KcSendOwnedFn,
    /// Like `send_result`, but returns `Backpressure` instead of waiting when the stream is
    /// full (the frame is not taken), `Invalid` for an unknown or finished sid, else `Ok`.
    pub try_send: KcTrySendFn,
    pub _reserved: [u64; 4],
}

impl KcPluginExt {
    /// Whether a table of `struct_size` bytes holds the field ending at `end`.
    pub const fn covers(&self, end: usize) -> bool {
        self.struct_size as usize >= end
    }
}

impl KcHostApi {
    /// Whether a table of `struct_size` bytes holds the field ending at `end`.
    pub const fn covers(&self, end: usize) -> bool {
        self.struct_size as usize >= end
    }
}
