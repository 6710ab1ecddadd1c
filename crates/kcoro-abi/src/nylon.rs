//! nylon-ring's plugin layouts, as its published crates and its repository history define
//! them, so that kcoro-host can load the plugins nylon-ring users actually build.
//!
//! Written from the `#[repr(C)]` types of the `nylon-ring` crates on crates.io (0.1.0–0.1.4
//! and 0.2.0–0.2.2) and of its repository before the first release; no code is shared with
//! them. `tests/layout.rs` pins every size and offset below, and
//! `tests/plugins/c/nylon_abi.h` asserts the same numbers in C.
//!
//! # The layouts
//!
//! Every layout starts with the same 56-byte info (`abi_version`, `struct_size`, `name`,
//! `version`, `plugin_ctx`, `vtable`); what differs is the plugin vtable behind it, the host
//! vtable the plugin receives, and the status codes:
//!
//! ```text
//!  layout        symbol                    abi  plugin vtable (slot: function)           host vtable
//!  ------------  ------------------------  ---  ---------------------------------------  -----------------------------
//!  early 3-slot  nylon_ring_get_plugin_v1    1  0 init 1 handle 2 shutdown               send_result(NrBytes)
//!  early 6-slot  nylon_ring_get_plugin_v1    1  0 init 1 handle 2 handle_raw 3 shutdown  send_result(NrBytes)
//!                                               4 stream_data 5 stream_close
//!  kcoro (seed)  nylon_ring_get_plugin_v1    1  0 init 1 handle 2 shutdown               send_result(NrBytes)
//!                                               3 stream_data 4 stream_close
//!  0.1.x         nylon_ring_get_plugin_v1    1  the seed's five slots, without the       send_result(NrVec) -> status
//!                                               plugin_ctx argument and the request
//!  0.2.x         nylon_ring_get_plugin       2  the 0.1 five, 5 resolve_entry,           send_result, send_result_owned,
//!                                               6 handle_by_id                           acquire/commit_result_buffer
//! ```
//!
//! The early layouts (nylon-ring's repository, 29 November to 6 December 2025) pass
//! `plugin_ctx` first to every plugin function and a request (`NrRequest`) to `handle`,
//! like the layout of kcoro's seed document that [`crate::NrPluginVTable`] describes; they
//! differ from it only in which slots exist, so they reuse the crate's own types
//! ([`early`]). (The seed's own five slots never appeared in nylon-ring's history: the
//! commit that removed `handle_raw` also removed the request.) The released layouts
//! ([`v01`], [`v2`]) drop `plugin_ctx` and the request; their replies are owned buffers
//! ([`NrVec`], [`NrOwnedBytes`], [`NrBufferLease`]) and their status codes differ from
//! kcoro's above 4 ([`NyStatus`]).
//!
//! None of the version-1 layouts declares its vtable's size and all of them say
//! `abi_version = 1` with a 56-byte info: a library cannot tell which one it uses. The
//! host tells them apart by which slots hold the library's own code (a layout fits when
//! every slot it reads does and the word after its last slot does not), loads the one
//! that fits, and asks its caller (`kcoro_host::Layout`) when several do.

use std::ffi::c_void;
use std::fmt;

use crate::{NrBytes, NrStatus};

/// A status code as nylon-ring 0.1 and 0.2 number them: the kcoro values up to
/// `StreamEnd`, then `Panic` = 5 and `Backpressure` = 6 (kcoro's `Backpressure` is 5).
///
/// A transparent `u32`, like [`NrStatus`], so any value a plugin returns is defined.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NyStatus(pub u32);

#[allow(non_upper_case_globals)] // nylon-ring's constant names
impl NyStatus {
    pub const Ok: NyStatus = NyStatus(0);
    pub const Err: NyStatus = NyStatus(1);
    pub const Invalid: NyStatus = NyStatus(2);
    pub const Unsupported: NyStatus = NyStatus(3);
    pub const StreamEnd: NyStatus = NyStatus(4);
    /// A panic the plugin contained at the boundary.
    pub const Panic: NyStatus = NyStatus(5);
    /// A bounded stream is full; the frame was not taken.
    pub const Backpressure: NyStatus = NyStatus(6);

    /// The same status in kcoro's numbering; values nylon-ring does not assign read as
    /// `Invalid`.
    pub const fn to_kcoro(self) -> NrStatus {
        match self.0 {
            0..=4 => NrStatus(self.0),
            5 => NrStatus::Panic,
            6 => NrStatus::Backpressure,
            _ => NrStatus::Invalid,
        }
    }

    /// A kcoro status in nylon-ring's numbering; one nylon-ring lacks reads as `Invalid`.
    pub const fn from_kcoro(s: NrStatus) -> NyStatus {
        match s {
            NrStatus::Backpressure => NyStatus::Backpressure,
            NrStatus::Panic => NyStatus::Panic,
            NrStatus(v @ 0..=4) => NyStatus(v),
            _ => NyStatus::Invalid,
        }
    }
}

impl fmt::Debug for NyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NyStatus({})", self.0)
    }
}

/// nylon-ring 0.1 / 0.2's string view: kcoro's [`crate::NrStr`] with the padding after
/// `len` named `_reserved`, which producers must zero.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NyStr {
    pub ptr: *const u8,
    pub len: u32,
    pub _reserved: u32,
}

impl NyStr {
    /// A view of `s`, or `None` past the ABI's 4 GiB string limit.
    pub fn try_new(s: &str) -> Option<NyStr> {
        Some(NyStr { ptr: s.as_ptr(), len: u32::try_from(s.len()).ok()?, _reserved: 0 })
    }

    /// The viewed bytes (empty for a null pointer).
    ///
    /// # Safety
    /// `ptr` must be null or point to `len` readable bytes that outlive `'a`.
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        // SAFETY: the same view as kcoro's `NrStr`, forwarded to the caller.
        unsafe { crate::NrStr { ptr: self.ptr, len: self.len }.as_bytes() }
    }
}

/// Frees an owned [`NrVec`]: `drop_fn(ptr, len, cap)`, code of the module that made it.
pub type NrVecDropFn = unsafe extern "C" fn(*mut u8, usize, usize);

/// nylon-ring's `NrVec<u8>`: a buffer that either borrows (`owned == 0`, never freed by
/// the receiver) or owns its bytes (`owned == 1`, freed exactly once through `drop_fn`,
/// the producer's own code, never the receiver's allocator). Passed by value.
#[repr(C)]
#[derive(Debug)]
pub struct NrVec {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
    pub owned: u8,
    pub _reserved: [u8; 7],
    pub drop_fn: Option<NrVecDropFn>,
}

impl NrVec {
    /// The empty, borrowed vector (nothing to free).
    pub const EMPTY: NrVec =
        NrVec { ptr: std::ptr::null_mut(), len: 0, cap: 0, owned: 0, _reserved: [0; 7], drop_fn: None };
}

/// Releases an [`NrOwnedBytes`]: `release(owner_ctx, ptr, len)`.
pub type NrOwnedReleaseFn = unsafe extern "C" fn(*mut c_void, *const u8, u64);

/// nylon-ring 0.2's zero-copy reply: the receiver calls `release` exactly once, from any
/// thread, when done with `ptr..ptr+len`; a null `release` means nothing to free.
#[repr(C)]
#[derive(Debug)]
pub struct NrOwnedBytes {
    pub ptr: *const u8,
    pub len: u64,
    pub owner_ctx: *mut c_void,
    pub release: Option<NrOwnedReleaseFn>,
}

/// nylon-ring 0.2's host-owned reply buffer, leased to the plugin: it writes up to `cap`
/// bytes at `ptr`, then commits them with `token`. A null `ptr` is a refused lease.
#[repr(C)]
#[derive(Debug)]
pub struct NrBufferLease {
    pub ptr: *mut u8,
    pub cap: u64,
    pub token: u64,
}

impl NrBufferLease {
    /// The refused lease.
    pub const FAILED: NrBufferLease = NrBufferLease { ptr: std::ptr::null_mut(), cap: 0, token: 0 };
}

/// What `resolve_entry` returns for a name the plugin does not export.
pub const NR_ENTRY_UNKNOWN: u32 = u32::MAX;

/// The info every nylon-ring layout starts with; `V` is the layout's plugin vtable. The
/// same 56 bytes as [`crate::NrPluginInfo`].
#[repr(C)]
#[derive(Debug)]
pub struct NyPluginInfo<V> {
    pub abi_version: u32,
    pub struct_size: u32,
    pub name: NyStr,
    pub version: NyStr,
    pub plugin_ctx: *mut c_void,
    pub vtable: *const V,
}

/// Per-sid state of nylon-ring 0.1 and 0.2, which no vtable carries: nylon-ring-host keeps
/// it inside its `host_ctx` and plugins reach it with `NylonRingHost::get_host_ext`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NyHostExt {
    /// `set_state(host_ctx, sid, key, value)`: stores a copy; `Ok`, or `Invalid` for an
    /// unknown sid or a key that is not UTF-8.
    pub set_state: unsafe extern "C" fn(*mut c_void, u64, NyStr, NrBytes) -> NyStatus,
    /// `get_state(host_ctx, sid, key)`: an owned copy, or the empty vector.
    pub get_state: unsafe extern "C" fn(*mut c_void, u64, NyStr) -> NrVec,
}

/// nylon-ring 0.1.0 – 0.1.4: version 1 without `plugin_ctx` or request.
pub mod v01 {
    use super::*;

    /// The symbol the plugin exports.
    pub const ENTRY_SYMBOL: &str = "nylon_ring_get_plugin_v1";
    /// Its `abi_version`.
    pub const ABI_VERSION: u32 = 1;

    /// `send_result(host_ctx, sid, status, payload)`: the host takes `payload` (and frees
    /// an owned one through its `drop_fn`) whatever it answers: `Ok`, `Invalid` for a
    /// finished or unknown sid, `Backpressure` for a full stream (the frame is dropped).
    pub type SendResultFn = unsafe extern "C" fn(*mut c_void, u64, NyStatus, NrVec) -> NyStatus;

    /// The host's callbacks.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct NyHostVTable {
        pub send_result: SendResultFn,
    }

    /// `init(host_ctx, host_vtable)`.
    pub type InitFn = unsafe extern "C" fn(*mut c_void, *const NyHostVTable) -> NyStatus;
    /// `handle(entry, sid, payload)`.
    pub type HandleFn = unsafe extern "C" fn(NyStr, u64, NrBytes) -> NyStatus;
    /// `shutdown()`.
    pub type ShutdownFn = unsafe extern "C" fn();
    /// `stream_data(sid, data)`.
    pub type StreamDataFn = unsafe extern "C" fn(u64, NrBytes) -> NyStatus;
    /// `stream_close(sid)`.
    pub type StreamCloseFn = unsafe extern "C" fn(u64) -> NyStatus;

    /// The plugin's functions: five slots, 40 bytes.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct NyPluginVTable {
        pub init: Option<InitFn>,
        pub handle: Option<HandleFn>,
        pub shutdown: Option<ShutdownFn>,
        pub stream_data: Option<StreamDataFn>,
        pub stream_close: Option<StreamCloseFn>,
    }
}

/// nylon-ring 0.2.0 – 0.2.2: ABI version 2.
pub mod v2 {
    use super::*;

    /// The symbol the plugin exports.
    pub const ENTRY_SYMBOL: &str = "nylon_ring_get_plugin";
    /// Its `abi_version`.
    pub const ABI_VERSION: u32 = 2;

    pub use super::v01::{HandleFn, SendResultFn, ShutdownFn, StreamCloseFn, StreamDataFn};

    /// `send_result_owned(host_ctx, sid, status, payload)`: the host keeps the plugin's
    /// buffer without copying and calls its `release` exactly once.
    pub type SendOwnedFn = unsafe extern "C" fn(*mut c_void, u64, NyStatus, NrOwnedBytes) -> NyStatus;
    /// `acquire_result_buffer(host_ctx, sid, capacity)`: a host buffer for a unary reply.
    pub type AcquireFn = unsafe extern "C" fn(*mut c_void, u64, u64) -> NrBufferLease;
    /// `commit_result_buffer(host_ctx, sid, status, token, initialized_len)`.
    pub type CommitFn = unsafe extern "C" fn(*mut c_void, u64, NyStatus, u64, u64) -> NyStatus;

    /// The host's callbacks: four functions, 32 bytes.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct NyHostVTable {
        pub send_result: SendResultFn,
        pub send_result_owned: SendOwnedFn,
        pub acquire_result_buffer: AcquireFn,
        pub commit_result_buffer: CommitFn,
    }

    /// `init(host_ctx, host_vtable)`.
    pub type InitFn = unsafe extern "C" fn(*mut c_void, *const NyHostVTable) -> NyStatus;
    /// `resolve_entry(name)`: a dispatch id, or [`NR_ENTRY_UNKNOWN`].
    pub type ResolveEntryFn = unsafe extern "C" fn(NyStr) -> u32;
    /// `handle_by_id(id, sid, payload)`.
    pub type HandleByIdFn = unsafe extern "C" fn(u32, u64, NrBytes) -> NyStatus;

    /// The plugin's functions: seven slots, 56 bytes.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct NyPluginVTable {
        pub init: Option<InitFn>,
        pub handle: Option<HandleFn>,
        pub shutdown: Option<ShutdownFn>,
        pub stream_data: Option<StreamDataFn>,
        pub stream_close: Option<StreamCloseFn>,
        /// With `handle_by_id`: both set or both null.
        pub resolve_entry: Option<ResolveEntryFn>,
        pub handle_by_id: Option<HandleByIdFn>,
    }
}

/// nylon-ring's repository before its first release: the seed's calling convention
/// (`plugin_ctx` first, a request for `handle`, [`crate::NrHostVTable`] for the host, the
/// kcoro status codes up to `StreamEnd`), with other slots.
pub mod early {
    use crate::{
        NrBytes, NrHandleFn, NrInitFn, NrShutdownFn, NrStatus, NrStr, NrStreamCloseFn, NrStreamDataFn,
    };
    use std::ffi::c_void;

    /// `handle_raw(plugin_ctx, entry, sid, payload)`: `handle` without the request.
    pub type HandleRawFn = unsafe extern "C" fn(*mut c_void, NrStr, u64, NrBytes) -> NrStatus;

    /// 29–30 November 2025: three slots, 24 bytes.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct VTable3 {
        pub init: Option<NrInitFn>,
        pub handle: Option<NrHandleFn>,
        pub shutdown: Option<NrShutdownFn>,
    }

    /// 30 November to 6 December 2025: `handle_raw` in slot 2, then the stream slots; six
    /// slots, 48 bytes.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct VTable6 {
        pub init: Option<NrInitFn>,
        pub handle: Option<NrHandleFn>,
        pub handle_raw: Option<HandleRawFn>,
        pub shutdown: Option<NrShutdownFn>,
        pub stream_data: Option<NrStreamDataFn>,
        pub stream_close: Option<NrStreamCloseFn>,
    }
}
