//! The region allocator: power-of-two size classes carved from 64 KiB slabs, each class a
//! lock-free LIFO free list (a Treiber stack with a tagged head).
//!
//! Why this shape: leases are mostly payload buffers of a few recurring sizes, handed out
//! on one thread and returned on another. Size classes make both directions O(1) with one
//! CAS each and no lock, which a best-fit or buddy allocator cannot; the price is internal
//! fragmentation (at most half a block) and no coalescing (a slab carved for one class
//! serves that class until the region is gone; once every slab is carved, a request may
//! take a free block of a larger class, never of a smaller one), both acceptable for a
//! region sized for its workload. All metadata lives in this process's heap, never in the region: another
//! process that maps the region cannot corrupt the free lists.
//!
//! ```text
//!   class c serves blocks of 64 << c bytes
//!   c <= 10: blocks inside one slab (64 B .. 64 KiB); the slab's blocks link through its
//!            own link array: id = slab << 10 | index
//!   c >  10: a span of 2^(c-10) contiguous slabs; id = first slab << 10
//!   head word: { tag: 32 | id + 1: 32 }  (0 in the low half: empty)
//! ```
//!
//! # Invariants
//! - A block id is on at most one free list at a time, and never while leased.
//! - `next_slab` only grows: a slab below it has been carved for exactly one class
//!   (`slab_class`), a slab at or above it is untouched.
//! - Every push and pop bumps the head's tag, so a head word never repeats while a pop is
//!   in flight (ABA: a wrap needs 2^32 operations between one pop's load and its CAS).

use std::sync::OnceLock;

use crate::loom::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

/// Smallest block: 64 bytes (one cache line), class 0.
pub(crate) const MIN_SHIFT: u32 = 6;
/// Slab size: 64 KiB, class 10.
pub(crate) const SLAB_SHIFT: u32 = 16;
pub(crate) const SLAB: usize = 1 << SLAB_SHIFT;
/// Classes that fit inside one slab.
const SLAB_CLASSES: u32 = SLAB_SHIFT - MIN_SHIFT + 1;
/// Up to spans of 2^37 slabs; far past any region we map.
const CLASSES: usize = 48;
/// Bits of a block id that index inside a slab (1024 blocks of 64 B).
const INDEX_BITS: u32 = SLAB_SHIFT - MIN_SHIFT;
/// `slab_class` of a slab nobody has carved.
const UNCARVED: u8 = u8::MAX;

/// Block size of class `c`.
#[inline]
pub(crate) const fn class_size(c: u32) -> usize {
    1 << (MIN_SHIFT + c)
}

/// The class serving `len` bytes (`len >= 1`).
#[inline]
pub(crate) fn class_for(len: usize) -> Option<u32> {
    // ceil(log2(len)), at least MIN_SHIFT: the highest bit of `(len - 1) | 63`, plus one.
    let c = ((len.max(1) - 1) | (class_size(0) - 1)).ilog2() + 1 - MIN_SHIFT;
    (c < CLASSES as u32).then_some(c)
}

/// A Treiber stack of block ids whose links live in arrays the caller owns.
#[derive(Default)]
pub(crate) struct FreeList {
    /// `{ tag: 32 | id + 1: 32 }`. Link cells hold `id + 1` of the next block, 0 at the end.
    head: AtomicU64,
}

impl FreeList {
    /// Pops a block; `link(id)` is the link cell of `id`.
    pub(crate) fn pop<'a>(&self, link: impl Fn(u32) -> &'a AtomicU32) -> Option<u32> {
        // Acquire: pairs with the Release CAS in `push_chain`, so the link written before
        // the push is visible here.
        let mut head = self.head.load(Acquire);
        loop {
            let top = head as u32;
            if top == 0 {
                return None;
            }
            let id = top - 1;
            // A stale read (the block was popped and pushed again meanwhile) is harmless:
            // the tag changed, so the CAS below fails.
            let next = link(id).load(Relaxed);
            let new = (u64::from((head >> 32) as u32).wrapping_add(1) << 32) | u64::from(next);
            match self.head.compare_exchange_weak(head, new, Acquire, Acquire) {
                Ok(_) => return Some(id),
                Err(now) => head = now,
            }
        }
    }

    /// Pops up to `max` blocks (`max >= 1`) in one CAS: `(first, last, count)`, still linked
    /// `first -> .. -> last` through `link` (the cell of `last` is stale). `link` answers
    /// `None` for an id it does not know; a walk that meets one starts again.
    pub(crate) fn pop_chain<'a>(
        &self,
        max: u32,
        link: impl Fn(u32) -> Option<&'a AtomicU32>,
    ) -> Option<(u32, u32, u32)> {
        // Acquire: as in `pop`; every push before this head value (a chain of RMWs) is
        // visible, so are the links it published.
        let mut head = self.head.load(Acquire);
        loop {
            let top = head as u32;
            if top == 0 {
                return None;
            }
            // The walk reads links without owning the blocks: if anything was pushed or
            // popped meanwhile, the tag changed and the CAS fails; if nothing was, the walk
            // read the list as it is (blocks on the list are linked only by pushes).
            let (first, mut last, mut count) = (top - 1, top - 1, 1);
            let mut next = link(last).map(|c| c.load(Relaxed));
            while let Some(n) = next.filter(|&n| n != 0 && count < max) {
                last = n - 1;
                count += 1;
                next = link(last).map(|c| c.load(Relaxed));
            }
            let Some(rest) = next else {
                head = self.head.load(Acquire);
                continue;
            };
            let new = (u64::from((head >> 32) as u32).wrapping_add(1) << 32) | u64::from(rest);
            match self.head.compare_exchange_weak(head, new, Acquire, Acquire) {
                Ok(_) => return Some((first, last, count)),
                Err(now) => head = now,
            }
        }
    }

    /// Pushes the chain `first -> .. -> last`, already linked through `link`, in one CAS.
    pub(crate) fn push_chain<'a>(&self, first: u32, last: u32, link: impl Fn(u32) -> &'a AtomicU32) {
        let mut head = self.head.load(Relaxed);
        loop {
            link(last).store(head as u32, Relaxed);
            let new = (u64::from((head >> 32) as u32).wrapping_add(1) << 32) | u64::from(first + 1);
            // Release: publishes the chain's links to the next `pop`.
            match self.head.compare_exchange_weak(head, new, Release, Relaxed) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

/// The allocator of one region.
pub(crate) struct SlabAlloc {
    slabs: usize,
    /// First slab never carved.
    next_slab: AtomicUsize,
    heads: [FreeList; CLASSES],
    /// Class of each carved slab (of the first slab of a span), `UNCARVED` otherwise.
    slab_class: Box<[AtomicU8]>,
    /// Link cells of each carved slab's blocks (one cell for a span).
    links: Box<[OnceLock<Box<[AtomicU32]>>]>,
}

/// Blocks of one class linked `first -> .. -> last` through the allocator's link cells,
/// owned by whoever holds the chain (a thread cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) first: u32,
    pub(crate) last: u32,
    pub(crate) len: u32,
}

/// A block handed out: its offset in the region and its class, in one word (`offset |
/// class`: offsets are multiples of 64, classes below 64). One word, so that a lease is
/// three words without padding, which the compiler keeps in registers; with a padded
/// two-field block, a lease returned by an inlined allocation was copied through the
/// stack by stores of one width and loads of another (a stalled store forwarding).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block(u64);

const CLASS_BITS: u64 = (1 << MIN_SHIFT) - 1;
const _: () = assert!(CLASSES as u64 <= CLASS_BITS + 1, "a class fits below a block's offset");

impl Block {
    #[inline]
    pub(crate) fn new(offset: u64, class: u32) -> Block {
        debug_assert!(offset & CLASS_BITS == 0 && (class as usize) < CLASSES, "block {offset}/{class}");
        Block(offset | u64::from(class))
    }

    /// Where the block starts in its region.
    #[inline]
    pub(crate) fn offset(self) -> u64 {
        self.0 & !CLASS_BITS
    }

    #[inline]
    pub(crate) fn class(self) -> u32 {
        (self.0 & CLASS_BITS) as u32
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block").field("offset", &self.offset()).field("class", &self.class()).finish()
    }
}

impl SlabAlloc {
    /// An allocator over `len` bytes (`len` a multiple of [`SLAB`]).
    pub(crate) fn new(len: usize) -> Self {
        let slabs = len >> SLAB_SHIFT;
        SlabAlloc {
            slabs,
            next_slab: AtomicUsize::new(0),
            heads: std::array::from_fn(|_| FreeList::default()),
            slab_class: (0..slabs).map(|_| AtomicU8::new(UNCARVED)).collect(),
            links: (0..slabs).map(|_| OnceLock::new()).collect(),
        }
    }

    #[inline]
    fn link(&self, id: u32) -> &AtomicU32 {
        match self.link_of(id) {
            Some(cell) => cell,
            None => {
                unreachable!("SlabAlloc::link: block {id} is on a free list but its slab has no link cell")
            }
        }
    }

    #[inline]
    fn link_of(&self, id: u32) -> Option<&AtomicU32> {
        let (slab, index) = ((id >> INDEX_BITS) as usize, (id & ((1 << INDEX_BITS) - 1)) as usize);
        self.links.get(slab).and_then(OnceLock::get).and_then(|l| l.get(index))
    }

    /// Up to `max` free blocks of `class` in one CAS, linked `first -> .. -> last` (the
    /// chain a thread cache keeps, see `cache`); a freshly carved slab's first block when
    /// the class has none free. `None`: no block of this class is free or can be carved.
    pub(crate) fn take_chain(&self, class: u32, max: u32) -> Option<Chain> {
        if let Some((first, last, len)) = self.heads[class as usize].pop_chain(max, |id| self.link_of(id)) {
            return Some(Chain { first, last, len });
        }
        let id = self.carve(class)?;
        Some(Chain { first: id, last: id, len: 1 })
    }

    /// Returns a chain of blocks of `class`, linked `first -> .. -> last`, in one CAS.
    pub(crate) fn give_chain(&self, class: u32, chain: Chain) {
        self.heads[class as usize].push_chain(chain.first, chain.last, |id| self.link(id));
    }

    /// The block after `id` in a chain its holder owns (`id + 1`, 0 at the end).
    #[inline]
    pub(crate) fn next_in_chain(&self, id: u32) -> u32 {
        self.link(id).load(Relaxed)
    }

    /// Links `id` in front of `next` (`id + 1` of a block, or 0) in a chain its holder owns.
    #[inline]
    pub(crate) fn link_in_chain(&self, id: u32, next: u32) {
        self.link(id).store(next, Relaxed);
    }

    /// The block of `class` whose id is `id`.
    #[inline]
    pub(crate) fn block(&self, id: u32, class: u32) -> Block {
        Block::new(self.offset_of(id, class), class)
    }

    /// The id of a block handed out.
    #[inline]
    pub(crate) fn id(&self, block: Block) -> u32 {
        self.id_of(block)
    }

    /// A block of at least `len` bytes, or `None` when the region has no room left: from
    /// the class's free list, else fresh slabs, else a free block of a larger class (so a
    /// region whose slabs were all carved still serves any size it has a free block for).
    pub(crate) fn alloc(&self, len: usize) -> Option<Block> {
        let class = class_for(len)?;
        if let Some(id) = self.heads[class as usize].pop(|id| self.link(id)) {
            return Some(Block::new(self.offset_of(id, class), class));
        }
        if let Some(id) = self.carve(class) {
            return Some(Block::new(self.offset_of(id, class), class));
        }
        (class + 1..CLASSES as u32).find_map(|c| {
            let id = self.heads[c as usize].pop(|id| self.link(id))?;
            Some(Block::new(self.offset_of(id, c), c))
        })
    }

    /// Returns `block` to its class. The caller owned it (it came from `alloc`).
    pub(crate) fn free(&self, block: Block) {
        let id = self.id_of(block);
        self.heads[block.class() as usize].push_chain(id, id, |id| self.link(id));
    }

    /// The block starting at `offset` if a leasable block of `class` starts there (checks
    /// a descriptor coming back from a backend).
    pub(crate) fn block_at(&self, offset: u64, class: u32) -> Option<Block> {
        let slab = usize::try_from(offset >> SLAB_SHIFT).ok()?;
        let carved = self.slab_class.get(slab)?.load(Acquire);
        let in_slab = offset as usize & (SLAB - 1);
        (u32::from(carved) == class && in_slab % class_size(class).min(SLAB) == 0)
            .then(|| Block::new(offset, class))
    }

    #[inline]
    fn offset_of(&self, id: u32, class: u32) -> u64 {
        let slab = u64::from(id >> INDEX_BITS) << SLAB_SHIFT;
        if class < SLAB_CLASSES {
            slab + (u64::from(id & ((1 << INDEX_BITS) - 1)) << (MIN_SHIFT + class))
        } else {
            slab
        }
    }

    #[inline]
    fn id_of(&self, block: Block) -> u32 {
        let (offset, class) = (block.offset(), block.class());
        let slab = (offset >> SLAB_SHIFT) as u32;
        let index = if class < SLAB_CLASSES {
            ((offset as usize & (SLAB - 1)) >> (MIN_SHIFT + class)) as u32
        } else {
            0
        };
        slab << INDEX_BITS | index
    }

    /// Carves fresh slabs for `class`: returns one block and pushes the slab's others.
    fn carve(&self, class: u32) -> Option<u32> {
        let span = if class < SLAB_CLASSES { 1 } else { 1usize << (class - (SLAB_CLASSES - 1)) };
        let first = self
            .next_slab
            .fetch_update(AcqRel, Acquire, |n| n.checked_add(span).filter(|&end| end <= self.slabs))
            .ok()?;
        let blocks = if class < SLAB_CLASSES { SLAB >> (MIN_SHIFT + class) } else { 1 };
        let base = (first as u32) << INDEX_BITS;
        // Links hold `id + 1` of the next block (0: none): block i links to block i + 1.
        let cells: Box<[AtomicU32]> = (0..blocks as u32).map(|i| AtomicU32::new(base + i + 2)).collect();
        if self.links[first].set(cells).is_err() {
            unreachable!("SlabAlloc::carve: slab {first} was carved twice");
        }
        // Release: pairs with the Acquire load in `block_at`.
        self.slab_class[first].store(class as u8, Release);
        if blocks > 1 {
            // Blocks 1..blocks already link to their successors (set above); push them as
            // one chain and keep block 0.
            self.heads[class as usize].push_chain(base + 1, base + blocks as u32 - 1, |id| self.link(id));
        }
        Some(base)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn classes_round_up_to_powers_of_two() {
        assert_eq!(class_for(1), Some(0));
        assert_eq!(class_for(64), Some(0));
        assert_eq!(class_for(65), Some(1));
        assert_eq!(class_for(SLAB), Some(10));
        assert_eq!(class_for(SLAB + 1), Some(11));
        assert_eq!(class_for(0), Some(0));
        assert_eq!(class_for(class_size(CLASSES as u32 - 1)), Some(CLASSES as u32 - 1));
        assert_eq!(class_for(class_size(CLASSES as u32 - 1) + 1), None);
        assert_eq!(class_for(usize::MAX), None);
        assert_eq!(class_size(11), 2 * SLAB);
    }

    #[test]
    fn a_block_is_one_word_and_a_lease_three() {
        for (offset, class) in [(0, 0), (64, 0), (SLAB as u64 * 3 + 4096, 6), (1 << 40, CLASSES as u32 - 1)] {
            let b = Block::new(offset, class);
            assert_eq!((b.offset(), b.class()), (offset, class));
        }
        assert_eq!(size_of::<Block>(), 8);
        assert_eq!(size_of::<crate::zcopy::ZBuf>(), 3 * size_of::<u64>(), "no padding in a lease");
    }

    #[test]
    fn blocks_are_distinct_in_bounds_and_reused() {
        let a = SlabAlloc::new(4 * SLAB);
        let blocks: Vec<Block> = (0..SLAB / 64).map(|_| a.alloc(64).unwrap()).collect();
        let offsets: HashSet<u64> = blocks.iter().map(|b| b.offset()).collect();
        assert_eq!(offsets.len(), blocks.len(), "a block was handed out twice");
        assert!(offsets.iter().all(|&o| o % 64 == 0 && o < SLAB as u64));
        // The slab is full: the next 64-byte block comes from a second slab.
        assert!(a.alloc(64).unwrap().offset() >= SLAB as u64);
        for b in &blocks {
            a.free(*b);
        }
        let again = a.alloc(10).unwrap();
        assert!(offsets.contains(&again.offset()), "freed blocks are reused first");
    }

    #[test]
    fn spans_take_contiguous_slabs_and_exhaustion_is_none() {
        let a = SlabAlloc::new(4 * SLAB);
        let big = a.alloc(3 * SLAB).unwrap(); // rounds to 4 slabs: the whole region
        assert_eq!((big.offset(), big.class()), (0, 12));
        assert_eq!(a.alloc(1), None, "no slab left to carve");
        a.free(big);
        let small = a.alloc(1).unwrap();
        assert_eq!(small, big, "with every slab carved, a larger free block serves");
        a.free(small);
        assert_eq!(a.alloc(4 * SLAB), Some(big));
        assert_eq!(a.alloc(8 * SLAB), None);
        assert_eq!(a.alloc(usize::MAX), None);
    }

    #[test]
    fn block_at_accepts_only_real_block_starts() {
        let a = SlabAlloc::new(2 * SLAB);
        let b = a.alloc(256).unwrap();
        assert_eq!(a.block_at(b.offset(), b.class()), Some(b));
        assert_eq!(a.block_at(b.offset() + 64, b.class()), None, "not a block start");
        assert_eq!(a.block_at(b.offset(), b.class() + 1), None, "wrong class");
        assert_eq!(a.block_at(SLAB as u64, 0), None, "uncarved slab");
        assert_eq!(a.block_at(u64::MAX, 0), None);
    }

    /// Four threads allocate and free at random sizes; every live block is disjoint from
    /// every other.
    #[test]
    fn concurrent_alloc_and_free_never_overlap() {
        let a = Arc::new(SlabAlloc::new(64 * SLAB));
        let owner: Arc<Vec<AtomicUsize>> =
            Arc::new((0..64 * SLAB / 64).map(|_| AtomicUsize::new(0)).collect());
        let threads: Vec<_> = (1..=4usize)
            .map(|t| {
                let (a, owner) = (Arc::clone(&a), Arc::clone(&owner));
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    let mut x = (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    for _ in 0..if cfg!(miri) { 30 } else { 20_000 } {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if held.len() < 32 && x % 3 != 0 {
                            let len = 1 + (x >> 8) as usize % 4096;
                            let Some(b) = a.alloc(len) else { continue };
                            let units = class_size(b.class()) / 64;
                            for u in 0..units {
                                let cell = &owner[b.offset() as usize / 64 + u];
                                assert_eq!(cell.swap(t, SeqCst), 0, "block {b:?} overlaps a live one");
                            }
                            held.push(b);
                        } else if let Some(b) = held.pop() {
                            for u in 0..class_size(b.class()) / 64 {
                                owner[b.offset() as usize / 64 + u].store(0, SeqCst);
                            }
                            a.free(b);
                        }
                    }
                    for b in held {
                        for u in 0..class_size(b.class()) / 64 {
                            owner[b.offset() as usize / 64 + u].store(0, SeqCst);
                        }
                        a.free(b);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
