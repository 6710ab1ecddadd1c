//! `ZBuf`: an owned lease of a span of a region.
//!
//! Moving a `ZBuf` moves a descriptor-sized value (a region pointer, an offset, two
//! lengths); dropping it, on any thread, returns the block to the region's allocator in
//! O(1) (to the thread's cache first) and ends the lease. The lease is what keeps the
//! region mapped: a `ZBuf` holds no `Arc` of its own (see `holders`). Through a zero-copy channel bound to a backend it travels as a [`ZDesc`]
//! (`F_LEASE` set): the lease goes with the descriptor and comes back with it.
//!
//! # Invariants
//! - `len <= class_size(block.class)`, `len >= 1`.
//! - While a `ZBuf` (or its descriptor) lives, its block is on no free list and the region's
//!   lease count includes it, so `region` points at a live region.

use std::ptr::NonNull;
use std::sync::Arc;

use super::ZError;
use super::alloc::{Block, class_size};
use super::desc::{ZDesc, ZeroCopy};
use super::region::{RegionInner, end_lease};
use super::table;

/// An owned span of a [`Region`](super::Region): `Deref`s to its bytes.
pub struct ZBuf {
    region: NonNull<RegionInner>,
    block: Block,
    len: usize,
}

// SAFETY: a `ZBuf` owns its span exclusively and `RegionInner` is `Send + Sync`; the
// pointer is a counted lease, valid on any thread.
unsafe impl Send for ZBuf {}
// SAFETY: `&ZBuf` only reads the span and the region's immutable fields.
unsafe impl Sync for ZBuf {}

impl ZBuf {
    /// Caller counted the lease and owns `block`. The pointer comes from `Arc::as_ptr`, so
    /// that ending the lease may give back the holders' strong count through it.
    pub(crate) fn new(region: &Arc<RegionInner>, block: Block, len: usize) -> ZBuf {
        // SAFETY: an `Arc`'s pointer is never null.
        let region = unsafe { NonNull::new_unchecked(Arc::as_ptr(region).cast_mut()) };
        ZBuf { region, block, len }
    }

    fn region(&self) -> &RegionInner {
        // SAFETY: this lease keeps the region alive (invariants above).
        unsafe { self.region.as_ref() }
    }

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a lease has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the block can hold (its size class).
    pub fn capacity(&self) -> usize {
        class_size(self.block.class())
    }

    /// Sets the bytes in use, between 1 and [`capacity`](Self::capacity).
    pub fn set_len(&mut self, len: usize) -> Result<(), ZError> {
        if len == 0 || len > self.capacity() {
            return Err(ZError::BadLength(len));
        }
        self.len = len;
        Ok(())
    }

    /// The descriptor of this span: `(export_id, offset, len)` plus its local address.
    pub fn desc(&self) -> ZDesc {
        ZDesc {
            addr: self.as_ptr().cast_mut().cast(),
            len: self.len,
            region_id: self.region().export_id,
            offset: self.block.offset(),
            flags: ZDesc::F_LEASE | self.block.class() << 8,
        }
    }

    /// Export id of the region this lease belongs to.
    pub fn region_id(&self) -> u64 {
        self.region().export_id
    }

    /// The span's first byte.
    pub fn as_ptr(&self) -> *const u8 {
        // SAFETY: the block lies inside the mapping (the allocator only hands out blocks of
        // the region it was built over).
        unsafe { self.region().base.add(self.block.offset() as usize) }
    }
}

impl std::ops::Deref for ZBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: this lease owns the span exclusively; it is mapped while the lease lives.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for ZBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and leases are only made in writable regions this process
        // allocates in; `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr().cast_mut(), self.len) }
    }
}

impl AsRef<[u8]> for ZBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for ZBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl Drop for ZBuf {
    fn drop(&mut self) {
        self.region().free(self.block);
        // SAFETY: this lease is ours and ends here; nothing touches the region after it.
        unsafe { end_lease(self.region.as_ptr()) };
    }
}

impl std::fmt::Debug for ZBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZBuf")
            .field("region_id", &format_args!("{:#x}", self.region().export_id))
            .field("offset", &self.block.offset())
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl crate::chan::ByteLen for ZBuf {
    fn byte_len(&self) -> usize {
        self.len
    }
}

impl ZeroCopy for ZBuf {
    const CAPS: u32 = 0;

    fn into_desc(self) -> ZDesc {
        let d = self.desc();
        // The lease travels in the descriptor: its block and its count, which keeps the
        // region mapped (and in the table) while the descriptor is in flight; `reclaim`
        // takes both back.
        std::mem::forget(self);
        d
    }

    unsafe fn from_desc(desc: ZDesc) -> Self {
        match ZBuf::reclaim(&desc) {
            Ok(buf) => buf,
            Err(e) => panic!("ZBuf::from_desc: {desc:?} is not a lease made by into_desc: {e}"),
        }
    }

    fn span_len(&self) -> usize {
        self.len
    }
}

impl ZBuf {
    /// Takes back the lease a descriptor from [`ZeroCopy::into_desc`] carries, checking that
    /// it names a block of a live region of this process.
    fn reclaim(desc: &ZDesc) -> Result<ZBuf, ZError> {
        if desc.flags & ZDesc::F_LEASE == 0 {
            return Err(ZError::NotALease);
        }
        let region = table::lookup(desc.region_id)?;
        let class = desc.flags >> 8;
        let block = region
            .allocator()
            .and_then(|a| a.block_at(desc.offset, class))
            .filter(|_| desc.len >= 1 && desc.len <= class_size(class))
            .ok_or(ZError::NotALease)?;
        // The descriptor came from `into_desc` (the caller's contract): its lease, counted,
        // keeps the region alive once `region` (the table's count) is dropped.
        Ok(ZBuf::new(&region, block, desc.len))
    }
}
