//! The registry of live coroutines, so shutdown can find — and unwind — the ones that are
//! parked and referenced only by whoever would wake them.
//!
//! A coroutine is registered by the worker that spawns it and usually leaves from another
//! (a stolen child finishes where it ran), so removal takes no lock: it is one
//! compare-exchange on the coroutine's slot. Insertion takes only its own shard's lock,
//! which nobody else wants on the hot path (worker `i` inserts into shard `i`; threads
//! outside the runtime share the last shard).
//!
//! # Protocol
//! - A slot holds null, or a registry reference (`Arc::into_raw`) to one task, or that
//!   pointer tagged [`INSPECTING`] while [`Registry::take_where`] looks at the task.
//! - Only the shard's inserter (holding `inserter`) turns a null slot into a pointer.
//! - Whoever turns a pointer into null owns the reference it held: `remove` (the task
//!   leaving), or `take_where`/`close_and_take` (shutdown taking it).
//! - `remove` waits while its slot is tagged: the inspector holds the task alive and puts
//!   the pointer back or takes it.
//! - Slots emptied by `remove` are found again by the inserter, which rescans its slots
//!   once a quarter of them have been removed since the last scan: amortised O(1) per
//!   insert, and at most about 4/3 of the peak live count plus one segment of slots.
//! - `close_and_take` sets `closed` before its scan and `insert` reads it after publishing,
//!   each behind a SeqCst fence, so an insert racing with the close either sees it and
//!   withdraws, or its task is found by the scan.

use std::sync::Arc;

use crate::loom::Mutex;
use crate::loom::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*, fence};

use crate::backoff::Backoff;
use crate::coro::task::Task;
use crate::runtime::worker::TaskRef;

/// Bits of a key that hold the slot; the shard sits above them.
const SLOT_BITS: u32 = 40;
/// Slots in a shard's first segment; segment `k` has `BASE << k`.
#[cfg(not(loom))]
const BASE: usize = 64;
#[cfg(loom)]
const BASE: usize = 2;
/// Segments per shard: `BASE * (2^SEGMENTS - 1)` slots, past the `2^SLOT_BITS` keys hold.
const SEGMENTS: usize = 35;
/// Tag on a slot's pointer while `take_where` inspects its task.
const INSPECTING: usize = 1;
/// Spin rounds before a wait for an inspection to end yields, then sleeps.
const INSPECTION_SPIN_ROUNDS: u32 = 6;

/// The runtime's registry: live tasks, keyed by [`Task::owned_key`].
pub(crate) struct Owned(Registry<Task>);

impl Owned {
    pub(crate) fn new(shards: usize) -> Self {
        Owned(Registry::new(shards))
    }

    /// Adds a task; returns `false` once shutdown has closed the registry.
    pub(crate) fn insert(&self, shard: usize, task: &TaskRef) -> bool {
        match self.0.insert(shard, task) {
            Some(key) => {
                task.owned_key.set(key);
                true
            }
            None => false,
        }
    }

    /// The task leaves (it completed); a no-op if shutdown took it already.
    pub(crate) fn remove(&self, task: &Task) {
        let key = task.owned_key.get();
        if key != usize::MAX {
            self.0.remove(key, task);
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.0.live()
    }

    /// Takes out every registered task matching `pred`.
    pub(crate) fn take_where(&self, pred: impl Fn(&TaskRef) -> bool) -> Vec<TaskRef> {
        let out = self.0.take_where(pred);
        for t in &out {
            t.owned_key.set(usize::MAX);
        }
        out
    }

    /// Refuses further inserts and takes every registered task out.
    pub(crate) fn close_and_take(&self) -> Vec<TaskRef> {
        let out = self.0.close_and_take();
        for t in &out {
            t.owned_key.set(usize::MAX);
        }
        out
    }
}

/// Sharded slots of `Arc<T>` references; see the module docs for the protocol.
pub(crate) struct Registry<T> {
    shards: Box<[Shard<T>]>,
    closed: AtomicBool,
}

/// One inserter's slots, on cache lines of their own: removers from other workers write
/// `removed` and the slots, not their neighbours' counters.
#[repr(align(128))]
struct Shard<T> {
    /// Segment `k` (`BASE << k` slots), or null until the inserter needs it.
    segments: Box<[AtomicPtr<AtomicPtr<T>>]>,
    inserter: Mutex<Inserter>,
    /// Written by the inserter only (under `inserter`), read by `live`.
    inserted: AtomicUsize,
    /// References dropped by `remove`, from any thread.
    removed: OwnLine,
    /// References taken by `take_where` and `close_and_take`.
    taken: AtomicUsize,
}

/// A counter on a cache line of its own: removers on other workers bump `removed` on
/// every removal, and the inserter's lock and counter should not share its line.
#[repr(align(128))]
struct OwnLine(AtomicUsize);

/// The inserter's bookkeeping.
struct Inserter {
    /// Null slots known to the inserter.
    free: Vec<usize>,
    /// Slots handed out so far: `[0, len)`.
    len: usize,
    /// `removed` at the last rescan.
    removed_at_scan: usize,
}

// SAFETY: the registry owns `Arc<T>` references (as raw pointers) and hands them between
// threads; that needs exactly what `Arc<T>: Send + Sync` needs.
unsafe impl<T: Send + Sync> Send for Registry<T> {}
// SAFETY: as above; every shared field is an atomic or behind a mutex.
unsafe impl<T: Send + Sync> Sync for Registry<T> {}

/// `(segment, offset)` of slot `slot`.
fn locate(slot: usize) -> (usize, usize) {
    let j = slot / BASE + 1;
    let k = (usize::BITS - 1 - j.leading_zeros()) as usize;
    (k, slot - BASE * ((1 << k) - 1))
}

impl<T> Shard<T> {
    fn new() -> Self {
        Shard {
            segments: (0..SEGMENTS).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect(),
            inserter: Mutex::new(Inserter { free: Vec::new(), len: 0, removed_at_scan: 0 }),
            inserted: AtomicUsize::new(0),
            removed: OwnLine(AtomicUsize::new(0)),
            taken: AtomicUsize::new(0),
        }
    }

    /// The slots of segment `k`, if allocated.
    fn segment(&self, k: usize) -> Option<&[AtomicPtr<T>]> {
        // Acquire: pairs with the Release in `fresh_slot`; the slots' initialisation is
        // visible.
        let p = self.segments[k].load(Acquire);
        // SAFETY: a non-null segment pointer came from a leaked `Box<[AtomicPtr<T>]>` of
        // `BASE << k` slots, freed only when the registry drops.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p, BASE << k) })
    }

    /// Slot `slot`, which must have been handed out (its segment exists).
    fn cell(&self, slot: usize) -> Option<&AtomicPtr<T>> {
        let (k, off) = locate(slot);
        self.segment(k)?.get(off)
    }

    /// A slot for the inserter: a known free one, else one found by a rescan that pays
    /// for itself, else a new one.
    fn fresh_slot(&self, ins: &mut Inserter) -> usize {
        if let Some(i) = ins.free.pop() {
            return i;
        }
        let removed = self.removed.0.load(Relaxed);
        if removed.wrapping_sub(ins.removed_at_scan) >= (ins.len / 4).max(BASE) {
            ins.removed_at_scan = removed;
            for i in (0..ins.len).rev() {
                if self.cell(i).is_some_and(|c| c.load(Relaxed).is_null()) {
                    ins.free.push(i);
                }
            }
            if let Some(i) = ins.free.pop() {
                return i;
            }
        }
        let i = ins.len;
        let (k, off) = locate(i);
        if off == 0 {
            let seg: Box<[AtomicPtr<T>]> =
                (0..BASE << k).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect();
            // Release: pairs with the Acquire in `segment`.
            self.segments[k].store(Box::into_raw(seg).cast::<AtomicPtr<T>>(), Release);
        }
        ins.len += 1;
        i
    }
}

impl<T> Registry<T> {
    pub(crate) fn new(shards: usize) -> Self {
        Registry {
            shards: (0..shards.max(1)).map(|_| Shard::new()).collect(),
            closed: AtomicBool::new(false),
        }
    }

    /// Registers a reference to `item` in `shard` (modulo the count); returns its key, or
    /// `None` once the registry is closed.
    pub(crate) fn insert(&self, shard: usize, item: &Arc<T>) -> Option<usize> {
        let index = shard % self.shards.len();
        let shard = &self.shards[index];
        let mut ins = shard.inserter.lock().unwrap_or_else(|p| p.into_inner());
        let slot = shard.fresh_slot(&mut ins);
        let cell = shard.cell(slot)?;
        let ptr = Arc::into_raw(Arc::clone(item)).cast_mut();
        cell.store(ptr, Release);
        shard.inserted.store(shard.inserted.load(Relaxed) + 1, Relaxed);
        // Pairs with the fence in `close_and_take`: either the close's scan sees our slot
        // (and segment), or we see `closed`.
        fence(SeqCst);
        if self.closed.load(Relaxed)
            && cell.compare_exchange(ptr, std::ptr::null_mut(), AcqRel, Relaxed).is_ok()
        {
            // Withdrawn before the close's scan reached it.
            shard.removed.0.fetch_add(1, Relaxed);
            ins.free.push(slot);
            // SAFETY: the compare-exchange gave us back the reference stored above.
            drop(unsafe { Arc::from_raw(ptr) });
            return None;
        }
        Some((index << SLOT_BITS) | slot)
    }

    /// Drops the registry's reference to `item`, registered under `key`, unless
    /// `take_where` or `close_and_take` took it first. Lock-free; waits only while an
    /// inspection of this very slot is under way.
    pub(crate) fn remove(&self, key: usize, item: &T) -> bool {
        let (index, slot) = (key >> SLOT_BITS, key & ((1 << SLOT_BITS) - 1));
        let Some(shard) = self.shards.get(index) else { return false };
        let Some(cell) = shard.cell(slot) else { return false };
        let ptr = std::ptr::from_ref(item).cast_mut();
        // The inspector runs a predicate that allocates (`coroutines()`), and may be
        // preempted in it: a pure spin would hold this worker's CPU away from it.
        let mut backoff = Backoff::new(INSPECTION_SPIN_ROUNDS);
        loop {
            // AcqRel: the Release orders our use of the task before whoever reuses the slot;
            // the Acquire sees an inspector's put-back.
            match cell.compare_exchange(ptr, std::ptr::null_mut(), AcqRel, Acquire) {
                Ok(_) => {
                    shard.removed.0.fetch_add(1, Relaxed);
                    // SAFETY: the slot held the registry's reference to `item`, now ours.
                    drop(unsafe { Arc::from_raw(ptr) });
                    return true;
                }
                Err(cur) if cur.addr() == ptr.addr() | INSPECTING => backoff.wait(),
                Err(_) => return false, // taken by shutdown (the slot may hold another task)
            }
        }
    }

    /// Registered references, exact when no insert or remove is under way.
    pub(crate) fn live(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let gone = s.removed.0.load(Relaxed).wrapping_add(s.taken.load(Relaxed));
                s.inserted.load(Relaxed).wrapping_sub(gone)
            })
            .fold(0usize, usize::wrapping_add)
    }

    /// Takes out every registered reference whose item matches `pred`.
    pub(crate) fn take_where(&self, pred: impl Fn(&Arc<T>) -> bool) -> Vec<Arc<T>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for k in 0..SEGMENTS {
                let Some(seg) = shard.segment(k) else { break };
                for cell in seg {
                    if let Some(item) = inspect(cell, &pred) {
                        shard.taken.fetch_add(1, Relaxed);
                        out.push(item);
                    }
                }
            }
        }
        out
    }

    /// Refuses further inserts and takes every registered reference out.
    pub(crate) fn close_and_take(&self) -> Vec<Arc<T>> {
        self.closed.store(true, Relaxed);
        // Pairs with the fence in `insert` (see the module docs).
        fence(SeqCst);
        self.take_where(|_| true)
    }
}

/// Takes `cell`'s reference if its item matches `pred`, else leaves it there. While
/// `pred` runs, the slot is tagged so that `remove` waits instead of freeing the item.
fn inspect<T>(cell: &AtomicPtr<T>, pred: &impl Fn(&Arc<T>) -> bool) -> Option<Arc<T>> {
    let mut backoff = Backoff::new(INSPECTION_SPIN_ROUNDS);
    loop {
        // Acquire: a pointer read here came with its item's initialisation.
        let cur = cell.load(Acquire);
        if cur.is_null() {
            return None;
        }
        if cur.addr() & INSPECTING != 0 {
            backoff.wait(); // another inspector; it puts the pointer back or takes it
            continue;
        }
        let tagged = cur.map_addr(|a| a | INSPECTING);
        if cell.compare_exchange(cur, tagged, AcqRel, Relaxed).is_err() {
            continue;
        }
        // SAFETY: `cur` is the registry's reference; while tagged nobody else takes it, so
        // it stays alive. `ManuallyDrop`: we only look, the slot keeps owning it.
        let item = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(cur) });
        // A panicking predicate would leave the slot tagged and its remover spinning.
        let take = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pred(&item))).unwrap_or(false);
        if take {
            // Release: the taker's later use of the item is ours, nobody else's.
            cell.store(std::ptr::null_mut(), Release);
            return Some(std::mem::ManuallyDrop::into_inner(item));
        }
        cell.store(cur, Release);
        return None;
    }
}

impl<T> Drop for Registry<T> {
    fn drop(&mut self) {
        for shard in self.shards.iter_mut() {
            for (k, seg) in shard.segments.iter_mut().enumerate() {
                let p = seg.swap(std::ptr::null_mut(), Relaxed);
                if p.is_null() {
                    break;
                }
                // SAFETY: `p` is the leaked box of segment `k` (see `fresh_slot`); we are
                // the last user of the registry.
                let seg = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, BASE << k)) };
                for cell in seg.iter() {
                    let item = cell.swap(std::ptr::null_mut(), Relaxed);
                    if !item.is_null() {
                        // SAFETY: a registry reference nobody took.
                        drop(unsafe { Arc::from_raw(item) });
                    }
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn slots_map_onto_doubling_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(BASE - 1), (0, BASE - 1));
        assert_eq!(locate(BASE), (1, 0));
        assert_eq!(locate(3 * BASE - 1), (1, 2 * BASE - 1));
        assert_eq!(locate(3 * BASE), (2, 0));
        let last = (1usize << SLOT_BITS) - 1;
        assert!(locate(last).0 < SEGMENTS, "every key's slot has a segment");
    }

    #[test]
    fn removed_slots_are_reused_and_the_count_stays_exact() {
        let reg = Registry::<u64>::new(2);
        let items: Vec<Arc<u64>> = (0..1000).map(Arc::new).collect();
        let mut keys: Vec<usize> = items.iter().map(|i| reg.insert(0, i).expect("open")).collect();
        assert_eq!(reg.live(), 1000);
        for (k, i) in keys.iter().zip(&items).step_by(2) {
            assert!(reg.remove(*k, i));
            assert!(!reg.remove(*k, i), "a second removal finds nothing");
        }
        assert_eq!(reg.live(), 500);
        // Refill: the 500 holes come back before the shard grows much.
        for i in &items[..500] {
            keys.push(reg.insert(0, i).expect("open"));
        }
        let len = reg.shards[0].inserter.lock().map(|g| g.len).unwrap_or(0);
        assert!(len <= 1000 + BASE, "rescans found the holes (len {len})");
        assert_eq!(reg.live(), 1000);
        assert_eq!(Arc::strong_count(&items[0]), 2, "removed once, registered again once");
        let odd = reg.take_where(|v| **v % 2 == 1);
        assert_eq!(odd.len(), 500 + 250, "the odd ones: 500 never removed, 250 registered again");
        let rest = reg.close_and_take();
        assert_eq!(odd.len() + rest.len(), 1000);
        assert_eq!(reg.live(), 0);
        assert!(reg.insert(1, &items[0]).is_none(), "closed");
        drop((odd, rest));
        assert!(items.iter().all(|i| Arc::strong_count(i) == 1), "no reference leaked");
    }

    /// A removal that meets an inspection of its slot waits for it to end, without
    /// burning the CPU the (perhaps preempted) inspector needs, and then removes.
    #[test]
    fn a_removal_waits_out_a_slow_inspection_asleep() {
        const INSPECTION: std::time::Duration = std::time::Duration::from_millis(300);
        let reg = Arc::new(Registry::<u64>::new(1));
        let item = Arc::new(7);
        let key = reg.insert(0, &item).expect("open");
        let (inspecting_tx, inspecting_rx) = std::sync::mpsc::channel();
        let inspector = std::thread::spawn({
            let reg = Arc::clone(&reg);
            move || {
                reg.take_where(|v| {
                    inspecting_tx.send(()).expect("test alive");
                    std::thread::sleep(INSPECTION);
                    assert_eq!(**v, 7, "the item outlives its inspection");
                    false
                })
            }
        });
        inspecting_rx.recv().expect("the inspection started");
        let before = crate::backoff::thread_cpu_time();
        assert!(reg.remove(key, &item), "removed once the inspection put the item back");
        let spent = crate::backoff::thread_cpu_time() - before;
        assert!(inspector.join().expect("inspector").is_empty());
        assert_eq!((reg.live(), Arc::strong_count(&item)), (0, 1));
        assert!(spent < INSPECTION / 10, "the removal used {spent:?} of CPU waiting");
    }

    #[test]
    fn a_panicking_predicate_leaves_the_item_registered() {
        let reg = Registry::<u64>::new(1);
        let item = Arc::new(7);
        let key = reg.insert(0, &item).expect("open");
        let taken = reg.take_where(|_| panic!("predicate failed"));
        assert!(taken.is_empty());
        assert!(reg.remove(key, &item), "the slot was untagged and still holds the item");
        assert_eq!(Arc::strong_count(&item), 1);
    }
}
