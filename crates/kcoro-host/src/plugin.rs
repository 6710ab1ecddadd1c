//! A loaded plugin: validation at load, entry resolution, the raw call into `handle`, and
//! shutdown with a grace period.

use std::collections::HashSet;
use std::ffi::{CString, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcoro_abi::ext::KcHandleIdFn;
use kcoro_abi::{
    ENTRY_SYMBOL, KcPluginExt, KcPluginInfo, NR_ABI_VERSION, NrBytes, NrGetPluginFn, NrHandleFn,
    NrPluginInfo, NrPluginVTable, NrRequest, NrStatus, NrStr,
};

use crate::HostError;
use crate::ctx::{HostCtx, InCall, LocalFrames};
use crate::library::Library;
use crate::metrics::Metrics;
use crate::table::Kind;

/// How a plugin is loaded.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Frames a stream buffers before the plugin must wait (or gets `Backpressure`).
    pub stream_capacity: usize,
    /// Never `dlclose` the library: required for runtimes that cannot be unloaded, such
    /// as Go's (`-buildmode=c-shared`).
    pub keep_mapped: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { stream_capacity: 256, keep_mapped: false }
    }
}

impl LoadOptions {
    pub fn stream_capacity(mut self, frames: usize) -> Self {
        self.stream_capacity = frames.max(1);
        self
    }

    pub fn keep_mapped(mut self, keep: bool) -> Self {
        self.keep_mapped = keep;
        self
    }
}

/// Libraries currently initialised in this process, by `dlopen` handle: a library's
/// statics are shared by every load of it, so it may be initialised only once at a time.
static LIVE: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Option<HashSet<usize>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A plugin's entry, resolved once: calls through it dispatch by id when the plugin
/// exports an entry table, with no string compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    name: Box<str>,
    id: Option<u32>,
}

impl Entry {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id the plugin dispatches by, when it exports an entry table.
    pub fn id(&self) -> Option<u32> {
        self.id
    }
}

/// An entry given by name or resolved in advance.
#[derive(Clone, Copy, Debug)]
pub enum EntryRef<'a> {
    Name(&'a str),
    Resolved(&'a Entry),
}

impl<'a> From<&'a str> for EntryRef<'a> {
    fn from(s: &'a str) -> Self {
        EntryRef::Name(s)
    }
}

impl<'a> From<&'a String> for EntryRef<'a> {
    fn from(s: &'a String) -> Self {
        EntryRef::Name(s)
    }
}

impl<'a> From<&'a Entry> for EntryRef<'a> {
    fn from(e: &'a Entry) -> Self {
        EntryRef::Resolved(e)
    }
}

/// A loaded plugin. Cheap to clone; calls may run from any number of threads, coroutines
/// or tasks at once.
#[derive(Clone)]
pub struct Plugin(pub(crate) Arc<Loaded>);

pub(crate) struct Loaded {
    pub(crate) name: String,
    version: String,
    path: PathBuf,
    struct_size: u32,
    plugin_ctx: *mut c_void,
    pub(crate) vt: NrPluginVTable,
    handle: NrHandleFn,
    handle_id: Option<KcHandleIdFn>,
    entries: Vec<String>,
    attached: bool,
    pub(crate) ctx: Arc<HostCtx>,
    pub(crate) stream_capacity: usize,
    closing: AtomicBool,
    down: AtomicBool,
    live_key: usize,
}

// SAFETY: the ABI requires a plugin's functions to be callable from any thread with its
// `plugin_ctx`; everything else in `Loaded` is `Send + Sync` on its own.
unsafe impl Send for Loaded {}
// SAFETY: as above.
unsafe impl Sync for Loaded {}

/// What `nylon_ring_get_plugin_v1` described, validated but not yet initialised.
pub(crate) struct Opened {
    lib: Arc<Library>,
    live_key: usize,
    info: NrPluginInfo,
    ext: Option<KcPluginExt>,
    pub(crate) name: String,
    version: String,
    entries: Vec<String>,
    path: PathBuf,
    opts: LoadOptions,
}

/// Reads a plugin-supplied string view.
///
/// # Safety
/// `s` must come from the plugin's info or entry table, which the ABI keeps valid while the
/// library is mapped.
unsafe fn text(s: NrStr, path: &Path, what: &'static str) -> Result<String, HostError> {
    if s.ptr.is_null() && s.len > 0 {
        return Err(HostError::NullPointer { path: path.into(), what });
    }
    // SAFETY: forwarded to the caller.
    let bytes = unsafe { s.as_bytes() };
    String::from_utf8(bytes.to_vec()).map_err(|_| HostError::BadUtf8 { path: path.into(), what })
}

impl Opened {
    pub(crate) fn open(path: &Path, opts: LoadOptions) -> Result<Opened, HostError> {
        let err_path = || path.to_path_buf();
        let mut lib = Library::open(path).map_err(|reason| HostError::Open { path: err_path(), reason })?;
        if opts.keep_mapped {
            lib.keep_mapped();
        }
        let symbol = CString::new(ENTRY_SYMBOL).map_err(|_| HostError::NullInfo { path: err_path() })?;
        let get = lib.symbol(&symbol);
        if get.is_null() {
            return Err(HostError::MissingSymbol { path: err_path(), symbol: ENTRY_SYMBOL });
        }
        // SAFETY: the ABI fixes the symbol's signature.
        let get: NrGetPluginFn = unsafe { std::mem::transmute::<*mut c_void, NrGetPluginFn>(get) };
        // SAFETY: calling the plugin's entry point, as the ABI requires.
        let info = unsafe { get() };
        if info.is_null() {
            return Err(HostError::NullInfo { path: err_path() });
        }
        // Read the two leading words first: a truncated info must not be read past its end.
        // SAFETY: every version of the info starts with these two `u32`s.
        let (abi_version, struct_size) =
            unsafe { (info.cast::<u32>().read(), info.cast::<u32>().add(1).read()) };
        if abi_version != NR_ABI_VERSION {
            return Err(HostError::AbiVersion {
                path: err_path(),
                found: abi_version,
                expected: NR_ABI_VERSION,
            });
        }
        let min = std::mem::size_of::<NrPluginInfo>() as u32;
        if struct_size < min {
            return Err(HostError::TruncatedInfo { path: err_path(), found: struct_size, min });
        }
        // SAFETY: the plugin says the info is at least version 1's size.
        let base = unsafe { *info };
        // SAFETY: `struct_size` covers the extended info.
        let ext_ptr = (struct_size as usize >= std::mem::size_of::<KcPluginInfo>())
            .then(|| unsafe { (*info.cast::<KcPluginInfo>()).ext })
            .filter(|p| !p.is_null());
        // SAFETY: a non-null extension table holds at least its leading `u32`; `read_ext`
        // reads only as far as the table's own `struct_size` covers.
        let ext = ext_ptr.map(|p| unsafe { read_ext(p) });
        if base.vtable.is_null() {
            return Err(HostError::NullPointer { path: err_path(), what: "vtable" });
        }
        // SAFETY: the info's vtable lives as long as the library.
        let vt = unsafe { *base.vtable };
        if vt.handle.is_none() {
            return Err(HostError::NullPointer { path: err_path(), what: "handle function" });
        }
        // SAFETY: views from the info, valid while the library is mapped.
        let name = unsafe { text(base.name, path, "name")? };
        // SAFETY: as above.
        let version = unsafe { text(base.version, path, "version")? };
        let mut entries = Vec::new();
        if let Some(e) = ext.filter(|e| !e.entries.is_null()) {
            for i in 0..e.entries_len as usize {
                // SAFETY: the table holds `entries_len` views, valid while mapped.
                entries.push(unsafe { text(*e.entries.add(i), path, "entry name")? });
            }
        }
        let live_key = lib.handle_key();
        Ok(Opened {
            lib: Arc::new(lib),
            live_key,
            info: base,
            ext,
            name,
            version,
            entries,
            path: err_path(),
            opts,
        })
    }

    /// Calls `init` (and `attach`, when both sides speak the extensions).
    pub(crate) fn init(self) -> Result<Plugin, HostError> {
        let ctx = Arc::new(HostCtx::new(Arc::clone(&self.lib)));
        // SAFETY: `open` checked the vtable pointer; it lives as long as the library.
        let vt = unsafe { *self.info.vtable };
        let Some(handle) = vt.handle else {
            return Err(HostError::NullPointer { path: self.path, what: "handle function" });
        };
        {
            let mut live = live();
            if !live.get_or_insert_with(HashSet::new).insert(self.live_key) {
                return Err(HostError::AlreadyLoaded { path: self.path });
            }
        }
        let drop_live = |key| {
            if let Some(set) = live().as_mut() {
                set.remove(&key);
            }
        };
        if let Some(init) = vt.init {
            // SAFETY: the ABI's `init`; `ctx` outlives the plugin (kept by `Loaded`).
            let status = unsafe { init(self.info.plugin_ctx, ctx.as_raw(), &ctx.vtable) };
            if status != NrStatus::Ok {
                drop_live(self.live_key);
                return Err(HostError::InitFailed { path: self.path, status });
            }
        }
        let mut attached = false;
        if let Some(attach) = self.ext.and_then(|e| e.attach) {
            // SAFETY: the extension's `attach`; `ctx.api` lives as long as `ctx`.
            attached = unsafe { attach(self.info.plugin_ctx, ctx.as_raw(), &ctx.api) } == NrStatus::Ok;
        }
        let handle_id = if attached { self.ext.and_then(|e| e.handle_id) } else { None };
        Ok(Plugin(Arc::new(Loaded {
            name: self.name,
            version: self.version,
            path: self.path,
            struct_size: self.info.struct_size,
            plugin_ctx: self.info.plugin_ctx,
            vt,
            handle,
            handle_id,
            entries: self.entries,
            attached,
            ctx,
            stream_capacity: self.opts.stream_capacity.max(1),
            closing: AtomicBool::new(false),
            down: AtomicBool::new(false),
            live_key: self.live_key,
        })))
    }
}

/// # Safety
/// `p` must point to a plugin's `KcPluginExt` of at least 8 bytes that lives as long as
/// its library.
unsafe fn read_ext(p: *const KcPluginExt) -> KcPluginExt {
    let mut ext = KcPluginExt {
        struct_size: 0,
        flags: 0,
        attach: None,
        entries: std::ptr::null(),
        entries_len: 0,
        _reserved0: 0,
        handle_id: None,
        _reserved: [0; 4],
    };
    // SAFETY: the leading `struct_size` is always present.
    let size = unsafe { p.cast::<u32>().read() } as usize;
    let n = size.min(std::mem::size_of::<KcPluginExt>());
    // SAFETY: the plugin's table holds `size` bytes; we copy at most our own size, and a
    // zeroed tail reads as "absent" (null pointers, `None` functions).
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut ext as *mut KcPluginExt).cast::<u8>(), n) };
    ext.struct_size = size as u32;
    ext
}

/// Counts a call in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Loaded);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.ctx.counters.leave();
    }
}

impl Loaded {
    #[inline]
    pub(crate) fn enter(&self) -> Result<InFlight<'_>, HostError> {
        self.ctx.counters.enter();
        let guard = InFlight(self);
        if self.closing.load(Ordering::SeqCst) {
            return Err(HostError::Unloading(self.name.clone()));
        }
        Ok(guard)
    }

    /// Calls the plugin's `handle` (or `handle_id`) on this thread.
    #[inline]
    pub(crate) fn invoke(
        &self,
        entry: EntryRef<'_>,
        sid: u64,
        req: *const NrRequest,
        payload: &[u8],
    ) -> NrStatus {
        let req = if req.is_null() { &NrRequest::EMPTY as *const NrRequest } else { req };
        let payload = NrBytes::from_slice(payload);
        let status = match (entry, self.handle_id) {
            (EntryRef::Resolved(Entry { id: Some(id), .. }), Some(by_id)) => {
                // SAFETY: the extension's `handle_id`; the views outlive the call.
                unsafe { by_id(self.plugin_ctx, *id, sid, req, payload) }
            }
            (entry, _) => {
                let name = match entry {
                    EntryRef::Resolved(e) => e.name(),
                    EntryRef::Name(n) => n,
                };
                let Some(name) = NrStr::try_new(name) else { return NrStatus::Invalid };
                // SAFETY: the ABI's `handle`; the views outlive the call.
                unsafe { (self.handle)(self.plugin_ctx, name, sid, req, payload) }
            }
        };
        status.normalized()
    }

    /// Calls `stream_data` for a live stream.
    /// `local`: the reader's buffer, when the reader is the caller (frames the plugin sends
    /// back during the call go there without a lock).
    pub(crate) fn stream_data(
        &self,
        sid: u64,
        data: &[u8],
        local: Option<&mut LocalFrames>,
    ) -> Result<NrStatus, HostError> {
        let f = self.vt.stream_data.ok_or_else(|| HostError::NoStreamInput(self.name.clone()))?;
        let _in = match local {
            Some(l) => InCall::enter_stream(&self.ctx, sid, l),
            None => InCall::enter(&self.ctx, sid, std::ptr::null_mut()),
        };
        // SAFETY: the ABI's `stream_data`; the view outlives the call.
        Ok(unsafe { f(self.plugin_ctx, sid, NrBytes::from_slice(data)) }.normalized())
    }

    /// Calls `stream_close` for a live stream.
    pub(crate) fn stream_close(
        &self,
        sid: u64,
        local: Option<&mut LocalFrames>,
    ) -> Result<NrStatus, HostError> {
        let f = self.vt.stream_close.ok_or_else(|| HostError::NoStreamInput(self.name.clone()))?;
        let _in = match local {
            Some(l) => InCall::enter_stream(&self.ctx, sid, l),
            None => InCall::enter(&self.ctx, sid, std::ptr::null_mut()),
        };
        // SAFETY: the ABI's `stream_close`.
        Ok(unsafe { f(self.plugin_ctx, sid) }.normalized())
    }

    /// Ends a sid; counts frames nobody read as dropped.
    #[inline]
    pub(crate) fn finish(&self, sid: u64) {
        if let Some(freed) = self.ctx.table.free(sid) {
            let unread = freed.frames.len() as u64;
            if unread > 0 {
                self.ctx.counters.add(crate::metrics::Counter::DroppedReplies, unread);
            }
        }
    }

    fn shutdown_now(&self) {
        if self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(shutdown) = self.vt.shutdown {
            // SAFETY: the ABI's `shutdown`, called once.
            unsafe { shutdown(self.plugin_ctx) };
        }
        if let Some(set) = live().as_mut() {
            set.remove(&self.live_key);
        }
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

impl Plugin {
    /// Loads and initialises the plugin at `path` on its own, outside any [`crate::Host`].
    pub fn load(path: impl AsRef<Path>) -> Result<Plugin, HostError> {
        Plugin::load_with(path, LoadOptions::default())
    }

    pub fn load_with(path: impl AsRef<Path>, opts: LoadOptions) -> Result<Plugin, HostError> {
        Opened::open(path.as_ref(), opts)?.init()
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn version(&self) -> &str {
        &self.0.version
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Always 1 today.
    pub fn abi_version(&self) -> u32 {
        NR_ABI_VERSION
    }

    /// The size the plugin declared for its info (56 for plain version 1).
    pub fn info_size(&self) -> u32 {
        self.0.struct_size
    }

    /// Whether the plugin negotiated kcoro's extensions (state, owned replies, entry ids,
    /// backpressure).
    pub fn is_extended(&self) -> bool {
        self.0.attached
    }

    /// Whether the plugin accepts data on bidirectional streams.
    pub fn has_stream_input(&self) -> bool {
        self.0.vt.stream_data.is_some()
    }

    /// The entries the plugin declared; empty for a plain version-1 plugin, which cannot
    /// list them.
    pub fn entries(&self) -> &[String] {
        &self.0.entries
    }

    /// Resolves `name` once. Fails for a name missing from a declared entry table; for a
    /// plugin without one the name is passed through.
    pub fn entry(&self, name: &str) -> Result<Entry, HostError> {
        if self.0.entries.is_empty() {
            return Ok(Entry { name: name.into(), id: None });
        }
        match self.0.entries.iter().position(|e| e == name) {
            Some(i) => Ok(Entry { name: name.into(), id: u32::try_from(i).ok() }),
            None => Err(HostError::UnknownEntry { plugin: self.0.name.clone(), entry: name.into() }),
        }
    }

    pub fn metrics(&self) -> Metrics {
        self.0.ctx.counters.snapshot()
    }

    /// Calls the entry without waiting for (or keeping) any reply: returns what `handle`
    /// returned. Replies the plugin sends anyway are discarded.
    pub fn fire_and_forget<'a>(
        &self,
        entry: impl Into<EntryRef<'a>>,
        payload: &[u8],
    ) -> Result<NrStatus, HostError> {
        let _in_flight = self.0.enter()?;
        self.0.ctx.counters.add(crate::metrics::Counter::Calls, 1);
        let _in = InCall::enter(&self.0.ctx, crate::ctx::NO_SID, std::ptr::null_mut());
        let status = self.0.invoke(entry.into(), crate::ctx::NO_SID, std::ptr::null(), payload);
        self.0.ctx.counters.status(status);
        Ok(status)
    }

    /// Refuses new calls, waits up to `grace` for the calls in flight, then calls the
    /// plugin's `shutdown`. If calls are still in flight after `grace`, fails with
    /// [`HostError::Busy`] and leaves the plugin running.
    pub fn shutdown(&self, grace: Duration) -> Result<(), HostError> {
        let l = &self.0;
        l.closing.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        loop {
            let in_flight = l.ctx.counters.in_flight();
            if in_flight == 0 {
                break;
            }
            if Instant::now() >= deadline {
                l.closing.store(false, Ordering::SeqCst);
                return Err(HostError::Busy { name: l.name.clone(), in_flight });
            }
            kcoro::park::park_deadline((Instant::now() + Duration::from_millis(1)).min(deadline));
        }
        l.shutdown_now();
        Ok(())
    }

    /// Whether `shutdown` has run.
    pub fn is_shut_down(&self) -> bool {
        self.0.down.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn alloc(&self, kind: Kind) -> Result<u64, HostError> {
        let cap = if kind == Kind::Stream { self.0.stream_capacity } else { 1 };
        self.0.ctx.table.alloc(kind, cap).ok_or(HostError::TooManyCalls)
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.0.name)
            .field("version", &self.0.version)
            .field("path", &self.0.path)
            .field("extended", &self.0.attached)
            .finish()
    }
}
