//! Descriptors: what a zero-copy channel moves instead of payload bytes.
//!
//! A [`ZDesc`] names a span of memory either by address (`addr`, `len`: memory of this
//! process, as the C runtime's `kc_chan_send_zref` hands it over) or by region
//! (`region_id`, `offset`, `len`: memory of a [`Region`](super::Region), which another
//! process can address too, because `region_id` is the region's export id). Its layout is
//! `kc_zdesc_t` of `include/kcoro_zcopy.h`, field for field:
//!
//! ```text
//!   offset  size  field
//!        0     8  addr       void *       local address of the span (0 for a remote one)
//!        8     8  len        size_t       span length in bytes, never 0
//!       16     8  region_id  uint64_t     export id of the region, 0 for a bare pointer
//!       24     8  offset     uint64_t     span start inside the region
//!       32     4  flags      uint32_t     ZDesc::F_* bits
//!       36     4  (padding)
//!   size 40, align 8 (64-bit targets)
//! ```
//!
//! # Invariants
//! - A descriptor accepted by a channel or a backend has `len > 0` ([`ZDesc::validate`]).
//! - `region_id != 0` ⇒ `addr` is advisory: receivers translate `(region_id, offset, len)`
//!   through the region table ([`super::resolve`]), which checks the bounds.

use std::ffi::c_void;

use super::ZError;

/// A zero-copy descriptor, laid out as `kc_zdesc_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZDesc {
    /// Address of the span in the process that made the descriptor.
    pub addr: *mut c_void,
    /// Length of the span in bytes; never 0 in a descriptor that is sent.
    pub len: usize,
    /// Export id of the region the span lies in; 0 for a bare pointer.
    pub region_id: u64,
    /// Start of the span inside its region.
    pub offset: u64,
    /// `ZDesc::F_*` bits.
    pub flags: u32,
}

// SAFETY: a descriptor is plain data; whoever dereferences `addr` does so under the
// contract of the API that hands it out (a region lease, or the zref sender's promise).
unsafe impl Send for ZDesc {}
// SAFETY: as above; a shared `&ZDesc` only reads the fields.
unsafe impl Sync for ZDesc {}

impl ZDesc {
    /// The span is a lease handed out by a region's allocator ([`ZBuf`](super::ZBuf)).
    pub const F_LEASE: u32 = 1 << 0;

    /// A descriptor of a bare pointer (the zref form): no region.
    pub fn from_ptr(addr: *mut c_void, len: usize) -> ZDesc {
        ZDesc { addr, len, region_id: 0, offset: 0, flags: 0 }
    }

    /// A descriptor of `(region_id, offset, len)`, for a region of another process
    /// (no local address).
    pub fn in_region(region_id: u64, offset: u64, len: usize) -> ZDesc {
        ZDesc { addr: std::ptr::null_mut(), len, region_id, offset, flags: 0 }
    }

    /// Whether the span is named by a region rather than by a bare address.
    pub fn is_region(&self) -> bool {
        self.region_id != 0
    }

    /// Rejects what no channel may carry: a zero length, or a bare pointer that is null.
    pub fn validate(&self) -> Result<(), ZError> {
        if self.len == 0 {
            return Err(ZError::ZeroLength);
        }
        if self.region_id == 0 && self.addr.is_null() {
            return Err(ZError::NullPointer);
        }
        Ok(())
    }
}

impl crate::chan::ByteLen for ZDesc {
    fn byte_len(&self) -> usize {
        self.len
    }
}

/// A value a zero-copy channel can carry: it turns into a descriptor on the way in and
/// back into itself on the way out ([`Builder::zero_copy`](crate::chan::Builder::zero_copy)).
/// Implemented by [`ZDesc`] (as is) and [`ZBuf`](super::ZBuf) (the lease travels in the
/// descriptor).
pub trait ZeroCopy: Send + Sized + 'static {
    /// Capabilities a channel of this type reports besides `ZERO_COPY`.
    const CAPS: u32;

    /// The descriptor that stands for `self`; ownership moves into it.
    fn into_desc(self) -> ZDesc;

    /// Takes ownership back from a descriptor made by [`into_desc`](Self::into_desc).
    ///
    /// # Safety
    /// `desc` was made by `Self::into_desc` and is turned back exactly once.
    unsafe fn from_desc(desc: ZDesc) -> Self;

    /// Span length, for the byte counters.
    fn span_len(&self) -> usize;
}

impl ZeroCopy for ZDesc {
    const CAPS: u32 = super::CAP_PTR;

    fn into_desc(self) -> ZDesc {
        self
    }

    unsafe fn from_desc(desc: ZDesc) -> Self {
        desc
    }

    fn span_len(&self) -> usize {
        self.len
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    /// The numbers `include/kcoro_zcopy.h` asserts with `_Static_assert`.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn layout_matches_kc_zdesc_t() {
        assert_eq!(size_of::<ZDesc>(), 40);
        assert_eq!(align_of::<ZDesc>(), 8);
        assert_eq!(offset_of!(ZDesc, addr), 0);
        assert_eq!(offset_of!(ZDesc, len), 8);
        assert_eq!(offset_of!(ZDesc, region_id), 16);
        assert_eq!(offset_of!(ZDesc, offset), 24);
        assert_eq!(offset_of!(ZDesc, flags), 32);
    }

    #[test]
    fn zero_length_and_null_are_rejected() {
        let mut byte = 0u8;
        let p = (&raw mut byte).cast::<c_void>();
        assert_eq!(ZDesc::from_ptr(p, 0).validate(), Err(ZError::ZeroLength));
        assert_eq!(ZDesc::from_ptr(std::ptr::null_mut(), 1).validate(), Err(ZError::NullPointer));
        assert_eq!(ZDesc::in_region(7, 0, 0).validate(), Err(ZError::ZeroLength));
        assert!(ZDesc::from_ptr(p, 1).validate().is_ok());
        assert!(ZDesc::in_region(7, 64, 1).validate().is_ok());
    }
}
