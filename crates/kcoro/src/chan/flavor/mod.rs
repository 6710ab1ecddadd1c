//! The four channel kinds differ only in where a value waits when no receiver is parked.
//!
//! Waiting, hand-off, close and counting are shared (`chan::core`); each flavour file
//! holds one `Buffer<T>` with the same methods in the same order — `offer`, `take`, `len`,
//! `capacity`, `drain` — and [`Flavor`] dispatches to them, so adding a kind is guided by
//! exhaustiveness errors. The exception is `ring.rs`, the buffered kind's lock-free ring,
//! which the channel also uses without its lock; its `Flavor` arm adapts it.

use std::sync::Arc;

pub(crate) mod backend;
pub(crate) mod buffered;
pub(crate) mod conflated;
pub(crate) mod rendezvous;
pub(crate) mod ring;
pub(crate) mod unlimited;

/// The channel kinds, with the kcoro C numbering (`kc_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No buffer: a send completes when a receiver takes the value.
    Rendezvous,
    /// A ring of fixed capacity with an overflow policy.
    Buffered,
    /// One slot; a send overwrites and never waits.
    Conflated,
    /// Grows without bound; a send never waits.
    Unlimited,
}

impl Kind {
    /// `KC_RENDEZVOUS = 0`, `KC_BUFFERED = 1`, `KC_CONFLATED = -1`, `KC_UNLIMITED = -2`.
    pub fn code(self) -> i32 {
        match self {
            Kind::Rendezvous => 0,
            Kind::Buffered => 1,
            Kind::Conflated => -1,
            Kind::Unlimited => -2,
        }
    }

    /// Lower-case name, as shown by snapshots and the monitor.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rendezvous => "rendezvous",
            Kind::Buffered => "buffered",
            Kind::Conflated => "conflated",
            Kind::Unlimited => "unlimited",
        }
    }
}

/// What a buffered channel does with a send that finds it full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Overflow {
    /// The sender waits for room (the default).
    #[default]
    Suspend,
    /// The oldest buffered value is dropped to make room; the send succeeds.
    DropOldest,
    /// The new value is dropped; the send succeeds.
    DropLatest,
}

/// What became of an offered value.
#[must_use]
pub(crate) enum Offer<T> {
    /// Buffered.
    Stored,
    /// Buffered, and this older value was dropped to make room (counted, undelivered).
    Displaced(T),
    /// The send succeeds but this value (the offered one) was dropped (counted, undelivered).
    Dropped(T),
    /// No room: the sender must wait (or fail, for a try).
    Full(T),
}

/// One buffer per kind.
pub(crate) enum Flavor<T> {
    Rendezvous(rendezvous::Buffer),
    Buffered(buffered::Buffer<T>),
    /// Buffered, suspending when full, with lock-free sends and receives while nobody is
    /// parked; the channel keeps a second handle to the ring for those.
    Ring(Arc<ring::Ring<T>>),
    Conflated(conflated::Buffer<T>),
    Unlimited(unlimited::Buffer<T>),
    /// Zero copy through a registered backend; reported as buffered.
    Backend(backend::Buffer<T>),
}

impl<T> Flavor<T> {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Flavor::Rendezvous(_) => Kind::Rendezvous,
            Flavor::Buffered(_) | Flavor::Ring(_) => Kind::Buffered,
            Flavor::Conflated(_) => Kind::Conflated,
            Flavor::Unlimited(_) => Kind::Unlimited,
            Flavor::Backend(_) => Kind::Buffered,
        }
    }

    /// Buffers `v` if there is room. A rendezvous channel's answer (no room, ever) is given
    /// inline: every send that parks on one asks, and the full match is not inlined.
    #[inline(always)]
    pub(crate) fn offer(&mut self, v: T) -> Offer<T> {
        match self {
            Flavor::Rendezvous(b) => b.offer(v),
            buffer => buffer.offer_to_buffer(v),
        }
    }

    #[inline]
    fn offer_to_buffer(&mut self, v: T) -> Offer<T> {
        match self {
            Flavor::Rendezvous(b) => b.offer(v),
            Flavor::Buffered(b) => b.offer(v),
            Flavor::Ring(r) => match r.push_locked(v) {
                Ok(()) => Offer::Stored,
                Err(v) => Offer::Full(v),
            },
            Flavor::Conflated(b) => b.offer(v),
            Flavor::Unlimited(b) => b.offer(v),
            Flavor::Backend(b) => b.offer(v),
        }
    }

    /// The oldest buffered value; inline for a rendezvous channel, as [`offer`](Self::offer).
    #[inline(always)]
    pub(crate) fn take(&mut self) -> Option<T> {
        match self {
            Flavor::Rendezvous(b) => b.take(),
            buffer => buffer.take_from_buffer(),
        }
    }

    #[inline]
    fn take_from_buffer(&mut self) -> Option<T> {
        match self {
            Flavor::Rendezvous(b) => b.take(),
            Flavor::Buffered(b) => b.take(),
            Flavor::Ring(r) => r.pop_locked(),
            Flavor::Conflated(b) => b.take(),
            Flavor::Unlimited(b) => b.take(),
            Flavor::Backend(b) => b.take(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Flavor::Rendezvous(b) => b.len(),
            Flavor::Buffered(b) => b.len(),
            Flavor::Ring(r) => r.len(),
            Flavor::Conflated(b) => b.len(),
            Flavor::Unlimited(b) => b.len(),
            Flavor::Backend(b) => b.len(),
        }
    }

    /// `None` for unbounded.
    pub(crate) fn capacity(&self) -> Option<usize> {
        match self {
            Flavor::Rendezvous(b) => b.capacity(),
            Flavor::Buffered(b) => b.capacity(),
            Flavor::Ring(r) => Some(r.capacity()),
            Flavor::Conflated(b) => b.capacity(),
            Flavor::Unlimited(b) => b.capacity(),
            Flavor::Backend(b) => b.capacity(),
        }
    }

    /// Whether an offer would be stored now (not counting overflow policies).
    pub(crate) fn has_room(&self) -> bool {
        match self {
            Flavor::Backend(b) => b.has_room(),
            _ => self.capacity().is_none_or(|cap| self.len() < cap),
        }
    }

    /// Takes every buffered value, oldest first (for cancel).
    pub(crate) fn drain(&mut self) -> Vec<T> {
        match self {
            Flavor::Rendezvous(b) => b.drain(),
            Flavor::Buffered(b) => b.drain(),
            Flavor::Ring(r) => r.drain(),
            Flavor::Conflated(b) => b.drain(),
            Flavor::Unlimited(b) => b.drain(),
            Flavor::Backend(b) => b.drain(),
        }
    }
}
