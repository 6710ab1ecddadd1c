//! Writing plugins in Rust: safe wrappers over the raw ABI, and the pieces
//! [`define_plugin!`](crate::define_plugin) assembles.
//!
//! A plugin is a `cdylib` that declares its entries with the macro; handlers receive a
//! [`Host`] (copyable, `Send`, usable from any thread), the sid, the request and payload,
//! and return at once, replying now or later with [`Host::send`].
//!
//! ```
//! use kcoro_abi::plugin::{Host, Request};
//! use kcoro_abi::NrStatus;
//!
//! fn echo(host: Host, sid: u64, _req: &Request<'_>, payload: &[u8]) -> NrStatus {
//!     host.send(sid, NrStatus::Ok, payload);
//!     NrStatus::Ok
//! }
//!
//! kcoro_abi::define_plugin! {
//!     name: "doc-echo",
//!     version: "1.0.0",
//!     entries: { "echo" => echo },
//! }
//! # fn main() {}
//! ```

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::{KcHostApi, KcReleaseFn, NrBytes, NrHeader, NrHostVTable, NrRequest, NrStatus, NrStr};

/// Makes a value holding raw pointers usable in a `static`; the pointers it holds are to
/// immutable statics.
#[repr(transparent)]
pub struct Shared<T>(pub T);

// SAFETY: only ever wraps tables of pointers to immutable `'static` data, which any
// thread may read.
unsafe impl<T> Sync for Shared<T> {}

/// The host a plugin was initialised by: its context, `send_result`, and, when the host
/// negotiated kcoro's extensions, its [`KcHostApi`].
#[derive(Clone, Copy, Debug)]
pub struct Host {
    ctx: *mut c_void,
    vtable: *const NrHostVTable,
    api: *const KcHostApi,
}

// SAFETY: the ABI requires the host's callbacks to be callable from any thread, and the
// host keeps `ctx`, `vtable` and `api` valid until the plugin's `shutdown` returns.
unsafe impl Send for Host {}
// SAFETY: as for `Send`; `Host` is a set of immutable pointers.
unsafe impl Sync for Host {}

impl Host {
    /// Sends a reply (unary) or a frame (stream). After a terminal status the host ignores
    /// further sends for this sid.
    pub fn send(&self, sid: u64, status: NrStatus, data: &[u8]) {
        // SAFETY: `vtable` came from the host's `init` and stays valid until shutdown.
        let send = unsafe { (*self.vtable).send_result };
        // SAFETY: the host's contract for `send_result`; `data` outlives the call.
        unsafe { send(self.ctx, sid, status, NrBytes::from_slice(data)) }
    }

    /// Whether the host negotiated kcoro's extensions.
    pub fn is_extended(&self) -> bool {
        !self.api.is_null()
    }

    fn api(&self) -> Option<&KcHostApi> {
        // SAFETY: non-null `api` came from the host's `attach` and stays valid until
        // shutdown.
        unsafe { self.api.as_ref() }
    }

    /// Like [`Host::send`], but a full stream returns `Backpressure` (the frame not taken)
    /// instead of waiting. On a version-1 host this is `send` and returns `Ok`.
    pub fn try_send(&self, sid: u64, status: NrStatus, data: &[u8]) -> NrStatus {
        match self.api() {
            // SAFETY: the host's contract for `try_send`; `data` outlives the call.
            Some(api) => unsafe { (api.try_send)(self.ctx, sid, status, NrBytes::from_slice(data)) },
            None => {
                self.send(sid, status, data);
                NrStatus::Ok
            }
        }
    }

    /// Sends `data` without copying it: the host frees it when the reader is done. Returns
    /// the buffer back as `Err` when the stream is full (`Backpressure`). On a version-1
    /// host the data is copied by `send`.
    pub fn send_owned(&self, sid: u64, status: NrStatus, data: Vec<u8>) -> Result<NrStatus, Vec<u8>> {
        let Some(api) = self.api() else {
            self.send(sid, status, &data);
            return Ok(NrStatus::Ok);
        };
        let mut boxed = data.into_boxed_slice();
        let view = NrBytes::from_slice(&boxed);
        let fat: *mut [u8] = &mut *boxed;
        let ctx = Box::into_raw(Box::new(fat)) as *mut c_void;
        std::mem::forget(boxed);
        // SAFETY: the host's contract: it takes the buffer and calls `release_boxed(ctx)`
        // exactly once unless it answers `Backpressure`, in which case we still own it.
        let got = unsafe { (api.send_owned)(self.ctx, sid, status, view, Some(release_boxed), ctx) };
        if got == NrStatus::Backpressure {
            // SAFETY: not taken, so `ctx` is still the box made above, released by no one.
            let fat = unsafe { *Box::from_raw(ctx as *mut *mut [u8]) };
            // SAFETY: `fat` is the boxed slice leaked above.
            return Err(unsafe { Box::from_raw(fat) }.into_vec());
        }
        Ok(got)
    }

    /// Stores a copy of `value` under `key` for this sid. False when the host has no state
    /// extension or the sid is unknown.
    pub fn set_state(&self, sid: u64, key: &str, value: &[u8]) -> bool {
        let (Some(api), Some(key)) = (self.api(), NrStr::try_new(key)) else { return false };
        // SAFETY: the host's contract for `set_state`; both views outlive the call.
        let stored = unsafe { (api.state.set_state)(self.ctx, sid, key, NrBytes::from_slice(value)) };
        !stored.ptr.is_null() || value.is_empty()
    }

    /// A copy of the value stored under `key` for this sid.
    pub fn get_state(&self, sid: u64, key: &str) -> Option<Vec<u8>> {
        let (api, key) = (self.api()?, NrStr::try_new(key)?);
        // SAFETY: the host's contract for `get_state`: the view is valid until the key is
        // set again or the sid ends; we copy it at once.
        let view = unsafe { (api.state.get_state)(self.ctx, sid, key) };
        // SAFETY: as above.
        (!view.ptr.is_null()).then(|| unsafe { view.as_slice() }.to_vec())
    }
}

unsafe extern "C" fn release_boxed(ctx: *mut c_void) {
    let _ = catch_unwind(|| {
        // SAFETY: `ctx` is the `Box<*mut [u8]>` made in `send_owned`, released once.
        let fat = unsafe { *Box::from_raw(ctx as *mut *mut [u8]) };
        // SAFETY: `fat` is the leaked boxed slice.
        drop(unsafe { Box::from_raw(fat) });
    });
}

/// Where a plugin keeps its [`Host`] between `init` and `shutdown`.
pub struct HostCell {
    ctx: AtomicPtr<c_void>,
    vtable: AtomicPtr<NrHostVTable>,
    api: AtomicPtr<KcHostApi>,
}

impl HostCell {
    pub const fn new() -> HostCell {
        HostCell {
            ctx: AtomicPtr::new(std::ptr::null_mut()),
            vtable: AtomicPtr::new(std::ptr::null_mut()),
            api: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The host, once `init` has run.
    pub fn get(&self) -> Option<Host> {
        let vtable = self.vtable.load(Ordering::Acquire);
        if vtable.is_null() {
            return None;
        }
        Some(Host { ctx: self.ctx.load(Ordering::Acquire), vtable, api: self.api.load(Ordering::Acquire) })
    }

    fn set(&self, ctx: *mut c_void, vtable: *const NrHostVTable) {
        self.api.store(std::ptr::null_mut(), Ordering::Release);
        self.ctx.store(ctx, Ordering::Release);
        self.vtable.store(vtable as *mut _, Ordering::Release);
    }

    fn clear(&self) {
        self.vtable.store(std::ptr::null_mut(), Ordering::Release);
        self.api.store(std::ptr::null_mut(), Ordering::Release);
    }
}

impl Default for HostCell {
    fn default() -> Self {
        HostCell::new()
    }
}

/// A safe view of the request passed to `handle`; empty for raw calls.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    raw: Option<&'a NrRequest>,
}

impl<'a> Request<'a> {
    /// A request with every field empty.
    pub const EMPTY: Request<'static> = Request { raw: None };

    /// # Safety
    /// `req` must be null or a valid request whose views outlive `'a`.
    pub unsafe fn from_raw(req: *const NrRequest) -> Request<'a> {
        // SAFETY: forwarded to the caller.
        Request { raw: unsafe { req.as_ref() } }
    }

    fn text(s: &NrStr) -> &'a str {
        // SAFETY: `from_raw`'s contract covers every view inside the request.
        unsafe { s.as_str() }.unwrap_or("")
    }

    /// The method, or `""` (also for bytes that are not UTF-8, which the ABI forbids).
    pub fn method(&self) -> &'a str {
        self.raw.map_or("", |r| Self::text(&r.method))
    }

    /// The path, or `""`.
    pub fn path(&self) -> &'a str {
        self.raw.map_or("", |r| Self::text(&r.path))
    }

    /// The query string, or `""`.
    pub fn query(&self) -> &'a str {
        self.raw.map_or("", |r| Self::text(&r.query))
    }

    /// The headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let raw: &'a [NrHeader] = match self.raw {
            Some(r) if !r.headers.is_null() && r.headers_len > 0 => {
                // SAFETY: `from_raw`'s contract: `headers_len` headers at `headers`.
                unsafe { std::slice::from_raw_parts(r.headers, r.headers_len as usize) }
            }
            _ => &[],
        };
        raw.iter().map(|h| (Self::text(&h.key), Self::text(&h.value)))
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }
}

/// A handler that sees the request: `(host, sid, request, payload) -> status`.
pub type EntryFn = fn(Host, u64, &Request<'_>, &[u8]) -> NrStatus;
/// A handler for raw calls: `(host, sid, payload) -> status`.
pub type RawEntryFn = fn(Host, u64, &[u8]) -> NrStatus;
/// Data from the host on a bidirectional stream.
pub type StreamDataFn = fn(Host, u64, &[u8]) -> NrStatus;
/// The host closed its side of a bidirectional stream.
pub type StreamCloseFn = fn(Host, u64) -> NrStatus;

/// One entry of a plugin.
#[derive(Clone, Copy)]
pub enum Handler {
    Full(EntryFn),
    Raw(RawEntryFn),
}

/// One named entry.
#[derive(Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub handler: Handler,
}

/// Everything [`define_plugin!`](crate::define_plugin) declares; `plugin_ctx` points at it.
pub struct PluginDef {
    pub entries: &'static [Entry],
    pub init: Option<fn(Host) -> NrStatus>,
    pub shutdown: Option<fn()>,
    pub stream_data: Option<StreamDataFn>,
    pub stream_close: Option<StreamCloseFn>,
    pub host: &'static HostCell,
}

/// The entry names as ABI views, for [`crate::KcPluginExt::entries`].
pub const fn entry_names<const N: usize>(entries: &[Entry]) -> [NrStr; N] {
    let mut names = [NrStr::EMPTY; N];
    let mut i = 0;
    while i < N {
        names[i] = NrStr::from_static(entries[i].name);
        i += 1;
    }
    names
}

/// Runs `f`, turning a panic into `Err`: no unwind may cross the C boundary.
fn guarded(f: impl FnOnce() -> NrStatus) -> NrStatus {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(NrStatus::Err)
}

/// # Safety
/// `ctx` must be the `plugin_ctx` the macro set: a `&'static PluginDef`.
unsafe fn def<'a>(ctx: *mut c_void) -> Option<&'a PluginDef> {
    // SAFETY: forwarded to the caller; null is handled.
    unsafe { (ctx as *const PluginDef).as_ref() }
}

fn dispatch(def: &PluginDef, index: usize, sid: u64, req: *const NrRequest, payload: NrBytes) -> NrStatus {
    let (Some(entry), Some(host)) = (def.entries.get(index), def.host.get()) else {
        return if def.host.get().is_none() { NrStatus::Invalid } else { NrStatus::Unsupported };
    };
    // SAFETY: the ABI's contract for `handle`: views valid for this call.
    let payload = unsafe { payload.as_slice() };
    match entry.handler {
        Handler::Full(f) => {
            // SAFETY: as above.
            let req = unsafe { Request::from_raw(req) };
            f(host, sid, &req, payload)
        }
        Handler::Raw(f) => f(host, sid, payload),
    }
}

/// `init`, as the ABI calls it.
///
/// # Safety
/// Called by a host per the ABI.
pub unsafe extern "C" fn sdk_init(
    ctx: *mut c_void,
    host_ctx: *mut c_void,
    vtable: *const NrHostVTable,
) -> NrStatus {
    guarded(|| {
        // SAFETY: the host passes back our `plugin_ctx`.
        let Some(def) = (unsafe { def(ctx) }) else { return NrStatus::Invalid };
        if vtable.is_null() {
            return NrStatus::Invalid;
        }
        def.host.set(host_ctx, vtable);
        match (def.init, def.host.get()) {
            (Some(init), Some(host)) => init(host),
            _ => NrStatus::Ok,
        }
    })
}

/// `attach`, as a kcoro host calls it.
///
/// # Safety
/// Called by a host per [`crate::ext`].
pub unsafe extern "C" fn sdk_attach(
    ctx: *mut c_void,
    _host_ctx: *mut c_void,
    api: *const KcHostApi,
) -> NrStatus {
    guarded(|| {
        // SAFETY: the host passes back our `plugin_ctx`.
        let Some(def) = (unsafe { def(ctx) }) else { return NrStatus::Invalid };
        def.host.api.store(api as *mut _, Ordering::Release);
        NrStatus::Ok
    })
}

/// `handle`, as the ABI calls it: finds the entry by name.
///
/// # Safety
/// Called by a host per the ABI.
pub unsafe extern "C" fn sdk_handle(
    ctx: *mut c_void,
    entry: NrStr,
    sid: u64,
    req: *const NrRequest,
    payload: NrBytes,
) -> NrStatus {
    guarded(|| {
        // SAFETY: the host passes back our `plugin_ctx`.
        let Some(def) = (unsafe { def(ctx) }) else { return NrStatus::Invalid };
        // SAFETY: the entry view is valid for this call.
        let name = unsafe { entry.as_bytes() };
        match def.entries.iter().position(|e| e.name.as_bytes() == name) {
            Some(i) => dispatch(def, i, sid, req, payload),
            None => NrStatus::Unsupported,
        }
    })
}

/// `handle_id`, as a kcoro host calls it: the entry by index, no string compare.
///
/// # Safety
/// Called by a host per [`crate::ext`].
pub unsafe extern "C" fn sdk_handle_id(
    ctx: *mut c_void,
    entry_id: u32,
    sid: u64,
    req: *const NrRequest,
    payload: NrBytes,
) -> NrStatus {
    guarded(|| {
        // SAFETY: the host passes back our `plugin_ctx`.
        let Some(def) = (unsafe { def(ctx) }) else { return NrStatus::Invalid };
        dispatch(def, entry_id as usize, sid, req, payload)
    })
}

/// `shutdown`, as the ABI calls it.
///
/// # Safety
/// Called by a host per the ABI.
pub unsafe extern "C" fn sdk_shutdown(ctx: *mut c_void) {
    let _ = guarded(|| {
        // SAFETY: the host passes back our `plugin_ctx`.
        if let Some(def) = unsafe { def(ctx) } {
            if let Some(shutdown) = def.shutdown {
                shutdown();
            }
            def.host.clear();
        }
        NrStatus::Ok
    });
}

/// `stream_data`, as the ABI calls it.
///
/// # Safety
/// Called by a host per the ABI.
pub unsafe extern "C" fn sdk_stream_data(ctx: *mut c_void, sid: u64, data: NrBytes) -> NrStatus {
    guarded(|| {
        // SAFETY: the host passes back our `plugin_ctx`.
        let Some(def) = (unsafe { def(ctx) }) else { return NrStatus::Invalid };
        let (Some(f), Some(host)) = (def.stream_data, def.host.get()) else { return NrStatus::Unsupported };
        // SAFETY: the view is valid for this call.
        f(host, sid, unsafe { data.as_slice() })
    })
}

/// `stream_close`, as the ABI calls it.
///
/// # Safety
/// Called by a host per the ABI.
pub unsafe extern "C" fn sdk_stream_close(ctx: *mut c_void, sid: u64) -> NrStatus {
    guarded(|| {
        // SAFETY: the host passes back our `plugin_ctx`.
        let Some(def) = (unsafe { def(ctx) }) else { return NrStatus::Invalid };
        let (Some(f), Some(host)) = (def.stream_close, def.host.get()) else { return NrStatus::Unsupported };
        f(host, sid)
    })
}

/// The version-1 vtable every macro-built plugin exports.
pub static VTABLE: crate::NrPluginVTable = crate::NrPluginVTable {
    init: Some(sdk_init),
    handle: Some(sdk_handle),
    shutdown: Some(sdk_shutdown),
    stream_data: Some(sdk_stream_data),
    stream_close: Some(sdk_stream_close),
};

/// Keeps `f` from unwinding into C; for hand-written exports.
pub fn catch_status(f: impl FnOnce() -> NrStatus) -> NrStatus {
    guarded(f)
}

#[doc(hidden)]
pub const fn release_fn() -> KcReleaseFn {
    release_boxed
}

/// Declares a plugin: its name, version, optional `init` / `shutdown`, entries, raw
/// entries and stream handlers, and exports `nylon_ring_get_plugin_v1` with kcoro's
/// extension table. Every handler runs behind `catch_unwind`: a panic returns `Err`.
///
/// Handlers: `entries` take [`EntryFn`], `raw_entries` take [`RawEntryFn`],
/// `stream_handlers` take [`StreamDataFn`] and [`StreamCloseFn`]; `init` is
/// `fn(Host) -> NrStatus`, `shutdown` is `fn()`.
#[macro_export]
macro_rules! define_plugin {
    (
        name: $name:expr,
        version: $version:expr,
        $(init: $init:path,)?
        $(shutdown: $shutdown:path,)?
        entries: { $($ename:literal => $efn:path),* $(,)? }
        $(, raw_entries: { $($rname:literal => $rfn:path),* $(,)? })?
        $(, stream_handlers: { data: $sdata:path, close: $sclose:path $(,)? })?
        $(,)?
    ) => {
        const _: () = {
            use $crate::plugin as __sdk;
            static __HOST: __sdk::HostCell = __sdk::HostCell::new();
            const __ENTRIES: &[__sdk::Entry] = &[
                $(__sdk::Entry { name: $ename, handler: __sdk::Handler::Full($efn) },)*
                $($(__sdk::Entry { name: $rname, handler: __sdk::Handler::Raw($rfn) },)*)?
            ];
            const __N: usize = __ENTRIES.len();
            static __NAMES: __sdk::Shared<[$crate::NrStr; __N]> =
                __sdk::Shared(__sdk::entry_names::<__N>(__ENTRIES));
            static __DEF: __sdk::PluginDef = __sdk::PluginDef {
                entries: __ENTRIES,
                init: $crate::__kc_opt!(fn(__sdk::Host) -> $crate::NrStatus; $($init)?),
                shutdown: $crate::__kc_opt!(fn(); $($shutdown)?),
                stream_data: $crate::__kc_opt!(__sdk::StreamDataFn; $($sdata)?),
                stream_close: $crate::__kc_opt!(__sdk::StreamCloseFn; $($sclose)?),
                host: &__HOST,
            };
            static __EXT: __sdk::Shared<$crate::KcPluginExt> = __sdk::Shared($crate::KcPluginExt {
                struct_size: ::core::mem::size_of::<$crate::KcPluginExt>() as u32,
                flags: 0,
                attach: Some(__sdk::sdk_attach),
                entries: &__NAMES.0 as *const [$crate::NrStr; __N] as *const $crate::NrStr,
                entries_len: __N as u32,
                _reserved0: 0,
                handle_id: Some(__sdk::sdk_handle_id),
                _reserved: [0; 4],
            });
            static __INFO: __sdk::Shared<$crate::KcPluginInfo> = __sdk::Shared($crate::KcPluginInfo {
                base: $crate::NrPluginInfo {
                    abi_version: $crate::NR_ABI_VERSION,
                    struct_size: ::core::mem::size_of::<$crate::KcPluginInfo>() as u32,
                    name: $crate::NrStr::from_static($name),
                    version: $crate::NrStr::from_static($version),
                    plugin_ctx: &__DEF as *const __sdk::PluginDef as *mut ::core::ffi::c_void,
                    vtable: &__sdk::VTABLE,
                },
                ext: &__EXT.0,
            });

            #[unsafe(no_mangle)]
            pub extern "C" fn nylon_ring_get_plugin_v1() -> *const $crate::NrPluginInfo {
                &__INFO.0 as *const $crate::KcPluginInfo as *const $crate::NrPluginInfo
            }
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __kc_opt {
    ($t:ty;) => {
        None
    };
    ($t:ty; $f:path) => {
        Some($f as $t)
    };
}
