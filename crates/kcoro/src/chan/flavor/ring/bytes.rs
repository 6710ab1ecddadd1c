//! The payload bytes of a counting ring, kept without a counter that pushes and pops share.
//!
//! A byte counter per end cost every push and every pop a locked read-modify-write: about
//! 10 ns of a 24 ns message on the two-worker pointer-mode C row, where the same ring
//! without counting took 14. Instead each slot counts its pushes, written only by the
//! pusher that owns the slot's position (plain stores, on a line no popper touches), and
//! a reading adds the counts up, using each slot's stamp to tell whether its last value
//! has been popped. A pop writes nothing here.
//!
//! A slot has two counts, for pushes of even and odd laps: the bytes pushed through the
//! slot up to and including that push. The push of lap `k` adds its length to the count
//! of lap `k - 1` (whose push, pop and stamps all happened before it) and stores it as
//! the count of lap `k`, before its stamp: one load and one store. A reader takes the
//! slot's stamp, reads the counts the stamp points to (while the slot holds lap `k`'s
//! value: lap `k`'s count pushed, lap `k - 1`'s popped; while it waits for lap `k`'s
//! push: lap `k - 1`'s both), and takes the stamp again. Lap `k - 1`'s count is only
//! rewritten by the push of lap `k + 1`, which can claim the slot only after the stamp has
//! moved on that far, so if the second stamp has not, the counts were whole. A reader
//! never waits for a pusher: it reads again only when the slot moved on meanwhile.

use crate::loom::atomic::{AtomicU64, Ordering::*};

/// One slot's counts: `[even lap, odd lap]`, each the bytes pushed through the slot up to
/// and including the last push of a lap of that parity.
type SlotCounts = [AtomicU64; 2];

/// Two counts per slot of the ring.
pub(super) struct Counts {
    slots: Box<[SlotCounts]>,
    /// The ring's `lap_shift`: a position's lap is `pos >> lap_shift`.
    lap_shift: u32,
}

impl Counts {
    pub(super) fn new(slots: usize, lap_shift: u32) -> Self {
        Counts { slots: (0..slots).map(|_| [AtomicU64::new(0), AtomicU64::new(0)]).collect(), lap_shift }
    }

    /// Counts a push of `len` bytes at `pos`. Called by the pusher that won `pos`, before
    /// it stamps the slot.
    #[inline(always)]
    pub(super) fn pushed(&self, pos: u64, len: usize) {
        let (lap, index) = (pos >> self.lap_shift, pos & ((1 << self.lap_shift) - 1));
        let [even, odd] = &self.slots[index as usize];
        let (prev, this) = if lap & 1 == 0 { (odd, even) } else { (even, odd) };
        // Relaxed: the previous lap's push wrote it before its stamp, and that stamp, its
        // pop's stamp and our claim (which read it with Acquire) order it before us. (For
        // the first lap 0 the odd count is still zero.)
        let done = prev.load(Relaxed).wrapping_add(len as u64);
        // Release: a reader that reads this from us also sees the stamp our claim read (or
        // a later one) when it checks the stamp again.
        this.store(done, Release);
    }

    /// Bytes pushed and popped through every slot. `stamp(i)` reads slot `i`'s stamp with
    /// Acquire. Each slot's pair is one the slot had at some instant, so the bytes popped
    /// never exceed the bytes pushed, and a later reading never shows less than an earlier
    /// one.
    pub(super) fn totals(&self, stamp: impl Fn(usize) -> u64) -> (u64, u64) {
        let (mut pushed, mut popped) = (0u64, 0u64);
        for (index, counts) in self.slots.iter().enumerate() {
            let (p, o) = self.slot_totals(counts, || stamp(index), index as u64);
            pushed = pushed.wrapping_add(p);
            popped = popped.wrapping_add(o);
        }
        (pushed, popped)
    }

    /// A slot's stamp as a count of its steps: `2k` while it waits for its lap-`k` push
    /// (so every earlier push was popped), `2k + 1` while that push's value is in it.
    fn step(&self, stamp: u64, index: u64) -> u64 {
        let lap = stamp >> self.lap_shift;
        let holds = stamp & ((1 << self.lap_shift) - 1) != index;
        2 * lap + u64::from(holds)
    }

    fn slot_totals(&self, counts: &SlotCounts, stamp: impl Fn() -> u64, index: u64) -> (u64, u64) {
        loop {
            let step = self.step(stamp(), index);
            let (lap, holds) = (step / 2, step % 2 == 1);
            // Lap `lap - 1`'s count: everything popped. Before the first push that is
            // "lap -1", the odd count, still zero; after the positions wrap (2^62 pushes)
            // the laps start again at an even one, so the parity carries on.
            // Acquire: pairs with the pusher's Release, so a count written by a later push
            // than the stamp said shows on the stamp's second reading.
            let popped = counts[((lap + 1) & 1) as usize].load(Acquire);
            let pushed = if holds { counts[(lap & 1) as usize].load(Acquire) } else { popped };
            // Lap `lap - 1`'s count is rewritten by the push of lap `lap + 1`, which claims
            // the slot at step `2 * lap + 2` (lap `lap`'s count only two steps later).
            if self.step(stamp(), index) < 2 * lap + 2 {
                return (pushed, popped);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    /// A one-slot ring's counts (one lap is two positions), with stamps played by hand:
    /// `2k` waiting for the lap-`k` push, `2k + 1` holding its value.
    fn one_slot() -> Counts {
        Counts::new(1, 1)
    }

    #[test]
    fn each_step_of_a_slot_reads_its_own_counts() {
        let r = one_slot();
        let stamp = Cell::new(0);
        let read = || r.totals(|_| stamp.get());
        assert_eq!(read(), (0, 0), "never pushed");
        for (lap, len) in [(0u64, 3), (1, 5), (2, 7)] {
            let before: u64 = [3, 5, 7][..lap as usize].iter().sum();
            r.pushed(2 * lap, len);
            assert_eq!(read(), (before, before), "claimed and counted, not yet stamped");
            stamp.set(2 * lap + 1);
            assert_eq!(read(), (before + len as u64, before), "holds the value");
            stamp.set(2 * lap + 2);
            assert_eq!(read(), (before + len as u64, before + len as u64), "popped");
        }
    }

    /// The slot moves on two laps between a reading's first look at the stamp and its
    /// second, so the counts it read have been rewritten: it reads again and returns the
    /// new state, not the old counts under the new stamp.
    #[test]
    fn a_reading_overtaken_by_two_laps_reads_again() {
        let r = one_slot();
        r.pushed(0, 1);
        let looks = Cell::new(0);
        let stamps = RefCell::new(vec![1u64]);
        let stamp = |_| {
            looks.set(looks.get() + 1);
            if looks.get() == 2 {
                // Between the first look and the second: the lap-0 value is popped, lap 1
                // pushes 2 bytes and is popped, lap 2 pushes 4 bytes into lap 0's count.
                r.pushed(2, 2);
                r.pushed(4, 4);
                stamps.borrow_mut().push(5);
            }
            *stamps.borrow().last().unwrap()
        };
        assert_eq!(r.totals(stamp), (7, 3), "lap 2's value held: 1 + 2 + 4 pushed, 1 + 2 popped");
        assert_eq!(looks.get(), 4, "two looks for the overtaken reading, two for the next");
    }
}
