//! The session-id table: a generation-tagged slab.
//!
//! A sid is `generation << 32 | kind << 31 | index`. A reply finds its slot with one index
//! and one generation compare under the slot's own lock; freeing a slot bumps its
//! generation, so a reply for a finished call (or a reused index) is recognised and dropped,
//! never delivered to the wrong waiter. Slots live in chunks that are allocated on demand
//! and never move, so a slot reference stays valid while the table lives.
//!
//! # The lock-free fast path
//! A unary call answered inside `handle` never touches a slot's lock: allocating stores the
//! sid in `live`, and freeing, when nobody locked the slot meanwhile, stores the free
//! marker (no read-modify-write: only the call's owner frees its sid). Whoever does lock a
//! slot (a reply from another thread, a waiter, state) sets `dirty` first and then re-reads
//! `live`; a free that finds `dirty` takes the locked way and cleans the slot.
//!
//! A locker can still race a plain free: it sets `dirty` just after the free looked, sees
//! the sid still live, and leaves a frame (or state, or a lease) for a sid that has ended.
//! So what a slot holds is tagged with the sid it belongs to (`owner`), and every locked
//! use of the slot for another sid first cleans out what an older one left: a sid never
//! sees another's frames. The leftovers are dropped outside the lock, as a free's are.
//!
//! Free indices are cached per thread ([`crate::thread_slot`]), so allocating and freeing
//! take no shared lock either; slots are cache-line aligned so two workers' calls never
//! share a line.
//!
//! # Inline sids
//! A call that must be answered inside `handle` on its own thread (`Call::inline_only`)
//! takes no slot at all: its sid is `seq << 32 | INLINE_BIT | thread`, from a counter of
//! the calling thread's exclusive index, so no two calls share one until that counter
//! wraps. Its index part lies past every slot, so the table knows it as no live sid: a
//! reply or state for it that does not come through the caller's thread-local is dropped
//! as for a finished call (its leases are kept by the host context, `HostCtx`).

use std::cell::UnsafeCell;
use std::collections::{HashMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use kcoro::park::Unparker;

use crate::payload::Frame;
use crate::thread_slot::{self, EXCLUSIVE};

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 4096;
const STREAM_BIT: u64 = 1 << 31;
/// Marks `live` of a free slot (never set in a sid: indices stay below 2^22).
const FREE_BIT: u64 = 1 << 30;
/// Free indices a thread keeps before handing half back to the shared list.
const CACHE_MAX: usize = 256;
/// Set in every inline sid, never in a slot's (see the module docs).
const INLINE_BIT: u64 = 1 << 29;
// An inline sid's index part must lie past every slot.
const _: () = assert!((MAX_CHUNKS * CHUNK) as u64 <= INLINE_BIT);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Free,
    Unary,
    Stream,
}

pub(crate) type StateMap = HashMap<Box<[u8]>, Box<[u8]>>;

pub(crate) struct SlotInner {
    /// The sid whatever is below belongs to (0: none). A lock taken for another sid cleans
    /// it out first (see the module docs).
    owner: u64,
    /// The kind of the sid the guard was taken for.
    pub(crate) kind: Kind,
    pub(crate) frames: VecDeque<Frame>,
    pub(crate) cap: usize,
    /// The reply (unary) or the terminal frame (stream) has been queued.
    pub(crate) ended: bool,
    /// The caller waiting for a frame.
    pub(crate) waiter: Option<Unparker>,
    /// Plugin threads waiting for room in a full stream.
    pub(crate) producers: Vec<Unparker>,
    pub(crate) state: Option<Box<StateMap>>,
    /// A reply buffer leased to the plugin (nylon-ring 0.2), until committed.
    pub(crate) lease: Option<Vec<u8>>,
}

#[repr(align(128))]
pub(crate) struct Slot {
    /// The live sid, or `generation << 32 | FREE_BIT` when free.
    live: AtomicU64,
    /// `inner` may hold leftovers: clean it when freeing.
    dirty: AtomicBool,
    inner: Mutex<SlotInner>,
}

impl SlotInner {
    fn clean(&mut self) -> Freed {
        self.owner = 0;
        self.waiter = None;
        self.ended = false;
        self.cap = 0;
        let frames = if self.frames.is_empty() { VecDeque::new() } else { std::mem::take(&mut self.frames) };
        Freed {
            frames,
            _state: self.state.take(),
            producers: std::mem::take(&mut self.producers),
            lease: self.lease.take(),
        }
    }
}

impl Slot {
    fn new() -> Slot {
        Slot {
            live: AtomicU64::new(FREE_BIT),
            dirty: AtomicBool::new(false),
            inner: Mutex::new(SlotInner {
                owner: 0,
                kind: Kind::Free,
                frames: VecDeque::new(),
                cap: 0,
                ended: false,
                waiter: None,
                producers: Vec::new(),
                state: None,
                lease: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotInner> {
        // A poisoned slot only means a panic elsewhere while it was held; its data is
        // plain bookkeeping that every user re-checks, so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct FreeList {
    free: Vec<u32>,
    next: u32,
}

/// What a thread with an exclusive index keeps of its own in a table.
#[derive(Default)]
struct Own {
    free: Vec<u32>,
    /// The last inline sid's sequence number.
    inline_seq: u32,
}

#[repr(align(128))]
struct Cache(UnsafeCell<Own>);

pub(crate) struct SidTable {
    chunks: Box<[AtomicPtr<Slot>]>,
    free: Mutex<FreeList>,
    /// Free indices per exclusive thread index.
    caches: Box<[Cache]>,
}

// SAFETY: `caches[i]` is only touched by the thread that holds exclusive index `i`
// (`thread_slot`); everything else is atomics and mutexes.
unsafe impl Sync for SidTable {}
// SAFETY: as above; the cached `Vec`s are plain data.
unsafe impl Send for SidTable {}

/// What freeing a slot left behind for the caller to drop outside the lock.
pub(crate) struct Freed {
    pub(crate) frames: VecDeque<Frame>,
    /// Dropped with the rest, outside the slot's lock.
    pub(crate) _state: Option<Box<StateMap>>,
    pub(crate) producers: Vec<Unparker>,
    /// A lease the call ended with: the plugin may still write into it.
    pub(crate) lease: Option<Vec<u8>>,
}

impl Drop for Freed {
    fn drop(&mut self) {
        // A lease nobody took over (see `Loaded::finish`) may still be written by the
        // plugin: never free it.
        if let Some(lease) = self.lease.take() {
            std::mem::forget(lease);
        }
        for p in self.producers.drain(..) {
            p.unpark();
        }
    }
}

#[inline]
fn index_of(sid: u64) -> usize {
    (sid as u32 & !(STREAM_BIT as u32)) as usize
}

/// Whether `sid` is an inline sid (module docs), which no slot has.
#[inline]
pub(crate) fn is_inline(sid: u64) -> bool {
    sid & INLINE_BIT != 0
}

/// The kind of call a sid was allocated for.
#[inline]
pub(crate) fn kind_of(sid: u64) -> Kind {
    if sid & STREAM_BIT != 0 { Kind::Stream } else { Kind::Unary }
}

/// A locked, live slot.
pub(crate) struct SlotGuard<'a>(MutexGuard<'a, SlotInner>);

impl Deref for SlotGuard<'_> {
    type Target = SlotInner;
    fn deref(&self) -> &SlotInner {
        &self.0
    }
}

impl DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut SlotInner {
        &mut self.0
    }
}

impl SidTable {
    pub(crate) fn new() -> SidTable {
        SidTable {
            chunks: (0..MAX_CHUNKS).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect(),
            free: Mutex::new(FreeList { free: Vec::new(), next: 0 }),
            caches: (0..EXCLUSIVE).map(|_| Cache(UnsafeCell::default())).collect(),
        }
    }

    /// This thread's own part of the table, with its index, if it has an exclusive index.
    #[allow(clippy::mut_from_ref)] // exclusive by `thread_slot`'s contract
    #[inline]
    fn own(&self) -> Option<(usize, &mut Own)> {
        let t = thread_slot::index()?;
        // SAFETY: only the thread holding exclusive index `t` reaches `caches[t]`, and it
        // never holds two of these references at once (alloc, free and `inline_sid` do
        // not nest).
        Some((t, unsafe { &mut *self.caches[t].0.get() }))
    }

    /// This thread's cache of free indices, if it has an exclusive index.
    #[inline]
    fn cache(&self) -> Option<&mut Vec<u32>> {
        self.own().map(|(_, own)| &mut own.free)
    }

    /// A fresh inline sid (module docs), or `None` on a thread without an exclusive index.
    #[inline]
    pub(crate) fn inline_sid(&self) -> Option<u64> {
        let (t, own) = self.own()?;
        own.inline_seq = own.inline_seq.wrapping_add(1);
        Some((u64::from(own.inline_seq) << 32) | INLINE_BIT | t as u64)
    }

    #[inline]
    fn take_index(&self) -> Option<u32> {
        if let Some(i) = self.cache().and_then(Vec::pop) {
            return Some(i);
        }
        let mut list = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = list.free.pop() {
            // Refill this thread's cache in one go.
            if let Some(cache) = self.cache() {
                let n = list.free.len().min(CACHE_MAX / 4);
                let at = list.free.len() - n;
                cache.extend(list.free.drain(at..));
            }
            return Some(i);
        }
        let i = list.next;
        let c = i as usize >> CHUNK_BITS;
        if c >= MAX_CHUNKS {
            return None;
        }
        if i as usize & (CHUNK - 1) == 0 {
            let chunk: Box<[Slot]> = (0..CHUNK).map(|_| Slot::new()).collect();
            self.chunks[c].store(Box::into_raw(chunk) as *mut Slot, Ordering::Release);
        }
        list.next += 1;
        Some(i)
    }

    #[inline]
    fn put_index(&self, i: u32) {
        if let Some(cache) = self.cache() {
            cache.push(i);
            if cache.len() <= CACHE_MAX {
                return;
            }
            let spill: Vec<u32> = cache.drain(CACHE_MAX / 2..).collect();
            self.free.lock().unwrap_or_else(|e| e.into_inner()).free.extend(spill);
            return;
        }
        self.free.lock().unwrap_or_else(|e| e.into_inner()).free.push(i);
    }

    #[inline]
    fn slot(&self, index: usize) -> Option<&Slot> {
        let chunk = self.chunks.get(index >> CHUNK_BITS)?.load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: a published chunk is an array of `CHUNK` slots that lives until the table
        // drops; the offset is below `CHUNK`.
        Some(unsafe { &*chunk.add(index & (CHUNK - 1)) })
    }

    /// Takes a free slot for a call of `kind`; returns its sid, or `None` when all
    /// `MAX_CHUNKS * CHUNK` sids are in use.
    #[inline]
    pub(crate) fn alloc(&self, kind: Kind, cap: usize) -> Option<u64> {
        let index = self.take_index()?;
        let slot = self.slot(index as usize)?;
        // Only the owner of a free index writes `live`, so this read is current.
        let old = slot.live.load(Ordering::Acquire);
        let generation = ((old >> 32) as u32).wrapping_add(1).max(1);
        let kind_bit = if kind == Kind::Stream { STREAM_BIT } else { 0 };
        let sid = (u64::from(generation) << 32) | kind_bit | u64::from(index);
        if kind == Kind::Stream {
            let leftovers = {
                let mut s = slot.lock();
                slot.dirty.store(true, Ordering::SeqCst);
                let leftovers = s.claim(sid);
                s.cap = cap;
                leftovers
            };
            drop(leftovers);
        }
        slot.live.store(sid, Ordering::Release);
        Some(sid)
    }

    /// The slot of a live sid, locked; `None` for an unknown or finished sid.
    pub(crate) fn get(&self, sid: u64) -> Option<SlotGuard<'_>> {
        let slot = self.slot(index_of(sid))?;
        loop {
            let mut s = slot.lock();
            slot.dirty.store(true, Ordering::SeqCst);
            if slot.live.load(Ordering::SeqCst) != sid {
                return None;
            }
            if let Some(leftovers) = s.claim(sid) {
                // An older sid's, dropped outside the lock (a plugin buffer's release runs
                // the plugin's code); then look again.
                drop(s);
                drop(leftovers);
                continue;
            }
            s.kind = kind_of(sid);
            return Some(SlotGuard(s));
        }
    }

    pub(crate) fn is_live(&self, sid: u64) -> bool {
        self.slot(index_of(sid)).is_some_and(|s| s.live.load(Ordering::Acquire) == sid)
    }

    /// Ends a sid: later replies for it are dropped. Only the sid's owner frees it, once.
    /// Returns what the slot held, if anything, so the caller drops it (payload releases,
    /// state) outside every lock.
    #[inline]
    pub(crate) fn free(&self, sid: u64) -> Option<Freed> {
        let index = index_of(sid);
        let slot = self.slot(index)?;
        let marker = (sid & !0xffff_ffff) | FREE_BIT;
        if !slot.dirty.load(Ordering::Acquire) {
            // Nobody locked the slot since it was last cleaned: the marker alone ends the
            // sid. A locker that races this store may leave something behind; it is tagged
            // with this sid and cleaned by the slot's next user.
            if slot.live.load(Ordering::Relaxed) != sid {
                return None;
            }
            slot.live.store(marker, Ordering::Release);
            self.put_index(index as u32);
            return None;
        }
        slot.live.compare_exchange(sid, marker, Ordering::SeqCst, Ordering::Relaxed).ok()?;
        let freed = {
            let mut s = slot.lock();
            slot.dirty.store(false, Ordering::SeqCst);
            s.clean()
        };
        self.put_index(index as u32);
        Some(freed)
    }
}

impl SlotInner {
    /// Makes the slot `sid`'s: what an older sid left is taken out (to drop outside the
    /// lock); `None` when it is `sid`'s already.
    fn claim(&mut self, sid: u64) -> Option<Freed> {
        if self.owner == sid {
            return None;
        }
        let nothing_to_drop = self.frames.is_empty()
            && self.state.is_none()
            && self.producers.is_empty()
            && self.lease.is_none();
        let leftovers = if nothing_to_drop {
            (self.waiter, self.ended, self.cap) = (None, false, 0);
            None
        } else {
            Some(self.clean())
        };
        self.owner = sid;
        leftovers
    }
}

impl Drop for SidTable {
    fn drop(&mut self) {
        for chunk in self.chunks.iter() {
            let p = chunk.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: allocated in `alloc` as a boxed slice of `CHUNK` slots, freed once.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, CHUNK)) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;
    use kcoro_abi::NrStatus;

    /// A locker that saw `sid` live and left a frame for it after the sid's owner looked
    /// at `dirty` (the one race a plain free allows), played step by step.
    fn leave_behind_after_a_plain_free(table: &SidTable, sid: u64) {
        {
            let mut slot = table.get(sid).expect("live");
            slot.frames.push_back(Frame { status: NrStatus::Ok, data: Payload::copy_of(b"late") });
        }
        // The owner looked before the locker raised `dirty`.
        table.slot(index_of(sid)).unwrap().dirty.store(false, Ordering::SeqCst);
        assert!(table.free(sid).is_none(), "a plain free hands nothing back");
        assert!(!table.is_live(sid));
    }

    #[test]
    fn an_inline_sid_is_never_a_slots_sid() {
        let table = SidTable::new();
        let first = table.inline_sid().expect("a test thread has an exclusive index");
        let thread = (first & 0xffff_ffff & !INLINE_BIT) as usize;
        // Live slots at every index up to this thread's, so a sid read as an index would
        // find one.
        let live: Vec<u64> = (0..=thread + 1).map(|_| table.alloc(Kind::Unary, 0).unwrap()).collect();
        let second = table.inline_sid().unwrap();
        assert_ne!(first, second, "each inline call has its own sid");
        assert_eq!(second >> 32, (first >> 32) + 1);
        for sid in [first, second] {
            assert_ne!(sid, crate::ctx::NO_SID);
            assert!(!table.is_live(sid));
            assert!(table.get(sid).is_none(), "a reply for an inline sid found a slot");
            assert!(table.free(sid).is_none());
            assert!(!live.contains(&sid));
        }
        for sid in live {
            assert_eq!(sid & INLINE_BIT, 0);
            assert!(table.is_live(sid), "an inline sid's free or lookup touched a slot");
        }
    }

    #[test]
    fn a_frame_left_for_an_ended_sid_never_reaches_the_slots_next_sid() {
        let table = SidTable::new();
        let first = table.alloc(Kind::Unary, 0).unwrap();
        leave_behind_after_a_plain_free(&table, first);
        let next = table.alloc(Kind::Unary, 0).unwrap();
        assert_eq!(index_of(next), index_of(first), "the same slot again");
        assert_ne!(next, first);
        let slot = table.get(next).expect("live");
        assert!(slot.frames.is_empty(), "the next sid sees the ended one's frame");
        assert!(!slot.ended);
        drop(slot);
        // Its own frames are its own.
        table.get(next).unwrap().frames.push_back(Frame { status: NrStatus::Ok, data: Payload::empty() });
        assert_eq!(table.get(next).unwrap().frames.len(), 1);
        let freed = table.free(next).expect("a locked slot frees the locked way");
        assert_eq!(freed.frames.len(), 1);
    }

    #[test]
    fn a_stream_taking_a_slot_with_leftovers_starts_clean() {
        let table = SidTable::new();
        let first = table.alloc(Kind::Unary, 0).unwrap();
        leave_behind_after_a_plain_free(&table, first);
        let stream = table.alloc(Kind::Stream, 8).unwrap();
        assert_eq!(index_of(stream), index_of(first));
        let slot = table.get(stream).expect("live");
        assert!(slot.frames.is_empty());
        assert_eq!(slot.cap, 8, "the stream's bound survives its first lock");
    }

    #[test]
    fn a_free_of_an_ended_sid_changes_nothing() {
        let table = SidTable::new();
        let sid = table.alloc(Kind::Unary, 0).unwrap();
        assert!(table.free(sid).is_none());
        let next = table.alloc(Kind::Unary, 0).unwrap();
        assert_eq!(index_of(next), index_of(sid));
        assert!(table.free(sid).is_none(), "the old sid is not the slot's");
        assert!(table.is_live(next), "the slot's new sid still lives");
        let other = table.alloc(Kind::Unary, 0).unwrap();
        assert_ne!(index_of(other), index_of(next), "its index was not handed out twice");
    }
}
