//! The region table: export id → region, so a descriptor's `(region_id, offset, len)`
//! resolves to memory of this process, bounds checked.
//!
//! # Invariants
//! - An entry names a live region or a dead one (`Weak` fails to upgrade); an entry is
//!   removed by deregistration or by the region's drop, and only if it still names that
//!   region (`id` matches), so a newer region under the same export id is never dropped by
//!   an older one's destructor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock, Weak};

use super::ZError;
use super::desc::ZDesc;
use super::region::RegionInner;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// export id → (region id, region).
type Entries = HashMap<u64, (u64, Weak<RegionInner>)>;

static TABLE: RwLock<Option<Entries>> = RwLock::new(None);

/// A fresh process-wide region id.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Relaxed)
}

/// The export id of a region made here: `pid << 32 | id`, unique among the processes of
/// one host while this one lives.
pub(crate) fn local_export_id(id: u64) -> u64 {
    (u64::from(std::process::id()) << 32) | (id & 0xffff_ffff)
}

pub(crate) fn insert(region: &Arc<RegionInner>) -> Result<(), ZError> {
    let mut t = TABLE.write().unwrap_or_else(|e| e.into_inner());
    let map = t.get_or_insert_with(HashMap::new);
    if let Some((_, old)) = map.get(&region.export_id)
        && old.strong_count() > 0
    {
        return Err(ZError::AlreadyRegistered(region.export_id));
    }
    map.insert(region.export_id, (region.id, Arc::downgrade(region)));
    Ok(())
}

pub(crate) fn forget(export_id: u64, id: u64) {
    let mut t = TABLE.write().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = t.as_mut()
        && map.get(&export_id).is_some_and(|(i, _)| *i == id)
    {
        map.remove(&export_id);
    }
}

/// The live region registered under `export_id`.
pub(crate) fn lookup(export_id: u64) -> Result<Arc<RegionInner>, ZError> {
    let t = TABLE.read().unwrap_or_else(|e| e.into_inner());
    t.as_ref()
        .and_then(|m| m.get(&export_id))
        .and_then(|(_, w)| w.upgrade())
        .ok_or(ZError::UnknownRegion(export_id))
}

/// Regions registered now (for leak checks and the monitor).
pub fn regions() -> usize {
    let t = TABLE.read().unwrap_or_else(|e| e.into_inner());
    t.as_ref().map_or(0, |m| m.values().filter(|(_, w)| w.strong_count() > 0).count())
}

/// A resolved descriptor: a read-only view of its span, counted as a lease of its region
/// while it lives (so the region cannot be deregistered under it).
pub struct ZView {
    region: Arc<RegionInner>,
    offset: usize,
    len: usize,
}

impl ZView {
    /// The span's first byte.
    pub fn as_ptr(&self) -> *const u8 {
        // SAFETY: `offset + len <= region.len` was checked by `resolve`.
        unsafe { self.region.base.add(self.offset) }
    }

    /// Export id of the region the span lies in.
    pub fn region_id(&self) -> u64 {
        self.region.export_id
    }
}

impl std::ops::Deref for ZView {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the span lies inside the mapping (checked by `resolve`), which stays
        // mapped while this view holds its Arc. Writers are excluded by the lease protocol
        // the descriptor's sender follows: it handed the span over with the descriptor.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }
}

impl Drop for ZView {
    fn drop(&mut self) {
        // SAFETY: this view's lease ends here; `self.region` keeps the region alive.
        unsafe { super::region::end_lease(Arc::as_ptr(&self.region)) };
    }
}

impl std::fmt::Debug for ZView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZView")
            .field("region_id", &format_args!("{:#x}", self.region.export_id))
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

/// Resolves a region descriptor to its bytes: the region must be registered here (made
/// here or imported) and the span must lie inside it. A bare-pointer descriptor
/// (`region_id == 0`) cannot be checked and is refused ([`ZError::NotARegion`]).
pub fn resolve(desc: &ZDesc) -> Result<ZView, ZError> {
    desc.validate()?;
    if !desc.is_region() {
        return Err(ZError::NotARegion);
    }
    view_of(lookup(desc.region_id)?, desc.offset, desc.len)
}

/// A view of `[offset, offset + len)` of `region`, bounds checked, counted as a lease.
pub(crate) fn view_of(region: Arc<RegionInner>, offset: u64, len: usize) -> Result<ZView, ZError> {
    if !region.contains(offset, len) {
        return Err(ZError::OutOfBounds { offset, len, region_len: region.len });
    }
    region.acquire_lease()?;
    Ok(ZView { offset: offset as usize, len, region })
}
