//! Loading: open the library, find out (or check) its layout, read exactly the vtable that
//! layout declares, check every function in it is the plugin's, then `init` (and `attach`,
//! for kcoro's extensions).
//!
//! # Protocol
//! 1. *Probe*: call whichever of `nylon_ring_get_plugin` (ABI 2) and
//!    `nylon_ring_get_plugin_v1` (version 1) the library exports, and read only the two
//!    leading `u32`s of each info (`abi_version`, `struct_size`), which every layout has.
//! 2. *Resolve* the layout ([`resolve`]): ABI 2 is nylon-0.2; version 1 with an info of
//!    64 bytes or more is kcoro's (only it appends to the info); a plain 56-byte version-1
//!    info takes the caller's choice or, under `Auto`, the one layout its vtable fits
//!    ([`crate::detect`]; several are refused, naming them). A choice that contradicts
//!    what the library declares is refused, naming the options.
//! 3. *Read* the info's 56 bytes and the layout's vtable, no more: 24 bytes for the early
//!    3-slot layout, 48 for the 6-slot one, 40 for kcoro's and nylon-0.1, 56 for
//!    nylon-0.2; kcoro's extension table only as far as its own `struct_size` says. A
//!    vtable inside the library's image is read only as far as its mapped data goes.
//! 4. *Check* every function slot read (vtable and extension table): null, or a pointer
//!    into the library's own code ([`crate::image`]). A wrong layout's slot (a length, a
//!    string, the next table) is refused here, naming the slot, instead of being called.
//! 5. *Init*: the plugin gets a leaked [`Gate`] as `host_ctx` and its layout's host
//!    vtable (a `static`); its statuses are read through its layout's numbering.
//!
//! No plugin code runs before step 5 except the `get` functions; until `init` has run the
//! library is closed again on any error.

use std::collections::HashSet;
use std::ffi::{CString, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use kcoro_abi::nylon;
use kcoro_abi::{
    ENTRY_SYMBOL, KcPluginExt, KcPluginInfo, NR_ABI_VERSION, NrGetPluginFn, NrPluginInfo, NrStr,
};

use crate::callbacks;
use crate::ctx::HostCtx;
use crate::detect::{self, Seen, Verdict};
use crate::error::{BadSlot, HostError};
use crate::gate::Gate;
use crate::image::Image;
use crate::layout::{Capabilities, Layout};
use crate::library::Library;
use crate::plugin::{Fns, LoadOptions, Loaded, NyInit, Plugin};

/// Libraries currently initialised in this process, by `dlopen` handle: a library's
/// statics are shared by every load of it, so it may be initialised only once at a time.
static LIVE: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Option<HashSet<usize>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets a library in [`LIVE`] (its instance was shut down, or never initialised).
pub(crate) fn forget_live(key: usize) {
    if let Some(set) = live().as_mut() {
        set.remove(&key);
    }
}

/// One entry symbol's answer: its info and the two words every layout starts with.
#[derive(Clone, Copy)]
struct Probe {
    symbol: &'static str,
    info: *const NrPluginInfo,
    abi: u32,
    size: u32,
}

/// What the library described, validated but not yet initialised.
pub(crate) struct Opened {
    lib: Library,
    live_key: usize,
    layout: Layout,
    struct_size: u32,
    plugin_ctx: *mut c_void,
    fns: Fns,
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

/// Step 1: calls `symbol`'s function, if the library exports it.
fn probe(lib: &Library, symbol: &'static str, path: &Path) -> Result<Option<Probe>, HostError> {
    let c = CString::new(symbol).map_err(|_| HostError::NullInfo { path: path.into(), symbol })?;
    let f = lib.symbol(&c);
    if f.is_null() {
        return Ok(None);
    }
    // SAFETY: every layout fixes the symbol's signature: `const Info *(void)`.
    let get: NrGetPluginFn = unsafe { std::mem::transmute::<*mut c_void, NrGetPluginFn>(f) };
    // SAFETY: calling the plugin's entry point, as every layout requires.
    let info = unsafe { get() };
    if info.is_null() {
        return Err(HostError::NullInfo { path: path.into(), symbol });
    }
    // Only the two leading words: a truncated info must not be read past its end.
    // SAFETY: every layout's info starts with these two `u32`s.
    let (abi, size) = unsafe { (info.cast::<u32>().read(), info.cast::<u32>().add(1).read()) };
    Ok(Some(Probe { symbol, info, abi, size }))
}

/// The checks every info passes: its ABI number and the 56 bytes all layouts share.
fn check(p: Probe, expected: u32, path: &Path) -> Result<Probe, HostError> {
    if p.abi != expected {
        return Err(HostError::AbiVersion { path: path.into(), symbol: p.symbol, found: p.abi, expected });
    }
    let min = std::mem::size_of::<NrPluginInfo>() as u32;
    if p.size < min {
        return Err(HostError::TruncatedInfo { path: path.into(), found: p.size, min });
    }
    Ok(p)
}

/// Step 2: the layout the library speaks, given what the caller chose; `None` for a plain
/// version-1 plugin under `Auto`, whose vtable tells ([`detect_plain`]).
fn resolve(
    v2: Option<Probe>,
    v1: Option<Probe>,
    chosen: Layout,
    path: &Path,
) -> Result<(Option<Layout>, Probe), HostError> {
    let wrong = |why: String| HostError::WrongLayout {
        path: path.into(),
        chosen,
        why,
        options: Layout::list(&Layout::ALL),
    };
    let extended = std::mem::size_of::<KcPluginInfo>() as u32;
    match chosen {
        Layout::Auto => {
            if let Some(p) = v2.filter(|p| p.abi == nylon::v2::ABI_VERSION || v1.is_none()) {
                return Ok((Some(Layout::Nylon02), check(p, nylon::v2::ABI_VERSION, path)?));
            }
            let Some(p) = v1 else {
                return Err(HostError::MissingSymbol {
                    path: path.into(),
                    symbol: ENTRY_SYMBOL,
                    layout: chosen,
                });
            };
            let p = check(p, NR_ABI_VERSION, path)?;
            if p.size >= extended {
                return Ok((Some(Layout::KcoroV1), p));
            }
            Ok((None, p))
        }
        Layout::Nylon02 => match (v2, v1) {
            (Some(p), _) => Ok((Some(chosen), check(p, nylon::v2::ABI_VERSION, path)?)),
            (None, Some(p)) => Err(wrong(format!(
                "the library exports only `{ENTRY_SYMBOL}` (ABI version {}), not `{}`",
                p.abi,
                nylon::v2::ENTRY_SYMBOL
            ))),
            (None, None) => Err(HostError::MissingSymbol {
                path: path.into(),
                symbol: nylon::v2::ENTRY_SYMBOL,
                layout: chosen,
            }),
        },
        _ => {
            let Some(p) = v1 else {
                return Err(match v2 {
                    Some(p) => wrong(format!(
                        "the library exports only `{}` (ABI version {}): it is nylon-0.2",
                        nylon::v2::ENTRY_SYMBOL,
                        p.abi
                    )),
                    None => {
                        HostError::MissingSymbol { path: path.into(), symbol: ENTRY_SYMBOL, layout: chosen }
                    }
                });
            };
            let p = check(p, NR_ABI_VERSION, path)?;
            if chosen != Layout::KcoroV1 && p.size >= extended {
                return Err(wrong(format!(
                    "its info is {} bytes with kcoro's extension table; only kcoro-v1 plugins grow the 56-byte info",
                    p.size
                )));
            }
            Ok((Some(chosen), p))
        }
    }
}

/// Step 2, for a plain version-1 plugin under `Auto`: the one layout its vtable fits.
fn detect_plain(image: &Image<'_>, base: &NrPluginInfo, path: &Path) -> Result<Layout, HostError> {
    let words = image.read_words(base.vtable as usize, detect::PROBE_WORDS);
    if words.is_empty() {
        return Err(HostError::AmbiguousLayout {
            path: path.into(),
            options: Layout::list(&Layout::PLAIN_V1),
            why: format!("its vtable lies outside {}'s mapped data, where nothing bounds it", image.name()),
        });
    }
    let seen = Seen { words: &words, plugin_ctx: !base.plugin_ctx.is_null() };
    match detect::judge(&seen, &|w| image.is_code(w)) {
        Verdict::One(layout) => Ok(layout),
        Verdict::Several(fits) => Err(HostError::AmbiguousLayout {
            path: path.into(),
            options: Layout::list(&fits),
            why: "its vtable fits more than one layout".into(),
        }),
        Verdict::None(misfits) => Err(HostError::NoLayoutFits {
            path: path.into(),
            why: misfits.iter().map(|(l, why)| format!("{l}: {why}")).collect::<Vec<_>>().join("; "),
        }),
    }
}

/// Step 3: the layout's vtable as words, exactly its slots. Inside the library's image the
/// table is read only as far as the mapped data goes; a table elsewhere (a plugin may
/// build it on the heap) is read as the layout declares it.
///
/// # Safety
/// `vtable` must be the non-null vtable pointer of the plugin's info.
unsafe fn vtable_words(
    image: &Image<'_>,
    layout: Layout,
    vtable: *const c_void,
    path: &Path,
    hint: &'static str,
) -> Result<Vec<usize>, HostError> {
    let n = layout.slots().len();
    let words = image.read_words(vtable as usize, n);
    if words.len() == n {
        return Ok(words);
    }
    if !words.is_empty() {
        return Err(HostError::TableOutsideImage {
            path: path.into(),
            layout,
            len: n * std::mem::size_of::<usize>(),
            image: image.name().into(),
            hint,
        });
    }
    Ok((0..n)
        .map(|i| {
            // SAFETY: the caller's contract: outside the image nothing bounds the table,
            // and the ABI makes the plugin's vtable pointer hold its layout's slots.
            unsafe { vtable.cast::<usize>().add(i).read_unaligned() }
        })
        .collect())
}

/// Step 4: refuses a function slot that is neither null nor the library's own code.
fn check_slot(
    image: &Image<'_>,
    table: impl FnOnce() -> String,
    slot: usize,
    name: &'static str,
    value: usize,
    path: &Path,
    hint: &'static str,
) -> Result<(), HostError> {
    if value == 0 || image.is_code(value) {
        return Ok(());
    }
    Err(HostError::BadSlot(Box::new(BadSlot {
        path: path.into(),
        table: table(),
        slot,
        name,
        value,
        image: image.name().into(),
        whereabouts: image.whereabouts(value),
        hint,
    })))
}

/// Step 3: reads the layout's vtable, exactly its declared slots.
///
/// # Safety
/// `vtable` must be the non-null vtable pointer of an info of `layout`, valid while the
/// library is mapped.
unsafe fn read_fns(layout: Layout, vtable: *const c_void) -> Fns {
    match layout {
        Layout::Auto | Layout::KcoroV1 => {
            // SAFETY: the caller's contract: a vtable of this layout, read to its end only.
            let vt = unsafe { *vtable.cast::<kcoro_abi::NrPluginVTable>() };
            Fns::WithCtx {
                init: vt.init,
                handle: vt.handle,
                handle_raw: None,
                handle_id: None,
                shutdown: vt.shutdown,
                stream_data: vt.stream_data,
                stream_close: vt.stream_close,
            }
        }
        Layout::Nylon6Slot => {
            // SAFETY: the caller's contract: a vtable of this layout, read to its end only.
            let vt = unsafe { *vtable.cast::<nylon::early::VTable6>() };
            Fns::WithCtx {
                init: vt.init,
                handle: vt.handle,
                handle_raw: vt.handle_raw,
                handle_id: None,
                shutdown: vt.shutdown,
                stream_data: vt.stream_data,
                stream_close: vt.stream_close,
            }
        }
        Layout::Nylon3Slot => {
            // SAFETY: the caller's contract: a vtable of this layout, read to its end only.
            let vt = unsafe { *vtable.cast::<nylon::early::VTable3>() };
            Fns::WithCtx {
                init: vt.init,
                handle: vt.handle,
                handle_raw: None,
                handle_id: None,
                shutdown: vt.shutdown,
                stream_data: None,
                stream_close: None,
            }
        }
        Layout::Nylon01 => {
            // SAFETY: the caller's contract: a vtable of this layout, read to its end only.
            let vt = unsafe { *vtable.cast::<nylon::v01::NyPluginVTable>() };
            Fns::NoCtx {
                init: vt.init.map(NyInit::V01),
                handle: vt.handle,
                shutdown: vt.shutdown,
                stream_data: vt.stream_data,
                stream_close: vt.stream_close,
                resolve_entry: None,
                handle_by_id: None,
            }
        }
        Layout::Nylon02 => {
            // SAFETY: the caller's contract: a vtable of this layout, read to its end only.
            let vt = unsafe { *vtable.cast::<nylon::v2::NyPluginVTable>() };
            // Both or neither, says ABI 2: one alone is not used.
            let by_id = vt.resolve_entry.zip(vt.handle_by_id);
            Fns::NoCtx {
                init: vt.init.map(NyInit::V2),
                handle: vt.handle,
                shutdown: vt.shutdown,
                stream_data: vt.stream_data,
                stream_close: vt.stream_close,
                resolve_entry: by_id.map(|b| b.0),
                handle_by_id: by_id.map(|b| b.1),
            }
        }
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

impl Opened {
    pub(crate) fn open(path: &Path, opts: LoadOptions) -> Result<Opened, HostError> {
        let err_path = || path.to_path_buf();
        let lib = Library::open(path).map_err(|reason| HostError::Open { path: err_path(), reason })?;
        let v2 = probe(&lib, nylon::v2::ENTRY_SYMBOL, path)?;
        let v1 = probe(&lib, ENTRY_SYMBOL, path)?;
        let (resolved, p) = resolve(v2, v1, opts.layout, path)?;
        // SAFETY: `check` saw at least the 56 bytes every layout's info has.
        let base = unsafe { *p.info };
        if base.vtable.is_null() {
            return Err(HostError::NullPointer { path: err_path(), what: "vtable" });
        }
        let image = lib.image().map_err(|reason| HostError::Open { path: err_path(), reason })?;
        let layout = match resolved {
            Some(layout) => layout,
            None => detect_plain(&image, &base, path)?,
        };
        // A named layout that does not fit is the likely cause; a declared one, the plugin.
        let hint = if opts.layout == Layout::Auto { "" } else { ": wrong --abi layout?" };
        // SAFETY: the info's non-null vtable pointer.
        let words = unsafe { vtable_words(&image, layout, base.vtable.cast(), path, hint)? };
        for (i, (&w, &name)) in words.iter().zip(layout.slots()).enumerate() {
            check_slot(&image, || format!("the {layout} vtable"), i, name, w, path, hint)?;
        }
        // SAFETY: `struct_size` covers the extended info (kcoro's layout only).
        let ext_ptr = (layout == Layout::KcoroV1 && p.size as usize >= std::mem::size_of::<KcPluginInfo>())
            .then(|| unsafe { (*p.info.cast::<KcPluginInfo>()).ext })
            .filter(|e| !e.is_null());
        // SAFETY: a non-null extension table holds at least its leading `u32`; `read_ext`
        // reads only as far as the table's own `struct_size` covers.
        let ext = ext_ptr.map(|e| unsafe { read_ext(e) });
        if let Some(e) = ext {
            let table = || "kcoro's extension table".to_owned();
            // Word 1 and word 4 of the table (`KcPluginExt`'s offsets 8 and 32).
            check_slot(&image, table, 1, "attach", e.attach.map_or(0, |f| f as usize), path, "")?;
            check_slot(&image, table, 4, "handle_id", e.handle_id.map_or(0, |f| f as usize), path, "")?;
        }
        // SAFETY: a non-null vtable of the resolved layout, valid while mapped, and checked
        // above to lie inside the mapped data when it is in the library's image.
        let fns = unsafe { read_fns(layout, base.vtable.cast()) };
        if !fns.has_handle() {
            return Err(HostError::NullPointer { path: err_path(), what: "handle function" });
        }
        // SAFETY: views from the info, valid while the library is mapped; every layout's
        // string view has kcoro's layout (nylon-ring names the padding `_reserved`).
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
            lib,
            live_key,
            layout,
            struct_size: p.size,
            plugin_ctx: base.plugin_ctx,
            fns,
            ext,
            name,
            version,
            entries,
            path: err_path(),
            opts,
        })
    }

    /// Step 4: `init` (and `attach`, when both sides speak kcoro's extensions).
    pub(crate) fn init(self) -> Result<Plugin, HostError> {
        let Opened {
            mut lib,
            live_key,
            layout,
            struct_size,
            plugin_ctx,
            mut fns,
            ext,
            name,
            version,
            entries,
            path,
            opts,
        } = self;
        {
            let mut live = live();
            if !live.get_or_insert_with(HashSet::new).insert(live_key) {
                return Err(HostError::AlreadyLoaded { path });
            }
        }
        // From `init` on, plugin threads may run the library's code at any time.
        if opts.keep_mapped {
            lib.keep_mapped();
        }
        let gate = Gate::leak(callbacks::nylon::HOST_EXT, &callbacks::kcoro::EARLY_HOST_EXT);
        let ctx = Box::new(HostCtx::new(gate, layout.codes(), Arc::new(lib), !opts.keep_mapped));
        gate.open(&ctx);
        let host_ctx = gate.as_raw();
        // SAFETY (every `init` below): the layout's `init`, with a `host_ctx` that is never
        // freed and a `static` host vtable.
        // On the worker's stack when loaded from a coroutine: init may do anything.
        let status = kcoro::coro::on_worker_stack(|| match fns {
            Fns::WithCtx { init: Some(init), .. } => {
                // SAFETY: see above.
                let raw = unsafe { init(plugin_ctx, host_ctx, &callbacks::kcoro::HOST_VTABLE) };
                ctx.codes.decode(raw.0)
            }
            Fns::NoCtx { init: Some(NyInit::V01(init)), .. } => {
                // SAFETY: see above.
                unsafe { init(host_ctx, &callbacks::nylon::HOST_VTABLE_V01) }.to_kcoro()
            }
            Fns::NoCtx { init: Some(NyInit::V2(init)), .. } => {
                // SAFETY: see above.
                unsafe { init(host_ctx, &callbacks::nylon::HOST_VTABLE_V2) }.to_kcoro()
            }
            _ => kcoro_abi::NrStatus::Ok,
        });
        if status != kcoro_abi::NrStatus::Ok {
            gate.retire();
            forget_live(live_key);
            return Err(HostError::InitFailed { path, status });
        }
        let mut attached = false;
        if let Some(attach) = ext.and_then(|e| e.attach) {
            // SAFETY: the extension's `attach`, with the same `host_ctx` and a `static` api.
            attached = unsafe { attach(plugin_ctx, host_ctx, &callbacks::kcoro::HOST_API) }
                == kcoro_abi::NrStatus::Ok;
        }
        if let (true, Fns::WithCtx { handle_id, .. }) = (attached, &mut fns) {
            *handle_id = ext.and_then(|e| e.handle_id);
        }
        let caps = fns.capabilities(layout, attached, !entries.is_empty());
        Ok(Plugin(Arc::new(Loaded {
            name,
            version,
            path,
            layout,
            struct_size,
            plugin_ctx,
            fns,
            entries,
            attached,
            caps,
            ctx,
            stream_capacity: opts.stream_capacity.max(1),
            closing: AtomicBool::new(false),
            down: AtomicBool::new(false),
            live_key,
        })))
    }
}

impl Fns {
    fn has_handle(&self) -> bool {
        match self {
            Fns::WithCtx { handle, .. } => handle.is_some(),
            Fns::NoCtx { handle, .. } => handle.is_some(),
        }
    }

    /// What the plugin can do: its layout's features, less the slots it left null.
    fn capabilities(&self, layout: Layout, attached: bool, listed: bool) -> Capabilities {
        match *self {
            Fns::WithCtx { handle_raw, handle_id, stream_data, stream_close, .. } => Capabilities {
                request_metadata: true,
                raw_entry: handle_raw.is_some(),
                bidirectional: stream_data.is_some(),
                stream_close: stream_close.is_some(),
                entry_ids: listed && handle_id.is_some(),
                entry_list: listed,
                // The early layouts reach it where their nylon-ring-host kept it.
                state: attached || layout != Layout::KcoroV1,
                owned_replies: attached,
                backpressure: attached,
                ..Capabilities::default()
            },
            Fns::NoCtx { stream_data, stream_close, handle_by_id, .. } => Capabilities {
                bidirectional: stream_data.is_some(),
                stream_close: stream_close.is_some(),
                entry_ids: handle_by_id.is_some(),
                // nylon-ring-host's place for its state table, which every gate fills.
                state: true,
                owned_replies: true,
                buffer_leases: layout == Layout::Nylon02,
                backpressure: true,
                panic_status: true,
                ..Capabilities::default()
            },
        }
    }
}
