//! Coroutine stacks: carved out of large mappings, each with a guard page, and pooled.
//!
//! ```text
//!   one chunk (one mmap, PROT_READ|WRITE, MAP_NORESERVE)
//!   low addresses                                                    high addresses
//!   +-------+----------------------+-------+----------------------+-----
//!   | guard |  stack 0  <- grows   | guard |  stack 1  <- grows   | ...
//!   +-------+----------------------+-------+----------------------+-----
//!   ^ limit(0)                base(0)^                       base(1)^
//! ```
//!
//! Guard pages are installed with `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+), which marks
//! the page as faulting *without* splitting the mapping, so a chunk of 1024 stacks is one
//! entry in `/proc/self/maps`. Where the kernel refuses it we fall back to
//! `mprotect(PROT_NONE)`, which splits the mapping: two map entries per stack, so
//! `vm.max_map_count` (65530 by default) caps a process near 32k stacks. Either way, a
//! failure to map or protect becomes [`StackError`], never a crash.
//!
//! `madvise` is trusted only once it has been seen to work: the first guard it installs is
//! probed (a `write(2)` from the page must fail with `EFAULT`). qemu-user, for one, answers
//! success to advice it ignores, which would leave every stack unguarded; there the probe
//! fails and the process uses `mprotect`.
//!
//! Untouched stack pages cost no memory (`MAP_NORESERVE`, demand paging): a parked
//! coroutine that used 3 KiB of its 64 KiB stack holds one resident page.
//!
//! Each worker thread keeps a small cache of free stacks of its own (`enter_worker`), so a
//! worker that spawns and finishes coroutines reuses stacks without the pool's shared lock
//! (both workers took it on every spawn and every exit). A cache that runs dry refills a
//! batch under one lock; one that overflows returns half. Threads that are not workers of
//! the pool's runtime use the shared free list directly.
//!
//! # Invariants
//! - Every `PooledStack` handed out has its guard page installed, and the mechanism that
//!   installed it has been seen to fault in this process.
//! - `live + free + cached == carved` for the pool's own size class.
//! - A chunk is unmapped only when the pool is dropped, and the pool outlives every stack
//!   (each stack holds an `Arc` of it).

use std::cell::Cell;
use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use corosensei::stack::{Stack, StackPointer};

use crate::error::StackError;

/// Smallest usable stack we hand out; anything less is rounded up (and every size to whole
/// pages, so on a kernel with 64 KiB pages the smallest stack is 64 KiB).
pub const MIN_STACK_SIZE: usize = 16 << 10;
/// The default usable stack size.
pub const DEFAULT_STACK_SIZE: usize = 64 << 10;
/// Stacks per chunk at first; chunks double up to `MAX_CHUNK_STACKS` so small programs
/// map little and large ones need few mappings (1M stacks ≈ 1000 chunks).
const FIRST_CHUNK_STACKS: usize = 16;
const MAX_CHUNK_STACKS: usize = 1024;
/// Linux's `MADV_GUARD_INSTALL` (include/uapi/asm-generic/mman-common.h); libc may lack it.
#[cfg(target_os = "linux")]
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How guard pages are installed; learnt on first use.
const GUARD_UNKNOWN: u8 = 0;
const GUARD_MADVISE: u8 = 1;
const GUARD_MPROTECT: u8 = 2;
static GUARD_MODE: AtomicU8 = AtomicU8::new(GUARD_UNKNOWN);

/// Which mechanism protects guard pages in this process (for docs, stats and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardMode {
    /// `madvise(MADV_GUARD_INSTALL)`: no mapping split.
    Madvise,
    /// `mprotect(PROT_NONE)`: one extra mapping per stack.
    Mprotect,
}

/// The guard mode in use, once a stack has been carved.
pub fn guard_mode() -> Option<GuardMode> {
    match GUARD_MODE.load(Relaxed) {
        GUARD_MADVISE => Some(GuardMode::Madvise),
        GUARD_MPROTECT => Some(GuardMode::Mprotect),
        _ => None,
    }
}

/// The page size, asked of the system once: every spawn rounds its stack size with it.
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 { p as usize } else { 4096 }
    })
}

/// Rounds a requested stack size up to whole pages and at least `MIN_STACK_SIZE`; a size
/// within a page of `usize::MAX` rounds down to the last whole page (no mapping that
/// large exists: it fails as a mapping, not as an overflow).
pub(crate) fn round_stack_size(requested: usize) -> usize {
    let page = page_size();
    requested.max(MIN_STACK_SIZE).checked_next_multiple_of(page).unwrap_or(usize::MAX / page * page)
}

/// One anonymous mapping, unmapped on drop.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is plain address space; the pool hands out disjoint slots of it.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(len: usize) -> Result<Self, StackError> {
        // SAFETY: anonymous private mapping at a kernel-chosen address; no existing memory
        // is affected. MAP_NORESERVE keeps untouched stack pages out of the commit charge.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(StackError::Map { bytes: len, source: io::Error::last_os_error() });
        }
        let base = NonNull::new(p.cast::<u8>())
            .ok_or(StackError::Map { bytes: len, source: io::Error::other("mmap returned null") })?;
        Ok(Self { base, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is exactly the region mmap returned, and no stack in it
        // is alive (stacks hold the pool, the pool holds the mappings).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Makes `[addr, addr+len)` fault on access.
///
/// # Safety
/// The range must be page-aligned, inside a live mapping we own, and hold no live data.
unsafe fn install_guard(addr: *mut u8, len: usize) -> Result<(), StackError> {
    #[cfg(target_os = "linux")]
    if GUARD_MODE.load(Relaxed) != GUARD_MPROTECT {
        // SAFETY: caller guarantees the range is ours and unused.
        let rc = unsafe { libc::madvise(addr.cast(), len, MADV_GUARD_INSTALL) };
        if rc == 0 {
            // Success is believed once it has been seen to fault (see the module header);
            // if it was not, the page gets an mprotect guard on top below, which is harmless.
            if GUARD_MODE.load(Relaxed) == GUARD_MADVISE || refuses_access(addr) {
                GUARD_MODE.store(GUARD_MADVISE, Relaxed);
                return Ok(());
            }
        } else {
            let err = io::Error::last_os_error();
            // EINVAL: kernel older than 6.13. Anything else is a real failure (e.g. ENOMEM).
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(StackError::Guard { source: err });
            }
        }
    }
    // SAFETY: caller guarantees the range is ours and unused.
    let rc = unsafe { libc::mprotect(addr.cast(), len, libc::PROT_NONE) };
    if rc != 0 {
        // ENOMEM here usually means vm.max_map_count was reached.
        return Err(StackError::Guard { source: io::Error::last_os_error() });
    }
    GUARD_MODE.store(GUARD_MPROTECT, Relaxed);
    Ok(())
}

/// Whether the kernel refuses to read the byte at `addr`: a one-byte `write(2)` from it
/// into a fresh pipe fails with `EFAULT` instead of faulting the process. `false` when it
/// cannot tell (no pipe), so that the caller falls back to the mechanism it can trust.
#[cfg(target_os = "linux")]
fn refuses_access(addr: *const u8) -> bool {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return false;
    }
    // SAFETY: write(2) reads `addr` in the kernel, which reports an inaccessible page as
    // EFAULT rather than a signal; the pipe is empty, so one byte never blocks. Both
    // descriptors are ours and closed here.
    let (rc, err) = unsafe {
        let rc = libc::write(fds[1], addr.cast(), 1);
        let err = io::Error::last_os_error();
        libc::close(fds[0]);
        libc::close(fds[1]);
        (rc, err)
    };
    rc < 0 && err.raw_os_error() == Some(libc::EFAULT)
}

/// A usable stack region: `[base - size, base)`, with the guard page just below.
#[derive(Clone, Copy)]
struct Slot {
    /// Lowest address, the guard page included (corosensei's `limit`).
    limit: NonNull<u8>,
}

// SAFETY: a slot is an address range owned by exactly one holder at a time (the free list
// or one PooledStack).
unsafe impl Send for Slot {}

/// Free stacks a worker cache holds at most; past it, half go back to the shared list.
const CACHE_MAX: usize = 64;
/// Stacks a dry worker cache takes from the shared list in one go.
const CACHE_REFILL: usize = 16;

/// A worker's cache of free stacks, on a cache line of its own.
#[repr(align(128))]
struct WorkerCache(Mutex<Vec<Slot>>);

thread_local! {
    /// The pool whose worker this thread is, and its index: set for the thread's life by
    /// [`enter_worker`].
    static WORKER_OF: Cell<(*const StackPool, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

/// Marks this thread as worker `index` of the runtime that owns `pool`, until the returned
/// guard drops: its spawns and exits use that worker's cache.
pub(crate) fn enter_worker(pool: &Arc<StackPool>, index: usize) -> WorkerGuard {
    WORKER_OF.with(|c| c.set((Arc::as_ptr(pool), index)));
    WorkerGuard(())
}

/// Ends [`enter_worker`] on drop.
pub(crate) struct WorkerGuard(());

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        WORKER_OF.with(|c| c.set((std::ptr::null(), 0)));
    }
}

struct PoolInner {
    free: Vec<Slot>,
    chunks: Vec<Mapping>,
    /// Slots carved from the newest chunk so far.
    next_in_chunk: usize,
    chunk_stacks: usize,
    carved: usize,
}

/// Stack pool statistics (a consistent snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Stacks carved from mappings so far (pooled size class) plus odd-sized ones made.
    pub allocated: usize,
    /// Stacks idle in the pool, ready for reuse.
    pub pooled: usize,
    /// Stacks currently owned by a coroutine.
    pub live: usize,
    /// Mappings the pool holds.
    pub mappings: usize,
}

/// A pool of equally sized stacks.
pub(crate) struct StackPool {
    /// Usable bytes per stack (page multiple).
    stack_size: usize,
    /// Guard bytes below each stack (one page).
    guard: usize,
    /// Upper bound on stacks carved (`None` = until the OS says no).
    max_stacks: Option<usize>,
    inner: Mutex<PoolInner>,
    /// One per worker (see [`enter_worker`]).
    caches: Box<[WorkerCache]>,
    odd_allocated: AtomicUsize,
}

impl StackPool {
    /// A pool for a runtime of `workers` worker threads.
    pub(crate) fn new(stack_size: usize, max_stacks: Option<usize>, workers: usize) -> Arc<Self> {
        Arc::new(Self {
            stack_size: round_stack_size(stack_size),
            guard: page_size(),
            max_stacks,
            inner: Mutex::new(PoolInner {
                free: Vec::new(),
                chunks: Vec::new(),
                next_in_chunk: 0,
                chunk_stacks: 0,
                carved: 0,
            }),
            caches: (0..workers).map(|_| WorkerCache(Mutex::new(Vec::new()))).collect(),
            odd_allocated: AtomicUsize::new(0),
        })
    }

    /// This thread's cache, if it is a worker of this pool's runtime.
    #[inline(never)]
    fn my_cache(&self) -> Option<&WorkerCache> {
        let (pool, index) = WORKER_OF.with(Cell::get);
        if std::ptr::eq(pool, self) { self.caches.get(index) } else { None }
    }

    pub(crate) fn stack_size(&self) -> usize {
        self.stack_size
    }

    fn lock(&self) -> MutexGuard<'_, PoolInner> {
        relock(&self.inner)
    }

    /// Takes a stack of `size` bytes (rounded): pooled when it is the pool's size,
    /// a dedicated mapping otherwise.
    pub(crate) fn get(self: &Arc<Self>, size: usize) -> Result<PooledStack, StackError> {
        let size = round_stack_size(size);
        if size != self.stack_size {
            return self.get_odd(size);
        }
        let slot = match self.my_cache() {
            Some(cache) => {
                // Its own statement: the cache's guard is released before a refill locks.
                let cached = relock(&cache.0).pop();
                match cached {
                    Some(slot) => slot,
                    None => self.refill(cache)?,
                }
            }
            None => self.take_shared()?,
        };
        Ok(PooledStack { limit: slot.limit, size, pool: Some(Arc::clone(self)), own: None })
    }

    /// A slot for a worker whose cache is empty: one, plus up to [`CACHE_REFILL`] - 1
    /// more into `cache`, taken under one lock. Lock order: a cache, then the pool; so the
    /// batch leaves the pool lock before it enters the cache.
    fn refill(&self, cache: &WorkerCache) -> Result<Slot, StackError> {
        let mut inner = self.lock();
        let keep = inner.free.len().saturating_sub(CACHE_REFILL);
        let mut batch = inner.free.split_off(keep);
        match batch.pop() {
            Some(slot) => {
                drop(inner);
                relock(&cache.0).extend(batch);
                Ok(slot)
            }
            None => self.carve_or_borrow(inner),
        }
    }

    /// A slot from the shared list, else a new one.
    fn take_shared(&self) -> Result<Slot, StackError> {
        let mut inner = self.lock();
        match inner.free.pop() {
            Some(slot) => Ok(slot),
            None => self.carve_or_borrow(inner),
        }
    }

    /// Carves a new slot; at the cap, takes one from a worker's cache instead, so stacks
    /// idle in a cache never make a spawn fail. Called holding no cache lock.
    fn carve_or_borrow(&self, mut inner: MutexGuard<'_, PoolInner>) -> Result<Slot, StackError> {
        match self.carve(&mut inner) {
            Err(StackError::Exhausted { max }) => {
                drop(inner);
                let other = self.caches.iter().find_map(|c| relock(&c.0).pop());
                other.ok_or(StackError::Exhausted { max })
            }
            r => r,
        }
    }

    /// Caller holds `inner`. Carves one slot, mapping a new chunk when the last is used up.
    fn carve(&self, inner: &mut PoolInner) -> Result<Slot, StackError> {
        if let Some(max) = self.max_stacks
            && inner.carved >= max
        {
            return Err(StackError::Exhausted { max });
        }
        let slot_len = self.guard + self.stack_size;
        if inner.chunks.is_empty() || inner.next_in_chunk == inner.chunk_stacks {
            let stacks = if inner.chunk_stacks == 0 {
                FIRST_CHUNK_STACKS
            } else {
                (inner.chunk_stacks * 2).min(MAX_CHUNK_STACKS)
            };
            let stacks = match self.max_stacks {
                Some(max) => stacks.min(max - inner.carved).max(1),
                None => stacks,
            };
            let mapping = Mapping::new(slot_len * stacks)?;
            inner.chunks.push(mapping);
            inner.chunk_stacks = stacks;
            inner.next_in_chunk = 0;
        }
        let chunk = inner.chunks.last().ok_or(StackError::Exhausted { max: 0 })?;
        // SAFETY: next_in_chunk < chunk_stacks, so the slot lies inside the chunk.
        let limit = unsafe { chunk.base.as_ptr().add(inner.next_in_chunk * slot_len) };
        // SAFETY: the guard page is page-aligned, inside our chunk, and never handed out before.
        unsafe { install_guard(limit, self.guard)? };
        inner.next_in_chunk += 1;
        inner.carved += 1;
        Ok(Slot { limit: NonNull::new(limit).ok_or(StackError::Exhausted { max: 0 })? })
    }

    fn get_odd(self: &Arc<Self>, size: usize) -> Result<PooledStack, StackError> {
        if let Some(max) = self.max_stacks
            && self.lock().carved + self.odd_allocated.load(Relaxed) >= max
        {
            return Err(StackError::Exhausted { max });
        }
        let too_big =
            || StackError::Map { bytes: size, source: std::io::Error::from_raw_os_error(libc::ENOMEM) };
        let mapping = Mapping::new(self.guard.checked_add(size).ok_or_else(too_big)?)?;
        // SAFETY: the first page of a fresh mapping we own.
        unsafe { install_guard(mapping.base.as_ptr(), self.guard)? };
        self.odd_allocated.fetch_add(1, Relaxed);
        Ok(PooledStack { limit: mapping.base, size, pool: Some(Arc::clone(self)), own: Some(mapping) })
    }

    fn put(&self, stack: &mut PooledStack) {
        if stack.own.take().is_some() {
            self.odd_allocated.fetch_sub(1, Relaxed);
            return; // dropping the mapping unmaps it
        }
        let slot = Slot { limit: stack.limit };
        let Some(cache) = self.my_cache() else {
            self.lock().free.push(slot);
            return;
        };
        let mut mine = relock(&cache.0);
        mine.push(slot);
        if mine.len() > CACHE_MAX {
            let half = mine.len() / 2;
            self.lock().free.extend(mine.drain(half..));
        }
    }

    pub(crate) fn stats(&self) -> StackStats {
        // Caches first, then the shared list: a stack moving between them while we look
        // may be counted twice or not at all, which a snapshot of moving counts allows.
        let cached: usize = self.caches.iter().map(|c| relock(&c.0).len()).sum();
        let inner = self.lock();
        let odd = self.odd_allocated.load(Relaxed);
        let pooled = inner.free.len() + cached;
        StackStats {
            allocated: inner.carved + odd,
            pooled,
            live: inner.carved.saturating_sub(pooled) + odd,
            mappings: inner.chunks.len() + odd,
        }
    }
}

/// Locks a cache or the free list; a panic while holding one cannot leave it inconsistent
/// (every mutation is a push, a pop or a drain), so poisoning is ignored.
fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A stack on loan from a [`StackPool`]; returns itself on drop.
pub(crate) struct PooledStack {
    limit: NonNull<u8>,
    /// Usable bytes above the guard page.
    size: usize,
    pool: Option<Arc<StackPool>>,
    /// Set for odd-sized stacks, which own their mapping.
    own: Option<Mapping>,
}

// SAFETY: the stack memory is owned by this value alone until it returns to the pool.
unsafe impl Send for PooledStack {}

impl PooledStack {
    /// `[guard_lo, guard_hi)`: the guard page range, for the overflow handler.
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        let lo = self.limit.as_ptr() as usize;
        let guard = self.pool.as_ref().map_or_else(page_size, |p| p.guard);
        (lo, lo + guard)
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }
}

impl Drop for PooledStack {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.put(self);
        }
    }
}

// SAFETY: `limit` is the guard page (which faults on access, installed before the stack was
// handed out) and `base` is `limit + guard + size`, page-aligned and so STACK_ALIGNMENT-aligned;
// the usable region is at least MIN_STACK_SIZE (16 KiB) > corosensei's 4 KiB minimum.
unsafe impl Stack for PooledStack {
    fn base(&self) -> StackPointer {
        let guard = self.pool.as_ref().map_or_else(page_size, |p| p.guard);
        let top = self.limit.as_ptr() as usize + guard + self.size;
        // top > limit > 0.
        StackPointer::new(top).unwrap_or(StackPointer::MIN)
    }

    fn limit(&self) -> StackPointer {
        StackPointer::new(self.limit.as_ptr() as usize).unwrap_or(NonZeroUsize::MIN)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_pages_and_minimum() {
        // Pages are 4, 16 or 64 KiB depending on the kernel; the minimum is a page multiple.
        let page = page_size();
        let min = MIN_STACK_SIZE.next_multiple_of(page);
        assert_eq!(round_stack_size(1), min);
        assert_eq!(round_stack_size(min), min);
        assert_eq!(round_stack_size(min + 1), min + page);
        assert_eq!(round_stack_size(usize::MAX), usize::MAX / page * page);
    }

    #[test]
    fn pool_reuses_and_counts() {
        let pool = StackPool::new(DEFAULT_STACK_SIZE, None, 1);
        let a = pool.get(DEFAULT_STACK_SIZE).unwrap();
        let b = pool.get(DEFAULT_STACK_SIZE).unwrap();
        assert_ne!(a.limit, b.limit);
        let a_limit = a.limit;
        drop(a);
        assert_eq!(pool.stats().pooled, 1);
        let c = pool.get(DEFAULT_STACK_SIZE).unwrap();
        assert_eq!(c.limit, a_limit, "the freed stack is reused");
        assert_eq!(pool.stats().live, 2);
        assert_eq!(pool.stats().allocated, 2);
        drop((b, c));
        assert_eq!(pool.stats().live, 0);
    }

    #[test]
    fn stack_memory_is_writable_end_to_end() {
        let pool = StackPool::new(MIN_STACK_SIZE, None, 1);
        let s = pool.get(MIN_STACK_SIZE).unwrap();
        let (lo, hi) = (s.limit().get() + page_size(), s.base().get());
        assert_eq!(hi - lo, round_stack_size(MIN_STACK_SIZE));
        // SAFETY: [lo, hi) is the usable, writable part of a stack we own.
        unsafe { std::ptr::write_bytes(lo as *mut u8, 0xA5, hi - lo) };
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn guard_page_refuses_access_and_the_stack_does_not() {
        // Whatever the mechanism (madvise or mprotect), the page below each stack must fault
        // and the lowest usable byte must not.
        let pool = StackPool::new(MIN_STACK_SIZE, None, 1);
        let stacks: Vec<_> = (0..3).map(|_| pool.get(MIN_STACK_SIZE).unwrap()).collect();
        assert!(guard_mode().is_some());
        for s in &stacks {
            let (lo, hi) = s.guard_range();
            assert_eq!(hi - lo, page_size());
            assert!(refuses_access(lo as *const u8), "guard page start is accessible ({:?})", guard_mode());
            assert!(
                refuses_access((hi - 1) as *const u8),
                "guard page end is accessible ({:?})",
                guard_mode()
            );
            assert!(!refuses_access(hi as *const u8), "the stack's lowest byte must be usable");
        }
        // Twice the default: a page multiple that differs from the pool's size on any page size.
        let odd = pool.get(DEFAULT_STACK_SIZE * 2).unwrap();
        assert_eq!(pool.stats().mappings, 2, "the odd size has a mapping of its own");
        assert!(refuses_access(odd.guard_range().0 as *const u8), "odd-sized stacks are guarded too");
    }

    #[test]
    fn exhaustion_is_an_error_not_a_crash() {
        let pool = StackPool::new(MIN_STACK_SIZE, Some(3), 1);
        let held: Vec<_> = (0..3).map(|_| pool.get(MIN_STACK_SIZE).unwrap()).collect();
        assert!(matches!(pool.get(MIN_STACK_SIZE), Err(StackError::Exhausted { max: 3 })));
        drop(held);
        assert!(pool.get(MIN_STACK_SIZE).is_ok(), "freed stacks are reusable under the cap");
    }

    #[test]
    fn a_worker_reuses_its_own_stacks_and_the_counts_hold() {
        let pool = StackPool::new(MIN_STACK_SIZE, None, 2);
        let _me = enter_worker(&pool, 1);
        let a = pool.get(MIN_STACK_SIZE).unwrap();
        let a_limit = a.limit;
        drop(a);
        assert_eq!(relock(&pool.caches[1].0).len(), 1, "freed into this worker's cache");
        assert_eq!(pool.lock().free.len(), 0, "not into the shared list");
        assert_eq!((pool.stats().pooled, pool.stats().live), (1, 0));
        let b = pool.get(MIN_STACK_SIZE).unwrap();
        assert_eq!(b.limit, a_limit, "taken back from the cache");
        assert_eq!((pool.stats().pooled, pool.stats().live, pool.stats().allocated), (0, 1, 1));
        // Past CACHE_MAX, half the cache goes back to the shared list.
        let held: Vec<_> = (0..=CACHE_MAX).map(|_| pool.get(MIN_STACK_SIZE).unwrap()).collect();
        drop(held);
        let cached = relock(&pool.caches[1].0).len();
        assert!((CACHE_MAX / 2..=CACHE_MAX).contains(&cached), "cache holds {cached}");
        assert_eq!(cached + pool.lock().free.len(), CACHE_MAX + 1);
        drop(b);
        assert_eq!(pool.stats().live, 0);
    }

    #[test]
    fn a_dry_cache_refills_in_a_batch_and_other_threads_use_the_shared_list() {
        let pool = StackPool::new(MIN_STACK_SIZE, None, 1);
        let held: Vec<_> = (0..40).map(|_| pool.get(MIN_STACK_SIZE).unwrap()).collect();
        drop(held); // not a worker: all 40 to the shared list
        assert_eq!(pool.lock().free.len(), 40);
        let _me = enter_worker(&pool, 0);
        let s = pool.get(MIN_STACK_SIZE).unwrap();
        assert_eq!(pool.lock().free.len(), 40 - CACHE_REFILL, "one refill took a batch");
        assert_eq!(relock(&pool.caches[0].0).len(), CACHE_REFILL - 1);
        assert_eq!((pool.stats().pooled, pool.stats().live, pool.stats().allocated), (39, 1, 40));
        drop(s);
    }

    #[test]
    fn stacks_idle_in_a_worker_cache_do_not_make_the_cap_fail() {
        let pool = StackPool::new(MIN_STACK_SIZE, Some(2), 1);
        let p2 = Arc::clone(&pool);
        // A worker takes both stacks the cap allows and frees them into its cache.
        std::thread::spawn(move || {
            let _me = enter_worker(&p2, 0);
            let held: Vec<_> = (0..2).map(|_| p2.get(MIN_STACK_SIZE).unwrap()).collect();
            drop(held);
            assert_eq!(relock(&p2.caches[0].0).len(), 2);
        })
        .join()
        .unwrap();
        // Another thread at the cap borrows them instead of failing.
        let held: Vec<_> = (0..2).map(|_| pool.get(MIN_STACK_SIZE).unwrap()).collect();
        assert!(matches!(pool.get(MIN_STACK_SIZE), Err(StackError::Exhausted { max: 2 })));
        assert_eq!(pool.stats().allocated, 2);
        drop(held);
    }

    #[test]
    fn odd_sizes_get_their_own_mapping() {
        let pool = StackPool::new(MIN_STACK_SIZE, None, 1);
        let s = pool.get(128 << 10).unwrap();
        assert_eq!(s.size(), 128 << 10);
        assert_eq!(pool.stats().live, 1);
        drop(s);
        assert_eq!(pool.stats().live, 0);
        assert_eq!(pool.stats().pooled, 0);
    }

    /// A size no mapping can have is an error: the rounding wrapped to 0 in release builds,
    /// and a stack of no bytes crashed the first write to it.
    #[test]
    fn a_size_past_the_address_space_is_refused() {
        let pool = StackPool::new(MIN_STACK_SIZE, None, 1);
        for size in [usize::MAX, usize::MAX - page_size(), usize::MAX / 2 + 1] {
            assert!(matches!(pool.get(size), Err(StackError::Map { .. })), "{size}");
        }
        assert_eq!(pool.stats().live, 0);
    }

    #[test]
    fn many_stacks_use_few_mappings() {
        let pool = StackPool::new(MIN_STACK_SIZE, None, 1);
        let held: Vec<_> = (0..4096).map(|_| pool.get(MIN_STACK_SIZE).unwrap()).collect();
        let st = pool.stats();
        assert_eq!(st.live, 4096);
        assert!(st.mappings <= 10, "chunks grow geometrically: {st:?}");
        drop(held);
    }
}
