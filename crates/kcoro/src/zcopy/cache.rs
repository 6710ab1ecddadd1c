//! Per-thread caches of free blocks in front of a region's shared free lists.
//!
//! Why: a lease allocated and dropped on one thread (a request buffer, a frame) paid a
//! compare-exchange on the class's shared list each way; a producer/consumer pair paid
//! them on a cache line both threads write. Here a thread keeps up to [`cap`] freed
//! blocks of each small class in a stack of its own and takes from it first: no atomic
//! read-modify-write, no link cell. A full stack goes back to the shared list as one
//! chain in one CAS; an empty one refills with up to half a stack in one CAS.
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
//!
//! The cache is a constant-initialised thread-local without a destructor, so reaching it
//! is an offset from the thread pointer (no lazy registration check per lease); a second
//! thread-local, [`TEARDOWN`], registered when a thread first binds a region, gives the
//! blocks back when the thread ends and closes the cache for good.

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
/// Bytes one stack may hold.
const STACK_BYTES: usize = 32 << 10;
/// Most blocks a stack holds (of classes up to 1 KiB).
const STACK_SLOTS: usize = 32;

/// Blocks one stack of `class` may hold: 32, fewer for blocks over 1 KiB.
#[inline]
fn cap(class: u32) -> u32 {
    (STACK_BYTES >> (class_size(class).trailing_zeros())).min(STACK_SLOTS) as u32
}

/// Free block ids of one class this thread owns, the last freed on top.
#[derive(Clone, Copy)]
struct Stack {
    len: u32,
    ids: [u32; STACK_SLOTS],
}

impl Stack {
    const EMPTY: Stack = Stack { len: 0, ids: [0; STACK_SLOTS] };

    /// `id + 1` of the block on top, taken off; 0 when empty.
    #[inline]
    fn pop_plus_one(&mut self) -> u32 {
        match self.len.checked_sub(1) {
            Some(top) => {
                self.len = top;
                self.ids[top as usize] + 1
            }
            None => 0,
        }
    }

    /// Puts `id` on top if there is room below `cap`.
    #[inline]
    fn push(&mut self, id: u32, cap: u32) -> bool {
        if self.len >= cap {
            return false;
        }
        self.ids[self.len as usize] = id;
        self.len += 1;
        true
    }

    /// Gives every block back to `alloc`'s list of `class`, linked as one chain.
    fn give_back(&mut self, alloc: &SlabAlloc, class: u32) {
        let held = &self.ids[..self.len as usize];
        if let (Some(&first), Some(&last)) = (held.first(), held.last()) {
            for pair in held.windows(2) {
                alloc.link_in_chain(pair[0], pair[1] + 1);
            }
            alloc.give_chain(class, Chain { first, last, len: self.len });
        }
        self.len = 0;
    }
}

/// This thread's blocks of one region.
#[derive(Clone, Copy)]
struct Binding {
    /// The region's process-wide id; 0: unused.
    region_id: u64,
    export_id: u64,
    /// The region's `flush_epoch` when this binding last gave its blocks back.
    epoch: u64,
    stacks: [Stack; CACHED_CLASSES],
}

impl Binding {
    const UNUSED: Binding =
        Binding { region_id: 0, export_id: 0, epoch: 0, stacks: [Stack::EMPTY; CACHED_CLASSES] };

    /// Gives every stack back to `alloc`.
    fn flush(&mut self, alloc: &SlabAlloc) {
        for (class, stack) in self.stacks.iter_mut().enumerate() {
            stack.give_back(alloc, class as u32);
        }
    }

    fn is_empty(&self) -> bool {
        self.stacks.iter().all(|s| s.len == 0)
    }
}

struct ThreadCache {
    /// Most recently used first.
    bindings: [Binding; BINDINGS],
}

impl ThreadCache {
    const NEW: ThreadCache = ThreadCache { bindings: [Binding::UNUSED; BINDINGS] };

    /// The binding used last if it is `region`'s and has nothing to give back.
    #[inline]
    fn current(&mut self, region: &RegionInner) -> Option<&mut Binding> {
        let b = &mut self.bindings[0];
        (b.region_id == region.id && b.epoch == region.flush_epoch.load(Relaxed)).then_some(b)
    }

    /// This thread's binding for `region`, its stacks given back first if the region asked
    /// for them; made (evicting the least recently used) when `allocating`, else `None`
    /// for a region this thread does not allocate from.
    fn binding(&mut self, region: &RegionInner, alloc: &SlabAlloc, allocating: bool) -> Option<&mut Binding> {
        let at = match self.bindings.iter().position(|b| b.region_id == region.id) {
            Some(i) => i,
            None if !allocating => return None,
            // Registers the teardown; a thread past it binds nothing (its blocks could not
            // come back).
            None if TEARDOWN.try_with(|_| ()).is_err() => return None,
            None => {
                let last = BINDINGS - 1;
                release(&mut self.bindings[last]);
                self.bindings[last] = Binding {
                    region_id: region.id,
                    export_id: region.export_id,
                    epoch: region.flush_epoch.load(Relaxed),
                    stacks: [Stack::EMPTY; CACHED_CLASSES],
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

    /// Gives everything back (the thread ends; with its teardown gone, it binds no region
    /// again).
    fn close(&mut self) {
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
    *b = Binding::UNUSED;
}

/// Closes this thread's cache when its thread-locals are torn down.
struct Teardown;

impl Drop for Teardown {
    fn drop(&mut self) {
        with_cache(ThreadCache::close);
    }
}

thread_local! {
    static CACHE: RefCell<ThreadCache> = const { RefCell::new(ThreadCache::NEW) };
    static TEARDOWN: Teardown = const { Teardown };
}

/// Runs `f` on this thread's cache; `None` in the unlikely reentrant call, when the
/// caller goes to the shared lists.
#[inline]
fn with_cache<R>(f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
    CACHE.with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)))
}

/// A block of at least `len` bytes of `region` (whose allocator is `alloc`): from this
/// thread's stack, else a batch from the shared list, else as [`SlabAlloc::alloc`].
/// Inlined: the common case is a pop from the stack of the region used last.
#[inline]
pub(crate) fn alloc(region: &RegionInner, alloc: &SlabAlloc, len: usize) -> Option<Block> {
    let class = super::alloc::class_for(len)?;
    if (class as usize) < CACHED_CLASSES {
        // `id + 1` of the block popped, 0 for none: scalars, so nothing goes through memory.
        let hit =
            with_cache(|cache| cache.current(region).map_or(0, |b| b.stacks[class as usize].pop_plus_one()));
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
        let stack = &mut cache.binding(region, alloc, true)?.stacks[class as usize];
        if let top @ 1.. = stack.pop_plus_one() {
            return Some(alloc.block(top - 1, class));
        }
        // Refill with up to half a stack: the next frees have room before a give-back.
        let taken = alloc.take_chain(class, cap(class) / 2)?;
        let mut next = alloc.next_in_chain(taken.first);
        for _ in 1..taken.len {
            let Some(id) = next.checked_sub(1) else { break };
            next = alloc.next_in_chain(id);
            stack.push(id, cap(class));
        }
        Some(alloc.block(taken.first, class))
    });
    match cached {
        Some(Some(block)) => Some(block),
        // This class has nothing free here: a larger class may (the shared path).
        Some(None) | None => alloc.alloc(len),
    }
}

/// Returns `block` of `region`: to this thread's stack, or the shared list. Inlined as
/// [`alloc`] is.
#[inline]
pub(crate) fn free(region: &RegionInner, alloc: &SlabAlloc, block: Block) {
    let class = block.class();
    if (class as usize) < CACHED_CLASSES {
        let id = alloc.id(block);
        let kept = with_cache(|cache| {
            cache.current(region).is_some_and(|b| b.stacks[class as usize].push(id, cap(class)))
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
    if block.class() as usize >= CACHED_CLASSES {
        return alloc.free(block);
    }
    let kept = with_cache(|cache| {
        let stack = &mut cache.binding(region, alloc, false)?.stacks[block.class() as usize];
        let cap = cap(block.class());
        if stack.len == cap {
            stack.give_back(alloc, block.class());
        }
        stack.push(alloc.id(block), cap).then_some(())
    });
    if kept.flatten().is_none() {
        alloc.free(block);
    }
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
            .flat_map(|b| b.stacks.iter().map(|s| s.len))
            .sum()
    })
    .unwrap_or(0)
}
