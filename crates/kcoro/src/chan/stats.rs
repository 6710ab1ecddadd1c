//! Exact per-channel counters, snapshots and rates.
//!
//! Counters are plain integers inside the channel's lock, updated once by the operation
//! that completes (for a hand-off, the party that moves the value counts both the send
//! and the receive), so they are exact and cost no atomics. A [`Snapshot`] copies them
//! under the lock and stamps the copy with the monotonic clock; [`Rate::between`] divides
//! the deltas of two snapshots by the interval between their stamps.
//!
//! Operation times (`first_op_ns`, `last_op_ns`) come from `CLOCK_MONOTONIC_COARSE`
//! (millisecond resolution), read once per tick by `op_clock`'s ticker while channels are
//! busy, so stamping stays off the fast path's budget; snapshot stamps use the precise
//! clock.

use std::time::{Duration, Instant};

use super::error::ChanError;
use super::flavor::Kind;

/// How many bytes a message counts for in the byte counters.
///
/// Channels count `size_of::<T>()` per message unless built with
/// [`Builder::count_payload_bytes`](super::Builder::count_payload_bytes), which uses this
/// trait: byte buffers count their payload length. Implementations must be cheap and must
/// not panic (they run under the channel lock).
pub trait ByteLen {
    /// Payload bytes of this message.
    fn byte_len(&self) -> usize;
}

impl ByteLen for Vec<u8> {
    fn byte_len(&self) -> usize {
        self.len()
    }
}
impl ByteLen for Box<[u8]> {
    fn byte_len(&self) -> usize {
        self.len()
    }
}
impl ByteLen for std::sync::Arc<[u8]> {
    fn byte_len(&self) -> usize {
        self.len()
    }
}
impl ByteLen for String {
    fn byte_len(&self) -> usize {
        self.len()
    }
}
impl ByteLen for &[u8] {
    fn byte_len(&self) -> usize {
        self.len()
    }
}
impl<const N: usize> ByteLen for [u8; N] {
    fn byte_len(&self) -> usize {
        N
    }
}

/// How a channel measures its messages.
pub(crate) enum Measure<T> {
    Fixed(usize),
    Payload(fn(&T) -> usize),
}

impl<T> Measure<T> {
    #[inline]
    pub(crate) fn of(&self, v: &T) -> usize {
        match self {
            Measure::Fixed(n) => *n,
            Measure::Payload(f) => f(v),
        }
    }
}

/// The live counters, inside the channel lock.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    pub(crate) sends: u64,
    pub(crate) recvs: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_recv: u64,
    /// Indexed by [`ChanError::index`].
    pub(crate) send_failures: [u64; 4],
    pub(crate) recv_failures: [u64; 4],
    pub(crate) overflow_drops: u64,
    pub(crate) undelivered: u64,
    pub(crate) rv_matches: u64,
    pub(crate) rv_cancels: u64,
    /// Values buffered when the channel was cancelled, dropped undelivered.
    pub(crate) cancel_discards: u64,
    pub(crate) first_op_ns: u64,
    pub(crate) last_op_ns: u64,
}

impl Counters {
    #[inline]
    fn touch(&mut self) {
        let now = super::op_clock::now_ns();
        if self.first_op_ns == 0 {
            self.first_op_ns = now;
        }
        // A stamp may trail one taken a moment before (see `op_clock`): times never go back.
        if now > self.last_op_ns {
            self.last_op_ns = now;
        }
    }

    #[inline]
    pub(crate) fn sent(&mut self, bytes: usize) {
        self.sends += 1;
        self.bytes_sent += bytes as u64;
        self.touch();
    }

    #[inline]
    pub(crate) fn received(&mut self, bytes: usize) {
        self.recvs += 1;
        self.bytes_recv += bytes as u64;
        self.touch();
    }

    /// A hand-off: one send and one receive, stamped once.
    #[inline]
    pub(crate) fn handed_off(&mut self, bytes: usize) {
        self.sends += 1;
        self.recvs += 1;
        self.bytes_sent += bytes as u64;
        self.bytes_recv += bytes as u64;
        self.touch();
    }

    pub(crate) fn send_failed(&mut self, why: ChanError) {
        self.send_failures[why.index()] += 1;
    }

    pub(crate) fn recv_failed(&mut self, why: ChanError) {
        self.recv_failures[why.index()] += 1;
    }
}

/// Failures of one direction, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// Try-operations that found nothing to do (`-EAGAIN`).
    pub would_block: u64,
    /// Deadlines that passed (`-ETIME`).
    pub timeout: u64,
    /// Operations on a closed channel (`-EPIPE`).
    pub closed: u64,
    /// Cancelled operations (`-ECANCELED`).
    pub canceled: u64,
}

impl Failures {
    fn from_array(a: [u64; 4]) -> Self {
        let at = |e: ChanError| a[e.index()];
        Failures {
            would_block: at(ChanError::WouldBlock),
            timeout: at(ChanError::Timeout),
            closed: at(ChanError::Closed),
            canceled: at(ChanError::Canceled),
        }
    }

    /// All failures of this direction.
    pub fn total(&self) -> u64 {
        self.would_block + self.timeout + self.closed + self.canceled
    }
}

/// A consistent copy of one channel's counters and shape, stamped with the time taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The channel's id, unique in this process for its lifetime (ids are never reused):
    /// what tells two channels of the same name apart across snapshots. 0 for a snapshot
    /// that was not taken of a live channel.
    pub id: u64,
    /// The name given at build time, if any.
    pub name: Option<String>,
    /// The channel's kind.
    pub kind: Kind,
    /// Buffer capacity; `None` for unlimited.
    pub capacity: Option<usize>,
    /// Values buffered at the time of the snapshot.
    pub len: usize,
    /// Closed (or cancelled) at the time of the snapshot.
    pub closed: bool,
    /// Senders parked on the channel at the time of the snapshot (coroutines, threads or
    /// tasks waiting for room or for a receiver; a select counts once per channel). Counted
    /// when the snapshot is taken, so the operations themselves pay nothing for it.
    pub parked_senders: usize,
    /// Receivers parked on the channel at the time of the snapshot.
    pub parked_receivers: usize,
    /// Completed sends (a value accepted by the channel, including overflow drops).
    pub sends: u64,
    /// Completed receives.
    pub recvs: u64,
    /// Bytes of the values sent, as measured by the channel (see [`ByteLen`]).
    pub bytes_sent: u64,
    /// Bytes of the values received.
    pub bytes_recv: u64,
    /// Failed sends by reason.
    pub send_failures: Failures,
    /// Failed receives by reason.
    pub recv_failures: Failures,
    /// Values dropped by an overflow policy or by conflation.
    pub overflow_drops: u64,
    /// Values handed to the undelivered-element callback path: overflow drops, values
    /// buffered at cancel, values delivered to an abandoned receive.
    pub undelivered: u64,
    /// Direct hand-offs between a sender and a receiver on a rendezvous channel.
    pub rv_matches: u64,
    /// Rendezvous sends that gave up (timeout or cancel) while parked.
    pub rv_cancels: u64,
    /// Values that were buffered when the channel was cancelled (or its last receiver
    /// dropped), dropped undelivered.
    pub cancel_discards: u64,
    /// `zcopy::CAP_*` bits: `CAP_ZERO_COPY` for a channel built with
    /// [`Builder::zero_copy`](super::Builder::zero_copy), `CAP_PTR` if it carries pointer
    /// descriptors.
    pub capabilities: u32,
    /// The zero-copy counters, for a zero-copy channel.
    pub zero_copy: Option<ZeroCopyStats>,
    /// `CLOCK_MONOTONIC_COARSE` time of the first operation, in ns (0: none yet).
    pub first_op_ns: u64,
    /// `CLOCK_MONOTONIC_COARSE` time of the latest operation, in ns (0: none yet). Both
    /// times come from a value published once per tick of that clock while channels are
    /// busy, so they may trail the operation by a few milliseconds; they never go back.
    pub last_op_ns: u64,
    /// When the snapshot was taken.
    pub at: Instant,
}

impl Snapshot {
    pub(crate) fn new(
        name: Option<String>,
        kind: Kind,
        capacity: Option<usize>,
        len: usize,
        closed: bool,
        c: &Counters,
    ) -> Self {
        Snapshot {
            id: 0,
            name,
            kind,
            capacity,
            len,
            closed,
            parked_senders: 0,
            parked_receivers: 0,
            sends: c.sends,
            recvs: c.recvs,
            bytes_sent: c.bytes_sent,
            bytes_recv: c.bytes_recv,
            send_failures: Failures::from_array(c.send_failures),
            recv_failures: Failures::from_array(c.recv_failures),
            overflow_drops: c.overflow_drops,
            undelivered: c.undelivered,
            rv_matches: c.rv_matches,
            rv_cancels: c.rv_cancels,
            cancel_discards: c.cancel_discards,
            capabilities: 0,
            zero_copy: None,
            first_op_ns: c.first_op_ns,
            last_op_ns: c.last_op_ns,
            at: Instant::now(),
        }
    }
}

impl Snapshot {
    /// Records the channel's capabilities and, for a zero-copy channel, its zero-copy
    /// counters, which are the channel's own: every operation of such a channel moves a
    /// descriptor. (For snapshots rebuilt from elsewhere, such as a remote server's.)
    pub fn set_capabilities(&mut self, caps: u32) {
        self.capabilities = caps;
        if caps & crate::zcopy::CAP_ZERO_COPY != 0 {
            self.zero_copy = Some(ZeroCopyStats {
                sent: self.sends,
                received: self.recvs,
                bytes_sent: self.bytes_sent,
                bytes_recv: self.bytes_recv,
                fallback_small: 0,
                fallback_capacity: 0,
                canceled: self.send_failures.canceled + self.recv_failures.canceled,
                aborted_close: self.send_failures.closed + self.cancel_discards,
            });
        }
    }
}

/// The zero-copy counters of a zero-copy channel (`struct kc_chan_zstats`), exact like the
/// rest: a zero-copy channel moves every value as a descriptor, so these are the channel's
/// own counters seen through that lens.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ZeroCopyStats {
    /// Descriptors accepted.
    pub sent: u64,
    /// Descriptors received.
    pub received: u64,
    /// Span bytes accepted (true span lengths, not descriptor sizes).
    pub bytes_sent: u64,
    /// Span bytes received.
    pub bytes_recv: u64,
    /// Sends that fell back to copying because the payload was small: always 0 here (no
    /// kcoro zero-copy path copies; the field keeps the C layout).
    pub fallback_small: u64,
    /// Sends that fell back to copying for lack of capacity: always 0 here, as above.
    pub fallback_capacity: u64,
    /// Operations that gave up because their cancel token fired.
    pub canceled: u64,
    /// Sends refused because the channel was closed (the sender kept its lease), plus
    /// descriptors discarded when the channel was cancelled (their leases returned).
    pub aborted_close: u64,
}

impl Default for Snapshot {
    /// An empty buffered channel's snapshot, stamped now.
    fn default() -> Self {
        Snapshot::new(None, Kind::Buffered, None, 0, false, &Counters::default())
    }
}

/// What happened between two snapshots of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Wall-clock interval between the two snapshots.
    pub interval: Duration,
    /// Sends completed in the interval.
    pub sends: u64,
    /// Receives completed in the interval.
    pub recvs: u64,
    /// Bytes sent in the interval.
    pub bytes_sent: u64,
    /// Bytes received in the interval.
    pub bytes_recv: u64,
    /// Failed operations (both directions) in the interval.
    pub failures: u64,
    /// Sends per second.
    pub sends_per_sec: f64,
    /// Receives per second.
    pub recvs_per_sec: f64,
    /// Bytes sent per second.
    pub bytes_sent_per_sec: f64,
    /// Bytes received per second.
    pub bytes_recv_per_sec: f64,
}

impl Rate {
    /// Deltas and per-second rates from `prev` to `curr` (snapshots of one channel, in
    /// that order). A zero interval gives zero rates.
    pub fn between(prev: &Snapshot, curr: &Snapshot) -> Rate {
        let interval = curr.at.saturating_duration_since(prev.at);
        let secs = interval.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let sends = curr.sends.saturating_sub(prev.sends);
        let recvs = curr.recvs.saturating_sub(prev.recvs);
        let bytes_sent = curr.bytes_sent.saturating_sub(prev.bytes_sent);
        let bytes_recv = curr.bytes_recv.saturating_sub(prev.bytes_recv);
        let failures = (curr.send_failures.total() + curr.recv_failures.total())
            .saturating_sub(prev.send_failures.total() + prev.recv_failures.total());
        Rate {
            interval,
            sends,
            recvs,
            bytes_sent,
            bytes_recv,
            failures,
            sends_per_sec: per_sec(sends),
            recvs_per_sec: per_sec(recvs),
            bytes_sent_per_sec: per_sec(bytes_sent),
            bytes_recv_per_sec: per_sec(bytes_recv),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn rate_uses_snapshot_stamps_and_byte_counters() {
        let mut c = Counters::default();
        let a = Snapshot::new(None, Kind::Buffered, Some(4), 0, false, &c);
        c.sent(100);
        c.sent(50);
        c.received(100);
        let mut b = Snapshot::new(None, Kind::Buffered, Some(4), 1, false, &c);
        b.at = a.at + Duration::from_millis(500);
        let r = Rate::between(&a, &b);
        assert_eq!((r.sends, r.recvs, r.bytes_sent, r.bytes_recv), (2, 1, 150, 100));
        assert_eq!(r.interval, Duration::from_millis(500));
        assert_eq!(r.bytes_sent_per_sec, 300.0);
        assert_eq!(r.recvs_per_sec, 2.0);
        assert!(b.first_op_ns > 0 && b.last_op_ns >= b.first_op_ns);
    }

    #[test]
    fn zero_interval_gives_zero_rates() {
        let c = Counters::default();
        let a = Snapshot::new(None, Kind::Rendezvous, Some(0), 0, false, &c);
        let r = Rate::between(&a, &a);
        assert_eq!(r.sends_per_sec, 0.0);
    }
}
