//! Zero-copy backends: what moves a zero-copy channel's descriptors, and the registry where
//! out-of-tree adapters plug theirs in by name.
//!
//! A backend stores descriptors; the channel does everything else. kcoro calls a backend
//! only under the channel's lock and only with "try" semantics: [`ZBackend::try_send`]
//! accepts a descriptor or says it is full, [`ZBackend::try_recv`] hands one out or says it
//! is empty. Waiting (timeouts, cancel tokens, close, parking coroutines and threads, waking
//! the other side) stays in the channel, so every backend gets the channel's waiting rules
//! for free and none can spin. This is the seed's contract (attach O(1) and idempotent;
//! detach only after close or drain; never free or reallocate user memory; ownership stays
//! with the producer until success) with the waiting moved to one place.
//!
//! The built-in **zref** backend ([`ZREF`]) is the channel itself: its descriptors wait in
//! the channel's own buffer, so it serves all four kinds.
//!
//! A backend written in C registers a `kc_zcopy_backend_ops_t` table
//! ([`KcZcopyBackendOps`], [`register_c`]); kcoro calls its `send`/`recv` with
//! `tmo_ms = 0` and treats any non-zero return as "not now".
//!
//! # Invariants
//! - Ids are indices into `REGISTRY`, never reused; `ZREF` is id 0, named `"zref"`.
//! - A channel bound to a backend has attached exactly once, and detaches once, when the
//!   channel is dropped, after its descriptors were drained back out.

use std::ffi::{c_int, c_long, c_void};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use super::ZError;
use super::desc::ZDesc;

/// Channel capability: moves descriptors, not payload copies (`KC_CHAN_CAP_ZERO_COPY`).
pub const CAP_ZERO_COPY: u32 = 1 << 0;
/// Channel capability: elements are pointer descriptors (`KC_CHAN_CAP_PTR`).
pub const CAP_PTR: u32 = 1 << 1;

/// A registered backend (`kc_zcopy_backend_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub(crate) i32);

impl BackendId {
    /// The id the C API passes as a number; whether it names a backend is checked when a
    /// channel binds to it.
    pub fn from_raw(id: i32) -> BackendId {
        BackendId(id)
    }

    /// The number the C API uses.
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

/// The built-in backend: descriptors wait in the channel's own buffer (all kinds).
pub const ZREF: BackendId = BackendId(0);

/// Identifies one channel to its backend; passed to C backends as the `kc_chan_t *`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChanKey(u64);

impl ChanKey {
    pub(crate) fn fresh() -> ChanKey {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ChanKey(NEXT.fetch_add(1, Relaxed))
    }

    /// The key as the opaque pointer a C backend receives.
    pub fn as_ptr(self) -> *mut c_void {
        self.0 as usize as *mut c_void
    }
}

/// Per-channel options handed to [`ZBackend::attach`] (`const void *opts` in C).
#[derive(Debug, Clone, Copy)]
pub struct AttachOpts(pub *const c_void);

// SAFETY: an opaque token passed through to the backend; kcoro never dereferences it.
unsafe impl Send for AttachOpts {}

/// A store of descriptors behind zero-copy channels. Called under the channel's lock:
/// keep every method short, and never block or call back into the channel.
pub trait ZBackend: Send + Sync + 'static {
    /// Sets up per-channel state. O(1); called once per channel before any other call.
    fn attach(&self, chan: ChanKey, opts: AttachOpts) -> Result<(), ZError>;
    /// Tears it down; the channel is dropped and its descriptors were taken out first.
    fn detach(&self, chan: ChanKey);
    /// Stores `desc` if there is room; `false` means full (the channel parks the sender,
    /// which keeps ownership).
    fn try_send(&self, chan: ChanKey, desc: &ZDesc) -> bool;
    /// The oldest stored descriptor, or `None` when empty.
    fn try_recv(&self, chan: ChanKey) -> Option<ZDesc>;
    /// How many descriptors the channel can hold, if bounded (shown in snapshots).
    fn capacity(&self, _chan: ChanKey) -> Option<usize> {
        None
    }
}

struct Entry {
    name: Box<str>,
    /// `None` for zref, which is the channel itself.
    backend: Option<Arc<dyn ZBackend>>,
    caps: u32,
}

static REGISTRY: RwLock<Vec<Entry>> = RwLock::new(Vec::new());

fn with_registry<R>(f: impl FnOnce(&mut Vec<Entry>) -> R) -> R {
    let mut r = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    if r.is_empty() {
        r.push(Entry { name: "zref".into(), backend: None, caps: CAP_ZERO_COPY });
    }
    f(&mut r)
}

/// Registers `backend` under `name` (unique) with capability bits `caps` (reported by the
/// channels it serves, with [`CAP_ZERO_COPY`] always set).
pub fn register(name: &str, backend: Arc<dyn ZBackend>, caps: u32) -> Result<BackendId, ZError> {
    if name.is_empty() {
        return Err(ZError::BadName);
    }
    with_registry(|r| {
        if r.iter().any(|e| &*e.name == name) {
            return Err(ZError::NameTaken(name.to_string()));
        }
        let id = i32::try_from(r.len()).map_err(|_| ZError::BadName)?;
        r.push(Entry { name: name.into(), backend: Some(backend), caps: caps | CAP_ZERO_COPY });
        Ok(BackendId(id))
    })
}

/// The backend registered under `name` (`"zref"` is always there).
pub fn resolve(name: &str) -> Option<BackendId> {
    with_registry(|r| {
        r.iter().position(|e| &*e.name == name).and_then(|i| i32::try_from(i).ok()).map(BackendId)
    })
}

/// Name of a registered backend.
pub fn name(id: BackendId) -> Option<String> {
    with_registry(|r| usize::try_from(id.0).ok().and_then(|i| r.get(i)).map(|e| e.name.to_string()))
}

/// What a channel binds to: `None` for zref.
pub(crate) fn lookup(id: BackendId) -> Result<(Option<Arc<dyn ZBackend>>, u32), ZError> {
    with_registry(|r| {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| r.get(i))
            .map(|e| (e.backend.clone(), e.caps))
            .ok_or(ZError::UnknownBackend(id.0))
    })
}

/// `kc_zcopy_backend_ops_t`: a backend as a table of C function pointers. `kc_chan_t *`
/// arguments are the channel's [`ChanKey`]; `kc_cancel_t *` arguments are always null
/// (kcoro waits and cancels itself), and `tmo_ms` is always 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct KcZcopyBackendOps {
    /// `int (*attach)(kc_chan_t *, const void *opts)`: 0 or a negative code.
    pub attach: Option<unsafe extern "C" fn(*mut c_void, *const c_void) -> c_int>,
    /// `void (*detach)(kc_chan_t *)`.
    pub detach: Option<unsafe extern "C" fn(*mut c_void)>,
    /// `int (*send)(kc_chan_t *, const kc_zdesc_t *, long tmo_ms)`: 0 if stored.
    pub send: Option<unsafe extern "C" fn(*mut c_void, *const ZDesc, c_long) -> c_int>,
    /// `int (*recv)(kc_chan_t *, kc_zdesc_t *, long tmo_ms)`: 0 if one was written.
    pub recv: Option<unsafe extern "C" fn(*mut c_void, *mut ZDesc, c_long) -> c_int>,
    /// `send` with a cancel token; unused by kcoro (see the type's doc).
    pub send_c: Option<unsafe extern "C" fn(*mut c_void, *const ZDesc, c_long, *const c_void) -> c_int>,
    /// `recv` with a cancel token; unused by kcoro.
    pub recv_c: Option<unsafe extern "C" fn(*mut c_void, *mut ZDesc, c_long, *const c_void) -> c_int>,
}

/// A C backend: the ops table, copied at registration.
struct CBackend {
    ops: KcZcopyBackendOps,
}

impl ZBackend for CBackend {
    fn attach(&self, chan: ChanKey, opts: AttachOpts) -> Result<(), ZError> {
        let Some(f) = self.ops.attach else { return Ok(()) };
        // SAFETY: `register_c`'s contract: the function is valid for the process's life.
        match unsafe { f(chan.as_ptr(), opts.0) } {
            0 => Ok(()),
            rc => Err(ZError::Backend(rc)),
        }
    }

    fn detach(&self, chan: ChanKey) {
        if let Some(f) = self.ops.detach {
            // SAFETY: as above.
            unsafe { f(chan.as_ptr()) }
        }
    }

    fn try_send(&self, chan: ChanKey, desc: &ZDesc) -> bool {
        // SAFETY: as above; `desc` is a valid descriptor for the duration of the call.
        self.ops.send.is_some_and(|f| unsafe { f(chan.as_ptr(), desc, 0) } == 0)
    }

    fn try_recv(&self, chan: ChanKey) -> Option<ZDesc> {
        let f = self.ops.recv?;
        let mut d = ZDesc::from_ptr(std::ptr::null_mut(), 0);
        // SAFETY: as above; `d` is writable for the call.
        (unsafe { f(chan.as_ptr(), &mut d, 0) } == 0).then_some(d)
    }
}

/// Registers a backend given as a C ops table (`kc_zcopy_register`). The table is copied;
/// `send` and `recv` are required.
///
/// # Safety
/// Every function pointer in `ops` must stay callable for the rest of the process (a
/// library providing them must never be unloaded), follow the C signatures above, be safe
/// to call from any thread, and not unwind.
pub unsafe fn register_c(name: &str, ops: &KcZcopyBackendOps, caps: u32) -> Result<BackendId, ZError> {
    if ops.send.is_none() || ops.recv.is_none() {
        return Err(ZError::IncompleteOps);
    }
    register(name, Arc::new(CBackend { ops: *ops }), caps)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn ops_table_is_six_pointers() {
        assert_eq!(size_of::<KcZcopyBackendOps>(), 48);
        assert_eq!(offset_of!(KcZcopyBackendOps, recv_c), 40);
    }

    #[test]
    fn zref_is_built_in_and_names_are_unique() {
        assert_eq!(resolve("zref"), Some(ZREF));
        assert_eq!(name(ZREF).as_deref(), Some("zref"));
        assert!(matches!(register("zref", Arc::new(Null), 0), Err(ZError::NameTaken(_))));
        assert!(matches!(register("", Arc::new(Null), 0), Err(ZError::BadName)));
        let id = register("backend-tests-null", Arc::new(Null), CAP_PTR).unwrap();
        assert_eq!(resolve("backend-tests-null"), Some(id));
        assert_eq!(lookup(id).unwrap().1, CAP_PTR | CAP_ZERO_COPY);
        assert!(matches!(lookup(BackendId(9999)), Err(ZError::UnknownBackend(9999))));
        assert!(resolve("no-such-backend").is_none());
    }

    #[test]
    fn c_ops_need_send_and_recv() {
        let ops = KcZcopyBackendOps {
            attach: None,
            detach: None,
            send: None,
            recv: None,
            send_c: None,
            recv_c: None,
        };
        // SAFETY: no function pointers to call.
        assert!(matches!(unsafe { register_c("incomplete", &ops, 0) }, Err(ZError::IncompleteOps)));
    }

    struct Null;
    impl ZBackend for Null {
        fn attach(&self, _: ChanKey, _: AttachOpts) -> Result<(), ZError> {
            Ok(())
        }
        fn detach(&self, _: ChanKey) {}
        fn try_send(&self, _: ChanKey, _: &ZDesc) -> bool {
            false
        }
        fn try_recv(&self, _: ChanKey) -> Option<ZDesc> {
            None
        }
    }
}
