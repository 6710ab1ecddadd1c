//! A loaded plugin: its layout's functions ([`Fns`]), entry resolution, the raw call into
//! `handle`, streams' `stream_data` / `stream_close`, and shutdown with a grace period.
//! Loading itself is [`crate::load`].
//!
//! # Lifetime
//! `Plugin` handles share one `Loaded`. When the last one goes, `Loaded`'s drop calls
//! `shutdown` (once), retires the plugin's [`crate::gate::Gate`] (waiting for callbacks
//! inside it) and only then frees the host context. The library stays mapped unless the
//! plugin was loaded with `keep_mapped(false)`: a plugin thread may still run its code.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kcoro_abi::ext::KcHandleIdFn;
use kcoro_abi::nylon::early::HandleRawFn;
use kcoro_abi::nylon::{self, NR_ENTRY_UNKNOWN, NyStr};
use kcoro_abi::{
    NrBytes, NrHandleFn, NrInitFn, NrRequest, NrShutdownFn, NrStatus, NrStr, NrStreamCloseFn, NrStreamDataFn,
};

use crate::HostError;
use crate::ctx::{HostCtx, InCall, LocalFrames};
use crate::gate::LateReplies;
use crate::layout::{Capabilities, Layout};
use crate::load::{Opened, forget_live};
use crate::metrics::Metrics;
use crate::table::Kind;

/// How a plugin is loaded.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Frames a stream buffers before the plugin must wait (or gets `Backpressure`).
    pub stream_capacity: usize,
    /// Never `dlclose` the library (the default). A plugin thread may run the library's
    /// code after `shutdown` (nylon-ring's Go SDK does not join its goroutines), so only a
    /// plugin that joins every thread in `shutdown` may be loaded with `false`: its library
    /// is then closed once the instance and every reply buffer it lent are gone, and a
    /// rebuilt library at the same path is picked up by the next load. Go's runtime cannot
    /// be unloaded at all.
    pub keep_mapped: bool,
    /// The layout to load the library as; [`Layout::Auto`] detects it, and refuses a plain
    /// version-1 plugin whose layout cannot be told.
    pub layout: Layout,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { stream_capacity: 256, keep_mapped: true, layout: Layout::Auto }
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

    /// Loads the library as `layout` (see [`Layout`]): required for a plain version-1
    /// plugin, checked against what the library declares otherwise.
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }
}

/// A plugin's entry, resolved once: calls through it dispatch by id when the plugin
/// can (kcoro's entry table, nylon-ring 0.2's `resolve_entry`), with no string compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    name: Box<str>,
    id: Option<u32>,
}

impl Entry {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id the plugin dispatches by, when it has ids.
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

impl EntryRef<'_> {
    fn name(&self) -> &str {
        match self {
            EntryRef::Resolved(e) => e.name(),
            EntryRef::Name(n) => n,
        }
    }

    fn id(&self) -> Option<u32> {
        match self {
            EntryRef::Resolved(e) => e.id,
            EntryRef::Name(_) => None,
        }
    }
}

/// nylon-ring's `init`, whose host vtable type differs between 0.1 and 0.2.
#[derive(Clone, Copy)]
pub(crate) enum NyInit {
    V01(nylon::v01::InitFn),
    V2(nylon::v2::InitFn),
}

/// The plugin's functions, in one of two calling conventions.
#[derive(Clone, Copy)]
pub(crate) enum Fns {
    /// `plugin_ctx` first, a request for `handle`: kcoro's version 1, nylon-ring's early
    /// 3- and 6-slot layouts.
    WithCtx {
        init: Option<NrInitFn>,
        handle: Option<NrHandleFn>,
        /// The 6-slot layout's raw entry point.
        handle_raw: Option<HandleRawFn>,
        /// kcoro's extension, once attached.
        handle_id: Option<KcHandleIdFn>,
        shutdown: Option<NrShutdownFn>,
        stream_data: Option<NrStreamDataFn>,
        stream_close: Option<NrStreamCloseFn>,
    },
    /// No `plugin_ctx`, no request: nylon-ring 0.1 and 0.2.
    NoCtx {
        init: Option<NyInit>,
        handle: Option<nylon::v01::HandleFn>,
        shutdown: Option<nylon::v01::ShutdownFn>,
        stream_data: Option<nylon::v01::StreamDataFn>,
        stream_close: Option<nylon::v01::StreamCloseFn>,
        resolve_entry: Option<nylon::v2::ResolveEntryFn>,
        handle_by_id: Option<nylon::v2::HandleByIdFn>,
    },
}

/// A loaded plugin. Cheap to clone; calls may run from any number of threads, coroutines
/// or tasks at once.
#[derive(Clone)]
pub struct Plugin(pub(crate) Arc<Loaded>);

pub(crate) struct Loaded {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) path: PathBuf,
    pub(crate) layout: Layout,
    pub(crate) struct_size: u32,
    pub(crate) plugin_ctx: *mut c_void,
    pub(crate) fns: Fns,
    pub(crate) entries: Vec<String>,
    pub(crate) attached: bool,
    pub(crate) caps: Capabilities,
    /// Freed only after the gate retired (see `Drop`).
    pub(crate) ctx: Box<HostCtx>,
    pub(crate) stream_capacity: usize,
    pub(crate) closing: AtomicBool,
    pub(crate) down: AtomicBool,
    pub(crate) live_key: usize,
}

// SAFETY: every layout requires a plugin's functions to be callable from any thread with
// its `plugin_ctx`; everything else in `Loaded` is `Send + Sync` on its own.
unsafe impl Send for Loaded {}
// SAFETY: as above.
unsafe impl Sync for Loaded {}

/// Counts a call in flight until dropped.
/// The stack a plugin's `handle`, `stream_data` and `stream_close` run with at least:
/// a thread's, as plugins are written for. A calling coroutine with this much left runs
/// them in place (spawn it with `SpawnOptions::stack_size(2 << 20)` or more); any other
/// switches to its worker's stack and back for each call (about 85 instructions, 5 ns).
pub const PLUGIN_STACK: usize = 1 << 20;

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

    /// Calls the plugin's `handle` (or its by-id or raw variant) on this thread.
    #[inline]
    pub(crate) fn invoke(
        &self,
        entry: EntryRef<'_>,
        sid: u64,
        req: *const NrRequest,
        payload: &[u8],
    ) -> NrStatus {
        let call = HandleCall { plugin: self, entry: &entry, sid, req, bytes: NrBytes::from_slice(payload) };
        let call = &call;
        // The plugin's code (and a panic hook it runs, which may symbolise a backtrace)
        // gets a thread's stack: in place when the calling coroutine has `PLUGIN_STACK`
        // left (or on a thread), else the worker's, not a coroutine's small one. The
        // closure captures one pointer and returns one word: the switch moves both through
        // memory, and a multi-word value stored in parts then copied whole stalls store
        // forwarding (19 ns per call when the closure captured the five arguments).
        let raw = kcoro::coro::with_stack(PLUGIN_STACK, move || call.run());
        match raw {
            HandleCall::INVALID => NrStatus::Invalid,
            HandleCall::UNSUPPORTED => NrStatus::Unsupported,
            raw => self.ctx.codes.decode(raw as u32),
        }
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
        let _in = match local {
            Some(l) => InCall::enter_stream(&self.ctx, sid, l),
            None => InCall::enter(&self.ctx, sid, std::ptr::null_mut()),
        };
        self.stream_call(&StreamInput { plugin: self, sid, data: Some(NrBytes::from_slice(data)) })
    }

    /// Calls `stream_close` for a live stream.
    pub(crate) fn stream_close(
        &self,
        sid: u64,
        local: Option<&mut LocalFrames>,
    ) -> Result<NrStatus, HostError> {
        let _in = match local {
            Some(l) => InCall::enter_stream(&self.ctx, sid, l),
            None => InCall::enter(&self.ctx, sid, std::ptr::null_mut()),
        };
        self.stream_call(&StreamInput { plugin: self, sid, data: None })
    }

    /// Runs `stream_data` or `stream_close` with [`PLUGIN_STACK`] (as [`Loaded::invoke`]
    /// does `handle`, one pointer in and one word out).
    fn stream_call(&self, input: &StreamInput<'_>) -> Result<NrStatus, HostError> {
        match kcoro::coro::with_stack(PLUGIN_STACK, move || input.run()) {
            StreamInput::NO_INPUT => Err(HostError::NoStreamInput(self.name.clone())),
            raw => Ok(self.ctx.codes.decode(raw as u32)),
        }
    }

    /// Ends a sid; counts frames nobody read as dropped, and keeps a buffer still leased
    /// to the plugin.
    #[inline]
    pub(crate) fn finish(&self, sid: u64) {
        if let Some(mut freed) = self.ctx.table.free(sid) {
            let unread = freed.frames.len() as u64;
            if unread > 0 {
                self.ctx.counters.add(crate::metrics::Counter::DroppedReplies, unread);
            }
            if let Some(lease) = freed.lease.take() {
                self.ctx.orphan(lease);
            }
        }
    }

    fn shutdown_now(&self) {
        if self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        kcoro::coro::on_worker_stack(|| match self.fns {
            // SAFETY: the layout's `shutdown`, called once.
            Fns::WithCtx { shutdown: Some(f), .. } => unsafe { f(self.plugin_ctx) },
            // SAFETY: as above.
            Fns::NoCtx { shutdown: Some(f), .. } => unsafe { f() },
            _ => {}
        });
        forget_live(self.live_key);
    }
}

/// One call of `handle`, gathered so it crosses to the worker's stack as one pointer.
struct HandleCall<'a> {
    plugin: &'a Loaded,
    /// By reference: copying it in would be another wide copy of parts just stored.
    entry: &'a EntryRef<'a>,
    sid: u64,
    req: *const NrRequest,
    bytes: NrBytes,
}

impl HandleCall<'_> {
    /// `run`'s answer when the entry name cannot cross the ABI.
    const INVALID: u64 = u64::MAX;
    /// `run`'s answer when the layout has no function for this call.
    const UNSUPPORTED: u64 = u64::MAX - 1;

    /// The plugin's raw status, or one of the two constants above.
    #[inline(always)]
    fn run(&self) -> u64 {
        let HandleCall { plugin, entry, sid, req, bytes } = *self;
        u64::from(match plugin.fns {
            Fns::WithCtx { handle, handle_raw, handle_id, .. } => {
                let full = if req.is_null() { &NrRequest::EMPTY as *const NrRequest } else { req };
                match (entry.id(), handle_id) {
                    // SAFETY: kcoro's `handle_id`; the views outlive the call.
                    (Some(id), Some(by_id)) => unsafe { by_id(plugin.plugin_ctx, id, sid, full, bytes) }.0,
                    _ => {
                        let Some(name) = NrStr::try_new(entry.name()) else {
                            return Self::INVALID;
                        };
                        match (req.is_null(), handle_raw, handle) {
                            // SAFETY: the 6-slot layout's `handle_raw`; the views outlive the call.
                            (true, Some(raw), _) => unsafe { raw(plugin.plugin_ctx, name, sid, bytes) }.0,
                            // SAFETY: the layout's `handle`; the views outlive the call.
                            (_, _, Some(h)) => unsafe { h(plugin.plugin_ctx, name, sid, full, bytes) }.0,
                            (_, _, None) => return Self::UNSUPPORTED,
                        }
                    }
                }
            }
            Fns::NoCtx { handle, handle_by_id, .. } => match (entry.id(), handle_by_id, handle) {
                // SAFETY: nylon-ring 0.2's `handle_by_id`; the view outlives the call.
                (Some(id), Some(by_id), _) => unsafe { by_id(id, sid, bytes) }.0,
                (_, _, Some(h)) => {
                    let Some(name) = NyStr::try_new(entry.name()) else { return Self::INVALID };
                    // SAFETY: nylon-ring's `handle`; the views outlive the call.
                    unsafe { h(name, sid, bytes) }.0
                }
                (_, _, None) => return Self::UNSUPPORTED,
            },
        })
    }
}

/// One `stream_data` (with data) or `stream_close` (without) call.
struct StreamInput<'a> {
    plugin: &'a Loaded,
    sid: u64,
    data: Option<NrBytes>,
}

impl StreamInput<'_> {
    /// `run`'s answer when the plugin takes no stream input.
    const NO_INPUT: u64 = u64::MAX;

    /// The plugin's raw status, or [`Self::NO_INPUT`].
    #[inline(always)]
    fn run(&self) -> u64 {
        let StreamInput { plugin, sid, data } = *self;
        u64::from(match (plugin.fns, data) {
            (Fns::WithCtx { stream_data: Some(f), .. }, Some(bytes)) => {
                // SAFETY: the layout's `stream_data`; the view outlives the call.
                unsafe { f(plugin.plugin_ctx, sid, bytes) }.0
            }
            // SAFETY: the layout's `stream_data`; the view outlives the call.
            (Fns::NoCtx { stream_data: Some(f), .. }, Some(bytes)) => unsafe { f(sid, bytes) }.0,
            // SAFETY: the layout's `stream_close`.
            (Fns::WithCtx { stream_close: Some(f), .. }, None) => unsafe { f(plugin.plugin_ctx, sid) }.0,
            // SAFETY: as above.
            (Fns::NoCtx { stream_close: Some(f), .. }, None) => unsafe { f(sid) }.0,
            _ => return Self::NO_INPUT,
        })
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.shutdown_now();
        // Plugin threads may still call back: they find the gate closed from here on, and
        // the context (dropped right after this) is no longer reachable through it.
        self.ctx.gate.retire();
    }
}

impl Plugin {
    /// Loads and initialises the plugin at `path` on its own, outside any [`crate::Host`].
    pub fn load(path: impl AsRef<Path>) -> Result<Plugin, HostError> {
        Plugin::load_with(path, LoadOptions::default())
    }

    /// Loads with `opts`; [`LoadOptions::layout`] names the layout of a plain version-1
    /// plugin.
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

    /// The layout the plugin was loaded as (never [`Layout::Auto`]).
    pub fn layout(&self) -> Layout {
        self.0.layout
    }

    /// The ABI version the plugin declared: 2 for nylon-ring 0.2, else 1.
    pub fn abi_version(&self) -> u32 {
        self.0.layout.abi_version()
    }

    /// The size the plugin declared for its info (56, or more for kcoro's extensions).
    pub fn info_size(&self) -> u32 {
        self.0.struct_size
    }

    /// What the plugin can do; only what its layout has and its vtable really filled in.
    pub fn capabilities(&self) -> Capabilities {
        self.0.caps
    }

    /// Whether the plugin negotiated kcoro's extensions (state, owned replies, entry ids,
    /// backpressure).
    pub fn is_extended(&self) -> bool {
        self.0.attached
    }

    /// Whether the plugin accepts data on bidirectional streams.
    pub fn has_stream_input(&self) -> bool {
        self.0.caps.bidirectional
    }

    /// The entries the plugin declared; empty for a plugin that cannot list them (every
    /// layout but kcoro's extended one).
    pub fn entries(&self) -> &[String] {
        &self.0.entries
    }

    /// Resolves `name` once. Fails for a name missing from the plugin's entry table (or
    /// unknown to nylon-ring 0.2's `resolve_entry`); for a plugin without either the name
    /// is passed through.
    pub fn entry(&self, name: &str) -> Result<Entry, HostError> {
        let unknown = || HostError::UnknownEntry { plugin: self.0.name.clone(), entry: name.into() };
        if !self.0.entries.is_empty() {
            let i = self.0.entries.iter().position(|e| e == name).ok_or_else(unknown)?;
            return Ok(Entry { name: name.into(), id: u32::try_from(i).ok() });
        }
        if let Fns::NoCtx { resolve_entry: Some(resolve), handle_by_id: Some(_), .. } = self.0.fns {
            let _in_flight = self.0.enter()?;
            let key = NyStr::try_new(name).ok_or_else(unknown)?;
            // SAFETY: nylon-ring 0.2's `resolve_entry`; the view outlives the call.
            let id = unsafe { resolve(key) };
            return match id {
                NR_ENTRY_UNKNOWN => Err(unknown()),
                id => Ok(Entry { name: name.into(), id: Some(id) }),
            };
        }
        Ok(Entry { name: name.into(), id: None })
    }

    /// A watch on the plugin's late callers that outlives every handle: after the last
    /// handle is dropped, replies the plugin's threads still send are counted there.
    pub fn late_replies(&self) -> LateReplies {
        LateReplies(self.0.ctx.gate)
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
        // Calls mark themselves in flight with a light fence (`Counters::enter`): after
        // this barrier each one either shows in the gauge or sees `closing`.
        if let Err(e) = crate::fence::heavy() {
            l.closing.store(false, Ordering::SeqCst);
            return Err(HostError::Fence { name: l.name.clone(), reason: e.to_string() });
        }
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
            .field("layout", &self.0.layout)
            .field("extended", &self.0.attached)
            .finish()
    }
}
