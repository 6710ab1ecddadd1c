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

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Mutex, OnceLock};

use kcoro::zcopy::{self, Access, Region, ZBuf, ZDesc, ZError};

use crate::Element;
use crate::element::DecodeError;
use crate::proto::{Attr, FrameBuf, FrameRef, ProtoError};

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
    shared: AtomicBool,
}

impl ShmTx {
    pub(crate) fn new(cfg: ShmConfig) -> ShmTx {
        ShmTx { cfg, region: OnceLock::new(), shared: AtomicBool::new(false) }
    }

    /// A lease for an element of `len` bytes, if it should and can go through the region.
    /// The second value is the region's fd to share first (once per connection).
    pub(crate) fn lease(&self, len: usize) -> Option<(ZBuf, Option<(u64, OwnedFd)>)> {
        if len < self.cfg.threshold {
            return None;
        }
        let region = self.region.get_or_init(|| Region::anonymous(self.cfg.region_len).ok()).as_ref()?;
        let buf = region.alloc(len).ok()?;
        let share = if self.shared.swap(true, AcqRel) {
            None
        } else {
            Some((region.export_id(), region.fd()?.try_clone_to_owned().ok()?))
        };
        Some((buf, share))
    }
}

/// Regions this side imported from its peer; unmapped when the connection goes (and the
/// last view of them is dropped).
#[derive(Default)]
pub(crate) struct ShmRx {
    regions: Mutex<Vec<Region>>,
}

impl ShmRx {
    /// Maps the peer's region (REGION_SHARE). The same process on both ends already has it.
    pub(crate) fn import(&self, fd: OwnedFd, export_id: u64) -> Result<(), ZError> {
        match Region::import(fd, Access::ReadOnly, export_id) {
            Ok(r) => {
                self.regions.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                Ok(())
            }
            Err(ZError::AlreadyRegistered(_)) => Ok(()),
            Err(e) => Err(e),
        }
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
            let mut z = [0u8; 24];
            z[..8].copy_from_slice(&d.region_id.to_be_bytes());
            z[8..16].copy_from_slice(&d.offset.to_be_bytes());
            z[16..].copy_from_slice(&(len as u64).to_be_bytes());
            f.bytes(Attr::ZDESC, &z);
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

/// Finds the element of a frame.
pub(crate) fn locate<'a>(f: &FrameRef<'a>) -> Result<Located<'a>, ProtoError> {
    if let Some(v) = f.get(Attr::ELEMENT) {
        return Ok(Located::Inline(v));
    }
    let z = f.need(Attr::ZDESC)?;
    let z: &[u8; 24] = z.try_into().map_err(|_| ProtoError::BadValue(Attr::ZDESC.0))?;
    let n = |i: usize| u64::from_be_bytes(z[i..i + 8].try_into().unwrap_or([0; 8]));
    let len = usize::try_from(n(16)).map_err(|_| ProtoError::BadValue(Attr::ZDESC.0))?;
    Ok(Located::Shared(ZDesc::in_region(n(0), n(8), len)))
}

/// Decodes the element a frame carries, inline or from the peer's region (bounds checked).
/// With a `release`, a shared element is decoded by [`Element::decode_shared`], which may
/// keep the view (and so the peer's span) until the value is dropped; `release` runs then.
/// Without one, the element is copied out and the span is free when this returns.
pub(crate) fn decode_element<T: Element>(
    at: &Located<'_>,
    release: Option<Release>,
) -> Result<T, DecodeError> {
    match at {
        Located::Inline(b) => T::decode(b),
        Located::Shared(d) => {
            let view = zcopy::resolve(d).map_err(|e| DecodeError(format!("shared element: {e}")))?;
            match release {
                Some(release) => T::decode_shared(SharedView { view, _release: release }),
                None => T::decode(&view),
            }
        }
    }
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
    view: zcopy::ZView,
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

/// Encodes a `ZDESC` value (for REGION_RELEASE).
pub(crate) fn zdesc_bytes(d: &ZDesc) -> [u8; 24] {
    let mut z = [0u8; 24];
    z[..8].copy_from_slice(&d.region_id.to_be_bytes());
    z[8..16].copy_from_slice(&d.offset.to_be_bytes());
    z[16..].copy_from_slice(&(d.len as u64).to_be_bytes());
    z
}
