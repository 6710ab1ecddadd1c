//! What a parked coroutine waits on, kept where a monitor can read it: written by the
//! coroutine itself on its way to parking, read by [`crate::inspect`] from any thread.
//!
//! A park is on the hot path (a cross-coroutine ping-pong parks twice per round trip, in
//! about 35 ns), so the writer pays two plain stores (`obj`, `tag`) and a load of its own
//! `tag`; the rarer words (a select's second channel, a deadline) are written only when
//! they mean something. No clock is read: how long a coroutine has been parked is measured
//! by whoever looks, from the first look that saw the same park (`tag` carries a park
//! sequence number, so "the same park" is exact).
//!
//! # Protocol
//! - Only the running coroutine writes, before it switches out: `obj`, `extra`,
//!   `deadline` (Relaxed), then `tag` (Release) with its sequence number raised.
//! - A reader takes `state` (Acquire) = PARKED, `tag` (Acquire), the other words, then
//!   (after an Acquire fence) `state` = PARKED and `tag` unchanged again. A parked
//!   coroutine writes nothing; one that ran in between either is not PARKED at the second
//!   look or parked again under a new sequence number, which the Acquire of the second
//!   PARKED makes visible to the second `tag` read. So an accepted reading is one park's.

use std::sync::atomic::{AtomicU64, Ordering::*, fence};

/// Kinds of wait (the low byte of a tag).
pub(crate) mod kind {
    /// Never parked yet.
    pub(crate) const NONE: u8 = 0;
    /// `park::park` from code outside kcoro's primitives.
    pub(crate) const PARK: u8 = 1;
    pub(crate) const SEND: u8 = 2;
    pub(crate) const RECV: u8 = 3;
    pub(crate) const SELECT: u8 = 4;
    pub(crate) const SLEEP: u8 = 5;
    pub(crate) const IO: u8 = 6;
    pub(crate) const JOIN: u8 = 7;
    pub(crate) const SYNC: u8 = 8;
    pub(crate) const CANCEL: u8 = 9;
    pub(crate) const SCOPE: u8 = 10;
    /// `future::wait`.
    pub(crate) const FUTURE: u8 = 11;
}

/// The synchronisation primitives a [`kind::SYNC`] wait names (its `n` indexes this).
pub(crate) const SYNC_NAMES: [&str; 5] = ["lock", "wait group", "actor reply", "signal", "oneshot"];
/// A mutex's or a semaphore's queue (`sync::waiter`).
pub(crate) const SYNC_LOCK: u16 = 0;
pub(crate) const SYNC_WAIT_GROUP: u16 = 1;
pub(crate) const SYNC_ACTOR_REPLY: u16 = 2;
/// A `park::Signal` waited on directly.
pub(crate) const SYNC_SIGNAL: u16 = 3;
/// A `sync::oneshot` receive.
pub(crate) const SYNC_ONESHOT: u16 = 4;

/// Tag bit: the park has a deadline (a timer is armed for it).
const DEADLINE: u64 = 1 << 8;
/// Tag bits 16..32: `n` (a select's clause count, an I/O direction, a primitive).
const N_SHIFT: u32 = 16;
/// Tag bits 32..64: the park sequence number.
const SEQ_SHIFT: u32 = 32;

/// One wait, as its parker describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    pub(crate) kind: u8,
    /// A select's clause count; for I/O 1 = writable; for SYNC an index in [`SYNC_NAMES`].
    pub(crate) n: u16,
    /// A channel id, a coroutine id, a file descriptor.
    pub(crate) obj: u64,
    /// A select's second channel.
    pub(crate) extra: u64,
}

impl Wait {
    pub(crate) const PARK: Wait = Wait::of(kind::PARK, 0);
    pub(crate) const SLEEP: Wait = Wait::of(kind::SLEEP, 0);
    pub(crate) const CANCEL: Wait = Wait::of(kind::CANCEL, 0);
    pub(crate) const SCOPE: Wait = Wait::of(kind::SCOPE, 0);
    pub(crate) const FUTURE: Wait = Wait::of(kind::FUTURE, 0);

    pub(crate) const fn of(kind: u8, obj: u64) -> Wait {
        Wait { kind, n: 0, obj, extra: 0 }
    }

    /// A send (`send == true`) or receive on channel `id`.
    pub(crate) const fn chan(id: u64, send: bool) -> Wait {
        Wait::of(if send { kind::SEND } else { kind::RECV }, id)
    }

    /// A select over `count` clauses, the first two on channels `first` and `second`
    /// (ids with the top bit set for a send).
    pub(crate) const fn select(count: usize, first: u64, second: u64) -> Wait {
        let n = if count > u16::MAX as usize { u16::MAX } else { count as u16 };
        Wait { kind: kind::SELECT, n, obj: first, extra: second }
    }

    pub(crate) const fn io(fd: i32, write: bool) -> Wait {
        Wait { kind: kind::IO, n: write as u16, obj: fd as u32 as u64, extra: 0 }
    }

    pub(crate) const fn join(coroutine: u64) -> Wait {
        Wait::of(kind::JOIN, coroutine)
    }

    /// A wait in the primitive `SYNC_NAMES[which]`.
    pub(crate) const fn sync(which: u16) -> Wait {
        Wait { kind: kind::SYNC, n: which, obj: 0, extra: 0 }
    }
}

/// The top bit of a channel id in a select's words: the clause sends.
pub(crate) const SELECT_SEND: u64 = 1 << 63;

/// One park as a reader found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Raised by every park: equal sequence numbers in two readings mean the same park.
    pub(crate) seq: u32,
    pub(crate) wait: Wait,
    /// The deadline, in ns since the runtime's clock started, if the park has one.
    pub(crate) deadline_ns: Option<u64>,
}

/// The words a coroutine describes its current (or last) park in.
#[derive(Debug, Default)]
pub(crate) struct WaitCell {
    tag: AtomicU64,
    obj: AtomicU64,
    extra: AtomicU64,
    deadline: AtomicU64,
}

impl WaitCell {
    /// Called by the coroutine itself, just before it switches out to park.
    #[inline]
    pub(crate) fn publish(&self, wait: Wait, deadline_ns: Option<u64>) {
        let seq = (self.tag.load(Relaxed) >> SEQ_SHIFT).wrapping_add(1);
        self.obj.store(wait.obj, Relaxed);
        if wait.kind == kind::SELECT {
            self.extra.store(wait.extra, Relaxed);
        }
        let mut tag = (seq << SEQ_SHIFT) | (u64::from(wait.n) << N_SHIFT) | u64::from(wait.kind);
        if let Some(d) = deadline_ns {
            self.deadline.store(d, Relaxed);
            tag |= DEADLINE;
        }
        self.tag.store(tag, Release);
    }

    /// The park under way, if the coroutine is parked throughout the reading (`parked`
    /// reads its park state with Acquire). `None` if it is not parked, or kept running
    /// and parking while we looked.
    pub(crate) fn read(&self, parked: impl Fn() -> bool) -> Option<Seen> {
        for _ in 0..4 {
            if !parked() {
                return None;
            }
            let tag = self.tag.load(Acquire);
            let obj = self.obj.load(Relaxed);
            let extra = self.extra.load(Relaxed);
            let deadline = self.deadline.load(Relaxed);
            fence(Acquire);
            if parked() && self.tag.load(Relaxed) == tag {
                let kind = tag as u8;
                let wait = Wait {
                    kind,
                    n: (tag >> N_SHIFT) as u16,
                    obj,
                    extra: if kind == kind::SELECT { extra } else { 0 },
                };
                let deadline_ns = (tag & DEADLINE != 0).then_some(deadline);
                return Some(Seen { seq: (tag >> SEQ_SHIFT) as u32, wait, deadline_ns });
            }
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_reading_is_the_published_park_and_nothing_while_running() {
        let cell = WaitCell::default();
        let parked = AtomicBool::new(false);
        let is_parked = || parked.load(Acquire);
        cell.publish(Wait::chan(7, true), None);
        assert_eq!(cell.read(is_parked), None, "a running coroutine has no wait");
        parked.store(true, Release);
        let first = cell.read(is_parked).unwrap();
        assert_eq!(first.wait, Wait::chan(7, true));
        assert_eq!(first.deadline_ns, None);
        parked.store(false, Release);
        cell.publish(Wait::select(3, 1 | SELECT_SEND, 2), Some(5_000));
        parked.store(true, Release);
        let second = cell.read(is_parked).unwrap();
        assert_eq!(second.seq, first.seq + 1, "each park has its own sequence number");
        assert_eq!(second.wait, Wait::select(3, 1 | SELECT_SEND, 2));
        assert_eq!(second.deadline_ns, Some(5_000));
        parked.store(false, Release);
        cell.publish(Wait::io(9, true), None);
        parked.store(true, Release);
        let third = cell.read(is_parked).unwrap();
        assert_eq!((third.wait.obj, third.wait.n, third.deadline_ns), (9, 1, None));
        assert_eq!(third.wait.extra, 0, "a select's second channel does not leak into later waits");
    }
}
