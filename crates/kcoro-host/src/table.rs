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
//! sid in `live`, freeing compare-exchanges it away. Whoever does lock a slot (a reply from
//! another thread, a waiter, state) sets `dirty` first and then re-reads `live`; a free
//! that finds `dirty` locks the slot and cleans it. Both sides use SeqCst, so either the
//! locker sees the slot already freed (and touches nothing), or the free sees `dirty` (and
//! cleans up after it, waiting for its lock).
//!
//! Free indices are cached per thread ([`crate::thread_slot`]), so allocating and freeing
//! take no shared lock either; slots are cache-line aligned so two workers' calls never
//! share a line.

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Free,
    Unary,
    Stream,
}

pub(crate) type StateMap = HashMap<Box<[u8]>, Box<[u8]>>;

pub(crate) struct SlotInner {
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

#[repr(align(128))]
struct Cache(UnsafeCell<Vec<u32>>);

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
            caches: (0..EXCLUSIVE).map(|_| Cache(UnsafeCell::new(Vec::new()))).collect(),
        }
    }

    /// This thread's cache of free indices, if it has an exclusive index.
    #[allow(clippy::mut_from_ref)] // exclusive by `thread_slot`'s contract
    #[inline]
    fn cache(&self) -> Option<&mut Vec<u32>> {
        let t = thread_slot::index()?;
        // SAFETY: only the thread holding exclusive index `t` reaches `caches[t]`, and it
        // never holds two of these references at once (alloc and free do not nest).
        Some(unsafe { &mut *self.caches[t].0.get() })
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
            let mut s = slot.inner.lock().unwrap_or_else(|e| e.into_inner());
            slot.dirty.store(true, Ordering::SeqCst);
            s.cap = cap;
        }
        slot.live.store(sid, Ordering::Release);
        Some(sid)
    }

    /// The slot of a live sid, locked; `None` for an unknown or finished sid.
    pub(crate) fn get(&self, sid: u64) -> Option<SlotGuard<'_>> {
        let slot = self.slot(index_of(sid))?;
        let mut s = slot.lock();
        slot.dirty.store(true, Ordering::SeqCst);
        if slot.live.load(Ordering::SeqCst) != sid {
            return None;
        }
        s.kind = kind_of(sid);
        Some(SlotGuard(s))
    }

    pub(crate) fn is_live(&self, sid: u64) -> bool {
        self.slot(index_of(sid)).is_some_and(|s| s.live.load(Ordering::Acquire) == sid)
    }

    /// Ends a sid: later replies for it are dropped. Returns what the slot held, if anything,
    /// so the caller drops it (payload releases, state) outside every lock.
    #[inline]
    pub(crate) fn free(&self, sid: u64) -> Option<Freed> {
        let index = index_of(sid);
        let slot = self.slot(index)?;
        let marker = (sid & !0xffff_ffff) | FREE_BIT;
        slot.live.compare_exchange(sid, marker, Ordering::SeqCst, Ordering::Relaxed).ok()?;
        let freed = if slot.dirty.load(Ordering::SeqCst) {
            let mut s = slot.lock();
            slot.dirty.store(false, Ordering::SeqCst);
            Some(s.clean())
        } else {
            None
        };
        self.put_index(index as u32);
        freed
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
