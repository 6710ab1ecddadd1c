//! Unlimited: a FIFO that grows on every send path, blocking or not, and never reports
//! `Full` (the C runtime this replaces overran its ring on blocking sends instead).
//!
//! # Invariants
//! - No sender ever parks.
//! - `len() > 0` ⇒ no live parked receivers.

use std::collections::VecDeque;

use super::Offer;

pub(crate) struct Buffer<T> {
    queue: VecDeque<T>,
}

impl<T> Buffer<T> {
    pub(crate) fn new() -> Self {
        Self { queue: VecDeque::new() }
    }

    #[inline]
    pub(crate) fn offer(&mut self, v: T) -> Offer<T> {
        self.queue.push_back(v);
        Offer::Stored
    }

    #[inline]
    pub(crate) fn take(&mut self) -> Option<T> {
        self.queue.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        None
    }

    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.queue.drain(..).collect()
    }
}
