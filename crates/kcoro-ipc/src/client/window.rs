//! The client's half of a channel's send window: how many credited sends, and how many
//! element bytes, this connection has in flight on one channel.
//!
//! # Protocol
//! A send takes one value credit and its element's encoded bytes (whether they go inline
//! or through shared memory) together, or waits until both fit. A CREDIT event gives back
//! what many sends took (the reply of each send, from servers older than minor 7). The
//! server counts the same values, and of the bytes only the inline ones, in its queue, and
//! drops them before it answers, so what it counts is never more than what we count here,
//! and a send this window admits is never refused for the window. Counting shared elements
//! too bounds what is in flight in our region, so its (LIFO) blocks are reused while warm.
//!
//! Taking and giving are atomic read-modify-writes: a send that fits and a return that no
//! one waits for touch no lock and no channel. A sender that must wait counts itself in
//! `waiting`, looks once more, then sleeps on `bell`; a giver that sees anyone waiting
//! rings it.
//!
//! # Invariants
//! - `bytes` ≤ `max_bytes`, except when a single send holds them all (one element larger
//!   than the window goes alone); a send of 0 bytes always fits.
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

pub(crate) struct Window {
    /// Value credits free.
    values: AtomicU64,
    /// Element bytes in flight.
    bytes: AtomicU64,
    max_values: u64,
    max_bytes: u64,
    /// Senders between deciding to sleep and waking.
    waiting: AtomicUsize,
    closed: AtomicBool,
    bell: (Sender<()>, Receiver<()>),
}

impl Window {
    /// A window of `values` sends and `max_bytes` bytes (0: not limited in bytes, a
    /// server that does not send `CREDIT_BYTES`).
    pub(crate) fn new(values: u32, max_bytes: u64) -> Window {
        Window {
            values: AtomicU64::new(u64::from(values)),
            bytes: AtomicU64::new(0),
            max_values: u64::from(values),
            max_bytes: if max_bytes == 0 { u64::MAX } else { max_bytes },
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            bell: chan::conflated(),
        }
    }

    /// Value credits free now.
    pub(crate) fn free_values(&self) -> usize {
        usize::try_from(self.values.load(Relaxed)).unwrap_or(usize::MAX)
    }

    /// Takes a value credit and `len` bytes if both fit now.
    fn try_take(&self, len: u64) -> bool {
        let fits = |b: u64| len == 0 || b == 0 || b.saturating_add(len) <= self.max_bytes;
        if !fits(self.bytes.load(SeqCst)) {
            return false;
        }
        if self.values.fetch_update(SeqCst, SeqCst, |v| v.checked_sub(1)).is_err() {
            return false;
        }
        if self.bytes.fetch_update(SeqCst, SeqCst, |b| fits(b).then(|| b.saturating_add(len))).is_ok() {
            return true;
        }
        self.values.fetch_add(1, SeqCst); // the bytes went meanwhile: give the value back
        self.ring_if_waiting();
        false
    }

    /// Takes one send's share, a value credit and `len` bytes: now (`try_only`), or
    /// waiting until `deadline` or `token`. `Closed` once the connection or channel is.
    pub(crate) fn take(
        &self,
        len: u64,
        deadline: Option<Instant>,
        try_only: bool,
        token: Option<&CancelToken>,
    ) -> Result<(), ChanError> {
        let mut waited = false;
        while self.look(len, try_only, waited)? == Look::Wait {
            let rung = self.bell.1.recv_with(deadline, token);
            self.waiting.fetch_sub(1, SeqCst);
            rung?;
            waited = true;
        }
        Ok(())
    }

    /// As [`take`](Self::take) without a deadline, for async callers.
    pub(crate) async fn take_async(&self, len: u64) -> Result<(), ChanError> {
        let mut waited = false;
        while self.look(len, false, waited)? == Look::Wait {
            let rung = self.bell.1.recv_async().await;
            self.waiting.fetch_sub(1, SeqCst);
            rung?;
            waited = true;
        }
        Ok(())
    }

    /// One look at the window for a send of `len` bytes: taken, or (unless `try_only`)
    /// counted in `waiting`, to sleep on the bell. `waited`: the caller slept before, so
    /// what is left of the return that woke it goes to the others.
    fn look(&self, len: u64, try_only: bool, waited: bool) -> Result<Look, ChanError> {
        if self.closed.load(Acquire) {
            return Err(ChanError::Closed);
        }
        if self.try_take(len) {
            if waited {
                self.ring_if_waiting();
            }
            return Ok(Look::Taken);
        }
        if try_only {
            return Err(ChanError::WouldBlock);
        }
        self.waiting.fetch_add(1, SeqCst);
        if self.try_take(len) {
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
    pub(crate) fn give(&self, len: u64) {
        self.give_many(1, len);
    }

    /// Gives back what `values` sends took, `bytes` in all (a CREDIT event). Never more
    /// than the window: a lying server's extra credit is not kept.
    pub(crate) fn give_many(&self, values: u32, bytes: u64) {
        let max = self.max_values;
        let _ =
            self.values.fetch_update(SeqCst, SeqCst, |v| Some(v.saturating_add(u64::from(values)).min(max)));
        let _ = self.bytes.fetch_update(SeqCst, SeqCst, |b| Some(b.saturating_sub(bytes)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Values and bytes are both limits; a lone oversize element goes; a zero-byte send
    /// always fits; giving back wakes a waiter; closing fails waiters.
    #[test]
    fn values_and_bytes_bound_the_window() {
        let w = Window::new(3, 100);
        w.take(60, None, true, None).unwrap();
        assert_eq!(w.take(60, None, true, None), Err(ChanError::WouldBlock), "160 bytes > 100");
        w.take(0, None, true, None).unwrap();
        w.take(40, None, true, None).unwrap();
        assert_eq!(w.take(0, None, true, None), Err(ChanError::WouldBlock), "3 values");
        assert_eq!(w.free_values(), 0);
        let deadline = Instant::now() + std::time::Duration::from_millis(5);
        assert_eq!(w.take(0, Some(deadline), false, None), Err(ChanError::Timeout));
        w.give(60);
        w.give(40);
        w.give(0);
        assert_eq!(w.free_values(), 3);
        // Nothing in flight: an element larger than the whole window goes alone.
        w.take(500, None, true, None).unwrap();
        assert_eq!(w.take(1, None, true, None), Err(ChanError::WouldBlock));
        let w = Arc::new(w);
        let w2 = Arc::clone(&w);
        let waiter = std::thread::spawn(move || w2.take(10, None, false, None));
        w.give(500);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        w.close();
        assert_eq!(w.take(1000, None, false, None), Err(ChanError::Closed));
    }

    /// Many senders waiting on a window they used up, woken by returns of several credits at once:
    /// every one of them gets its share (none sleeps through a return), and the window
    /// never holds more than it was given. A hundred rounds, each with all eight asleep
    /// (or on their way) before the first return.
    #[test]
    fn one_return_of_many_credits_wakes_every_waiter_it_can() {
        for _ in 0..100 {
            let w = Arc::new(Window::new(8, 0));
            for _ in 0..8 {
                w.take(1, None, true, None).unwrap();
            }
            let waiters: Vec<_> = (0..8)
                .map(|_| {
                    let w = Arc::clone(&w);
                    std::thread::spawn(move || w.take(1, None, false, None))
                })
                .collect();
            while w.waiting.load(SeqCst) < 8 {
                std::thread::yield_now();
            }
            w.give_many(4, 4);
            w.give_many(4, 4);
            for h in waiters {
                assert_eq!(h.join().unwrap(), Ok(()));
            }
            assert_eq!(w.free_values(), 0);
            w.give_many(100, 100);
            assert_eq!(w.free_values(), 8, "more than the window was kept");
        }
    }
}
