//! The ABI-stable plugin interface of kcoro.
//!
//! kcoro's layout, `kcoro-v1`, is the nylon-ring version-1 contract as kcoro's seed
//! document describes it: a plugin written in C against that contract loads and runs
//! unchanged. Every type here is `#[repr(C)]` and its size, alignment and field offsets
//! are pinned by `tests/layout.rs` and by `_Static_assert`s in `sdk/c/kcoro_plugin.h`.
//! (No nylon-ring release shipped exactly this vtable; the layouts it did ship are in
//! [`nylon`], and kcoro-host loads them too.)
//!
//! kcoro goes beyond version 1 only additively ([`ext`]): a plugin that sets
//! [`NrPluginInfo::struct_size`] to at least `size_of::<KcPluginInfo>()` hands the host a
//! [`KcPluginExt`] table (entry ids, an `attach` hook); the host answers through `attach`
//! with a [`KcHostApi`] (per-sid state, owned zero-copy replies, a non-blocking send that
//! reports [`NrStatus::Backpressure`]). A version-1 plugin never sees any of it.
//!
//! Plugins in Rust use [`define_plugin!`] and the safe wrappers in [`plugin`].

use std::ffi::c_void;
use std::fmt;

pub mod ext;
pub mod nylon;
pub mod plugin;

pub use ext::{KcHostApi, KcPluginExt, KcPluginInfo, KcReleaseFn};

/// The ABI version this crate speaks; the host refuses any other.
pub const NR_ABI_VERSION: u32 = 1;

/// The symbol every plugin exports: `const NrPluginInfo *nylon_ring_get_plugin_v1(void)`.
pub const ENTRY_SYMBOL: &str = "nylon_ring_get_plugin_v1";

/// The signature of [`ENTRY_SYMBOL`].
pub type NrGetPluginFn = unsafe extern "C" fn() -> *const NrPluginInfo;

/// A status code, four bytes on the wire exactly like version 1's `#[repr(u32)]` enum.
///
/// It is a transparent `u32` rather than a Rust enum because a C plugin can return any
/// value: receiving an out-of-range value as an enum would be undefined behaviour. Match on
/// the associated constants; [`NrStatus::normalized`] maps unknown values to `Invalid`.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NrStatus(pub u32);

#[allow(non_upper_case_globals)] // the variant names of the version-1 enum
impl NrStatus {
    /// Success.
    pub const Ok: NrStatus = NrStatus(0);
    /// A runtime error in the plugin (or a panic caught at the boundary).
    pub const Err: NrStatus = NrStatus(1);
    /// Bad input or state: malformed request, null pointer, unknown sid.
    pub const Invalid: NrStatus = NrStatus(2);
    /// Not implemented: unknown entry, missing stream handler.
    pub const Unsupported: NrStatus = NrStatus(3);
    /// The last frame of a stream.
    pub const StreamEnd: NrStatus = NrStatus(4);
    /// Extension (never sent by a version-1 plugin): the stream's buffer is full; the frame
    /// was not taken, try again later.
    pub const Backpressure: NrStatus = NrStatus(5);
    /// The plugin panicked and contained the panic at the boundary. Never on the wire of
    /// the kcoro layout (its plugins answer a panic with `Err`): the host reports it for a
    /// nylon-ring 0.1 / 0.2 plugin, whose own code for it is 5 ([`nylon::NyStatus`]).
    pub const Panic: NrStatus = NrStatus(6);

    /// The highest value this crate knows.
    pub const MAX_KNOWN: u32 = 6;

    /// Whether this is one of the values above.
    pub const fn is_known(self) -> bool {
        self.0 <= Self::MAX_KNOWN
    }

    /// This status, with values the host does not know read as `Invalid`.
    pub const fn normalized(self) -> NrStatus {
        if self.is_known() { self } else { NrStatus::Invalid }
    }

    /// Whether a frame with this status ends a stream (`StreamEnd`, `Err`, `Invalid`,
    /// `Unsupported`, `Panic`, or an unknown value).
    pub const fn is_terminal(self) -> bool {
        !matches!(self.normalized(), NrStatus::Ok | NrStatus::Backpressure)
    }

    /// The variant's name, or `"Unknown"`.
    pub const fn name(self) -> &'static str {
        match self {
            NrStatus::Ok => "Ok",
            NrStatus::Err => "Err",
            NrStatus::Invalid => "Invalid",
            NrStatus::Unsupported => "Unsupported",
            NrStatus::StreamEnd => "StreamEnd",
            NrStatus::Backpressure => "Backpressure",
            NrStatus::Panic => "Panic",
            _ => "Unknown",
        }
    }
}

impl fmt::Debug for NrStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_known() { f.write_str(self.name()) } else { write!(f, "Unknown({})", self.0) }
    }
}

impl fmt::Display for NrStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A borrowed UTF-8 string view, valid for the duration of the call it is passed to.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NrStr {
    pub ptr: *const u8,
    pub len: u32,
}

impl NrStr {
    /// The empty view (null pointer, length 0).
    pub const EMPTY: NrStr = NrStr { ptr: std::ptr::null(), len: 0 };

    /// A view of `s`, or `None` if it is longer than the ABI's 4 GiB string limit.
    pub fn try_new(s: &str) -> Option<NrStr> {
        Some(NrStr { ptr: s.as_ptr(), len: u32::try_from(s.len()).ok()? })
    }

    /// A view of a static string, usable in constants. Strings past 4 GiB fail to compile.
    pub const fn from_static(s: &'static str) -> NrStr {
        assert!(s.len() <= u32::MAX as usize, "NrStr is limited to 4 GiB");
        NrStr { ptr: s.as_ptr(), len: s.len() as u32 }
    }

    /// The viewed bytes (empty for a null pointer).
    ///
    /// # Safety
    /// `ptr` must be null or point to `len` readable bytes that outlive `'a`.
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `len` readable bytes at `ptr` for `'a`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len as usize) }
    }

    /// The viewed string, or the UTF-8 error if the bytes are not UTF-8.
    ///
    /// # Safety
    /// As for [`NrStr::as_bytes`].
    pub unsafe fn as_str<'a>(&self) -> Result<&'a str, std::str::Utf8Error> {
        // SAFETY: forwarded to the caller.
        std::str::from_utf8(unsafe { self.as_bytes() })
    }
}

impl fmt::Debug for NrStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NrStr({:p}, {})", self.ptr, self.len)
    }
}

/// A borrowed byte view, valid for the duration of the call it is passed to.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NrBytes {
    pub ptr: *const u8,
    pub len: u64,
}

impl NrBytes {
    /// The empty view (null pointer, length 0).
    pub const EMPTY: NrBytes = NrBytes { ptr: std::ptr::null(), len: 0 };

    /// A view of `data`.
    pub const fn from_slice(data: &[u8]) -> NrBytes {
        NrBytes { ptr: data.as_ptr(), len: data.len() as u64 }
    }

    /// The viewed bytes (empty for a null pointer or length 0).
    ///
    /// # Safety
    /// `ptr` must be null or point to `len` readable bytes that outlive `'a`.
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `len` readable bytes at `ptr` for `'a`; a length
        // past the address space cannot describe readable memory, so the cast is lossless.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len as usize) }
    }
}

impl fmt::Debug for NrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NrBytes({:p}, {})", self.ptr, self.len)
    }
}

/// One request header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NrHeader {
    pub key: NrStr,
    pub value: NrStr,
}

/// Request metadata, borrowed for the duration of `handle`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NrRequest {
    pub path: NrStr,
    pub method: NrStr,
    pub query: NrStr,
    pub headers: *const NrHeader,
    pub headers_len: u32,
    /// Zero in version 1.
    pub _reserved0: u32,
    /// Zero in version 1.
    pub _reserved1: u64,
}

impl NrRequest {
    /// A request with every field empty.
    pub const EMPTY: NrRequest = NrRequest {
        path: NrStr::EMPTY,
        method: NrStr::EMPTY,
        query: NrStr::EMPTY,
        headers: std::ptr::null(),
        headers_len: 0,
        _reserved0: 0,
        _reserved1: 0,
    };
}

/// `send_result(host_ctx, sid, status, payload)`: thread-safe; called once per unary call,
/// or once per frame of a stream, the last with a terminal status.
pub type NrSendResultFn = unsafe extern "C" fn(*mut c_void, u64, NrStatus, NrBytes);

/// The callbacks a host hands a plugin in `init`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NrHostVTable {
    pub send_result: NrSendResultFn,
}

/// `init(plugin_ctx, host_ctx, host_vtable)`.
pub type NrInitFn = unsafe extern "C" fn(*mut c_void, *mut c_void, *const NrHostVTable) -> NrStatus;
/// `handle(plugin_ctx, entry, sid, req, payload)`: must return at once.
pub type NrHandleFn = unsafe extern "C" fn(*mut c_void, NrStr, u64, *const NrRequest, NrBytes) -> NrStatus;
/// `shutdown(plugin_ctx)`.
pub type NrShutdownFn = unsafe extern "C" fn(*mut c_void);
/// `stream_data(plugin_ctx, sid, data)`.
pub type NrStreamDataFn = unsafe extern "C" fn(*mut c_void, u64, NrBytes) -> NrStatus;
/// `stream_close(plugin_ctx, sid)`.
pub type NrStreamCloseFn = unsafe extern "C" fn(*mut c_void, u64) -> NrStatus;

/// The functions a plugin exports.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NrPluginVTable {
    pub init: Option<NrInitFn>,
    pub handle: Option<NrHandleFn>,
    pub shutdown: Option<NrShutdownFn>,
    pub stream_data: Option<NrStreamDataFn>,
    pub stream_close: Option<NrStreamCloseFn>,
}

/// What [`ENTRY_SYMBOL`] returns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NrPluginInfo {
    /// Must be [`NR_ABI_VERSION`].
    pub abi_version: u32,
    /// `sizeof(NrPluginInfo)` (56) for a version-1 plugin; at least
    /// `sizeof(KcPluginInfo)` (64) for one that carries kcoro's extension table.
    pub struct_size: u32,
    pub name: NrStr,
    pub version: NrStr,
    pub plugin_ctx: *mut c_void,
    pub vtable: *const NrPluginVTable,
}

/// `set_state(host_ctx, sid, key, value)`: stores a copy; returns a view of the stored copy.
pub type NrSetStateFn = unsafe extern "C" fn(*mut c_void, u64, NrStr, NrBytes) -> NrBytes;
/// `get_state(host_ctx, sid, key)`: a view of the stored value, or an empty view.
pub type NrGetStateFn = unsafe extern "C" fn(*mut c_void, u64, NrStr) -> NrBytes;

/// Per-sid state kept by the host, reachable through [`KcHostApi::state`].
///
/// Views returned by either function stay valid until the same key is set again or the
/// call or stream ends, when the host frees the sid's state.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NrHostExt {
    pub set_state: NrSetStateFn,
    pub get_state: NrGetStateFn,
}
