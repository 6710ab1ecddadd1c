//! Conflated: one slot holding the latest value. A send overwrites (the old value is
//! dropped and counted) and never waits; a receive empties the slot.
//!
//! # Invariants
//! - `len() <= 1`; no sender ever parks.
//! - `len() == 1` ⇒ no live parked receivers.

use super::Offer;

pub(crate) struct Buffer<T> {
    slot: Option<T>,
}

impl<T> Buffer<T> {
    pub(crate) fn new() -> Self {
        Self { slot: None }
    }

    #[inline]
    pub(crate) fn offer(&mut self, v: T) -> Offer<T> {
        match self.slot.replace(v) {
            None => Offer::Stored,
            Some(old) => Offer::Displaced(old),
        }
    }

    #[inline]
    pub(crate) fn take(&mut self) -> Option<T> {
        self.slot.take()
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.slot.is_some())
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        Some(1)
    }

    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.slot.take().into_iter().collect()
    }
}
