//! Regions: memory that descriptors can name, shareable with another process.
//!
//! - [`Region::anonymous`] maps a sealed memfd (`MAP_SHARED`): its fd can be passed to
//!   another process, which maps the same pages with [`Region::import`].
//! - [`Region::import`] / [`Region::from_fd`] map a memfd received from elsewhere,
//!   read-only or read-write. The fd must carry `F_SEAL_SHRINK`, otherwise its owner could
//!   truncate it under us and every access past the new end would raise SIGBUS.
//! - [`Region::register`] (unsafe) adopts memory the caller owns.
//!
//! Every region has a process-wide `id` and an `export_id` (what descriptors carry in
//! `region_id`): ours are `pid << 32 | id`, an imported one keeps its exporter's, so a
//! descriptor made in one process resolves in the other. Only the process that made a region
//! allocates in it ([`Region::alloc`]); importers resolve descriptors.
//!
//! # Leases and deregistration
//! `leases` counts [`ZBuf`]s and resolved views alive (in a channel, in a backend, in the
//! hands of a receiver). [`Region::deregister`] stops new leases and waits for the count to
//! reach zero, or gives up with `Busy` and reopens the region. The mapping is unmapped when
//! the last `Arc<RegionInner>` goes — every lease holds one — so no lease ever points at
//! unmapped memory.
//!
//! # Protocol (lease vs. deregistration, a Dekker pair, both SeqCst)
//! 1. A lease increments `leases`, then reads `state`; if not `OPEN` it undoes and fails.
//! 2. Deregistration stores `DEREGISTERING`, then reads `leases`.
//!
//! One of the two sees the other: no lease is created after deregistration saw zero.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ZError;
use super::alloc::{Block, SLAB, SlabAlloc};
use super::table;
use super::zbuf::ZBuf;
use crate::park::Signal;

/// Largest region: 64 GiB (block ids are 32-bit: 4 Mi slabs of 64 KiB would be 256 GiB).
pub const MAX_REGION_LEN: usize = 64 << 30;

const OPEN: u8 = 0;
const DEREGISTERING: u8 = 1;
const DEREGISTERED: u8 = 2;

/// How a region received from another process is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `PROT_READ`: resolve descriptors and read spans.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`: also write into spans handed over by the exporter.
    ReadWrite,
}

/// Where a region's memory came from, and what dropping it releases.
enum Backing {
    /// Mapped here from a memfd (ours or imported); unmapped on drop, fd closed.
    Mapped { fd: OwnedFd },
    /// The caller's memory: nothing to release.
    Registered,
}

pub(crate) struct RegionInner {
    pub(crate) id: u64,
    pub(crate) export_id: u64,
    pub(crate) base: *mut u8,
    pub(crate) len: usize,
    writable: bool,
    backing: Backing,
    /// `Some` only in the process that owns the region's allocation.
    alloc: Option<SlabAlloc>,
    state: AtomicU8,
    leases: AtomicUsize,
    /// Notified by the lease that brings `leases` to zero during a deregistration.
    drained: Mutex<Option<Arc<Signal>>>,
}

// SAFETY: `base` points at a mapping (or registered memory) that lives as long as this
// struct; the struct's mutable state is atomics and a mutex. Who may write which bytes is
// governed by leases, not by this struct.
unsafe impl Send for RegionInner {}
// SAFETY: as above.
unsafe impl Sync for RegionInner {}

impl RegionInner {
    /// Counts a new lease, unless the region is being deregistered (protocol step 1).
    pub(crate) fn acquire_lease(&self) -> Result<(), ZError> {
        self.leases.fetch_add(1, SeqCst);
        if self.state.load(SeqCst) == OPEN {
            return Ok(());
        }
        self.release_lease();
        Err(ZError::Deregistered)
    }

    /// Ends a lease; wakes a deregistration waiting for the last one.
    pub(crate) fn release_lease(&self) {
        if self.leases.fetch_sub(1, SeqCst) == 1 && self.state.load(SeqCst) == DEREGISTERING {
            let signal = self.drained.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(s) = signal {
                s.notify();
            }
        }
    }

    pub(crate) fn allocator(&self) -> Option<&SlabAlloc> {
        self.alloc.as_ref()
    }

    /// Whether `[offset, offset + len)` lies inside the region.
    pub(crate) fn contains(&self, offset: u64, len: usize) -> bool {
        usize::try_from(offset).ok().and_then(|o| o.checked_add(len)).is_some_and(|end| end <= self.len)
    }

    pub(crate) fn free(&self, block: Block) {
        if let Some(a) = &self.alloc {
            a.free(block);
        }
    }
}

impl Drop for RegionInner {
    fn drop(&mut self) {
        table::forget(self.export_id, self.id);
        if let Backing::Mapped { .. } = self.backing {
            // SAFETY: `base`/`len` are the mapping made in `map`, and no lease is left (each
            // holds an Arc of this struct).
            unsafe { libc::munmap(self.base.cast(), self.len) };
        }
    }
}

/// A region of memory that zero-copy descriptors can name. Cloning shares it.
#[derive(Clone)]
pub struct Region {
    pub(crate) inner: Arc<RegionInner>,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("id", &self.inner.id)
            .field("export_id", &format_args!("{:#x}", self.inner.export_id))
            .field("len", &self.inner.len)
            .field("leases", &self.leases())
            .finish()
    }
}

impl Region {
    /// A new shareable region of at least `len` bytes (rounded up to 64 KiB): a sealed
    /// memfd mapped `MAP_SHARED`, whose [`fd`](Self::fd) another process can map.
    pub fn anonymous(len: usize) -> Result<Region, ZError> {
        let len = round_len(len)?;
        let fd = memfd(len)?;
        let base = map(&fd, len, true)?;
        let id = table::next_id();
        let export_id = table::local_export_id(id);
        Self::install(id, export_id, base, len, true, Backing::Mapped { fd }, true, true)
    }

    /// Maps a memfd received from elsewhere under a new export id of this process.
    pub fn from_fd(fd: OwnedFd, access: Access) -> Result<Region, ZError> {
        let id = table::next_id();
        Self::map_fd(fd, access, id, table::local_export_id(id))
    }

    /// Maps a memfd exported by another process, so that descriptors naming `export_id`
    /// (the exporter's [`export_id`](Self::export_id)) resolve to it here.
    pub fn import(fd: OwnedFd, access: Access, export_id: u64) -> Result<Region, ZError> {
        if export_id == 0 {
            return Err(ZError::UnknownRegion(0));
        }
        Self::map_fd(fd, access, table::next_id(), export_id)
    }

    /// Maps a memfd received from elsewhere *without* entering it in the process-wide
    /// table: no descriptor resolves to it through [`resolve`](super::resolve), only
    /// through this handle's [`view`](Self::view). For a server that must keep what each
    /// peer shares to that peer: a table keyed by ids the peers choose would let one peer
    /// name another's memory. `export_id` is kept only to report it
    /// ([`export_id`](Self::export_id)). At most `max_len` bytes are mapped: a larger fd
    /// is refused with [`ZError::BadLength`] before anything is mapped.
    pub fn import_private(
        fd: OwnedFd,
        access: Access,
        export_id: u64,
        max_len: usize,
    ) -> Result<Region, ZError> {
        let len = fd_len(&fd)?;
        if len > max_len {
            return Err(ZError::BadLength(len));
        }
        Self::map_fd_as(fd, access, table::next_id(), export_id, false)
    }

    /// A read-only view of `[offset, offset + len)` of this region, bounds checked and
    /// counted as a lease while it lives (the way [`resolve`](super::resolve) answers a
    /// descriptor, without the table).
    pub fn view(&self, offset: u64, len: usize) -> Result<super::ZView, ZError> {
        table::view_of(Arc::clone(&self.inner), offset, len)
    }

    fn map_fd(fd: OwnedFd, access: Access, id: u64, export_id: u64) -> Result<Region, ZError> {
        Self::map_fd_as(fd, access, id, export_id, true)
    }

    fn map_fd_as(
        fd: OwnedFd,
        access: Access,
        id: u64,
        export_id: u64,
        listed: bool,
    ) -> Result<Region, ZError> {
        let len = fd_len(&fd)?;
        if len == 0 || len > MAX_REGION_LEN {
            return Err(ZError::BadLength(len));
        }
        // SAFETY: F_GET_SEALS reads the fd's seals; it fails on anything but a memfd.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
            return Err(ZError::Unsealed);
        }
        let writable = access == Access::ReadWrite;
        let base = map(&fd, len, writable)?;
        Self::install(id, export_id, base, len, writable, Backing::Mapped { fd }, false, listed)
    }

    /// Adopts `len` bytes at `ptr`, allocated by the caller, as a region this process
    /// allocates leases from. The length is rounded down to a multiple of 64 KiB.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be valid for reads and writes, not be accessed other than
    /// through this region's leases, and stay valid until [`deregister`](Self::deregister)
    /// returns `Ok` (which waits for every lease). Dropping a registered region without
    /// deregistering it leaves the memory in use for as long as any lease lives.
    pub unsafe fn register(ptr: *mut u8, len: usize) -> Result<Region, ZError> {
        if ptr.is_null() {
            return Err(ZError::NullPointer);
        }
        let len = len & !(SLAB - 1);
        if len == 0 || len > MAX_REGION_LEN {
            return Err(ZError::BadLength(len));
        }
        let id = table::next_id();
        Self::install(id, table::local_export_id(id), ptr, len, true, Backing::Registered, true, true)
    }

    /// Adopts exactly `len` bytes at `ptr` as memory that descriptors name by
    /// `(export_id, offset, len)` (the C API's `kc_region_register`): the length is not
    /// rounded, and the region has no allocator ([`alloc`](Self::alloc) fails with
    /// [`ZError::NotOwner`]): the caller makes the descriptors itself.
    ///
    /// # Safety
    /// As [`register`](Self::register).
    pub unsafe fn register_span(ptr: *mut u8, len: usize) -> Result<Region, ZError> {
        if ptr.is_null() {
            return Err(ZError::NullPointer);
        }
        if len == 0 || len > MAX_REGION_LEN {
            return Err(ZError::BadLength(len));
        }
        let id = table::next_id();
        Self::install(id, table::local_export_id(id), ptr, len, true, Backing::Registered, false, true)
    }

    /// `listed`: entered in the process-wide table (every region but a private import).
    #[allow(clippy::too_many_arguments)]
    fn install(
        id: u64,
        export_id: u64,
        base: *mut u8,
        len: usize,
        writable: bool,
        backing: Backing,
        owns_alloc: bool,
        listed: bool,
    ) -> Result<Region, ZError> {
        let inner = Arc::new(RegionInner {
            id,
            export_id,
            base,
            len,
            writable,
            backing,
            alloc: owns_alloc.then(|| SlabAlloc::new(len)),
            state: AtomicU8::new(OPEN),
            leases: AtomicUsize::new(0),
            drained: Mutex::new(None),
        });
        if listed {
            table::insert(&inner)?;
        }
        Ok(Region { inner })
    }

    /// A lease of `len` bytes (`len >= 1`), from any thread, in O(1).
    pub fn alloc(&self, len: usize) -> Result<ZBuf, ZError> {
        if len == 0 {
            return Err(ZError::ZeroLength);
        }
        let Some(a) = self.inner.allocator() else { return Err(ZError::NotOwner) };
        self.inner.acquire_lease()?;
        match a.alloc(len) {
            Some(block) => Ok(ZBuf::new(Arc::clone(&self.inner), block, len)),
            None => {
                self.inner.release_lease();
                Err(ZError::Exhausted { len })
            }
        }
    }

    /// This process's id of the region.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The id descriptors carry in `region_id`; give it to the process you pass the fd to.
    pub fn export_id(&self) -> u64 {
        self.inner.export_id
    }

    /// Usable bytes.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Never true: a region has at least 64 KiB.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// Whether spans of this region may be written here.
    pub fn is_writable(&self) -> bool {
        self.inner.writable
    }

    /// The memfd behind the region, to pass to another process (`None` for registered
    /// memory).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.inner.backing {
            Backing::Mapped { fd } => Some(fd.as_fd()),
            Backing::Registered => None,
        }
    }

    /// Leases alive now: [`ZBuf`]s, descriptors of them in flight, and resolved views.
    pub fn leases(&self) -> usize {
        self.inner.leases.load(SeqCst)
    }

    /// Stops new leases and waits up to `timeout` for the leases in flight to end; then
    /// descriptors into the region no longer resolve and it cannot allocate. Fails with
    /// [`ZError::Busy`] (and reopens the region) if leases remain. The memory is unmapped
    /// once the last handle and lease are gone.
    pub fn deregister(&self, timeout: Duration) -> Result<(), ZError> {
        let deadline = Instant::now().checked_add(timeout);
        let r = &self.inner;
        match r.state.compare_exchange(OPEN, DEREGISTERING, SeqCst, SeqCst) {
            Ok(_) => {}
            Err(DEREGISTERED) => return Ok(()),
            Err(_) => return Err(ZError::Busy { leases: self.leases() }),
        }
        let signal = Arc::new(Signal::new());
        *r.drained.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&signal));
        // Protocol step 2: DEREGISTERING is stored; now read the count.
        while r.leases.load(SeqCst) != 0 {
            let woke = match deadline {
                Some(d) => signal.wait_deadline(d),
                None => {
                    signal.wait();
                    true
                }
            };
            if !woke && r.leases.load(SeqCst) != 0 {
                *r.drained.lock().unwrap_or_else(|e| e.into_inner()) = None;
                r.state.store(OPEN, SeqCst);
                return Err(ZError::Busy { leases: self.leases() });
            }
        }
        r.state.store(DEREGISTERED, SeqCst);
        table::forget(r.export_id, r.id);
        Ok(())
    }
}

/// Rounds a requested length up to whole slabs, within the limits.
fn round_len(len: usize) -> Result<usize, ZError> {
    if len == 0 || len > MAX_REGION_LEN {
        return Err(ZError::BadLength(len));
    }
    Ok(len.div_ceil(SLAB) * SLAB)
}

/// A memfd of `len` bytes, sealed against shrinking and growing.
fn memfd(len: usize) -> Result<OwnedFd, ZError> {
    let io = |_| ZError::Io(std::io::Error::last_os_error());
    // SAFETY: a NUL-terminated name and valid flags; the result is checked.
    let raw =
        unsafe { libc::memfd_create(c"kcoro-region".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io(()));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let size = libc::off_t::try_from(len).map_err(|_| ZError::BadLength(len))?;
    // SAFETY: plain syscalls on the fd we own.
    unsafe {
        if libc::ftruncate(fd.as_raw_fd(), size) != 0 {
            return Err(io(()));
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0 {
            return Err(io(()));
        }
    }
    Ok(fd)
}

/// Maps `len` bytes of `fd`, shared.
/// The size of the file behind `fd`.
fn fd_len(fd: &OwnedFd) -> Result<usize, ZError> {
    // SAFETY: fstat on a valid fd into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(ZError::Io(std::io::Error::last_os_error()));
    }
    usize::try_from(st.st_size).map_err(|_| ZError::BadLength(0))
}

fn map(fd: &OwnedFd, len: usize, writable: bool) -> Result<*mut u8, ZError> {
    let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
    // SAFETY: a fresh shared mapping of an fd we hold; the result is checked.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
    if p == libc::MAP_FAILED {
        return Err(ZError::Io(std::io::Error::last_os_error()));
    }
    Ok(p.cast())
}
