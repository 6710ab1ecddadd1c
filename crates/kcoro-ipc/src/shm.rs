//! Large elements through shared memory (Unix sockets only).
//!
//! An element whose encoding is at least `threshold` bytes is written into a lease of the
//! sender's own region and travels as a `ZDESC` attribute instead of `ELEMENT`. Before the
//! first such frame, the sender passes the region's memfd with `REGION_SHARE` (the fd rides
//! with that frame, `SCM_RIGHTS`); the receiver maps it read-only under the sender's export
//! id. The receiver decodes straight from the mapping, then tells the sender it is done:
//! the reply to the request for a `CHAN_SEND`, a `REGION_RELEASE` for an element in a
//! reply. The sender keeps the lease until then, so the bytes never change under a reader.
//! If the region is full, the element goes inline.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};

use kcoro::buf::{SMALL_MAX, small_copy};
use kcoro::zcopy::{Access, Region, ZBuf, ZDesc, ZError, ZView};

use crate::Element;
use crate::element::DecodeError;
use crate::proto::{Attr, FrameBuf, FrameRef, ProtoError, zdesc};

/// Shared-memory settings of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShmConfig {
    /// Elements of at least this many encoded bytes go through the region.
    pub(crate) threshold: usize,
    /// Size of each side's region.
    pub(crate) region_len: usize,
}

impl Default for ShmConfig {
    fn default() -> Self {
        ShmConfig { threshold: 64 << 10, region_len: 256 << 20 }
    }
}

/// One side's half: the region it sends from, made on first use.
pub(crate) struct ShmTx {
    cfg: ShmConfig,
    region: OnceLock<Option<Region>>,
    /// Set once the region's fd is queued to the peer (`REGION_SHARE`).
    shared: AtomicBool,
    /// Held while the first lease queues the fd, so no other lease returns before it is.
    sharing: Mutex<()>,
}

impl ShmTx {
    pub(crate) fn new(cfg: ShmConfig) -> ShmTx {
        ShmTx { cfg, region: OnceLock::new(), shared: AtomicBool::new(false), sharing: Mutex::new(()) }
    }

    /// A lease for an element of `len` bytes, if it should and can go through the region.
    /// The first one calls `share` with the region's export id and fd, which must queue
    /// them to the peer: every lease returns only after that, so a frame naming the
    /// region can never be queued before the fd that maps it (two first sends at once
    /// used to race, and the peer refused the one that overtook the fd).
    pub(crate) fn lease(&self, len: usize, share: impl FnOnce(u64, OwnedFd)) -> Option<ZBuf> {
        if len < self.cfg.threshold {
            return None;
        }
        let region = self.region.get_or_init(|| Region::anonymous(self.cfg.region_len).ok()).as_ref()?;
        // Acquire: pairs with the Release below, after the fd was queued.
        if !self.shared.load(Acquire) {
            let _sharing = self.sharing.lock().unwrap_or_else(|e| e.into_inner());
            if !self.shared.load(Acquire) {
                share(region.export_id(), region.fd()?.try_clone_to_owned().ok()?);
                self.shared.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        region.alloc(len).ok()
    }
}

/// Regions this side imported from its peer on one connection, by the peer's export id;
/// unmapped when the connection goes (and the last view of them is dropped).
///
/// They are mapped privately ([`Region::import_private`]): a descriptor from this peer
/// resolves only in a region this peer shared on this connection, never in another
/// connection's or in one of this process's own, whatever id it names.
pub(crate) struct ShmRx {
    regions: Mutex<HashMap<u64, Region>>,
    limits: ShmLimits,
    /// Bytes mapped by every connection of the server together (shared by their ShmRx).
    total: Arc<AtomicUsize>,
}

/// How much a peer may make us map.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShmLimits {
    /// Regions per connection.
    pub(crate) regions: usize,
    /// Bytes mapped per connection.
    pub(crate) bytes: usize,
    /// Bytes mapped by all connections together.
    pub(crate) total_bytes: usize,
}

/// Why a `REGION_SHARE` was refused, with the errno its reply carries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    #[error("region id {0:#x} is already shared on this connection")]
    Duplicate(u64),
    #[error("this connection has shared {0} regions, the limit")]
    TooMany(usize),
    #[error("a region of {len} bytes would take this connection past its {max} mapped bytes")]
    TooLarge { len: usize, max: usize },
    #[error("the server maps {0} bytes of shared regions, its limit")]
    ServerFull(usize),
    #[error("{0}")]
    Zcopy(#[from] ZError),
}

impl ImportError {
    pub(crate) fn code(&self) -> i32 {
        match self {
            ImportError::Duplicate(_) => -libc::EEXIST,
            ImportError::TooMany(_) => -libc::EMFILE,
            ImportError::TooLarge { .. } => -libc::EFBIG,
            ImportError::ServerFull(_) => -libc::ENOMEM,
            ImportError::Zcopy(e) => e.code(),
        }
    }
}

impl ShmLimits {
    /// The limits of `l`, for a server's connections.
    pub(crate) fn of(l: &crate::proto::Limits) -> ShmLimits {
        let bytes = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
        ShmLimits {
            regions: l.max_regions,
            bytes: bytes(l.max_region_bytes),
            total_bytes: bytes(l.max_server_region_bytes),
        }
    }
}

impl ShmRx {
    /// What a client maps of its server's (the server shares one region per connection),
    /// within the client's own `limits`.
    pub(crate) fn for_client(limits: &crate::proto::Limits) -> ShmRx {
        ShmRx::new(ShmLimits::of(limits), Arc::new(AtomicUsize::new(0)))
    }

    pub(crate) fn new(limits: ShmLimits, total: Arc<AtomicUsize>) -> ShmRx {
        ShmRx { regions: Mutex::new(HashMap::new()), limits, total }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Region>> {
        self.regions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes mapped for this connection.
    fn mapped(regions: &HashMap<u64, Region>) -> usize {
        regions.values().map(Region::len).sum()
    }

    /// Maps the peer's region (REGION_SHARE) under its `export_id`, within the limits,
    /// checked before anything is mapped. The fd is closed whatever happens.
    pub(crate) fn import(&self, fd: OwnedFd, export_id: u64) -> Result<(), ImportError> {
        let mut regions = self.lock();
        if regions.contains_key(&export_id) {
            return Err(ImportError::Duplicate(export_id));
        }
        if regions.len() >= self.limits.regions {
            return Err(ImportError::TooMany(regions.len()));
        }
        let room = self.limits.bytes.saturating_sub(Self::mapped(&regions));
        let file = std::fs::File::from(fd);
        let len = file.metadata().map_err(ZError::Io)?.len();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > room {
            return Err(ImportError::TooLarge { len, max: self.limits.bytes });
        }
        // Counted before mapping, so that connections mapping at once cannot pass it.
        let before = self.total.fetch_add(len, AcqRel);
        if before.saturating_add(len) > self.limits.total_bytes {
            self.total.fetch_sub(len, AcqRel);
            return Err(ImportError::ServerFull(before));
        }
        match Region::import_private(OwnedFd::from(file), Access::ReadOnly, export_id, len) {
            Ok(r) => {
                // What was mapped (the fd's size may have grown since we looked: count
                // what the mapping holds).
                let extra = r.len().saturating_sub(len);
                self.total.fetch_add(extra, AcqRel);
                regions.insert(export_id, r);
                Ok(())
            }
            Err(e) => {
                self.total.fetch_sub(len, AcqRel);
                Err(e.into())
            }
        }
    }

    /// The span `d` names, in a region this peer shared on this connection (bounds
    /// checked; a view holds a lease of the region while it lives). Any failure reads the
    /// same, so a peer learns nothing about ids that are not its own.
    pub(crate) fn resolve(&self, d: &ZDesc) -> Result<ZView, DecodeError> {
        let unknown = || DecodeError("shared element: no such span shared on this connection".into());
        let region = self.lock().get(&d.region_id).cloned().ok_or_else(unknown)?;
        region.view(d.offset, d.len).map_err(|_| unknown())
    }
}

impl Drop for ShmRx {
    fn drop(&mut self) {
        let mapped = Self::mapped(&self.lock());
        self.total.fetch_sub(mapped, AcqRel);
    }
}

/// Appends `v` as `ELEMENT`, or as `ZDESC` when `lease` is given (the element is encoded
/// into the lease).
pub(crate) fn put_element<T: Element>(f: &mut FrameBuf<'_>, v: &T, lease: Option<&mut ZBuf>) {
    let len = v.encoded_len();
    match lease {
        Some(buf) => {
            buf.set_len(len.max(1))
                .unwrap_or_else(|_| unreachable!("put_element: the lease was made for {len} bytes"));
            v.encode_into(&mut buf[..len]);
            let d = buf.desc();
            f.bytes(Attr::ZDESC, &zdesc::encode(&ZDesc::in_region(d.region_id, d.offset, len)));
        }
        None => {
            f.header(Attr::ELEMENT, len);
            let out = f.out();
            let at = out.len();
            out.resize(at + len, 0);
            v.encode_into(&mut out[at..]);
        }
    }
}

/// Where a frame's element is.
pub(crate) enum Located<'a> {
    Inline(&'a [u8]),
    Shared(ZDesc),
}

impl Located<'_> {
    /// The element's encoded length, wherever it is.
    pub(crate) fn len(&self) -> usize {
        match self {
            Located::Inline(b) => b.len(),
            Located::Shared(d) => d.len,
        }
    }
}

/// Finds the element of a frame.
pub(crate) fn locate<'a>(f: &FrameRef<'a>) -> Result<Located<'a>, ProtoError> {
    match f.get(Attr::ELEMENT) {
        Some(v) => Ok(Located::Inline(v)),
        None => locate_in(None, f.get(Attr::ZDESC)),
    }
}

/// The element, from a frame's `ELEMENT` and `ZDESC` values (found by a caller that reads
/// them in one pass with others): inline if there is one, else the shared span `ZDESC` names.
pub(crate) fn locate_in<'a>(
    element: Option<&'a [u8]>,
    zdesc: Option<&[u8]>,
) -> Result<Located<'a>, ProtoError> {
    match (element, zdesc) {
        (Some(v), _) => Ok(Located::Inline(v)),
        (None, Some(z)) => Ok(Located::Shared(zdesc::decode(z)?)),
        (None, None) => Err(ProtoError::Missing(Attr::ZDESC.0)),
    }
}

/// Decodes the element a frame carries, inline or from a region the peer shared on this
/// connection (`rx`; bounds checked).
/// An inline element inside `frame` (the frame's own buffer, when it has one of its own)
/// is decoded by [`Element::decode_view`] from a view of it, which may keep the view
/// instead of copying; otherwise it is copied out (a small one, for a type that keeps
/// views, into a block shared with other small elements: `kcoro::buf::small_copy`).
/// With a `release`, a shared element is decoded by [`Element::decode_shared`], which may
/// keep the view (and so the peer's span) until the value is dropped; `release` runs then.
/// Without one, the element is copied out and the span is free when this returns.
pub(crate) fn decode_element<T: Element>(
    at: &Located<'_>,
    frame: Option<&bytes::Bytes>,
    release: Option<Release>,
    rx: &ShmRx,
) -> Result<T, DecodeError> {
    match at {
        Located::Inline(b) => match frame.and_then(|f| view_in(f, b)) {
            Some(view) => T::decode_view(view),
            None if T::KEEPS_VIEWS && b.len() <= SMALL_MAX => T::decode_view(small_copy(b)),
            None => T::decode(b),
        },
        Located::Shared(d) => {
            let view = rx.resolve(d)?;
            match release {
                Some(release) => T::decode_shared(SharedView { view, _release: release }),
                None => T::decode(&view),
            }
        }
    }
}

/// `part` as a view of `whole`'s memory, if it lies inside it.
fn view_in(whole: &bytes::Bytes, part: &[u8]) -> Option<bytes::Bytes> {
    let (start, at) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    let inside = at >= start && at + part.len() <= start + whole.len();
    inside.then(|| whole.slice_ref(part))
}

/// Tells the peer its span is free (a `REGION_RELEASE`), when dropped.
pub(crate) struct Release(Option<Box<dyn FnOnce() + Send>>);

impl Release {
    pub(crate) fn new(f: impl FnOnce() + Send + 'static) -> Release {
        Release(Some(Box::new(f)))
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A shared element in the peer's region, read in place: an [`Element`] may keep it
/// (`bytes::Bytes` does) instead of copying it out. The peer may reuse the span only once
/// this is dropped.
pub struct SharedView {
    // Dropped first: our hold on the mapping, then the message that frees the span.
    view: ZView,
    _release: Release,
}

impl std::ops::Deref for SharedView {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.view
    }
}

impl AsRef<[u8]> for SharedView {
    fn as_ref(&self) -> &[u8] {
        &self.view
    }
}

impl std::fmt::Debug for SharedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedView").field("view", &self.view).finish()
    }
}
