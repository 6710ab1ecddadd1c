//! A hierarchical timer wheel: 6 levels × 64 slots of one tick each (the driver's tick is
//! 10 µs), covering 2^36 ticks; later deadlines are clamped to the horizon and re-armed on
//! expiry. The wheel itself is unit-free: it counts ticks.
//!
//! Level `l` slot `s` holds timers whose deadline shares every bit above `6(l+1)` with the
//! wheel's `now` and has `s` in bits `[6l, 6l+6)`. So lower levels always hold earlier
//! deadlines, `next_expiration` is the first occupied slot of the lowest occupied level,
//! and advancing takes that slot and fires the entries due at its start or re-inserts the
//! others (they fall to lower levels — the cascade). Only entries due at the slot's start
//! fire from a higher level, so one `advance` over a long stretch (a late driver) still
//! fires in deadline order. Insert and cancel are O(1); entries live in a slab and slots
//! are intrusive doubly linked lists through it.
//!
//! # Invariants
//! - `occupied[l]` bit `s` ⇔ `head[l][s] != NIL`.
//! - Every live entry's `deadline >= now` except entries inserted already expired, which
//!   sit in level 0's current slot and fire on the next `advance`.
//! - A `TimerKey` names an entry only while its generation matches: cancel after fire is a
//!   no-op, never a wrong removal.

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// Largest representable distance from `now`, in ticks.
const HORIZON: u64 = (1 << (SLOT_BITS as usize * LEVELS)) - 1;
const NIL: u32 = u32::MAX;

/// Names one armed timer; stale keys are harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    idx: u32,
    generation: u32,
}

impl TimerKey {
    /// The key as one word: generation above, slot index below.
    pub(crate) fn to_bits(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.idx)
    }

    /// The inverse of [`to_bits`](Self::to_bits). Any word is accepted: a key naming no
    /// armed timer is stale, and stale keys are harmless.
    pub(crate) fn from_bits(bits: u64) -> Self {
        TimerKey { idx: bits as u32, generation: (bits >> 32) as u32 }
    }
}

struct Entry<T> {
    deadline: u64,
    generation: u32,
    prev: u32,
    next: u32,
    /// `(level, slot)` while linked; `None` on the free list.
    pos: Option<(u8, u8)>,
    value: Option<T>,
}

pub(crate) struct Wheel<T> {
    now: u64,
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    head: [[u32; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    len: usize,
}

impl<T> Wheel<T> {
    pub(crate) fn new() -> Self {
        Self {
            now: 0,
            entries: Vec::new(),
            free: Vec::new(),
            head: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn level_for(&self, deadline: u64) -> usize {
        let masked = (deadline ^ self.now) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros() as usize;
        (significant / SLOT_BITS as usize).min(LEVELS - 1)
    }

    /// Arms a timer for `deadline` (in ticks on the wheel's clock). Past deadlines fire on the
    /// next `advance`.
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    deadline: 0,
                    generation: 0,
                    prev: NIL,
                    next: NIL,
                    pos: None,
                    value: None,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[idx as usize];
        e.deadline = deadline.max(self.now);
        e.value = Some(value);
        let generation = e.generation;
        self.link(idx);
        self.len += 1;
        TimerKey { idx, generation }
    }

    fn link(&mut self, idx: u32) {
        let deadline = self.entries[idx as usize].deadline.min(self.now + HORIZON);
        let level = self.level_for(deadline);
        let slot = ((deadline >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1);
        let old_head = self.head[level][slot];
        {
            let e = &mut self.entries[idx as usize];
            e.prev = NIL;
            e.next = old_head;
            e.pos = Some((level as u8, slot as u8));
        }
        if old_head != NIL {
            self.entries[old_head as usize].prev = idx;
        }
        self.head[level][slot] = idx;
        self.occupied[level] |= 1 << slot;
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next, pos) = {
            let e = &mut self.entries[idx as usize];
            (e.prev, e.next, e.pos.take())
        };
        let Some((level, slot)) = pos else { return };
        let (level, slot) = (level as usize, slot as usize);
        if prev == NIL {
            self.head[level][slot] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if self.head[level][slot] == NIL {
            self.occupied[level] &= !(1 << slot);
        }
    }

    fn release(&mut self, idx: u32) -> Option<T> {
        let e = &mut self.entries[idx as usize];
        e.generation = e.generation.wrapping_add(1);
        let v = e.value.take();
        self.free.push(idx);
        self.len -= 1;
        v
    }

    /// Disarms a timer. Returns its value if it had not fired yet.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let e = self.entries.get(key.idx as usize)?;
        if e.generation != key.generation || e.pos.is_none() {
            return None;
        }
        self.unlink(key.idx);
        self.release(key.idx)
    }

    /// The earliest time at which some slot expires, if any timer is armed. Entries in
    /// that slot may be due later (they then cascade down), never earlier.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        for level in 0..LEVELS {
            if self.occupied[level] == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let now_slot = ((self.now >> shift) as usize) & (SLOTS - 1);
            // Rotate so the current slot is bit 0, then find the first occupied one.
            let rotated = self.occupied[level].rotate_right(now_slot as u32);
            let dist = rotated.trailing_zeros() as u64;
            let level_range = 1u64 << (shift + SLOT_BITS);
            let slot_range = 1u64 << shift;
            let level_start = self.now & !(level_range - 1);
            let slot = (now_slot as u64 + dist) % SLOTS as u64;
            let mut at = level_start + slot * slot_range;
            if at + slot_range <= self.now {
                at += level_range; // wrapped around
            }
            return Some(at.max(self.now));
        }
        None
    }

    /// Moves the wheel to `now`, calling `fire` for every timer due at or before it, in
    /// deadline order (ties in any order).
    pub(crate) fn advance(&mut self, now: u64, mut fire: impl FnMut(T)) {
        while let Some(at) = self.next_expiration() {
            if at > now {
                break;
            }
            self.now = at;
            let level = (0..LEVELS).find(|&l| self.occupied[l] != 0).unwrap_or(0);
            let slot = ((at >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1);
            let mut idx = self.head[level][slot];
            self.head[level][slot] = NIL;
            self.occupied[level] &= !(1 << slot);
            while idx != NIL {
                let next = self.entries[idx as usize].next;
                self.entries[idx as usize].pos = None;
                // Due at `at`, the point the wheel has reached: fire. Due later, even if
                // before `now`: cascade, so that earlier deadlines in lower slots go first.
                if self.entries[idx as usize].deadline <= at {
                    if let Some(v) = self.release(idx) {
                        fire(v);
                    }
                } else {
                    self.link(idx); // cascade to a lower level
                }
                idx = next;
            }
        }
        self.now = self.now.max(now);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn fired_until(w: &mut Wheel<u64>, now: u64) -> Vec<u64> {
        let mut v = Vec::new();
        w.advance(now, |x| v.push(x));
        v
    }

    #[test]
    fn fires_in_order_and_never_early() {
        let mut w = Wheel::new();
        let deadlines = [1u64, 5, 63, 64, 65, 100, 4095, 4096, 5000, 300_000, 17_000_000];
        for &d in deadlines.iter().rev() {
            w.insert(d, d);
        }
        let mut fired = Vec::new();
        let mut t = 0;
        while w.len() > 0 {
            t = w.next_expiration().unwrap();
            let got = fired_until(&mut w, t);
            for &d in &got {
                assert!(d <= t, "timer {d} fired late check: at {t}");
            }
            fired.extend(got);
        }
        assert_eq!(fired, deadlines);
        assert!(t >= 17_000_000);
        // Never early: stepping one tick at a time fires each exactly at its deadline.
        let mut w = Wheel::new();
        for &d in &deadlines[..9] {
            w.insert(d, d);
        }
        for now in 0..=5000 {
            for d in fired_until(&mut w, now) {
                assert_eq!(d, now, "fired at {now}, due {d}");
            }
        }
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn cancel_removes_and_stale_keys_are_harmless() {
        let mut w = Wheel::new();
        let a = w.insert(10, 10);
        let b = w.insert(10, 11);
        assert_eq!(w.cancel(a), Some(10));
        assert_eq!(w.cancel(a), None);
        assert_eq!(fired_until(&mut w, 10), vec![11]);
        assert_eq!(w.cancel(b), None, "cancel after fire is a no-op");
        let c = w.insert(20, 20);
        assert_eq!(c.idx, a.idx.min(b.idx).max(c.idx), "slot reuse");
        assert_ne!((c.idx, c.generation), (a.idx, a.generation));
        assert_eq!(w.next_expiration(), Some(20));
    }

    #[test]
    fn past_deadlines_fire_on_next_advance() {
        let mut w = Wheel::new();
        fired_until(&mut w, 1000);
        w.insert(3, 3);
        assert_eq!(w.next_expiration(), Some(1000));
        assert_eq!(fired_until(&mut w, 1000), vec![3]);
    }

    #[test]
    fn beyond_horizon_is_clamped_not_lost() {
        let mut w = Wheel::new();
        w.insert(u64::MAX / 2, 1);
        let at = w.next_expiration().unwrap();
        assert!(at <= HORIZON + 1);
        assert!(fired_until(&mut w, at).is_empty(), "not due yet: re-armed");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn randomized_against_sorted_reference() {
        let mut w = Wheel::new();
        let mut rng = 0x9E3779B97F4A7C15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut expect = Vec::new();
        let mut keys = Vec::new();
        for i in 0..2000u64 {
            let d = next() % 200_000;
            keys.push((w.insert(d, i), d, i));
        }
        for (k, d, i) in keys {
            if i % 3 == 0 {
                assert_eq!(w.cancel(k), Some(i));
            } else {
                expect.push((d, i));
            }
        }
        let mut got = Vec::new();
        let mut now = 0;
        while now < 200_000 {
            now += next() % 700;
            w.advance(now, |i| got.push((now, i)));
        }
        w.advance(200_000, |i| got.push((200_000, i)));
        expect.sort();
        let due: std::collections::HashMap<u64, u64> = expect.iter().map(|&(d, i)| (i, d)).collect();
        for &(at, i) in &got {
            assert!(due[&i] <= at, "timer {i} due {} fired early at {at}", due[&i]);
        }
        assert_eq!(got.len(), expect.len());
        let order: Vec<u64> = got.iter().map(|&(_, i)| due[&i]).collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "fired out of deadline order");
    }

    #[test]
    fn a_late_advance_fires_in_deadline_order() {
        // A driver that wakes late advances over many due timers at once; those sharing a
        // higher-level slot must not fire in slot-list order.
        let mut w = Wheel::new();
        let deadlines: Vec<u64> = (0..40u64).map(|i| 20_000 + ((i * 17) % 40) * 100).collect();
        for &d in &deadlines {
            w.insert(d, d);
        }
        let mut sorted = deadlines.clone();
        sorted.sort_unstable();
        // From tick 0 straight past six deadlines, five of which share a level-2 slot.
        let mut got = fired_until(&mut w, 20_550);
        assert_eq!(got, sorted[..6]);
        got.extend(fired_until(&mut w, 30_000));
        assert_eq!(got, sorted);
    }
}
