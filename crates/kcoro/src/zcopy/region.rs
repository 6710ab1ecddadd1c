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
//! The holders word ([`super::holders`]) counts [`ZBuf`]s and resolved views alive (in a
//! channel, in a backend, in the hands of a receiver) and the `Region` handles.
//! [`Region::deregister`] stops new leases and waits for the leases to end, or gives up
//! with `Busy` and reopens the region. The mapping is unmapped when the last
//! `Arc<RegionInner>` goes; while any lease or handle lives the holders own one, so no
//! lease ever points at unmapped memory.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ZError;
use super::alloc::{Block, SLAB, SlabAlloc};
use super::holders::{Holders, NotDrained, Started};
use super::zbuf::ZBuf;
use super::{cache, table};
use crate::park::Signal;

/// Largest region: 64 GiB (block ids are 32-bit: 4 Mi slabs of 64 KiB would be 256 GiB).
pub const MAX_REGION_LEN: usize = 64 << 30;

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
    holders: Holders,
    /// Notified by the lease that ends the last one during a deregistration.
    drained: Mutex<Option<Arc<Signal>>>,
    /// Bumped when an allocation found no free block: every thread gives its cached
    /// blocks of this region back at its next lease operation here (`cache`).
    pub(crate) flush_epoch: AtomicU64,
}

// SAFETY: `base` points at a mapping (or registered memory) that lives as long as this
// struct; the struct's mutable state is atomics and a mutex. Who may write which bytes is
// governed by leases, not by this struct.
unsafe impl Send for RegionInner {}
// SAFETY: as above.
unsafe impl Sync for RegionInner {}

impl RegionInner {
    /// Counts a new lease, unless the region is being deregistered. The caller holds a
    /// strong count of the region (a handle, a looked-up `Arc`).
    ///
    /// Takes the `Arc` (not `&self`) so that the pointers given to `Arc`'s count functions
    /// come from `Arc::as_ptr` and may reach the counts (pointer provenance; Miri checks it).
    #[inline]
    pub(crate) fn acquire_lease(self: &Arc<Self>) -> Result<(), ZError> {
        match self.holders.start() {
            Started { first_holder: false, refused: false } => Ok(()),
            started => self.lease_started_unusual(started),
        }
    }

    /// [`acquire_lease`](Self::acquire_lease) when the lease was the first holder or was
    /// refused (no `Region` handle left, or a deregistration).
    #[cold]
    #[inline(never)]
    fn lease_started_unusual(self: &Arc<Self>, started: Started) -> Result<(), ZError> {
        if started.first_holder {
            // SAFETY: kept alive here by the caller's count; this is the holders' count.
            unsafe { Arc::increment_strong_count(Arc::as_ptr(self)) };
        }
        if !started.refused {
            return Ok(());
        }
        // SAFETY: the lease just counted is ours to end; the caller's count keeps the
        // region alive past it.
        unsafe { end_lease(Arc::as_ptr(self)) };
        Err(ZError::Deregistered)
    }

    pub(crate) fn allocator(&self) -> Option<&SlabAlloc> {
        self.alloc.as_ref()
    }

    /// Whether `[offset, offset + len)` lies inside the region.
    pub(crate) fn contains(&self, offset: u64, len: usize) -> bool {
        usize::try_from(offset).ok().and_then(|o| o.checked_add(len)).is_some_and(|end| end <= self.len)
    }

    #[inline]
    pub(crate) fn free(&self, block: Block) {
        if let Some(a) = &self.alloc {
            cache::free(self, a, block);
        }
    }

    fn notify_drained(&self) {
        let signal = self.drained.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(s) = signal {
            s.notify();
        }
    }
}

/// Ends a lease; wakes a deregistration waiting for the last one; gives back the holders'
/// strong count when no holder is left.
///
/// # Safety
/// `this` comes from `Arc::as_ptr` of a live region, and the caller owns one of its
/// leases, which ends here. Unless the caller holds a strong count of its own, the region
/// may be gone when this returns.
#[inline]
pub(crate) unsafe fn end_lease(this: *const RegionInner) {
    // SAFETY: the caller's lease keeps the region alive until it ends below.
    match unsafe { (*this).holders.end() } {
        Some(ended) if !ended.last_holder => {}
        // SAFETY: forwarded: the holders' count is ours to give back.
        Some(_) => unsafe { give_back_holders_count(this) },
        // SAFETY: forwarded: our lease is still counted.
        None => unsafe { end_lease_draining(this) },
    }
}

/// # Safety
/// `this` is in an `Arc` and the holders' strong count is the caller's to give back;
/// nothing touches the region after it unless it holds a count of its own.
#[cold]
#[inline(never)]
unsafe fn give_back_holders_count(this: *const RegionInner) {
    // SAFETY: the caller's contract.
    unsafe { Arc::decrement_strong_count(this) };
}

/// Ends a lease while a deregistration waits for the leases.
///
/// # Safety
/// As [`end_lease`], the lease not yet ended.
#[cold]
#[inline(never)]
unsafe fn end_lease_draining(this: *const RegionInner) {
    // Keep the region alive past the count, to tell the deregistration.
    // SAFETY: alive (our lease) and in an `Arc`: one more strong count, owned by `pin`.
    let pin = unsafe {
        Arc::increment_strong_count(this);
        Arc::from_raw(this)
    };
    let ended = pin.holders.end_draining();
    if ended.drained {
        pin.notify_drained();
    }
    if ended.last_holder {
        // SAFETY: the holders' count, given back; `pin` keeps the region alive.
        unsafe { Arc::decrement_strong_count(this) };
    }
}

impl Drop for RegionInner {
    fn drop(&mut self) {
        table::forget(self.export_id, self.id);
        if let Backing::Mapped { .. } = self.backing {
            // SAFETY: `base`/`len` are the mapping made in `map`, and no lease or handle is
            // left (while any lives, the holders keep a strong count of this struct).
            unsafe { libc::munmap(self.base.cast(), self.len) };
        }
    }
}

/// A region of memory that zero-copy descriptors can name. Cloning shares it.
pub struct Region {
    pub(crate) inner: Arc<RegionInner>,
}

impl Clone for Region {
    fn clone(&self) -> Region {
        self.inner.holders.add_handle();
        Region { inner: Arc::clone(&self.inner) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.inner.holders.drop_handle().last_holder {
            // SAFETY: the holders' count, given back; `self.inner` keeps the region alive
            // until this handle's own count goes with it.
            unsafe { Arc::decrement_strong_count(Arc::as_ptr(&self.inner)) };
        }
    }
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
        Self::map_fd_as(fd, access, table::next_id(), export_id, false, max_len)
    }

    /// A read-only view of `[offset, offset + len)` of this region, bounds checked and
    /// counted as a lease while it lives (the way [`resolve`](super::resolve) answers a
    /// descriptor, without the table).
    pub fn view(&self, offset: u64, len: usize) -> Result<super::ZView, ZError> {
        table::view_of(Arc::clone(&self.inner), offset, len)
    }

    fn map_fd(fd: OwnedFd, access: Access, id: u64, export_id: u64) -> Result<Region, ZError> {
        Self::map_fd_as(fd, access, id, export_id, true, MAX_REGION_LEN)
    }

    fn map_fd_as(
        fd: OwnedFd,
        access: Access,
        id: u64,
        export_id: u64,
        listed: bool,
        max_len: usize,
    ) -> Result<Region, ZError> {
        // The seal first, then the size: a size read before the seal may be cut by the
        // sender before it seals, and a mapping past the end of the file faults (SIGBUS)
        // on the first read there. Once sealed, the size can only grow, and the mapping
        // stays the length read here.
        // SAFETY: F_GET_SEALS reads the fd's seals; it fails on anything but a memfd.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
            return Err(ZError::Unsealed);
        }
        let len = fd_len(&fd)?;
        if len == 0 || len > MAX_REGION_LEN.min(max_len) {
            return Err(ZError::BadLength(len));
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
            holders: Holders::with_one_handle(),
            drained: Mutex::new(None),
            flush_epoch: AtomicU64::new(0),
        });
        // SAFETY: `inner` is alive; this is the holders' count of the handle made below
        // (given back by its drop, also when the insert fails).
        unsafe { Arc::increment_strong_count(Arc::as_ptr(&inner)) };
        let region = Region { inner };
        if listed {
            table::insert(&region.inner)?;
        }
        Ok(region)
    }

    /// A lease of `len` bytes (`len >= 1`), from any thread, in O(1).
    #[inline(always)]
    pub fn alloc(&self, len: usize) -> Result<ZBuf, ZError> {
        if len == 0 {
            return Err(ZError::ZeroLength);
        }
        let r = &self.inner;
        let Some(a) = r.allocator() else { return Err(ZError::NotOwner) };
        r.acquire_lease()?;
        if let Some(block) = cache::alloc(r, a, len) {
            return Ok(ZBuf::new(r, block, len));
        }
        self.alloc_found_nothing(a, len)
    }

    /// [`alloc`](Self::alloc) with its lease counted and no block found.
    #[cold]
    #[inline(never)]
    fn alloc_found_nothing(&self, a: &SlabAlloc, len: usize) -> Result<ZBuf, ZError> {
        let r = &self.inner;
        // Every thread's cached blocks of this region come back at its next lease
        // operation here; this thread's come back now.
        r.flush_epoch.fetch_add(1, Relaxed);
        cache::flush(r, a);
        if let Some(block) = a.alloc(len) {
            return Ok(ZBuf::new(r, block, len));
        }
        // SAFETY: the lease counted by `alloc` is ours; `self` keeps the region alive.
        unsafe { end_lease(Arc::as_ptr(r)) };
        Err(ZError::Exhausted { len })
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
        self.inner.holders.leases()
    }

    /// Stops new leases and waits up to `timeout` for the leases in flight to end; then
    /// descriptors into the region no longer resolve and it cannot allocate. Fails with
    /// [`ZError::Busy`] (and reopens the region) if leases remain. The memory is unmapped
    /// once the last handle and lease are gone.
    pub fn deregister(&self, timeout: Duration) -> Result<(), ZError> {
        let deadline = Instant::now().checked_add(timeout);
        let r = &self.inner;
        match r.holders.drain() {
            Ok(_) => {}
            Err(NotDrained::Closed) => return Ok(()),
            Err(NotDrained::Busy) => return Err(ZError::Busy { leases: self.leases() }),
        }
        loop {
            // A fresh signal per wait, installed before the count is read: a lease that
            // ends after that read finds it. (A notified signal stays notified: waiting on
            // it again after a wake-up with leases left, a refused lease that came and
            // went or a late notice meant for an earlier deregistration, would spin.)
            let signal = Arc::new(Signal::new());
            *r.drained.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&signal));
            if r.holders.leases() == 0 {
                break;
            }
            let woke = match deadline {
                Some(d) => signal.wait_deadline(d),
                None => {
                    signal.wait();
                    true
                }
            };
            if !woke && r.holders.leases() != 0 {
                *r.drained.lock().unwrap_or_else(|e| e.into_inner()) = None;
                r.holders.reopen();
                return Err(ZError::Busy { leases: self.leases() });
            }
        }
        r.holders.close();
        *r.drained.lock().unwrap_or_else(|e| e.into_inner()) = None;
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
