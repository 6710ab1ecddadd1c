//! Buffered: a FIFO ring of fixed capacity, with an overflow policy for a full ring.
//!
//! # Invariants
//! - `len() <= cap`.
//! - `len() > 0` ⇒ no live parked receivers (a sender hands off to a parked receiver
//!   before it buffers; a receiver drains the ring before it parks).
//! - `len() < cap` ⇒ no live parked senders, under `Suspend` (a receiver that frees a
//!   place moves the oldest parked sender's value in).

use std::collections::VecDeque;

use super::{Offer, Overflow};

/// Most values of room a buffer allocates when it is made.
pub(crate) const PREALLOCATED: usize = 1 << 16;

pub(crate) struct Buffer<T> {
    ring: VecDeque<T>,
    cap: usize,
    overflow: Overflow,
}

impl<T> Buffer<T> {
    /// `cap >= 1`. Up to [`PREALLOCATED`] values of room are allocated up front, so sends
    /// to such a channel never allocate; a larger capacity (a C caller or a peer may ask
    /// for any) grows as it fills, so that asking costs nothing and cannot abort the
    /// process for want of address space.
    pub(crate) fn new(cap: usize, overflow: Overflow) -> Self {
        Self { ring: VecDeque::with_capacity(cap.min(PREALLOCATED)), cap, overflow }
    }

    pub(crate) fn overflow(&self) -> Overflow {
        self.overflow
    }

    #[inline]
    pub(crate) fn offer(&mut self, v: T) -> Offer<T> {
        if self.ring.len() < self.cap {
            self.ring.push_back(v);
            return Offer::Stored;
        }
        match self.overflow {
            Overflow::Suspend => Offer::Full(v),
            Overflow::DropLatest => Offer::Dropped(v),
            Overflow::DropOldest => match self.ring.pop_front() {
                Some(old) => {
                    self.ring.push_back(v);
                    Offer::Displaced(old)
                }
                None => unreachable!("buffered::offer: a full ring of capacity {} is empty", self.cap),
            },
        }
    }

    #[inline]
    pub(crate) fn take(&mut self) -> Option<T> {
        self.ring.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        Some(self.cap)
    }

    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.ring.drain(..).collect()
    }
}
