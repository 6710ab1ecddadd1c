//! The client's half of a channel's send window: how many credited sends, and how many
//! element bytes, this connection has in flight on one channel.
//!
//! # Protocol
//! A send takes one value credit and its element's encoded bytes together, or waits until
//! both fit. Inline bytes count against the server's byte window (`CREDIT_BYTES` of the
//! OPEN reply), which the server counts too. Bytes of elements in our shared region count
//! against a bound of our own: the server does not count them (they take none of its
//! memory), but what is in flight in our region must stay bounded so its (LIFO) blocks are
//! reused while warm. A CREDIT event gives back what many sends took, and from minor 8 on
//! says how many of its bytes were shared (`SHARED_BYTES`); with an older server, which
//! does not, shared bytes count in the inline window as it always did (`split` is false).
//! The server drops its counts before it answers, so what it counts is never more than
//! what we count here, and a send this window admits is never refused for the window.
//!
//! Taking and giving are atomic read-modify-writes: a send that fits and a return that no
//! one waits for touch no lock and no channel. A sender that must wait counts itself in
//! `waiting`, looks once more, then sleeps on `bell`; a giver that sees anyone waiting
//! rings it.
//!
//! # Invariants
//! - Each byte count ≤ its bound, except when a single send holds all of it (one element
//!   larger than the bound goes alone); a send of 0 bytes always fits.
//! - No lost wake-up: a waiter's increment of `waiting` and its second look, and a
//!   giver's return and its read of `waiting`, are all SeqCst, so either the waiter sees
//!   the return or the giver sees the waiter (and `bell` is conflated: a ring before the
//!   wait is kept). A woken waiter that took its share rings again if others still wait
//!   and room is left, so one ring for several returns wakes them in turn.
//! - One window per channel and connection (the connection's `ChanState`), however many
//!   handles share it: the server counts one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::time::Instant;

use kcoro::chan::{self, ChanError, Receiver, Sender};
use kcoro::sync::CancelToken;

/// What a look at the window found.
#[derive(PartialEq, Eq)]
enum Look {
    Taken,
    /// Nothing to take: sleep on the bell (counted in `waiting`).
    Wait,
}

/// One send's share of the window besides its value credit: its element's encoded bytes,
/// and whether they travel in the connection's shared region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Share {
    pub(crate) bytes: u64,
    pub(crate) shared: bool,
}

/// Index of the inline count in `Window::bytes`; shared bytes have theirs after it.
const INLINE: usize = 0;
const SHARED: usize = 1;

pub(crate) struct Window {
    /// Value credits free.
    values: AtomicU64,
    /// Element bytes in flight: inline, and shared (in `INLINE` too unless `split`).
    bytes: [AtomicU64; 2],
    max_values: u64,
    max_bytes: [u64; 2],
    /// The server tells shared bytes apart in CREDIT (minor 8): they have a count of their own.
    split: bool,
    /// Senders between deciding to sleep and waking.
    waiting: AtomicUsize,
    closed: AtomicBool,
    bell: (Sender<()>, Receiver<()>),
}

impl Window {
    /// A window of `values` sends and `max_inline` inline bytes (0: not limited in bytes, a
    /// server that does not send `CREDIT_BYTES`), and `max_shared` bytes of shared
    /// elements when the server tells those apart (else they count as inline ones).
    pub(crate) fn new(values: u32, max_inline: u64, max_shared: Option<u64>) -> Window {
        let unbounded_if_zero = |max: u64| if max == 0 { u64::MAX } else { max };
        Window {
            values: AtomicU64::new(u64::from(values)),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            max_values: u64::from(values),
            max_bytes: [unbounded_if_zero(max_inline), max_shared.map_or(u64::MAX, unbounded_if_zero)],
            split: max_shared.is_some(),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            bell: chan::conflated(),
        }
    }

    /// Value credits free now.
    pub(crate) fn free_values(&self) -> usize {
        usize::try_from(self.values.load(Relaxed)).unwrap_or(usize::MAX)
    }

    /// The count a send's bytes go to.
    fn slot(&self, share: Share) -> usize {
        if self.split && share.shared { SHARED } else { INLINE }
    }

    /// Takes a value credit and the share's bytes if both fit now.
    fn try_take(&self, share: Share) -> bool {
        let (len, slot) = (share.bytes, self.slot(share));
        let (bytes, max) = (&self.bytes[slot], self.max_bytes[slot]);
        let fits = |b: u64| len == 0 || b == 0 || b.saturating_add(len) <= max;
        if !fits(bytes.load(SeqCst)) {
            return false;
        }
        if self.values.fetch_update(SeqCst, SeqCst, |v| v.checked_sub(1)).is_err() {
            return false;
        }
        if bytes.fetch_update(SeqCst, SeqCst, |b| fits(b).then(|| b.saturating_add(len))).is_ok() {
            return true;
        }
        self.values.fetch_add(1, SeqCst); // the bytes went meanwhile: give the value back
        self.ring_if_waiting();
        false
    }

    /// Takes one send's share, a value credit and its bytes: now (`try_only`), or
    /// waiting until `deadline` or `token`. `Closed` once the connection or channel is.
    pub(crate) fn take(
        &self,
        share: Share,
        deadline: Option<Instant>,
        try_only: bool,
        token: Option<&CancelToken>,
    ) -> Result<(), ChanError> {
        let mut waited = false;
        while self.look(share, try_only, waited)? == Look::Wait {
            let rung = self.bell.1.recv_with(deadline, token);
            self.waiting.fetch_sub(1, SeqCst);
            rung?;
            waited = true;
        }
        Ok(())
    }

    /// As [`take`](Self::take) without a deadline, for async callers.
    pub(crate) async fn take_async(&self, share: Share) -> Result<(), ChanError> {
        let mut waited = false;
        while self.look(share, false, waited)? == Look::Wait {
            let rung = self.bell.1.recv_async().await;
            self.waiting.fetch_sub(1, SeqCst);
            rung?;
            waited = true;
        }
        Ok(())
    }

    /// One look at the window for a send's share: taken, or (unless `try_only`) counted
    /// in `waiting`, to sleep on the bell. `waited`: the caller slept before, so what is
    /// left of the return that woke it goes to the others.
    fn look(&self, share: Share, try_only: bool, waited: bool) -> Result<Look, ChanError> {
        if self.closed.load(Acquire) {
            return Err(ChanError::Closed);
        }
        if self.try_take(share) {
            if waited {
                self.ring_if_waiting();
            }
            return Ok(Look::Taken);
        }
        if try_only {
            return Err(ChanError::WouldBlock);
        }
        self.waiting.fetch_add(1, SeqCst);
        if self.try_take(share) {
            self.woke_and_took();
            return Ok(Look::Taken);
        }
        Ok(Look::Wait)
    }

    /// A waiter took its share: it no longer waits, and others still waiting get the rest.
    fn woke_and_took(&self) {
        self.waiting.fetch_sub(1, SeqCst);
        self.ring_if_waiting();
    }

    fn ring_if_waiting(&self) {
        if self.waiting.load(SeqCst) > 0 && self.values.load(SeqCst) > 0 {
            let _ = self.bell.0.try_send(());
        }
    }

    /// Gives back what one send took (its reply came, or it did not go out).
    pub(crate) fn give(&self, share: Share) {
        self.give_many(1, share.bytes, if share.shared { share.bytes } else { 0 });
    }

    /// Gives back what `values` sends took: `bytes` in all, `shared` of them in shared
    /// memory (a CREDIT event). Never more than the window: a lying server's extra credit
    /// is not kept.
    pub(crate) fn give_many(&self, values: u32, bytes: u64, shared: u64) {
        let max = self.max_values;
        let _ =
            self.values.fetch_update(SeqCst, SeqCst, |v| Some(v.saturating_add(u64::from(values)).min(max)));
        let shared = if self.split { shared.min(bytes) } else { 0 };
        for (slot, n) in [(INLINE, bytes - shared), (SHARED, shared)] {
            if n > 0 {
                let _ = self.bytes[slot].fetch_update(SeqCst, SeqCst, |b| Some(b.saturating_sub(n)));
            }
        }
        if self.waiting.load(SeqCst) > 0 {
            let _ = self.bell.0.try_send(());
        }
    }

    /// Wakes every waiter with `Closed`; nothing is taken any more.
    pub(crate) fn close(&self) {
        self.closed.store(true, Release);
        self.bell.0.close();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn inline(bytes: u64) -> Share {
        Share { bytes, shared: false }
    }

    fn shared(bytes: u64) -> Share {
        Share { bytes, shared: true }
    }

    /// Values and bytes are both limits; a lone oversize element goes; a zero-byte send
    /// always fits; giving back wakes a waiter; closing fails waiters.
    #[test]
    fn values_and_bytes_bound_the_window() {
        let w = Window::new(3, 100, None);
        w.take(inline(60), None, true, None).unwrap();
        assert_eq!(w.take(inline(60), None, true, None), Err(ChanError::WouldBlock), "160 bytes > 100");
        w.take(inline(0), None, true, None).unwrap();
        w.take(inline(40), None, true, None).unwrap();
        assert_eq!(w.take(inline(0), None, true, None), Err(ChanError::WouldBlock), "3 values");
        assert_eq!(w.free_values(), 0);
        let deadline = Instant::now() + std::time::Duration::from_millis(5);
        assert_eq!(w.take(inline(0), Some(deadline), false, None), Err(ChanError::Timeout));
        w.give(inline(60));
        w.give(inline(40));
        w.give(inline(0));
        assert_eq!(w.free_values(), 3);
        // Nothing in flight: an element larger than the whole window goes alone.
        w.take(inline(500), None, true, None).unwrap();
        assert_eq!(w.take(inline(1), None, true, None), Err(ChanError::WouldBlock));
        let w = Arc::new(w);
        let w2 = Arc::clone(&w);
        let waiter = std::thread::spawn(move || w2.take(inline(10), None, false, None));
        w.give(inline(500));
        assert_eq!(waiter.join().unwrap(), Ok(()));
        w.close();
        assert_eq!(w.take(inline(1000), None, false, None), Err(ChanError::Closed));
    }

    /// Many senders waiting on a window they used up, woken by returns of several credits at once:
    /// every one of them gets its share (none sleeps through a return), and the window
    /// never holds more than it was given. A hundred rounds, each with all eight asleep
    /// (or on their way) before the first return.
    #[test]
    fn one_return_of_many_credits_wakes_every_waiter_it_can() {
        for _ in 0..100 {
            let w = Arc::new(Window::new(8, 0, None));
            for _ in 0..8 {
                w.take(inline(1), None, true, None).unwrap();
            }
            let waiters: Vec<_> = (0..8)
                .map(|_| {
                    let w = Arc::clone(&w);
                    std::thread::spawn(move || w.take(inline(1), None, false, None))
                })
                .collect();
            while w.waiting.load(SeqCst) < 8 {
                std::thread::yield_now();
            }
            w.give_many(4, 4, 0);
            w.give_many(4, 4, 0);
            for h in waiters {
                assert_eq!(h.join().unwrap(), Ok(()));
            }
            assert_eq!(w.free_values(), 0);
            w.give_many(100, 100, 0);
            assert_eq!(w.free_values(), 8, "more than the window was kept");
        }
    }

    /// With a server that tells shared bytes apart (minor 8), shared elements have a bound
    /// of their own: a full region window leaves inline sends free, and the reverse; a
    /// CREDIT's bytes go back to the count each share came from. With an older server both
    /// count in the one window the server gave.
    #[test]
    fn shared_elements_have_a_bound_of_their_own() {
        let w = Window::new(100, 100, Some(1000));
        w.take(shared(600), None, true, None).unwrap();
        w.take(shared(400), None, true, None).unwrap();
        assert_eq!(w.take(shared(1), None, true, None), Err(ChanError::WouldBlock), "1001 shared > 1000");
        w.take(inline(100), None, true, None).unwrap(); // the inline window is untouched
        assert_eq!(w.take(inline(1), None, true, None), Err(ChanError::WouldBlock), "101 inline > 100");
        w.take(shared(0), None, true, None).unwrap();
        // One CREDIT for an inline and a shared send: 100 inline and 600 shared back.
        w.give_many(2, 700, 600);
        w.take(inline(100), None, true, None).unwrap();
        w.take(shared(600), None, true, None).unwrap();
        assert_eq!(w.take(shared(1), None, true, None), Err(ChanError::WouldBlock));
        // A lying server's shared bytes beyond its total are not taken from the inline count.
        w.give_many(1, 10, 500);
        assert_eq!(w.take(inline(1), None, true, None), Err(ChanError::WouldBlock), "inline freed by a lie");
        w.give(shared(400));
        w.give(inline(100));
        w.take(inline(100), None, true, None).unwrap();

        let old = Window::new(100, 1000, None);
        old.take(shared(600), None, true, None).unwrap();
        assert_eq!(old.take(inline(500), None, true, None), Err(ChanError::WouldBlock), "one window");
        old.give_many(1, 600, 0); // an old server's CREDIT: no SHARED_BYTES
        old.take(inline(500), None, true, None).unwrap();
        old.take(shared(500), None, true, None).unwrap();
        assert_eq!(old.take(shared(1), None, true, None), Err(ChanError::WouldBlock));
    }
}
