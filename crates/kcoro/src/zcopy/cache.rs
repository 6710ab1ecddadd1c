//! Per-thread caches of free blocks in front of a region's shared free lists.
//!
//! Why: a lease allocated and dropped on one thread (a request buffer, a frame) paid a
//! compare-exchange on the class's shared list each way; a producer/consumer pair paid
//! them on a cache line both threads write. Here a thread keeps up to [`cap`] freed
//! blocks of each small class in a chain of its own, linked through the allocator's link
//! cells, and takes from it first: no atomic read-modify-write. A full chain goes back to
//! the shared list in one CAS; an empty one refills with up to half a chain in one CAS.
//!
//! What a cache costs: blocks in one thread's cache are invisible to others. A thread
//! caches only for regions it allocates from (a thread that only drops leases, a consumer,
//! gives every block straight back), for at most [`BINDINGS`] regions, at most 32 KiB per
//! class (classes up to 4 KiB), and gives everything back when the thread ends, when it
//! moves on to other regions, and when an allocation of the region found nothing
//! (`RegionInner::flush_epoch`: every thread gives its blocks of that region back at its
//! next lease operation there).
//!
//! The cache holds no pointer to a region, only its ids: a region met again is known by
//! its process-wide `id` (never reused), and one the thread no longer holds is found
//! through the region table, or is gone and its blocks with it.

use std::cell::RefCell;
use std::sync::atomic::Ordering::Relaxed;

use super::alloc::{Block, Chain, SlabAlloc, class_size};
use super::region::RegionInner;
use super::table;

/// Classes cached: 64 B to 4 KiB. Caching larger ones was measured not to pay: a message
/// of 64 KiB or more costs its page walks, not its free-list CAS.
const CACHED_CLASSES: usize = 7;
/// Regions a thread caches blocks of at once.
const BINDINGS: usize = 2;
/// Bytes one chain may hold.
const CHAIN_BYTES: usize = 32 << 10;

/// Blocks one chain of `class` may hold: 32, fewer for blocks over 1 KiB.
#[inline]
fn cap(class: u32) -> u32 {
    (CHAIN_BYTES >> (class_size(class).trailing_zeros())).min(32) as u32
}

/// A chain this thread owns: `head` is `id + 1` of its first block (0: empty).
#[derive(Clone, Copy, Default)]
struct Local {
    head: u32,
    last: u32,
    len: u32,
}

/// This thread's blocks of one region.
#[derive(Clone, Copy, Default)]
struct Binding {
    /// The region's process-wide id; 0: unused.
    region_id: u64,
    export_id: u64,
    /// The region's `flush_epoch` when this binding last gave its blocks back.
    epoch: u64,
    chains: [Local; CACHED_CLASSES],
}

impl Binding {
    /// Gives every chain back to `alloc`.
    fn flush(&mut self, alloc: &SlabAlloc) {
        for (class, c) in self.chains.iter_mut().enumerate() {
            if c.len > 0 {
                alloc.give_chain(class as u32, Chain { first: c.head - 1, last: c.last, len: c.len });
            }
            *c = Local::default();
        }
    }

    fn is_empty(&self) -> bool {
        self.chains.iter().all(|c| c.len == 0)
    }
}

#[derive(Default)]
struct ThreadCache {
    /// Most recently used first.
    bindings: [Binding; BINDINGS],
}

impl ThreadCache {
    /// The binding used last if it is `region`'s and has nothing to give back.
    #[inline]
    fn current(&mut self, region: &RegionInner) -> Option<&mut Binding> {
        let b = &mut self.bindings[0];
        (b.region_id == region.id && b.epoch == region.flush_epoch.load(Relaxed)).then_some(b)
    }

    /// This thread's binding for `region`, its chains given back first if the region asked
    /// for them; made (evicting the least recently used) when `allocating`, else `None`
    /// for a region this thread does not allocate from.
    fn binding(&mut self, region: &RegionInner, alloc: &SlabAlloc, allocating: bool) -> Option<&mut Binding> {
        let at = match self.bindings.iter().position(|b| b.region_id == region.id) {
            Some(i) => i,
            None if !allocating => return None,
            None => {
                let last = BINDINGS - 1;
                release(&mut self.bindings[last]);
                self.bindings[last] = Binding {
                    region_id: region.id,
                    export_id: region.export_id,
                    epoch: region.flush_epoch.load(Relaxed),
                    chains: Default::default(),
                };
                last
            }
        };
        if at != 0 {
            self.bindings[..=at].rotate_right(1);
        }
        let b = &mut self.bindings[0];
        let epoch = region.flush_epoch.load(Relaxed);
        if b.epoch != epoch {
            b.flush(alloc);
            b.epoch = epoch;
        }
        Some(b)
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        for b in &mut self.bindings {
            release(b);
        }
    }
}

/// Gives a binding's blocks back to its region if the region is still there, and clears
/// it. A region that is gone (or was deregistered) takes its blocks with it.
fn release(b: &mut Binding) {
    if b.region_id != 0
        && !b.is_empty()
        && let Ok(region) = table::lookup(b.export_id)
        && region.id == b.region_id
        && let Some(alloc) = region.allocator()
    {
        b.flush(alloc);
    }
    *b = Binding::default();
}

thread_local! {
    static CACHE: RefCell<ThreadCache> = RefCell::new(ThreadCache::default());
}

/// Runs `f` on this thread's cache; `None` while the thread is being torn down (or in
/// the unlikely reentrant call), when the caller goes to the shared lists.
#[inline]
fn with_cache<R>(f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
    CACHE.try_with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c))).ok().flatten()
}

/// A block of at least `len` bytes of `region` (whose allocator is `alloc`): from this
/// thread's chain, else a batch from the shared list, else as [`SlabAlloc::alloc`].
/// Inlined: the common case is a pop from the chain of the region used last.
#[inline]
pub(crate) fn alloc(region: &RegionInner, alloc: &SlabAlloc, len: usize) -> Option<Block> {
    let class = super::alloc::class_for(len)?;
    if (class as usize) < CACHED_CLASSES {
        // `id + 1` of the block popped, 0 for none: scalars, so nothing goes through memory.
        let hit =
            with_cache(|cache| match cache.current(region).and_then(|b| b.chains.get_mut(class as usize)) {
                Some(c) if c.len > 0 => pop(alloc, c) + 1,
                _ => 0,
            });
        if let Some(top @ 1..) = hit {
            return Some(alloc.block(top - 1, class));
        }
    }
    alloc_slow(region, alloc, len, class)
}

#[cold]
#[inline(never)]
fn alloc_slow(region: &RegionInner, alloc: &SlabAlloc, len: usize, class: u32) -> Option<Block> {
    if class as usize >= CACHED_CLASSES {
        return alloc.alloc(len);
    }
    let cached = with_cache(|cache| {
        let c = &mut cache.binding(region, alloc, true)?.chains[class as usize];
        if c.len > 0 {
            return Some(alloc.block(pop(alloc, c), class));
        }
        // Refill with up to half a chain: the next frees have room before a give-back.
        let taken = alloc.take_chain(class, cap(class) / 2)?;
        if taken.len > 1 {
            *c = Local { head: alloc.next_in_chain(taken.first), last: taken.last, len: taken.len - 1 };
        }
        Some(alloc.block(taken.first, class))
    });
    match cached {
        Some(Some(block)) => Some(block),
        // This class has nothing free here: a larger class may (the shared path).
        Some(None) | None => alloc.alloc(len),
    }
}

/// Returns `block` of `region`: to this thread's chain, or the shared list. Inlined as
/// [`alloc`] is.
#[inline]
pub(crate) fn free(region: &RegionInner, alloc: &SlabAlloc, block: Block) {
    let class = block.class;
    if (class as usize) < CACHED_CLASSES {
        let kept =
            with_cache(|cache| match cache.current(region).and_then(|b| b.chains.get_mut(class as usize)) {
                Some(c) if c.len < cap(class) => {
                    push(alloc, c, block);
                    true
                }
                _ => false,
            });
        if kept == Some(true) {
            return;
        }
    }
    free_slow(region, alloc, block)
}

#[cold]
#[inline(never)]
fn free_slow(region: &RegionInner, alloc: &SlabAlloc, block: Block) {
    if block.class as usize >= CACHED_CLASSES {
        return alloc.free(block);
    }
    let kept = with_cache(|cache| {
        let c = &mut cache.binding(region, alloc, false)?.chains[block.class as usize];
        if c.len == cap(block.class) {
            alloc.give_chain(block.class, Chain { first: c.head - 1, last: c.last, len: c.len });
            *c = Local::default();
        }
        push(alloc, c, block);
        Some(())
    });
    if kept.flatten().is_none() {
        alloc.free(block);
    }
}

/// Takes the first block of chain `c` (which is not empty): its id.
#[inline]
fn pop(alloc: &SlabAlloc, c: &mut Local) -> u32 {
    let id = c.head - 1;
    c.head = alloc.next_in_chain(id);
    c.len -= 1;
    id
}

/// Links `block` in front of chain `c` (which has room).
#[inline]
fn push(alloc: &SlabAlloc, c: &mut Local, block: Block) {
    let id = alloc.id(block);
    alloc.link_in_chain(id, c.head);
    if c.len == 0 {
        c.last = id;
    }
    c.head = id + 1;
    c.len += 1;
}

/// Gives this thread's blocks of `region` back now (an allocation found nothing).
pub(crate) fn flush(region: &RegionInner, alloc: &SlabAlloc) {
    with_cache(|cache| {
        if let Some(b) = cache.bindings.iter_mut().find(|b| b.region_id == region.id) {
            b.flush(alloc);
        }
    });
}

/// Blocks of `region` in this thread's cache (tests).
#[cfg(all(test, not(loom)))]
pub(crate) fn cached(region: &RegionInner) -> u32 {
    with_cache(|cache| {
        cache
            .bindings
            .iter()
            .filter(|b| b.region_id == region.id)
            .flat_map(|b| b.chains.iter().map(|c| c.len))
            .sum()
    })
    .unwrap_or(0)
}
