//! The client's half of a channel's send window: how many credited sends, and how many
//! element bytes, this connection has in flight on one channel.
//!
//! # Protocol
//! A send takes one value credit (waiting for one), then its element's encoded bytes,
//! whether they go inline or through shared memory. The reply gives both back. The server
//! counts the same values, and of the bytes only the inline ones, in its queue, and drops
//! them before it replies, so what it counts is never more than what we count here, and a
//! send this window admits is never refused for the window. Counting shared elements too
//! bounds what is in flight in our region, so its (LIFO) blocks are reused while warm.
//!
//! # Invariants
//! - `bytes` ≤ `max_bytes`, except when a single send holds them all (one element larger
//!   than the window goes alone); a send of 0 inline bytes always fits.
//! - Every give of bytes rings `bell` (conflated, so a ring between a waiter's check and
//!   its wait is kept); while bytes are in flight a reply will come and ring again, so a
//!   waiter that missed a ring is woken by a later one.

use std::sync::Mutex;
use std::time::Instant;

use kcoro::chan::{self, ChanError, Receiver, Sender};
use kcoro::sync::CancelToken;

pub(crate) struct Window {
    /// One `()` per free value credit.
    values: (Sender<()>, Receiver<()>),
    max_bytes: u64,
    /// Element bytes in flight.
    bytes: Mutex<u64>,
    bell: (Sender<()>, Receiver<()>),
}

impl Window {
    /// A window of `values` sends and `max_bytes` inline bytes (0: not limited in bytes,
    /// a server that does not send `CREDIT_BYTES`).
    pub(crate) fn new(values: u32, max_bytes: u64) -> Window {
        let (tx, rx) = chan::buffered(values as usize);
        for _ in 0..values {
            let _ = tx.try_send(());
        }
        Window {
            values: (tx, rx),
            max_bytes: if max_bytes == 0 { u64::MAX } else { max_bytes },
            bytes: Mutex::new(0),
            bell: chan::conflated(),
        }
    }

    /// Value credits free now.
    pub(crate) fn free_values(&self) -> usize {
        self.values.0.len()
    }

    /// Takes a value credit: now (`try_only`), or waiting until `deadline` or `token`.
    pub(crate) fn take_value(
        &self,
        deadline: Option<Instant>,
        try_only: bool,
        token: Option<&CancelToken>,
    ) -> Result<(), ChanError> {
        if try_only { self.values.1.try_recv() } else { self.values.1.recv_with(deadline, token) }
    }

    /// As [`take_value`](Self::take_value), for async callers.
    pub(crate) async fn take_value_async(&self) -> Result<(), ChanError> {
        self.values.1.recv_async().await
    }

    /// Gives a value credit back (a send that did not go out).
    pub(crate) fn give_value(&self) {
        let _ = self.values.0.try_send(());
    }

    fn try_bytes(&self, len: u64) -> bool {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if len == 0 || *b == 0 || b.saturating_add(len) <= self.max_bytes {
            *b += len;
            true
        } else {
            false
        }
    }

    /// Takes `len` bytes, waiting as [`take_value`](Self::take_value) does.
    pub(crate) fn take_bytes(
        &self,
        len: u64,
        deadline: Option<Instant>,
        try_only: bool,
        token: Option<&CancelToken>,
    ) -> Result<(), ChanError> {
        loop {
            if self.try_bytes(len) {
                return Ok(());
            }
            if try_only {
                return Err(ChanError::WouldBlock);
            }
            self.bell.1.recv_with(deadline, token)?;
        }
    }

    /// As [`take_bytes`](Self::take_bytes), for async callers.
    pub(crate) async fn take_bytes_async(&self, len: u64) -> Result<(), ChanError> {
        while !self.try_bytes(len) {
            self.bell.1.recv_async().await?;
        }
        Ok(())
    }

    /// Gives back what one send took (its reply came, or it did not go out).
    pub(crate) fn give(&self, len: u64) {
        if len > 0 {
            let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
            *b = b.saturating_sub(len);
            drop(b);
            let _ = self.bell.0.try_send(());
        }
        self.give_value();
    }

    /// Wakes every waiter with `Closed`; nothing is taken any more.
    pub(crate) fn close(&self) {
        self.values.0.close();
        self.bell.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values and bytes are both limits; a lone oversize element goes; a zero-byte send
    /// always fits; giving back wakes a waiter; closing fails waiters.
    #[test]
    fn values_and_bytes_bound_the_window() {
        let w = Window::new(3, 100);
        w.take_value(None, true, None).unwrap();
        w.take_bytes(60, None, true, None).unwrap();
        w.take_value(None, true, None).unwrap();
        assert_eq!(w.take_bytes(60, None, true, None), Err(ChanError::WouldBlock), "160 bytes > 100");
        w.take_bytes(0, None, true, None).unwrap();
        w.take_value(None, true, None).unwrap();
        assert_eq!(w.take_value(None, true, None), Err(ChanError::WouldBlock), "3 values");
        assert_eq!(w.free_values(), 0);
        let deadline = Instant::now() + std::time::Duration::from_millis(5);
        assert_eq!(w.take_bytes(60, Some(deadline), false, None), Err(ChanError::Timeout));
        w.give(60);
        assert_eq!(w.free_values(), 1);
        // Nothing in flight: an element larger than the whole window goes alone.
        w.take_bytes(500, None, true, None).unwrap();
        assert_eq!(w.take_bytes(1, None, true, None), Err(ChanError::WouldBlock));
        let w = std::sync::Arc::new(w);
        let w2 = std::sync::Arc::clone(&w);
        let waiter = std::thread::spawn(move || w2.take_bytes(10, None, false, None));
        w.give(500);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        w.close();
        assert_eq!(w.take_bytes(1000, None, false, None), Err(ChanError::Closed));
    }
}
