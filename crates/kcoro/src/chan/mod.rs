//! Channels: the four kinds of Kotlin and kcoro, with select, timeouts, cancellation,
//! close and exact counters.
//!
//! ```
//! use kcoro::chan;
//!
//! kcoro::run(|| {
//!     let (tx, rx) = chan::buffered::<u64>(16);
//!     let producer = kcoro::spawn(move || {
//!         for i in 0..100 {
//!             tx.send(i).unwrap();
//!         } // dropping the last sender closes the channel
//!     });
//!     let sum: u64 = rx.iter().sum(); // drains, then stops at close
//!     producer.join().unwrap();
//!     assert_eq!(sum, 4950);
//!     assert_eq!(rx.snapshot().recvs, 100);
//! });
//! ```
//!
//! One channel serves three kinds of caller at once: an operation from a coroutine parks
//! the coroutine, from a plain thread it parks the thread, and the `*_async` forms return
//! futures that run on any executor. Timed waits use the runtime's timer wheel (or
//! `park_timeout` on a thread) and a [`CancelToken`](crate::sync::CancelToken) wakes its waiters at once: nothing
//! polls.
//!
//! - [`rendezvous`]: no buffer; a send completes when a receiver takes the value.
//! - [`buffered`]: a ring of fixed capacity; when full, senders wait, or with
//!   [`buffered_with`] the oldest or the newest value is dropped ([`Overflow`]).
//! - [`conflated`]: one slot; a send replaces what is there and never waits.
//! - [`unlimited`]: grows without bound; a send never waits.
//!
//! **Close and cancel.** [`Sender::close`] (or dropping every sender) stops sends;
//! receivers drain what is buffered, then get [`ChanError::Closed`]. [`Receiver::cancel`]
//! (or dropping every receiver) also drops the buffered values, passing each to the
//! undelivered callback ([`Builder::on_undelivered`]) exactly once; so do overflow drops.
//! Every parked operation wakes; a failed send hands its value back in [`SendError`].
//!
//! **Counters** are exact and always on: see [`Snapshot`] and [`Rate`]. Channels built
//! with a [`Builder::name`] are listed in the process-wide [`registry`].

mod core;
mod error;
pub(crate) mod flavor;
mod future;
mod handle;
mod lock;
mod macros;
mod op_clock;
pub mod registry;
mod select;
mod stats;
pub(crate) mod waiter;

#[cfg(all(test, loom))]
mod tests;

use std::sync::Arc;

pub use error::{ChanError, RecvError, SendError};
pub use flavor::{Kind, Overflow};
pub use future::{RecvFuture, RecvStream, SendFuture};
pub use handle::{IntoIter, Iter, Receiver, Sender, TryIter};
pub use select::{Select, SelectedOperation};
pub use stats::{ByteLen, Failures, Rate, Snapshot, ZeroCopyStats};

use self::core::{Chan, Undelivered};
use crate::zcopy;
use flavor::{Flavor, buffered, conflated, rendezvous, ring, unlimited};
use stats::Measure;

/// Capacity used by `buffered(0)`, as in the kcoro C API.
pub const DEFAULT_CAPACITY: usize = 64;

/// A channel with no buffer: each send waits for a receiver to take its value.
pub fn rendezvous<T>() -> (Sender<T>, Receiver<T>) {
    Builder::new(Kind::Rendezvous).build()
}

/// A channel buffering up to `capacity` values (0 means [`DEFAULT_CAPACITY`]); senders
/// wait while it is full.
pub fn buffered<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    Builder::buffered(capacity).build()
}

/// A buffered channel with the given overflow policy.
pub fn buffered_with<T>(capacity: usize, overflow: Overflow) -> (Sender<T>, Receiver<T>) {
    Builder::buffered(capacity).overflow(overflow).build()
}

/// A channel holding only the latest value: a send replaces it and never waits.
pub fn conflated<T>() -> (Sender<T>, Receiver<T>) {
    Builder::new(Kind::Conflated).build()
}

/// A channel that grows without bound: a send never waits.
pub fn unlimited<T>() -> (Sender<T>, Receiver<T>) {
    Builder::new(Kind::Unlimited).build()
}

/// Builds a channel with a name, an undelivered-element callback or payload byte counting.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use kcoro::chan::{Builder, Overflow};
///
/// let dropped = Arc::new(AtomicUsize::new(0));
/// let d = Arc::clone(&dropped);
/// let (tx, rx) = Builder::<Vec<u8>>::buffered(2)
///     .overflow(Overflow::DropOldest)
///     .name("ingress")
///     .count_payload_bytes()
///     .on_undelivered(move |_v| { d.fetch_add(1, Ordering::Relaxed); })
///     .build();
/// for n in 1..=3 {
///     tx.send(vec![0; n]).unwrap();       // the third send drops the oldest value
/// }
/// assert_eq!(dropped.load(Ordering::Relaxed), 1);
/// assert_eq!(rx.recv().unwrap().len(), 2);
/// assert_eq!(tx.snapshot().bytes_sent, 6);
/// ```
pub struct Builder<T> {
    kind: Kind,
    capacity: usize,
    overflow: Overflow,
    name: Option<String>,
    on_undelivered: Option<Undelivered<T>>,
    measure: Measure<T>,
    register: Option<fn(&Arc<Chan<T>>)>,
    cancel_on_discard: Option<crate::sync::CancelToken>,
    /// Set by [`Builder::zero_copy`]: how to make the backend flavour, and what to report.
    zero_copy: Option<ZeroCopyBinding<T>>,
}

/// Attaches a channel to a backend and makes its flavour.
type MakeBackendFlavor<T> =
    fn(Arc<dyn zcopy::ZBackend>, zcopy::AttachOpts) -> Result<Flavor<T>, zcopy::ZError>;

/// A zero-copy channel's backend binding, captured where `T: ZeroCopy` is known.
struct ZeroCopyBinding<T> {
    backend: zcopy::BackendId,
    opts: zcopy::AttachOpts,
    caps: u32,
    /// Attaches a fresh key to the backend and makes the flavour.
    make: MakeBackendFlavor<T>,
}

impl<T> Builder<T> {
    /// A builder for the given kind (buffered: [`DEFAULT_CAPACITY`]).
    pub fn new(kind: Kind) -> Self {
        Builder {
            kind,
            capacity: DEFAULT_CAPACITY,
            overflow: Overflow::Suspend,
            name: None,
            on_undelivered: None,
            measure: Measure::Fixed(size_of::<T>()),
            register: None,
            cancel_on_discard: None,
            zero_copy: None,
        }
    }

    /// A buffered channel of `capacity` (0 means [`DEFAULT_CAPACITY`]).
    pub fn buffered(capacity: usize) -> Self {
        Self::new(Kind::Buffered).capacity(capacity)
    }

    /// Buffer capacity for a buffered channel (0 means [`DEFAULT_CAPACITY`]); ignored by
    /// the other kinds.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = if capacity == 0 { DEFAULT_CAPACITY } else { capacity };
        self
    }

    /// Overflow policy for a buffered channel; ignored by the other kinds.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Called once for every value the channel accepted but nobody will receive: values
    /// dropped by an overflow policy or by conflation, values buffered when the channel is
    /// cancelled (or its last receiver dropped), values delivered to an abandoned
    /// `recv_async`. Runs on the thread that caused the drop, outside the channel lock.
    pub fn on_undelivered(mut self, f: impl Fn(T) + Send + Sync + 'static) -> Self {
        self.on_undelivered = Some(Box::new(f));
        self
    }

    /// Count `bytes` per value in the byte counters instead of `size_of::<T>()`: for
    /// values whose payload length is the same for the whole channel but not their size
    /// (fixed-size records stored in a larger inline buffer, say).
    pub fn count_bytes_per_value(mut self, bytes: usize) -> Self {
        self.measure = Measure::Fixed(bytes);
        self
    }

    /// Count each value's payload length ([`ByteLen`]) in the byte counters instead of
    /// `size_of::<T>()`.
    pub fn count_payload_bytes(mut self) -> Self
    where
        T: ByteLen,
    {
        self.measure = Measure::Payload(T::byte_len);
        self
    }

    /// Names the channel and lists it in the process-wide [`registry`] while it lives.
    pub fn name(mut self, name: impl Into<String>) -> Self
    where
        T: Send + 'static,
    {
        self.name = Some(name.into());
        self.register = Some(registry::register::<T>);
        self
    }

    /// Cancels `token` when the channel is cancelled (by [`Receiver::cancel`], or by
    /// dropping its last receiver): how a producer learns its consumer is gone.
    pub(crate) fn cancel_on_discard(mut self, token: crate::sync::CancelToken) -> Self {
        self.cancel_on_discard = Some(token);
        self
    }

    /// Creates the channel.
    ///
    /// # Panics
    /// If the channel was bound to a backend ([`Builder::zero_copy`]) that refuses it; use
    /// [`try_build`](Self::try_build) to get that error instead.
    pub fn build(self) -> (Sender<T>, Receiver<T>) {
        match self.try_build() {
            Ok(pair) => pair,
            Err(e) => panic!("chan::Builder::build: {e}"),
        }
    }

    /// Creates the channel, or says why its zero-copy backend refused it.
    pub fn try_build(self) -> Result<(Sender<T>, Receiver<T>), zcopy::ZError> {
        let mut caps = 0;
        let mut bound = None;
        if let Some(z) = &self.zero_copy {
            let (backend, backend_caps) = zcopy::lookup_backend(z.backend)?;
            caps = backend_caps | z.caps;
            if let Some(b) = backend {
                bound = Some((z.make)(b, z.opts)?);
            }
        }
        let buf = match bound {
            Some(flavor) => flavor,
            None => match self.kind {
                Kind::Rendezvous => Flavor::Rendezvous(rendezvous::Buffer),
                // The lock-free ring suspends when full (it drops nothing); it counts its
                // traffic by position, and payload bytes per value where they are measured.
                // It writes every slot when made, so a huge capacity (a peer may declare
                // one) keeps the locked buffer, which allocates only as it fills past
                // `buffered::PREALLOCATED` values.
                Kind::Buffered if self.overflow == Overflow::Suspend && self.capacity <= MAX_RING_SLOTS => {
                    let ring = ring::Ring::new(self.capacity);
                    Flavor::Ring(Arc::new(match self.measure {
                        Measure::Payload(len) => ring.counting_payload(len),
                        Measure::Fixed(_) => ring,
                    }))
                }
                Kind::Buffered => Flavor::Buffered(buffered::Buffer::new(self.capacity, self.overflow)),
                Kind::Conflated => Flavor::Conflated(conflated::Buffer::new()),
                Kind::Unlimited => Flavor::Unlimited(unlimited::Buffer::new()),
            },
        };
        let chan = Arc::new(Chan::new(
            buf,
            self.measure,
            self.on_undelivered,
            self.name,
            caps,
            self.cancel_on_discard,
        ));
        if let Some(register) = self.register {
            register(&chan);
        }
        Ok(handle::pair(chan))
    }
}

/// Largest capacity given the lock-free ring (whose slots are all written when it is
/// made): 64 Ki slots, 2 MiB of `Vec`s.
const MAX_RING_SLOTS: usize = 1 << 16;

impl<T: zcopy::ZeroCopy> Builder<T> {
    /// Binds the channel to a zero-copy backend: [`zcopy::ZREF`] keeps the channel's own
    /// buffer and kind (every kind works); another backend stores the descriptors itself,
    /// and the channel behaves as buffered with the backend's capacity. Either way the
    /// channel reports `CAP_ZERO_COPY`, counts true span lengths, and its snapshot carries
    /// [`ZeroCopyStats`]. An unknown id or a backend that refuses to attach makes
    /// [`try_build`](Self::try_build) fail.
    ///
    /// ```
    /// use kcoro::chan::{Builder, Kind};
    /// use kcoro::zcopy::{self, Region, ZBuf};
    ///
    /// let region = Region::anonymous(1 << 20).unwrap();
    /// let (tx, rx) = Builder::<ZBuf>::new(Kind::Unlimited).zero_copy(zcopy::ZREF).build();
    /// tx.send(region.alloc(1000).unwrap()).unwrap();
    /// drop(rx.recv().unwrap());
    /// let z = tx.snapshot().zero_copy.unwrap();
    /// assert_eq!((z.sent, z.received, z.bytes_sent), (1, 1, 1000));
    /// assert_eq!(tx.capabilities() & zcopy::CAP_ZERO_COPY, zcopy::CAP_ZERO_COPY);
    /// ```
    pub fn zero_copy(self, backend: zcopy::BackendId) -> Self {
        self.zero_copy_with(backend, zcopy::AttachOpts(std::ptr::null()))
    }

    /// [`zero_copy`](Self::zero_copy), passing `opts` to the backend's `attach`.
    pub fn zero_copy_with(mut self, backend: zcopy::BackendId, opts: zcopy::AttachOpts) -> Self {
        fn make<T: zcopy::ZeroCopy>(
            b: Arc<dyn zcopy::ZBackend>,
            opts: zcopy::AttachOpts,
        ) -> Result<Flavor<T>, zcopy::ZError> {
            let key = zcopy::ChanKey::fresh();
            b.attach(key, opts)?;
            Ok(Flavor::Backend(flavor::backend::Buffer::new(b, key)))
        }
        self.measure = Measure::Payload(T::span_len);
        self.zero_copy = Some(ZeroCopyBinding { backend, opts, caps: T::CAPS, make: make::<T> });
        self
    }
}

impl<T> From<Kind> for Builder<T> {
    fn from(kind: Kind) -> Self {
        Builder::new(kind)
    }
}

impl<T> std::fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("kind", &self.kind)
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Used by the `select!` macros; not public API.
#[doc(hidden)]
pub mod __private {
    pub use super::select::{Clause, RecvClause, SendClause, run_macro};
    pub use super::waiter::Waiter;
}

#[cfg(all(test, not(loom)))]
mod flavor_choice {
    use super::{Builder, MAX_RING_SLOTS, Overflow};

    /// Which buffered channels get the lock-free ring: those that suspend when full, with
    /// a capacity whose slots may all be written up front (a peer may declare 16 Mi).
    #[test]
    fn the_ring_takes_suspending_channels_up_to_its_slot_limit() {
        let on_ring = |b: Builder<Vec<u8>>| b.build().0.chan.on_ring();
        assert!(on_ring(Builder::buffered(1024)));
        assert!(on_ring(Builder::buffered(1024).count_payload_bytes()));
        assert!(on_ring(Builder::buffered(MAX_RING_SLOTS)));
        assert!(!on_ring(Builder::buffered(MAX_RING_SLOTS + 1)));
        assert!(!on_ring(Builder::buffered(1 << 24).count_payload_bytes()));
        assert!(!on_ring(Builder::buffered(1024).overflow(Overflow::DropOldest)));
    }

    /// Asking for more room than the address space has costs nothing until it fills: the
    /// locked buffer allocated all of it up front, and such a channel aborted the process.
    #[test]
    fn a_capacity_past_memory_is_accepted_and_works() {
        for cap in [1usize << 40, usize::MAX] {
            let (tx, rx) = Builder::<[u8; 64]>::buffered(cap).build();
            for i in 0..100u8 {
                tx.try_send([i; 64]).unwrap();
            }
            for i in 0..100u8 {
                assert_eq!(rx.try_recv().unwrap(), [i; 64]);
            }
        }
    }
}
