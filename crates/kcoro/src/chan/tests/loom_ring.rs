//! Loom models of the lock-free ring and of its hand-over to the lock: values pushed and
//! popped without the lock land exactly once, and an operation that parks while another
//! bypasses the lock is still completed (no value left in the ring behind a parked
//! receiver, no room left unused in front of a parked sender).

use std::cell::UnsafeCell;
use std::sync::Arc as StdArc;

use loom::sync::Arc;
use loom::thread;

use crate::chan::core::{Chan, RecvAttempt, SendAttempt, Wait};
use crate::chan::flavor::Flavor;
use crate::chan::flavor::ring::{Pop, Push, Ring};
use crate::chan::stats::Measure;
use crate::chan::waiter::{Entry, Waiter};
use crate::loom::Reached;

fn ring_chan(cap: usize) -> Chan<u32> {
    Chan::new(Flavor::Ring(StdArc::new(Ring::new(cap))), Measure::Fixed(4), None, None, 0, None)
}

/// A pop and then a push on one thread race a push on another for one slot: every value
/// pushed is popped exactly once, and the pop is explored finding a value and finding none
/// (the other push not yet done, or claimed and not yet written), the two pushes both
/// fitting and one finding the slot full. (Two threads, not a third for the pop: with two
/// threads waiting for a third that had claimed a position, loom kept scheduling the
/// waiters and gave up on the model's length. The pop is on the spawned thread: see
/// [`Reached`].)
#[test]
fn loom_ring_two_pushers_one_popper() {
    static REACHED: Reached = Reached::new();
    loom::model(|| {
        let r = Arc::new(Ring::new(1));
        let pop_then_push = {
            let r = r.clone();
            thread::spawn(move || {
                let popped = match r.try_pop() {
                    Pop::Got(v) => Some(v),
                    Pop::Empty => None,
                    Pop::Refused => panic!("no flag is set"),
                };
                (popped, matches!(r.try_push(2u32), Push::Done))
            })
        };
        let pushed_1 = matches!(r.try_push(1u32), Push::Done);
        let (popped, pushed_2) = pop_then_push.join().unwrap();
        let pushed = [pushed_1, pushed_2];
        REACHED.note(if popped.is_some() { "popped a value" } else { "popped none" });
        REACHED.note(if pushed == [true, true] { "both pushed" } else { "one found it full" });
        let mut seen: Vec<u32> = popped.into_iter().collect();
        seen.extend(r.pop_locked());
        let mut sent: Vec<u32> =
            [1, 2].into_iter().zip(&pushed).filter(|(_, ok)| **ok).map(|(v, _)| v).collect();
        seen.sort_unstable();
        sent.sort_unstable();
        assert_eq!(seen, sent, "every pushed value popped exactly once");
        assert!(pushed.iter().any(|&ok| ok), "one slot: at least one push fits");
    });
    REACHED.assert_all(&["popped a value", "popped none", "both pushed", "one found it full"]);
}

/// Two readings of a counting ring's payload bytes, taken on a thread of their own while
/// the caller moves values of `sizes` bytes: each must have no more popped than pushed
/// bytes, the second no less than the first, and both byte counts must be in `possible`.
/// (The slots are read one after another, so with several slots a count may add up
/// values of different instants; each value is still counted once or not at all.)
///
/// The readings run on the spawned thread and the traffic on the model's main thread, in
/// that order on purpose: loom's search starts from a schedule where the main thread runs
/// first, and it missed every interleaving of a spawned thread's load-then-exchange with an
/// earlier load on the main thread (one schedule explored where there are several).
fn read_while(ring: Ring<u32>, sizes: &[u32], possible: &'static [u64], traffic: impl FnOnce(&Ring<u32>)) {
    let r = Arc::new(ring);
    let reader = {
        let r = r.clone();
        thread::spawn(move || {
            let mut last = (0, 0);
            for _ in 0..2 {
                let now = r.payload_bytes().expect("a counting ring");
                assert!(possible.contains(&now.0) && possible.contains(&now.1), "impossible {now:?}");
                assert!(now.1 <= now.0, "popped more than pushed: {now:?}");
                assert!(now.0 >= last.0 && now.1 >= last.1, "went back: {last:?} then {now:?}");
                last = now;
            }
        })
    };
    traffic(&r);
    reader.join().unwrap();
    let total: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
    assert_eq!(r.payload_bytes(), Some((total, total)));
}

/// A payload-counting ring read while two values are pushed and popped: the readings
/// stay ordered, and at the end both counts are exact.
#[test]
fn loom_ring_payload_bytes_never_show_more_popped_than_pushed() {
    loom::model(|| {
        read_while(Ring::new(2).counting_payload(|v: &u32| *v as usize), &[3, 5], &[0, 3, 5, 8], |r| {
            for v in [3, 5] {
                assert!(matches!(r.try_push(v), Push::Done));
            }
            for v in [3, 5] {
                assert!(matches!(r.try_pop(), Pop::Got(got) if got == v));
            }
        })
    });
}

/// One slot, three pushes: the third push rewrites the first one's count while a reading
/// may be under way, and the reading still shows only counts some instant had (with one
/// slot, sums of a prefix of the values).
#[test]
fn loom_ring_payload_bytes_stay_whole_while_counts_are_rewritten() {
    loom::model(|| {
        read_while(Ring::new(1).counting_payload(|v: &u32| *v as usize), &[1, 2, 4], &[0, 1, 3, 7], |r| {
            for v in [1, 2, 4] {
                assert!(matches!(r.try_push(v), Push::Done));
                assert!(matches!(r.try_pop(), Pop::Got(got) if got == v));
            }
        })
    });
}

/// A receiver takes the lock and finds the ring empty (so parks) or the value (so takes
/// it) while a send bypasses the lock: either way the value is received once, none is left
/// behind, and both outcomes are explored.
#[test]
fn loom_ring_receiver_parks_while_a_send_bypasses_the_lock() {
    static REACHED: Reached = Reached::new();
    loom::model(|| {
        let c = Arc::new(ring_chan(1));
        let receiver = {
            let c = c.clone();
            thread::spawn(move || {
                let w = Waiter::for_future();
                let slot = Box::new(UnsafeCell::new(None));
                let mut g = c.lock();
                let got_at_once = match c.try_recv_locked(&mut g, None) {
                    RecvAttempt::Got(v, after) => {
                        drop(g);
                        after.run(&c);
                        Some(v)
                    }
                    RecvAttempt::Empty => {
                        let wakes = c.park_receiver_locked(&mut g, Entry::new(&w, 0, slot.get(), 0));
                        drop(g);
                        wakes.run();
                        None
                    }
                    RecvAttempt::Closed => panic!("nobody closes"),
                };
                (got_at_once, w, slot)
            })
        };
        assert!(c.send(7, Wait::TRY).is_ok(), "a receiver or a free place takes the send");
        let (got_at_once, w, slot) = receiver.join().unwrap();
        match got_at_once {
            Some(v) => {
                REACHED.note("got at once");
                assert_eq!(v, 7);
            }
            None => {
                REACHED.note("parked");
                assert_eq!(w.done(), Some(0), "the parked receiver is served");
                assert_eq!(slot.into_inner(), Some(7));
            }
        }
        assert_eq!(c.len(), 0, "no value left behind");
        let s = c.snapshot();
        assert_eq!((s.sends, s.recvs), (1, 1), "counted once each");
    });
    REACHED.assert_all(&["got at once", "parked"]);
}

/// A sender takes the lock and finds the one place full (so parks) or freed (so sends)
/// while a receive bypasses the lock: either way the second value ends up buffered, and
/// both outcomes are explored.
#[test]
fn loom_ring_sender_parks_while_a_receive_bypasses_the_lock() {
    static REACHED: Reached = Reached::new();
    loom::model(|| {
        let c = Arc::new(ring_chan(1));
        c.send(1, Wait::TRY).unwrap();
        let sender = {
            let c = c.clone();
            thread::spawn(move || {
                let w = Waiter::for_future();
                let slot = Box::new(UnsafeCell::new(Some(2)));
                let mut g = c.lock();
                let parked = match c.try_send_locked(&mut g, 2, 4, None) {
                    SendAttempt::Sent(after) => {
                        drop(g);
                        after.run(&c);
                        false
                    }
                    SendAttempt::Full(v) => {
                        assert_eq!(v, 2);
                        let wakes = c.park_sender_locked(&mut g, Entry::new(&w, 0, slot.get(), 4));
                        drop(g);
                        wakes.run();
                        true
                    }
                    SendAttempt::Closed(_) => panic!("nobody closes"),
                };
                (parked, w, slot)
            })
        };
        assert_eq!(c.recv(Wait::TRY).ok(), Some(1), "the buffered value is received");
        let (parked, w, slot) = sender.join().unwrap();
        if parked {
            REACHED.note("parked");
            assert_eq!(w.done(), Some(0), "the parked sender is moved into the freed place");
            assert_eq!(slot.into_inner(), None);
        } else {
            REACHED.note("sent at once");
        }
        assert_eq!(c.recv(Wait::TRY), Ok(2), "the second value is buffered");
        let s = c.snapshot();
        assert_eq!((s.sends, s.recvs, s.len), (2, 2, 0));
    });
    REACHED.assert_all(&["parked", "sent at once"]);
}
