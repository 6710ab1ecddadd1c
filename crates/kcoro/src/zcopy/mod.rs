//! Zero copy: descriptors instead of payload copies, regions another process can address,
//! owned leases into them, and backends that move descriptors.
//!
//! ```
//! use std::time::Duration;
//! use kcoro::zcopy::{Region, ZBuf, ZDesc};
//!
//! kcoro::run(|| {
//!     let region = Region::anonymous(1 << 20).unwrap();   // a sealed memfd, shareable
//!     let mut buf: ZBuf = region.alloc(4096).unwrap();     // an owned lease, O(1)
//!     buf.fill(7);
//!     let (tx, rx) = kcoro::chan::buffered::<ZBuf>(16);   // moves a descriptor, never bytes
//!     tx.send(buf).unwrap();
//!     let got = rx.recv().unwrap();
//!     let d: ZDesc = got.desc();                            // (export id, offset, len)
//!     assert_eq!((d.region_id, d.len), (region.export_id(), 4096));
//!     assert_eq!(kcoro::zcopy::resolve(&d).unwrap()[4095], 7); // bounds-checked view
//!     drop(got);                                            // the block goes back
//!     region.deregister(Duration::from_secs(1)).unwrap();   // no lease left: immediate
//! });
//! ```
//!
//! - [`ZDesc`]: `kc_zdesc_t`, an address or a `(region_id, offset, len)`.
//! - [`Region`]: a memfd mapping (shareable), an imported one, or registered memory; a
//!   size-class allocator hands out [`ZBuf`] leases in O(1) from any thread.
//! - [`resolve`]: a descriptor to a bounds-checked [`ZView`] of its bytes.
//! - [`ZBackend`], [`register`], [`resolve_backend`]: stores of descriptors behind
//!   channels built with [`Builder::zero_copy`](crate::chan::Builder::zero_copy); [`ZREF`]
//!   is built in, [`register_c`] takes a C ops table.
//!
//! See `docs/ZERO_COPY.md`.

pub(crate) mod alloc;
mod backend;
mod cache;
mod desc;
mod holders;
mod region;
mod table;
mod zbuf;

#[cfg(test)]
mod tests;

pub(crate) use backend::lookup as lookup_backend;
pub use backend::{
    AttachOpts, BackendId, CAP_PTR, CAP_ZERO_COPY, ChanKey, KcZcopyBackendOps, ZBackend, ZREF,
    name as backend_name, register, register_c, resolve as resolve_backend,
};
pub use desc::{ZDesc, ZeroCopy};
pub use region::{Access, MAX_REGION_LEN, Region};
pub use table::{ZView, regions, resolve};
pub use zbuf::ZBuf;

use crate::error::code;

/// What can go wrong with descriptors, regions, leases and backends.
#[derive(Debug, thiserror::Error)]
pub enum ZError {
    /// A descriptor or lease of zero bytes.
    #[error("zero-length descriptor")]
    ZeroLength,
    /// A bare-pointer descriptor with a null address, or a null region pointer.
    #[error("null pointer")]
    NullPointer,
    /// A region length of zero, past the limit, or a lease length past its block.
    #[error("bad length {0}")]
    BadLength(usize),
    /// The descriptor names no region registered in this process.
    #[error("no region {0:#x} is registered in this process")]
    UnknownRegion(u64),
    /// The span does not lie inside its region.
    #[error("span {offset}+{len} is outside its region of {region_len} bytes")]
    OutOfBounds {
        /// Start of the span.
        offset: u64,
        /// Its length.
        len: usize,
        /// The region's length.
        region_len: usize,
    },
    /// A bare-pointer descriptor cannot be resolved (nothing to check it against).
    #[error("not a region descriptor")]
    NotARegion,
    /// The descriptor does not carry a lease of a block of this process.
    #[error("descriptor is not a lease of this process")]
    NotALease,
    /// The region has no free block of that size.
    #[error("region exhausted: no room for {len} bytes")]
    Exhausted {
        /// The requested length.
        len: usize,
    },
    /// Only the process that made a region allocates in it.
    #[error("this process does not allocate in an imported region")]
    NotOwner,
    /// The region is being (or was) deregistered.
    #[error("region is deregistered")]
    Deregistered,
    /// Deregistration timed out with leases in flight.
    #[error("region busy: {leases} leases in flight")]
    Busy {
        /// Leases still alive.
        leases: usize,
    },
    /// The export id is already registered here.
    #[error("region {0:#x} is already registered")]
    AlreadyRegistered(u64),
    /// An fd without `F_SEAL_SHRINK` (or not a memfd): its owner could truncate it.
    #[error("the fd is not a memfd sealed against shrinking")]
    Unsealed,
    /// A backend name that is empty.
    #[error("backend name is empty")]
    BadName,
    /// A backend name that is taken.
    #[error("a backend named {0:?} is already registered")]
    NameTaken(String),
    /// No backend has this id.
    #[error("no backend with id {0}")]
    UnknownBackend(i32),
    /// A C ops table without `send` or `recv`.
    #[error("backend ops need send and recv")]
    IncompleteOps,
    /// The backend refused (its negative code).
    #[error("backend refused with code {0}")]
    Backend(i32),
    /// An OS call failed (memfd_create, ftruncate, mmap, fstat).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ZError {
    /// The kcoro code: `-EINVAL`, `-ENOMEM`, `-EBUSY`, `-ENOENT`, ...
    pub fn code(&self) -> i32 {
        match self {
            ZError::ZeroLength
            | ZError::NullPointer
            | ZError::BadLength(_)
            | ZError::OutOfBounds { .. }
            | ZError::NotARegion
            | ZError::NotALease
            | ZError::BadName
            | ZError::IncompleteOps
            | ZError::Unsealed => code::INVALID,
            ZError::UnknownRegion(_) | ZError::UnknownBackend(_) => -libc::ENOENT,
            ZError::Exhausted { .. } => code::NO_MEMORY,
            ZError::NotOwner => code::UNSUPPORTED,
            ZError::Deregistered => code::CLOSED,
            ZError::Busy { .. } => -libc::EBUSY,
            ZError::AlreadyRegistered(_) | ZError::NameTaken(_) => -libc::EEXIST,
            ZError::Backend(rc) => *rc,
            ZError::Io(e) => e.raw_os_error().map_or(code::INVALID, |n| -n),
        }
    }
}

impl PartialEq for ZError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ZError::Io(a), ZError::Io(b)) => a.kind() == b.kind(),
            _ => {
                std::mem::discriminant(self) == std::mem::discriminant(other)
                    && self.to_string() == other.to_string()
            }
        }
    }
}
