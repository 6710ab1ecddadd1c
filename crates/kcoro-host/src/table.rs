//! The session-id table: a generation-tagged slab.
//!
//! A sid is `generation << 32 | index`. A reply finds its slot with one index and one
//! generation compare under the slot's own lock; freeing a slot bumps its generation, so a
//! reply for a finished call (or a reused index) is recognised and dropped, never
//! delivered to the wrong waiter. Slots live in chunks that are allocated on demand and
//! never move, so a slot reference stays valid while the table lives.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard};

use kcoro::park::Unparker;

use crate::payload::Frame;

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Free,
    Unary,
    Stream,
}

pub(crate) type StateMap = HashMap<Box<[u8]>, Box<[u8]>>;

pub(crate) struct SlotInner {
    generation: u32,
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
}

pub(crate) struct Slot {
    inner: Mutex<SlotInner>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            inner: Mutex::new(SlotInner {
                generation: 1,
                kind: Kind::Free,
                frames: VecDeque::new(),
                cap: 0,
                ended: false,
                waiter: None,
                producers: Vec::new(),
                state: None,
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

pub(crate) struct SidTable {
    chunks: Box<[AtomicPtr<Slot>]>,
    free: Mutex<FreeList>,
}

/// What freeing a slot left behind for the caller to drop outside the lock.
pub(crate) struct Freed {
    pub(crate) frames: VecDeque<Frame>,
    /// Dropped with the rest, outside the slot's lock.
    pub(crate) _state: Option<Box<StateMap>>,
    pub(crate) producers: Vec<Unparker>,
}

impl Drop for Freed {
    fn drop(&mut self) {
        for p in self.producers.drain(..) {
            p.unpark();
        }
    }
}

fn split(sid: u64) -> (u32, usize) {
    ((sid >> 32) as u32, (sid as u32) as usize)
}

impl SidTable {
    pub(crate) fn new() -> SidTable {
        SidTable {
            chunks: (0..MAX_CHUNKS).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect(),
            free: Mutex::new(FreeList { free: Vec::new(), next: 0 }),
        }
    }

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
    pub(crate) fn alloc(&self, kind: Kind, cap: usize) -> Option<u64> {
        let index = {
            let mut list = self.free.lock().unwrap_or_else(|e| e.into_inner());
            match list.free.pop() {
                Some(i) => i,
                None => {
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
                    i
                }
            }
        };
        let slot = self.slot(index as usize)?;
        let mut s = slot.lock();
        s.kind = kind;
        s.cap = cap;
        s.ended = false;
        Some((u64::from(s.generation) << 32) | u64::from(index))
    }

    /// The slot of a live sid, locked; `None` for an unknown or finished sid.
    pub(crate) fn get(&self, sid: u64) -> Option<MutexGuard<'_, SlotInner>> {
        let (generation, index) = split(sid);
        let s = self.slot(index)?.lock();
        (s.generation == generation && s.kind != Kind::Free).then_some(s)
    }

    pub(crate) fn is_live(&self, sid: u64) -> bool {
        self.get(sid).is_some()
    }

    /// Ends a sid: later replies for it are dropped. Returns what the slot held so the
    /// caller drops it (payload releases, state) outside every lock.
    pub(crate) fn free(&self, sid: u64) -> Option<Freed> {
        let (generation, index) = split(sid);
        let freed = {
            let mut s = self.slot(index)?.lock();
            if s.generation != generation || s.kind == Kind::Free {
                return None;
            }
            s.generation = s.generation.wrapping_add(1).max(1);
            s.kind = Kind::Free;
            s.waiter = None;
            let frames = if s.frames.is_empty() { VecDeque::new() } else { std::mem::take(&mut s.frames) };
            Freed { frames, _state: s.state.take(), producers: std::mem::take(&mut s.producers) }
        };
        self.free.lock().unwrap_or_else(|e| e.into_inner()).free.push(index as u32);
        Some(freed)
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
