//! Rendezvous: no buffer at all. A send completes only by handing its value to a parked
//! receiver (or by parking until a receiver takes it), so `offer` always reports `Full`.
//!
//! # Invariants
//! - `len() == 0`, always.

use super::Offer;

pub(crate) struct Buffer;

impl Buffer {
    #[inline]
    pub(crate) fn offer<T>(&mut self, v: T) -> Offer<T> {
        Offer::Full(v)
    }

    #[inline]
    pub(crate) fn take<T>(&mut self) -> Option<T> {
        None
    }

    pub(crate) fn len(&self) -> usize {
        0
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        Some(0)
    }

    pub(crate) fn drain<T>(&mut self) -> Vec<T> {
        Vec::new()
    }
}
