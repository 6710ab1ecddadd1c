//! Buffered without the lock: a bounded multi-producer multi-consumer ring that sends and
//! receives use directly while nobody is parked, and the channel's locked code uses as its
//! buffer otherwise.
//!
//! # The ring
//! Dmitry Vyukov's bounded queue with stamped slots: `tail` is the next position to push,
//! `head` the next to pop, and each slot's stamp says whose turn it is. A pusher at
//! position `p` needs stamp `p`, claims `p` by a compare-exchange on `tail`, writes, and
//! stamps `p + 1`; a popper at `p` needs stamp `p + 1`, claims `p` on `head`, reads, and
//! stamps `p + one_lap` (the slot's position one lap later). A position is `lap + index`
//! with `one_lap` a power of two above the capacity, so no division is needed and
//! the number of pushes so far is `lap / one_lap * cap + index`: the send and receive
//! counters of ring traffic come from the positions, not from a shared counter. A ring
//! whose values carry payloads of their own lengths ([`Ring::counting_payload`]) also
//! keeps each slot's running byte count beside it, written by the slot's pusher, which a
//! snapshot adds up (see [`bytes`]): neither end shares a byte counter.
//!
//! # Handing over to the lock
//! Parked operations hold their values in their own slots and are completed by whoever
//! claims them, under the channel lock (see `chan::core`). A push or pop that bypassed the
//! lock could slip a value past a parked receiver, or take the place a parked sender is
//! about to be moved into. So two flag bits travel in the position words, where every
//! lock-free operation's compare-exchange sees them:
//! - `BLOCKED` in `tail`: an operation is parked; pushes go through the lock.
//! - `BLOCKED` in `head`: a sender is parked; pops go through the lock.
//! - `CLOSED` in `tail`: pushes go through the lock (which fails them), and a pop that
//!   finds the ring empty too.
//!
//! Only the lock holder sets or clears them, and the locked operations keep them, so while
//! both are set the lock holder is the only one who moves the ring. A lock-free operation
//! never waits for the lock; a locked one may briefly wait for a lock-free one that has
//! claimed a position but not yet stamped it.

mod bytes;

use std::mem::MaybeUninit;

use crate::backoff::Backoff;
#[cfg(not(loom))]
use crate::loom::CellExt as _;
use crate::loom::UnsafeCell;
use crate::loom::atomic::{AtomicU64, Ordering::*, fence};

const CLOSED: u64 = 1 << 63;
const BLOCKED: u64 = 1 << 62;
const FLAGS: u64 = CLOSED | BLOCKED;
/// Positions wrap inside the bits below the flags.
const POS: u64 = BLOCKED - 1;

/// Spin rounds (doubling spin hints each round) before yielding the thread while another
/// operation finishes a claimed position (then `Backoff` yields, then sleeps: the other
/// operation's thread was likely preempted).
const SPIN_ROUNDS: u32 = 6;

/// What became of a lock-free push.
pub(crate) enum Push<T> {
    Done,
    /// No room.
    Full(T),
    /// A flag is set: the push must go through the lock.
    Refused(T),
}

/// What became of a lock-free pop.
pub(crate) enum Pop<T> {
    Got(T),
    /// Nothing buffered, and the channel open.
    Empty,
    /// A flag is set (or the ring is empty and closed): the pop must go through the lock.
    Refused,
}

/// One end of the ring, alone on its cache lines: producers write `tail`'s, consumers
/// `head`'s.
#[repr(align(128))]
struct End {
    /// Position and flags.
    word: AtomicU64,
    /// `CLOCK_MONOTONIC_COARSE` of this end's last operation, for the snapshot's
    /// `last_op_ns`; a std atomic, since it is no part of the modelled protocol.
    touched_ns: std::sync::atomic::AtomicU64,
}

impl End {
    fn new() -> Self {
        End { word: AtomicU64::new(0), touched_ns: std::sync::atomic::AtomicU64::new(0) }
    }
}

struct Slot<T> {
    stamp: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

pub(crate) struct Ring<T> {
    head: End,
    tail: End,
    slots: Box<[Slot<T>]>,
    cap: u64,
    one_lap: u64,
    /// `one_lap == 1 << lap_shift`.
    lap_shift: u32,
    /// First operation's coarse time (0: none yet).
    first_ns: std::sync::atomic::AtomicU64,
    /// Each value's payload length and each slot's running count of them, for a ring that
    /// counts bytes per value.
    payload: Option<Payload<T>>,
    /// Values (and their payload bytes) taken by [`drain`](Self::drain): popped, never
    /// received. Written under the channel lock, read under it by snapshots.
    drained: std::sync::atomic::AtomicU64,
    drained_bytes: std::sync::atomic::AtomicU64,
}

struct Payload<T> {
    len: fn(&T) -> usize,
    counts: bytes::Counts,
}

// SAFETY: values move between threads through the ring (so `T: Send`), and a slot's value
// is only touched by the one thread that claimed its position (see `push` and `pop`).
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above: shared access hands each value to exactly one claimer.
unsafe impl<T: Send> Sync for Ring<T> {}

#[inline]
fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b) & POS
}

impl<T> Ring<T> {
    /// `cap >= 1`. All slots are allocated up front: sends never allocate.
    pub(crate) fn new(cap: usize) -> Self {
        assert!(cap >= 1, "ring::Ring::new: capacity 0");
        // Above the capacity, so a written slot's stamp (`p + 1`) is never a position.
        let one_lap = (cap as u64 + 1).next_power_of_two();
        let slots = (0..cap as u64)
            .map(|i| Slot { stamp: AtomicU64::new(i), value: UnsafeCell::new(MaybeUninit::uninit()) })
            .collect();
        Ring {
            head: End::new(),
            tail: End::new(),
            slots,
            cap: cap as u64,
            one_lap,
            lap_shift: one_lap.trailing_zeros(),
            first_ns: std::sync::atomic::AtomicU64::new(0),
            payload: None,
            drained: std::sync::atomic::AtomicU64::new(0),
            drained_bytes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts each value's payload bytes, as `len` measures them (read with
    /// [`payload_bytes`](Self::payload_bytes)).
    pub(crate) fn counting_payload(mut self, len: fn(&T) -> usize) -> Self {
        self.payload = Some(Payload { len, counts: bytes::Counts::new(self.slots.len(), self.lap_shift) });
        self
    }

    /// The position after `pos`.
    #[inline]
    fn next(&self, pos: u64) -> u64 {
        let index = pos & (self.one_lap - 1);
        if index + 1 < self.cap { pos + 1 } else { add(pos & !(self.one_lap - 1), self.one_lap) }
    }

    #[inline]
    fn slot(&self, pos: u64) -> &Slot<T> {
        &self.slots[(pos & (self.one_lap - 1)) as usize]
    }

    /// How many positions `pos` is past position 0: the operations that reached it.
    fn count(&self, pos: u64) -> u64 {
        (pos >> self.lap_shift) * self.cap + (pos & (self.one_lap - 1))
    }

    /// Pushes without the lock; refuses if a flag is set.
    #[inline]
    pub(crate) fn try_push(&self, v: T) -> Push<T> {
        self.push(v, false)
    }

    /// Pushes under the channel lock, whatever the flags. `Err` if full.
    #[inline]
    pub(crate) fn push_locked(&self, v: T) -> Result<(), T> {
        match self.push(v, true) {
            Push::Done => Ok(()),
            Push::Full(v) | Push::Refused(v) => Err(v),
        }
    }

    /// Pops without the lock; refuses if pops are blocked, or if the ring is empty and
    /// closed (the lock path reports and counts the close).
    #[inline]
    pub(crate) fn try_pop(&self) -> Pop<T> {
        self.pop(false)
    }

    /// [`try_push`](Self::try_push) as a call, for a channel's `try_send`: a caller may
    /// try in a loop of its own, which stays small enough to inline the try (an empty
    /// `try_recv` of a rendezvous channel took 4.7 ns instead of 2.4 with the ring's code
    /// inlined beside it).
    #[inline(never)]
    pub(crate) fn try_push_out_of_line(&self, v: T) -> Push<T> {
        self.push(v, false)
    }

    /// [`try_pop`](Self::try_pop) as a call, for a channel's `try_recv` (see
    /// [`try_push_out_of_line`](Self::try_push_out_of_line)).
    #[inline(never)]
    pub(crate) fn try_pop_out_of_line(&self) -> Pop<T> {
        self.pop(false)
    }

    /// Pops under the channel lock, whatever the flags.
    #[inline]
    pub(crate) fn pop_locked(&self) -> Option<T> {
        match self.pop(true) {
            Pop::Got(v) => Some(v),
            Pop::Empty | Pop::Refused => None,
        }
    }

    /// A push, inlined into the caller whole (the loop too: split into an inlined first
    /// attempt and an out-of-line retry loop, a two-worker SPSC message took 16.6 ns
    /// instead of 10.9, fastest of 11 alternated runs). A try calls it out of line (see
    /// [`try_push_out_of_line`](Self::try_push_out_of_line)).
    #[inline(always)]
    fn push(&self, v: T, locked: bool) -> Push<T> {
        // Measured before anything moves, so a measure that panics changes nothing.
        let counted = self.payload.as_ref().map(|p| (&p.counts, (p.len)(&v)));
        let mut backoff = Backoff::new(SPIN_ROUNDS);
        loop {
            let word = self.tail.word.load(Relaxed);
            let flags = word & FLAGS;
            if flags != 0 && !locked {
                return Push::Refused(v);
            }
            let pos = word & POS;
            let slot = self.slot(pos);
            // Acquire: pairs with the Release stamp of the pop that emptied the slot, so
            // its read of the old value happens before our write.
            let stamp = slot.stamp.load(Acquire);
            if stamp == pos {
                // The flags are kept: only the lock holder changes them, and a lock-free
                // push expects none, so a flag set meanwhile fails this exchange.
                if self.tail.word.compare_exchange_weak(word, self.next(pos) | flags, SeqCst, Relaxed).is_ok()
                {
                    // SAFETY: winning the exchange made position `pos` ours alone, and its
                    // stamp said the slot is empty for `pos`: nobody else touches the value.
                    slot.value.with_mut(|p| unsafe { (*p).write(v) });
                    // Counted before the stamp, which tells a snapshot the push is done.
                    if let Some((counts, len)) = counted {
                        counts.pushed(pos, len);
                    }
                    // Release: publishes the value to the popper that reads this stamp.
                    slot.stamp.store(add(pos, 1), Release);
                    self.touch(&self.tail);
                    return Push::Done;
                }
            } else if add(stamp, self.one_lap) == add(pos, 1) {
                // The slot still holds the previous lap's value: full, unless its pop is
                // under way. SeqCst fence: pairs with the one in `pop`, so a lock-free
                // pusher and popper that both see the other's end stale cannot both give
                // up. Under the lock it is not needed: an operation that parks raises the
                // flags with a read-modify-write and looks again.
                if !locked {
                    fence(SeqCst);
                }
                let head = self.head.word.load(Relaxed) & POS;
                if add(head, self.one_lap) == pos {
                    return Push::Full(v);
                }
            }
            // Another push claimed this position, or a pop has not stamped it yet.
            backoff.wait();
        }
    }

    /// A pop, inlined whole as [`push`](Self::push) is.
    #[inline(always)]
    fn pop(&self, locked: bool) -> Pop<T> {
        let mut backoff = Backoff::new(SPIN_ROUNDS);
        loop {
            let word = self.head.word.load(Relaxed);
            let flags = word & FLAGS;
            if flags != 0 && !locked {
                return Pop::Refused;
            }
            let pos = word & POS;
            let slot = self.slot(pos);
            // Acquire: pairs with the pusher's Release stamp; the value is written.
            let stamp = slot.stamp.load(Acquire);
            if stamp == add(pos, 1) {
                if self.head.word.compare_exchange_weak(word, self.next(pos) | flags, SeqCst, Relaxed).is_ok()
                {
                    // SAFETY: winning the exchange made position `pos` ours alone, and its
                    // stamp said a pusher wrote the value: we move it out exactly once.
                    let v = slot.value.with(|p| unsafe { (*p).assume_init_read() });
                    // Release: our read happens before the next lap's push writes.
                    slot.stamp.store(add(pos, self.one_lap), Release);
                    self.touch(&self.head);
                    return Pop::Got(v);
                }
            } else if stamp == pos {
                // Nothing written here yet: empty, unless a push is under way. (The fence:
                // see `push`.)
                if !locked {
                    fence(SeqCst);
                }
                let tail = self.tail.word.load(Relaxed);
                if tail & POS == pos {
                    return if tail & CLOSED != 0 && !locked { Pop::Refused } else { Pop::Empty };
                }
            }
            backoff.wait();
        }
    }

    /// Records the time of an operation at `end` (and the first one ever).
    #[inline(always)]
    fn touch(&self, end: &End) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = super::super::op_clock::now_ns();
        // The coarse clock ticks every few milliseconds: write only when it moved, so the
        // line stays shared between the ticks (and the write stays out of line).
        if now > end.touched_ns.load(Relaxed) {
            self.time_moved(end, now);
        }
    }

    #[cold]
    #[inline(never)]
    fn time_moved(&self, end: &End, now: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        // `fetch_max`: a stamp may trail one another thread took a moment before (see
        // `op_clock`), and times never go back.
        end.touched_ns.fetch_max(now, Relaxed);
        if self.first_ns.load(Relaxed) == 0 {
            let _ = self.first_ns.compare_exchange(0, now, Relaxed, Relaxed);
        }
    }

    /// Sends a push through the lock from now on. Caller holds the channel lock.
    pub(crate) fn block_pushes(&self) {
        // SeqCst: a lock-free push's exchange either comes first (and the caller's next
        // look at the ring sees its position) or sees the flag.
        self.tail.word.fetch_or(BLOCKED, SeqCst);
    }

    /// Caller holds the channel lock, and nothing is parked.
    pub(crate) fn unblock_pushes(&self) {
        self.tail.word.fetch_and(!BLOCKED, SeqCst);
    }

    /// Sends a pop through the lock from now on. Caller holds the channel lock.
    pub(crate) fn block_pops(&self) {
        self.head.word.fetch_or(BLOCKED, SeqCst);
    }

    /// Caller holds the channel lock, and no sender is parked.
    pub(crate) fn unblock_pops(&self) {
        self.head.word.fetch_and(!BLOCKED, SeqCst);
    }

    /// Fails every later push (lock-free ones are refused; the lock path checks its own
    /// flag). Caller holds the channel lock.
    pub(crate) fn close(&self) {
        self.tail.word.fetch_or(CLOSED, SeqCst);
    }

    /// Values pushed so far.
    pub(crate) fn pushed(&self) -> u64 {
        self.count(self.tail.word.load(SeqCst) & POS)
    }

    /// Values popped so far.
    pub(crate) fn popped(&self) -> u64 {
        self.count(self.head.word.load(SeqCst) & POS)
    }

    /// Values pushed and values popped, read in that order so that the pair is one some
    /// instant could have had (pops that overtake the pushes read are not counted).
    pub(crate) fn traffic(&self) -> (u64, u64) {
        let pushed = self.pushed();
        (pushed, self.popped().min(pushed))
    }

    /// Payload bytes pushed and popped, for a ring made with
    /// [`counting_payload`](Self::counting_payload): the bytes popped never exceed the
    /// bytes pushed, and neither ever goes back. Reads every slot (a ring has at most 64 Ki)
    /// and waits for no push.
    pub(crate) fn payload_bytes(&self) -> Option<(u64, u64)> {
        let p = self.payload.as_ref()?;
        Some(p.counts.totals(|i| self.slots[i].stamp.load(Acquire)))
    }

    /// Values buffered. Exact while pushes and pops are both blocked; 0 means empty at
    /// some instant during the call; never more than the capacity.
    #[inline(never)]
    pub(crate) fn len(&self) -> usize {
        let (pushed, popped) = self.traffic();
        (pushed - popped).min(self.cap) as usize
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Coarse times of the first and the last operation (0: none).
    pub(crate) fn op_times(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let first = self.first_ns.load(Relaxed);
        // An operation stamps its end before `first_ns`, but a look may see only the latter.
        let last = self.head.touched_ns.load(Relaxed).max(self.tail.touched_ns.load(Relaxed)).max(first);
        (first, last)
    }

    /// Takes every buffered value, oldest first, counting them apart from receives (see
    /// [`drained`](Self::drained)). Caller holds the channel lock.
    pub(crate) fn drain(&self) -> Vec<T> {
        use std::sync::atomic::Ordering::Relaxed;
        let values: Vec<T> = std::iter::from_fn(|| self.pop_locked()).collect();
        self.drained.fetch_add(values.len() as u64, Relaxed);
        if let Some(p) = &self.payload {
            self.drained_bytes.fetch_add(values.iter().map(|v| (p.len)(v) as u64).sum(), Relaxed);
        }
        values
    }

    /// Values taken by [`drain`](Self::drain), and their payload bytes (0 for a ring that
    /// counts by position): part of the pops, none of the receives. Caller holds the
    /// channel lock.
    pub(crate) fn drained(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.drained.load(Relaxed), self.drained_bytes.load(Relaxed))
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        while self.pop_locked().is_some() {}
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fills_to_capacity_then_drains_in_order() {
        for cap in [1, 2, 3, 5, 8] {
            let r = Ring::new(cap);
            for lap in 0..4u64 {
                for i in 0..cap as u64 {
                    assert!(matches!(r.try_push(lap * 100 + i), Push::Done), "cap {cap} lap {lap}");
                }
                assert!(matches!(r.try_push(999), Push::Full(999)), "cap {cap}: full");
                assert_eq!(r.len(), cap);
                for i in 0..cap as u64 {
                    assert!(matches!(r.try_pop(), Pop::Got(v) if v == lap * 100 + i));
                }
                assert!(matches!(r.try_pop(), Pop::Empty));
            }
            assert_eq!((r.pushed(), r.popped()), (4 * cap as u64, 4 * cap as u64));
        }
    }

    /// The measure is the element type's code: it runs once per push, before anything
    /// moves, and never in a pop, so one that panics leaves the ring as it was.
    #[test]
    fn a_measure_runs_once_per_push_and_a_panic_in_it_moves_nothing() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        fn len(v: &u32) -> usize {
            CALLS.fetch_add(1, SeqCst);
            assert_ne!(*v, 13, "13 cannot be measured");
            *v as usize
        }
        let r = Ring::new(2).counting_payload(len);
        assert_eq!(r.payload_bytes(), Some((0, 0)), "nothing pushed yet");
        assert!(matches!(r.try_push(5), Push::Done));
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.try_push(13)));
        assert!(refused.is_err(), "the measure panicked");
        assert!(matches!(r.try_push(7), Push::Done), "the panic claimed no slot");
        assert_eq!(r.payload_bytes(), Some((12, 0)));
        assert!(matches!(r.try_pop(), Pop::Got(5)));
        assert!(matches!(r.try_pop(), Pop::Got(7)));
        assert!(matches!(r.try_pop(), Pop::Empty));
        assert_eq!(r.payload_bytes(), Some((12, 12)));
        assert_eq!(CALLS.load(SeqCst), 3, "measured in the three pushes only");
    }

    /// Byte totals read while two pushers and a popper run: every reading has no more
    /// popped than pushed, none goes back, and the last one is exact.
    #[test]
    fn payload_bytes_read_under_traffic_stay_ordered_and_end_exact() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        let r = Arc::new(Ring::new(3).counting_payload(Vec::<u8>::len));
        let per = 5_000usize;
        let push_all = |r: Arc<Ring<Vec<u8>>>, first: usize| {
            std::thread::spawn(move || {
                for i in 0..per {
                    let mut v = vec![0; (first + i) % 17];
                    while let Push::Full(back) | Push::Refused(back) = r.try_push(v) {
                        v = back;
                        std::thread::yield_now();
                    }
                }
            })
        };
        let pushers = [push_all(r.clone(), 0), push_all(r.clone(), 5)];
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (r, done) = (r.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut last, mut readings) = ((0, 0), 0u64);
                while !done.load(Relaxed) || readings < 100 {
                    let now = r.payload_bytes().expect("a counting ring");
                    assert!(now.1 <= now.0, "popped {} > pushed {}", now.1, now.0);
                    assert!(now.0 >= last.0 && now.1 >= last.1, "went back: {last:?} then {now:?}");
                    (last, readings) = (now, readings + 1);
                }
            })
        };
        let mut popped_bytes = 0;
        for _ in 0..2 * per {
            loop {
                match r.try_pop() {
                    Pop::Got(v) => break popped_bytes += v.len() as u64,
                    _ => std::thread::yield_now(),
                }
            }
        }
        pushers.into_iter().for_each(|h| h.join().unwrap());
        done.store(true, Relaxed);
        reader.join().unwrap();
        let sent: u64 = (0..per).map(|i| (i % 17 + (5 + i) % 17) as u64).sum();
        assert_eq!(popped_bytes, sent);
        assert_eq!(r.payload_bytes(), Some((sent, sent)));
    }

    #[test]
    fn a_payload_counting_ring_counts_every_value_once_locked_or_not() {
        let r = Ring::new(2).counting_payload(Vec::<u8>::len);
        assert!(matches!(r.try_push(vec![0; 3]), Push::Done));
        r.block_pushes();
        assert!(r.push_locked(vec![0; 7]).is_ok());
        assert!(matches!(r.try_push(vec![0; 100]), Push::Refused(_)), "refused pushes count nothing");
        assert_eq!(r.payload_bytes(), Some((10, 0)));
        assert!(matches!(r.try_pop(), Pop::Got(v) if v.len() == 3));
        assert_eq!(r.pop_locked().map(|v| v.len()), Some(7));
        assert_eq!(r.payload_bytes(), Some((10, 10)));
        assert_eq!(Ring::<u8>::new(1).payload_bytes(), None, "a ring counting by position");
    }

    #[test]
    fn flags_refuse_lock_free_operations_but_not_locked_ones() {
        let r = Ring::new(2);
        r.block_pushes();
        assert!(matches!(r.try_push(1), Push::Refused(1)));
        assert!(r.push_locked(1).is_ok());
        assert!(matches!(r.try_pop(), Pop::Got(1)), "pops stay open while only pushes are blocked");
        r.block_pops();
        assert!(r.push_locked(2).is_ok());
        assert!(matches!(r.try_pop(), Pop::Refused));
        assert_eq!(r.pop_locked(), Some(2));
        r.unblock_pops();
        r.unblock_pushes();
        assert!(matches!(r.try_push(3), Push::Done));
        r.close();
        assert!(matches!(r.try_push(4), Push::Refused(4)));
        assert!(matches!(r.try_pop(), Pop::Got(3)), "a closed ring drains");
        assert!(matches!(r.try_pop(), Pop::Refused), "empty and closed goes to the lock");
        assert_eq!(r.pop_locked(), None);
    }

    #[test]
    fn dropping_a_ring_drops_what_it_holds() {
        let v = std::sync::Arc::new(());
        let r = Ring::new(4);
        for _ in 0..3 {
            assert!(r.push_locked(v.clone()).is_ok());
        }
        drop(r.pop_locked());
        assert_eq!(std::sync::Arc::strong_count(&v), 3);
        drop(r);
        assert_eq!(std::sync::Arc::strong_count(&v), 1);
    }

    #[test]
    fn threads_move_every_value_exactly_once() {
        use std::sync::Arc;
        let r = Arc::new(Ring::new(3));
        let per = 20_000u64;
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        let mut v = p * per + i;
                        loop {
                            match r.try_push(v) {
                                Push::Done => break,
                                Push::Full(back) | Push::Refused(back) => v = back,
                            }
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (r, taken) = (r.clone(), taken.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while taken.load(std::sync::atomic::Ordering::Relaxed) < 2 * per {
                        match r.try_pop() {
                            Pop::Got(v) => {
                                got.push(v);
                                taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            _ => std::thread::yield_now(),
                        }
                    }
                    got
                })
            })
            .collect();
        producers.into_iter().for_each(|h| h.join().unwrap());
        let mut all: Vec<u64> = Vec::new();
        for h in consumers {
            let got = h.join().unwrap();
            // Each producer's values reach one consumer in the order they were sent.
            for p in 0..2 {
                let mine: Vec<_> = got.iter().filter(|&&v| v / per == p).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {p}'s values out of order");
            }
            all.extend(got);
        }
        all.sort_unstable();
        assert_eq!(all, (0..2 * per).collect::<Vec<_>>());
        assert_eq!((r.pushed(), r.popped()), (2 * per, 2 * per));
    }
}
