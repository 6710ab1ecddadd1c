//! The channel itself, Go-style: one lock around a buffer (the flavour) and two queues of
//! parked operations. Every kind shares this file; flavours only decide buffering.
//!
//! Algorithm after Go's `runtime/chan.go`: a send first hands its value straight to the
//! oldest parked receiver, else buffers it, else parks with the value in its own slot; a
//! receive first takes from the buffer (then moves the oldest parked sender's value into
//! the freed place), else takes straight from a parked sender, else parks with an empty
//! slot. Parked operations are [`Waiter`]s claimed exactly once (see `waiter.rs`), which
//! is what lets one waiter sit in several queues for `select`.
//!
//! # The lock
//! `inner` protects the buffer, both queues, `closed` and the counters. No user code runs
//! under it (undelivered callbacks, wakes and drops of values happen after unlocking),
//! except [`ByteLen`](super::ByteLen) for payload-measuring channels, which must be cheap
//! and must not panic.
//!
//! # The ring
//! A [`Flavor::Ring`] channel's buffer is also reached without the lock: `send` and `recv`
//! try the ring first and take the lock only when it is full, empty or flagged. Parking
//! raises the ring's flags (`park_*_locked`), which sends every later operation through
//! the lock; the flags come down at unlock when nobody is parked (see `flavor::ring`).
//!
//! # Invariants
//! - `closed` ⇒ both queues hold no live entries (close wakes them all, and nobody
//!   parks on a closed channel).
//! - Buffer non-empty ⇒ no live parked receivers; see each flavour for the sender side.
//!   On a ring channel both hold whenever the lock is held: a parked operation's flags keep
//!   lock-free operations out of the ring.
//! - Ring channel: an entry in either queue ⇒ pushes blocked; in `senders` ⇒ pops blocked.
//! - Every operation that completes updates the counters exactly once, under the lock:
//!   a hand-off is counted as one send and one receive by whoever moves the value.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::time::Instant;

use super::error::{ChanError, SendError};
use super::flavor::ring::{Pop, Push, Ring};
use super::flavor::{Flavor, Kind, Offer};
use super::lock::{Guard, Lock};
use super::stats::{Counters, Measure, Snapshot};
use super::waiter::{Entry, WaitQueue, Waiter, Wakeup};
use crate::coro::wait::Wait as WaitOn;
use crate::loom::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use crate::park;
use crate::sync::CancelToken;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

/// Callback for values that were accepted by the channel but never received.
pub(crate) type Undelivered<T> = Box<dyn Fn(T) + Send + Sync>;

/// How long an operation may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Never: a try.
    Now,
    Forever,
    At(Instant),
}

/// An operation's waiting limits: its deadline and its cancel token.
#[derive(Clone, Copy)]
pub(crate) struct Wait<'a> {
    pub(crate) until: Until,
    pub(crate) cancel: Option<&'a CancelToken>,
}

impl<'a> Wait<'a> {
    pub(crate) const TRY: Wait<'static> = Wait { until: Until::Now, cancel: None };
    pub(crate) const FOREVER: Wait<'static> = Wait { until: Until::Forever, cancel: None };

    pub(crate) fn until(until: Until) -> Self {
        Wait { until, cancel: None }
    }

    pub(crate) fn cancel(token: &'a CancelToken) -> Self {
        Wait { until: Until::Forever, cancel: Some(token) }
    }

    /// A try with no token: the operations a lock-free `WouldBlock` may answer.
    fn is_plain_try(&self) -> bool {
        self.until == Until::Now && self.cancel.is_none()
    }

    /// Why this operation must stop before parking, if it must. Cancellation wins.
    #[inline]
    pub(crate) fn refuse(&self) -> Option<ChanError> {
        if self.cancel.is_some_and(CancelToken::is_cancelled) {
            return Some(ChanError::Canceled);
        }
        match self.until {
            Until::Now => Some(ChanError::WouldBlock),
            Until::At(t) if crate::runtime::now() >= t => Some(ChanError::Timeout),
            _ => None,
        }
    }
}

pub(crate) struct Chan<T> {
    inner: Lock<Inner<T>>,
    /// The buffer of a [`Flavor::Ring`] channel, reached without the lock by sends and
    /// receives while nobody is parked (see `flavor::ring`).
    ring: Option<Arc<Ring<T>>>,
    /// Mirror of `inner.closed` for lock-free queries; set under the lock, never cleared.
    closed: AtomicBool,
    /// Zero only if, at the last unlock, nothing was buffered, no sender was parked and the
    /// channel was open: a try-receive that reads zero may report `WouldBlock` without
    /// locking. Written at every unlock (see [`Locked`]), so its modification order is the
    /// lock order: reading zero means "empty at some instant after the last unlock",
    /// which is a valid linearisation point (the argument of Go's `chanrecv` fast path).
    maybe_ready: AtomicUsize,
    /// `WouldBlock` receives answered by that fast path (added to the snapshot's count).
    fast_would_block: AtomicU64,
    pub(crate) senders: AtomicUsize,
    pub(crate) receivers: AtomicUsize,
    kind: Kind,
    measure: Measure<T>,
    on_undelivered: Option<Undelivered<T>>,
    pub(crate) name: Option<String>,
    /// Unique in the process, from [`NEXT_ID`]; snapshots carry it.
    id: u64,
    /// `zcopy::CAP_*` bits: what the channel moves.
    caps: u32,
    /// Cancelled when the channel is (a `produce` channel stops its producer this way).
    cancel_on_discard: Option<CancelToken>,
}

/// The next channel id; ids start at 1 so that 0 can mean "no channel". A plain std
/// atomic (not loom's): a unique-id counter is no part of any modelled protocol.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) struct Inner<T> {
    buf: Flavor<T>,
    /// Parked senders; their slots hold their values.
    senders: WaitQueue<T>,
    /// Parked receivers; their slots are empty until a sender fills them.
    receivers: WaitQueue<T>,
    closed: bool,
    stats: Counters,
    /// A ring channel's flags, mirrored: pushes (pops) go through the lock. Set when an
    /// operation parks; cleared at unlock once nobody (no sender) is parked.
    pushes_blocked: bool,
    pops_blocked: bool,
}

/// Work left for after unlocking: a waiter to wake, a value to report undelivered.
#[must_use]
pub(crate) struct After<T> {
    wake: Option<Wakeup>,
    undelivered: Option<T>,
}

impl<T> After<T> {
    const NOTHING: After<T> = After { wake: None, undelivered: None };

    fn wake(w: Wakeup) -> Self {
        After { wake: Some(w), undelivered: None }
    }

    /// Caller has released the channel lock.
    pub(crate) fn run(self, chan: &Chan<T>) {
        if let Some(w) = self.wake {
            w.wake();
        }
        if let Some(v) = self.undelivered {
            chan.undelivered(v);
        }
    }
}

/// The channel lock, held. Releasing it refreshes the channel's `maybe_ready` hint (or
/// lowers a ring's flags).
pub(crate) struct Locked<'a, T> {
    guard: ManuallyDrop<Guard<'a, Inner<T>>>,
    chan: &'a Chan<T>,
}

impl<T> Deref for Locked<'_, T> {
    type Target = Inner<T>;
    #[inline]
    fn deref(&self) -> &Inner<T> {
        &self.guard
    }
}

impl<T> DerefMut for Locked<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Inner<T> {
        &mut self.guard
    }
}

impl<T> Drop for Locked<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        let g = &mut **self.guard;
        match &self.chan.ring {
            None => {
                let ready = g.buf.len() + g.senders.len() + usize::from(g.closed);
                // Release: pairs with the Acquire in `Chan::recv`'s fast path. Stale sender
                // entries only over-approximate, which costs a lock, never a wrong answer.
                self.chan.maybe_ready.store(ready, Release);
            }
            Some(ring) => {
                if g.pushes_blocked || g.pops_blocked {
                    lower_flags(ring, g);
                }
            }
        }
        // SAFETY: the guard is dropped once, here, and not used after.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
    }
}

/// Lowers a ring's flags once nobody (no sender) is parked. Stale entries keep them up,
/// which costs locks, never a wrong answer. Caller holds the lock.
#[cold]
#[inline(never)]
fn lower_flags<T>(ring: &Ring<T>, g: &mut Inner<T>) {
    if g.pops_blocked && g.senders.len() == 0 {
        g.pops_blocked = false;
        ring.unblock_pops();
    }
    if g.pushes_blocked && g.senders.len() == 0 && g.receivers.len() == 0 {
        g.pushes_blocked = false;
        ring.unblock_pushes();
    }
}

/// Waiters a parking operation claimed for others: wake them once the lock is released.
/// (`None` until the first: most parks wake nobody, and then nothing is left to drop.)
#[must_use]
pub(crate) struct Wakes(Option<Vec<Wakeup>>);

impl Wakes {
    const NONE: Wakes = Wakes(None);

    /// Caller has released the channel lock.
    #[inline]
    pub(crate) fn run(self) {
        if let Some(wakeups) = self.0 {
            Self::wake_all(wakeups);
        }
    }

    /// Finishes a claimed entry and keeps its wake-up, unless it is the parking caller's
    /// own (`own`): the caller looks at its waiter before it waits.
    fn finish<T>(&mut self, e: Entry<T>, own: *const Waiter) {
        if e.is_of(own) {
            e.finish_own();
        } else {
            self.0.get_or_insert_with(Vec::new).push(e.finish());
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_all(wakeups: Vec<Wakeup>) {
        for w in wakeups {
            w.wake();
        }
    }
}

/// A send attempted under the lock.
pub(crate) enum SendAttempt<T> {
    Sent(After<T>),
    Full(T),
    Closed(T),
}

/// A receive attempted under the lock.
pub(crate) enum RecvAttempt<T> {
    Got(T, After<T>),
    Empty,
    Closed,
}

impl<T> Chan<T> {
    /// The channel's id (unique in the process, never 0).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn new(
        buf: Flavor<T>,
        measure: Measure<T>,
        on_undelivered: Option<Undelivered<T>>,
        name: Option<String>,
        caps: u32,
        cancel_on_discard: Option<CancelToken>,
    ) -> Self {
        let ring = match &buf {
            Flavor::Ring(r) => Some(Arc::clone(r)),
            _ => None,
        };
        Chan {
            kind: buf.kind(),
            ring,
            inner: Lock::new(Inner {
                buf,
                senders: WaitQueue::default(),
                receivers: WaitQueue::default(),
                closed: false,
                stats: Counters::default(),
                pushes_blocked: false,
                pops_blocked: false,
            }),
            closed: AtomicBool::new(false),
            maybe_ready: AtomicUsize::new(0),
            fast_would_block: AtomicU64::new(0),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            measure,
            on_undelivered,
            name,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            caps,
            cancel_on_discard,
        }
    }

    /// `zcopy::CAP_*` bits.
    pub(crate) fn capabilities(&self) -> u32 {
        self.caps
    }

    #[inline]
    pub(crate) fn lock(&self) -> Locked<'_, T> {
        Locked { guard: ManuallyDrop::new(self.inner.lock()), chan: self }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Does the channel buffer in the lock-free ring?
    #[cfg(all(test, not(loom)))]
    pub(crate) fn on_ring(&self) -> bool {
        self.ring.is_some()
    }

    pub(crate) fn measure(&self, v: &T) -> usize {
        self.measure.of(v)
    }

    /// Bytes per message of a channel that counts `size_of`-style fixed sizes (0 for one
    /// that measures payloads: its ring counts their bytes itself).
    fn measure_fixed(&self) -> u64 {
        match self.measure {
            Measure::Fixed(n) => n as u64,
            Measure::Payload(_) => 0,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close_locked`; a closed channel never reopens.
        self.closed.load(Acquire)
    }

    /// A value accepted by the channel will never be received: report it.
    /// Caller does not hold the lock.
    pub(crate) fn undelivered(&self, v: T) {
        match &self.on_undelivered {
            Some(f) => f(v),
            None => drop(v),
        }
    }

    // ---- under the lock ---------------------------------------------------------------

    /// Completes a send without waiting, if possible. `own` is the caller's select waiter.
    /// Inlined into its callers: called, it returned its answer through memory and paid a
    /// frame on every blocking send.
    #[inline(always)]
    pub(crate) fn try_send_locked(
        &self,
        g: &mut Inner<T>,
        v: T,
        bytes: usize,
        own: Option<&Arc<Waiter>>,
    ) -> SendAttempt<T> {
        if g.closed {
            return SendAttempt::Closed(v);
        }
        if let Some(e) = g.receivers.pop_claim(own) {
            // SAFETY: pop_claim claimed e's waiter for e.clause, and we hold the lock.
            unsafe { e.put(v) };
            g.stats.handed_off(bytes);
            if self.kind == Kind::Rendezvous {
                g.stats.rv_matches += 1;
            }
            return SendAttempt::Sent(After::wake(e.finish()));
        }
        let dropped = match g.buf.offer(v) {
            Offer::Full(v) => return SendAttempt::Full(v),
            Offer::Stored => None,
            Offer::Displaced(old) => Some(old),
            Offer::Dropped(new) => Some(new),
        };
        // A ring counts its own traffic by its positions.
        if self.ring.is_none() {
            g.stats.sent(bytes);
        }
        if dropped.is_some() {
            g.stats.overflow_drops += 1;
            g.stats.undelivered += 1;
        }
        SendAttempt::Sent(After { wake: None, undelivered: dropped })
    }

    /// Completes a receive without waiting, if possible. Inlined into its callers, as
    /// [`try_send_locked`](Self::try_send_locked) is.
    #[inline(always)]
    pub(crate) fn try_recv_locked(&self, g: &mut Inner<T>, own: Option<&Arc<Waiter>>) -> RecvAttempt<T> {
        if let Some(v) = g.buf.take() {
            if self.ring.is_none() {
                g.stats.received(self.measure(&v));
            }
            let mut after = After::NOTHING;
            // A place was freed: the oldest parked sender's value moves in.
            if let Some(e) = g.senders.pop_claim(own) {
                // SAFETY: claimed by pop_claim, under the lock.
                match unsafe { e.take() } {
                    Some(sv) => match g.buf.offer(sv) {
                        Offer::Stored => {}
                        _ => unreachable!("try_recv_locked: no room for a parked sender after a take"),
                    },
                    None => unreachable!("try_recv_locked: a parked sender's slot is empty"),
                }
                if self.ring.is_none() {
                    g.stats.sent(e.bytes);
                }
                after = After::wake(e.finish());
            }
            return RecvAttempt::Got(v, after);
        }
        if let Some(e) = g.senders.pop_claim(own) {
            // SAFETY: claimed by pop_claim, under the lock.
            let Some(v) = (unsafe { e.take() }) else {
                unreachable!("try_recv_locked: a parked sender's slot is empty")
            };
            g.stats.handed_off(e.bytes);
            if self.kind == Kind::Rendezvous {
                g.stats.rv_matches += 1;
            }
            return RecvAttempt::Got(v, After::wake(e.finish()));
        }
        if g.closed { RecvAttempt::Closed } else { RecvAttempt::Empty }
    }

    /// Would a send complete now (or fail as closed)? For select's registering pass.
    pub(crate) fn send_ready_locked(&self, g: &Inner<T>, own: &Arc<Waiter>) -> bool {
        g.closed || g.receivers.has_live(Some(own)) || g.buf.has_room() || self.drops_on_overflow(g)
    }

    fn drops_on_overflow(&self, g: &Inner<T>) -> bool {
        match &g.buf {
            Flavor::Buffered(b) => b.overflow() != super::Overflow::Suspend,
            Flavor::Conflated(_) => true,
            Flavor::Rendezvous(_) | Flavor::Ring(_) | Flavor::Unlimited(_) | Flavor::Backend(_) => false,
        }
    }

    /// Would a receive complete now (or fail as closed)?
    pub(crate) fn recv_ready_locked(&self, g: &Inner<T>, own: &Arc<Waiter>) -> bool {
        g.buf.len() > 0 || g.senders.has_live(Some(own)) || g.closed
    }

    /// Parks a sender that found no room. On a ring channel, first sends every push and
    /// pop through the lock, then moves parked senders in while there is room: a pop that
    /// bypassed the lock may have made room since the caller looked.
    #[inline]
    pub(crate) fn park_sender_locked(&self, g: &mut Inner<T>, e: Entry<T>) -> Wakes {
        let own = e.owner();
        g.senders.push(e);
        match &self.ring {
            Some(ring) => Self::fill_from_senders(ring, g, own),
            None => Wakes::NONE,
        }
    }

    #[inline(never)]
    fn fill_from_senders(ring: &Ring<T>, g: &mut Inner<T>, own: *const Waiter) -> Wakes {
        let mut wakes = Wakes::NONE;
        block(ring, g, true);
        // Pushes and pops are ours alone now: room seen here stays.
        while ring.len() < ring.capacity()
            && let Some(e) = g.senders.pop_claim(None)
        {
            // SAFETY: claimed by pop_claim, under the lock.
            let Some(v) = (unsafe { e.take() }) else {
                unreachable!("park_sender_locked: a parked sender's slot is empty")
            };
            if ring.push_locked(v).is_err() {
                unreachable!("park_sender_locked: no room in a ring that had room");
            }
            wakes.finish(e, own);
        }
        wakes
    }

    /// Parks a receiver that found nothing. On a ring channel, first sends every push
    /// through the lock, then serves parked receivers from the ring: a push that bypassed
    /// the lock may have landed since the caller looked.
    #[inline]
    pub(crate) fn park_receiver_locked(&self, g: &mut Inner<T>, e: Entry<T>) -> Wakes {
        let own = e.owner();
        g.receivers.push(e);
        match &self.ring {
            Some(ring) => Self::serve_receivers(ring, g, own),
            None => Wakes::NONE,
        }
    }

    #[inline(never)]
    fn serve_receivers(ring: &Ring<T>, g: &mut Inner<T>, own: *const Waiter) -> Wakes {
        let mut wakes = Wakes::NONE;
        block(ring, g, false);
        if ring.len() == 0 {
            return wakes; // pushes are ours alone: it stays empty
        }
        // Freeze the pops too, so a value taken is one a receiver gets.
        block(ring, g, true);
        while ring.len() > 0
            && let Some(e) = g.receivers.pop_claim(None)
        {
            let Some(v) = ring.pop_locked() else {
                unreachable!("park_receiver_locked: a frozen ring with values is empty")
            };
            // SAFETY: claimed by pop_claim, under the lock.
            unsafe { e.put(v) };
            wakes.finish(e, own);
        }
        wakes
    }

    /// Removes `w`'s entries from both queues. Caller holds the lock.
    pub(crate) fn unpark_locked(&self, g: &mut Inner<T>, w: &Arc<Waiter>) {
        g.senders.remove(w);
        g.receivers.remove(w);
    }

    // ---- abandoned async operations ---------------------------------------------------

    /// A parked operation that will never wait again (its future was dropped) and that
    /// won `try_abort`: unregister it and count it as canceled.
    pub(crate) fn abandon(&self, w: &Arc<Waiter>, sending: bool) {
        let mut g = self.lock();
        self.unpark_locked(&mut g, w);
        if sending {
            g.stats.send_failed(ChanError::Canceled);
        } else {
            g.stats.recv_failed(ChanError::Canceled);
        }
    }

    /// Waits until a claimer that won against `try_abort` has marked the waiter done: it
    /// holds the lock from claim to done, so taking the lock once is enough.
    pub(crate) fn wait_for_claimer(&self) {
        drop(self.lock());
    }

    /// A value delivered to a receive that was abandoned: undelivered.
    pub(crate) fn abandoned_value(&self, v: T) {
        self.lock().stats.undelivered += 1;
        self.undelivered(v);
    }

    // ---- without the lock ---------------------------------------------------------------

    /// A ring channel's send without the lock. `Full`: no room, and nobody parked (a
    /// parked receiver would have raised a flag), so the send cannot complete now;
    /// `Refused`: ask under the lock (always, for other kinds).
    #[inline]
    pub(crate) fn send_lock_free(&self, v: T) -> Push<T> {
        match &self.ring {
            Some(ring) => ring.try_push(v),
            None => Push::Refused(v),
        }
    }

    /// A ring channel's receive without the lock. `Empty`: nothing buffered, nobody parked
    /// and the channel open, so the receive cannot complete now; `Refused`: ask under the
    /// lock (always, for other kinds).
    #[inline]
    pub(crate) fn recv_lock_free(&self) -> Pop<T> {
        match &self.ring {
            Some(ring) => ring.try_pop(),
            None => Pop::Refused,
        }
    }

    // ---- whole operations -------------------------------------------------------------

    /// Sends, waiting as `wait` allows. Always inlined, and the locked path never: a
    /// caller that is itself a call (a C entry point) reaches the ring in one call, with
    /// none of the lock path's frame.
    #[inline(always)]
    pub(crate) fn send(&self, v: T, wait: Wait<'_>) -> Result<(), SendError<T>> {
        match &self.ring {
            Some(ring) => self.send_via_ring(ring, v, wait),
            None => self.send_locked(v, wait),
        }
    }

    /// A ring channel's send: the ring without the lock (its push inlined, a try's a
    /// call), else the lock (out of line).
    #[inline(always)]
    fn send_via_ring(&self, ring: &Ring<T>, v: T, wait: Wait<'_>) -> Result<(), SendError<T>> {
        let pushed = if wait.is_plain_try() { ring.try_push_out_of_line(v) } else { ring.try_push(v) };
        match pushed {
            Push::Done => Ok(()),
            Push::Full(v) | Push::Refused(v) => self.send_locked(v, wait),
        }
    }

    #[inline(never)]
    fn send_locked(&self, v: T, wait: Wait<'_>) -> Result<(), SendError<T>> {
        let bytes = self.measure(&v);
        let mut g = self.lock();
        let v = match self.try_send_locked(&mut g, v, bytes, None) {
            SendAttempt::Sent(after) => {
                drop(g);
                after.run(self);
                return Ok(());
            }
            SendAttempt::Closed(v) => return Err(self.send_failed(g, ChanError::Closed, v)),
            SendAttempt::Full(v) => v,
        };
        if let Some(why) = wait.refuse() {
            return Err(self.send_failed(g, why, v));
        }
        let waiter = Waiter::for_current();
        let slot = UnsafeCell::new(Some(v));
        let wakes = self.park_sender_locked(&mut g, Entry::new(&waiter, 0, slot.get(), bytes));
        drop(g);
        wakes.run();
        let outcome = {
            let mut parked = Withdraw { chan: self, waiter: &waiter, armed: true };
            let outcome = park_on(&waiter, wait, WaitOn::chan(self.id, true));
            parked.armed = false;
            outcome
        };
        match outcome {
            // Done: a receiver took the value, or a close left it in the slot.
            Ok(_) => {
                Waiter::recycle(waiter);
                match slot.into_inner() {
                    None => Ok(()),
                    Some(v) => Err(SendError::new(ChanError::Closed, v)),
                }
            }
            Err(why) => {
                let mut g = self.lock();
                g.senders.remove(&waiter);
                if self.kind == Kind::Rendezvous {
                    g.stats.rv_cancels += 1;
                }
                let Some(v) = slot.into_inner() else {
                    unreachable!("Chan::send: an aborted sender's slot is empty")
                };
                Err(self.send_failed(g, why, v))
            }
        }
    }

    /// Receives, waiting as `wait` allows. Inlined as [`send`](Self::send) is.
    #[inline(always)]
    pub(crate) fn recv(&self, wait: Wait<'_>) -> Result<T, ChanError> {
        match &self.ring {
            Some(ring) => self.recv_via_ring(ring, wait),
            None => {
                if wait.is_plain_try() && self.maybe_ready.load(Acquire) == 0 {
                    return Err(self.would_block_lock_free());
                }
                self.recv_locked(wait)
            }
        }
    }

    /// A ring channel's receive: the ring without the lock (as in `send_via_ring`), else
    /// the lock. Empty with no flag up means nobody is parked, so a try may fail without
    /// the lock.
    #[inline(always)]
    fn recv_via_ring(&self, ring: &Ring<T>, wait: Wait<'_>) -> Result<T, ChanError> {
        let popped = if wait.is_plain_try() { ring.try_pop_out_of_line() } else { ring.try_pop() };
        match popped {
            Pop::Got(v) => Ok(v),
            Pop::Empty if wait.is_plain_try() => Err(self.would_block_lock_free()),
            Pop::Empty | Pop::Refused => self.recv_locked(wait),
        }
    }

    /// A value if one is ready now, counted as a receive; otherwise `None`, with nothing
    /// counted (the caller will wait some other way, and that wait is the receive).
    pub(crate) fn take_ready(&self) -> Option<T> {
        if let Some(ring) = &self.ring {
            match ring.try_pop() {
                Pop::Got(v) => return Some(v),
                Pop::Empty => return None,
                Pop::Refused => {}
            }
        } else if self.maybe_ready.load(Acquire) == 0 {
            return None;
        }
        let mut g = self.lock();
        match self.try_recv_locked(&mut g, None) {
            RecvAttempt::Got(v, after) => {
                drop(g);
                after.run(self);
                Some(v)
            }
            RecvAttempt::Closed | RecvAttempt::Empty => None,
        }
    }

    /// A `WouldBlock` answered without the lock, counted apart (added to the snapshot).
    fn would_block_lock_free(&self) -> ChanError {
        self.fast_would_block.fetch_add(1, Relaxed);
        ChanError::WouldBlock
    }

    #[inline(never)]
    fn recv_locked(&self, wait: Wait<'_>) -> Result<T, ChanError> {
        let mut g = self.lock();
        match self.try_recv_locked(&mut g, None) {
            RecvAttempt::Got(v, after) => {
                drop(g);
                after.run(self);
                return Ok(v);
            }
            RecvAttempt::Closed => return Err(self.recv_failed(g, ChanError::Closed)),
            RecvAttempt::Empty => {}
        }
        if let Some(why) = wait.refuse() {
            return Err(self.recv_failed(g, why));
        }
        let waiter = Waiter::for_current();
        let slot = UnsafeCell::new(None);
        let wakes = self.park_receiver_locked(&mut g, Entry::new(&waiter, 0, slot.get(), 0));
        drop(g);
        wakes.run();
        let outcome = {
            let mut parked = Withdraw { chan: self, waiter: &waiter, armed: true };
            let outcome = park_on(&waiter, wait, WaitOn::chan(self.id, false));
            parked.armed = false;
            outcome
        };
        match outcome {
            // Done: a sender filled the slot, or a close left it empty (and counted).
            Ok(_) => {
                Waiter::recycle(waiter);
                slot.into_inner().ok_or(ChanError::Closed)
            }
            Err(why) => {
                let mut g = self.lock();
                g.receivers.remove(&waiter);
                Err(self.recv_failed(g, why))
            }
        }
    }

    /// Counts a failed send; returns its error. Consumes the guard: unlocks.
    pub(crate) fn send_failed(&self, mut g: Locked<'_, T>, why: ChanError, v: T) -> SendError<T> {
        g.stats.send_failed(why);
        SendError::new(why, v)
    }

    /// Counts a failed receive; returns its error. Consumes the guard: unlocks.
    pub(crate) fn recv_failed(&self, mut g: Locked<'_, T>, why: ChanError) -> ChanError {
        g.stats.recv_failed(why);
        why
    }

    /// Closes: later sends fail, receivers drain the buffer then fail, every parked
    /// operation wakes with `Closed`. With `discard`, also drops the buffered values as
    /// undelivered (Kotlin's `cancel`). Returns `false` if already closed (a `discard`
    /// still drains whatever a drain-only close left).
    pub(crate) fn close(&self, discard: bool) -> bool {
        let mut g = self.lock();
        let first = !g.closed;
        g.closed = true;
        // Release: pairs with the Acquire in `is_closed`.
        self.closed.store(true, Release);
        if let Some(ring) = &self.ring {
            ring.close();
        }
        let mut woken = Vec::new();
        for e in g.receivers.take_all() {
            if e.try_claim() {
                woken.push(e.finish()); // the empty slot says "closed"
                g.stats.recv_failed(ChanError::Closed);
            }
        }
        for e in g.senders.take_all() {
            if e.try_claim() {
                woken.push(e.finish()); // the full slot says "closed"
                g.stats.send_failed(ChanError::Closed);
            }
        }
        let dropped = if discard { g.buf.drain() } else { Vec::new() };
        g.stats.undelivered += dropped.len() as u64;
        g.stats.cancel_discards += dropped.len() as u64;
        drop(g);
        for w in woken {
            w.wake();
        }
        for v in dropped {
            self.undelivered(v);
        }
        if discard && let Some(t) = &self.cancel_on_discard {
            t.cancel();
        }
        first
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().buf.len()
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        self.lock().buf.capacity()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        // Copied under the lock; the snapshot (and its name, an allocation) is built after,
        // so a monitor sampling in a loop holds the lock as briefly as it can.
        let g = self.lock();
        let mut stats = g.stats.clone();
        let mut len = g.buf.len();
        if let Some(ring) = &self.ring {
            len = add_ring_traffic(ring, &mut stats, self.measure_fixed());
        }
        let (capacity, closed) = (g.buf.capacity(), g.closed);
        let (parked_senders, parked_receivers) = (g.senders.live(), g.receivers.live());
        drop(g);
        let mut snap = Snapshot::new(self.name.clone(), self.kind, capacity, len, closed, &stats);
        snap.id = self.id;
        snap.parked_senders = parked_senders;
        snap.parked_receivers = parked_receivers;
        snap.recv_failures.would_block += self.fast_would_block.load(Relaxed);
        snap.set_capabilities(self.caps);
        snap
    }
}

/// Sends pushes (and with `pops`, pops too) of `ring` through the lock. Caller holds it.
fn block<T>(ring: &Ring<T>, g: &mut Inner<T>, pops: bool) {
    if !g.pushes_blocked {
        g.pushes_blocked = true;
        ring.block_pushes();
    }
    if pops && !g.pops_blocked {
        g.pops_blocked = true;
        ring.block_pops();
    }
}

/// Adds what went through `ring` (sends, receives, their bytes: the ring's own payload
/// count, or `bytes_each` per value; the operation times) to `stats`; returns the values
/// buffered, consistent with the counts. Values a cancel drained from the ring were popped
/// but not received: they count as discarded (`close`), not here. Caller holds the lock.
fn add_ring_traffic<T>(ring: &Ring<T>, stats: &mut Counters, bytes_each: u64) -> usize {
    let (pushed, popped) = ring.traffic();
    let (drained, drained_bytes) = ring.drained();
    let received = popped - drained;
    stats.sends += pushed;
    stats.recvs += received;
    let (bytes_sent, bytes_recv) = match ring.payload_bytes() {
        Some((pushed_bytes, popped_bytes)) => (pushed_bytes, popped_bytes - drained_bytes),
        None => (pushed * bytes_each, received * bytes_each),
    };
    stats.bytes_sent += bytes_sent;
    stats.bytes_recv += bytes_recv;
    let (first, last) = ring.op_times();
    if first != 0 && (stats.first_op_ns == 0 || first < stats.first_op_ns) {
        stats.first_op_ns = first;
    }
    stats.last_op_ns = stats.last_op_ns.max(last);
    (pushed - popped) as usize
}

/// Withdraws a parked operation's entry if its frame unwinds while parked (a runtime
/// shutting down unwinds its parked coroutines), so no queue keeps pointing at a slot on
/// a dead stack. Declared after the slot, so it runs before the slot is dropped; taking
/// the lock also waits out a claimer still moving a value.
struct Withdraw<'a, T> {
    chan: &'a Chan<T>,
    waiter: &'a Arc<Waiter>,
    armed: bool,
}

impl<T> Drop for Withdraw<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.waiter.try_abort();
            let mut g = self.chan.lock();
            self.chan.unpark_locked(&mut g, self.waiter);
        }
    }
}

/// Parks until `waiter` is done (returns the winning clause) or gives up as `wait` allows
/// (returns why, with the waiter aborted: nobody will touch its slots).
/// Cancellation wins over the deadline; neither polls: the token and the timer wheel wake.
/// `waiter` was made by [`Waiter::for_current`] on this coroutine or thread.
/// `why` says what the caller waits on, for monitors.
pub(crate) fn park_on(waiter: &Arc<Waiter>, wait: Wait<'_>, why: WaitOn) -> Result<usize, ChanError> {
    // The caller's ambient token (its scope's) applies on top of an explicit one. Read only
    // here, on the way to parking, so operations that complete at once never touch it.
    let ambient = crate::sync::current_token();
    match (wait.cancel, &ambient) {
        // Nothing can cancel the wait (the usual case): nothing to register or drop.
        (None, None) => park_uncancellable(waiter, wait.until, why),
        _ => park_cancellable(waiter, wait, ambient.as_ref(), why),
    }
}

/// [`park_on`] for a wait no token can cancel.
fn park_uncancellable(waiter: &Arc<Waiter>, until: Until, why: WaitOn) -> Result<usize, ChanError> {
    loop {
        if let Some(i) = waiter.done() {
            return Ok(i);
        }
        if park_until(until, why) {
            return give_up(waiter, ChanError::Timeout, why);
        }
    }
}

/// [`park_on`] for a wait that `wait.cancel` or the `ambient` token can cancel: each is
/// told to wake us, and cancellation wins over the deadline.
fn park_cancellable(
    waiter: &Arc<Waiter>,
    wait: Wait<'_>,
    ambient: Option<&CancelToken>,
    why: WaitOn,
) -> Result<usize, ChanError> {
    let tokens = [wait.cancel, ambient];
    let cancelled = || tokens.iter().flatten().any(|t| t.is_cancelled());
    let mut registrations = [None, None];
    for (slot, token) in registrations.iter_mut().zip(tokens) {
        if let Some(token) = token {
            match token.register(park::current()) {
                Some(r) => *slot = Some(r),
                None => return give_up(waiter, ChanError::Canceled, why),
            }
        }
    }
    loop {
        if let Some(i) = waiter.done() {
            return Ok(i);
        }
        if cancelled() {
            return give_up(waiter, ChanError::Canceled, why);
        }
        if park_until(wait.until, why) {
            return give_up(waiter, if cancelled() { ChanError::Canceled } else { ChanError::Timeout }, why);
        }
    }
}

/// Parks once, until woken or `until`; true if the deadline has passed.
fn park_until(until: Until, why: WaitOn) -> bool {
    match until {
        Until::Forever => {
            park::park_as(why);
            false
        }
        Until::At(deadline) => park::park_deadline_as(deadline, why),
        Until::Now => unreachable!("park_on: a try-operation parked"),
    }
}

/// Aborts `waiter`; if a claimer got there first, waits for it to finish instead.
fn give_up(waiter: &Arc<Waiter>, error: ChanError, why: WaitOn) -> Result<usize, ChanError> {
    if waiter.try_abort() { Err(error) } else { finished(waiter, why) }
}

/// Waits for a claimer to mark the waiter done; it unparks us after doing so, so a park
/// while not done always has a wake coming.
fn finished(waiter: &Arc<Waiter>, why: WaitOn) -> Result<usize, ChanError> {
    loop {
        if let Some(i) = waiter.done() {
            return Ok(i);
        }
        park::park_as(why);
    }
}
