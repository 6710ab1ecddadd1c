//! Channel counters on the wire: the value of a `STATS` attribute is itself a list of
//! attributes (the same TLV form), one per counter, so readers skip counters they do not
//! know and servers can add some.
//!
//! ```text
//!   1 CHAN_ID u64        2 NAME str          3 KIND i32        4 CAPACITY u64 (MAX: none)
//!   5 LEN u64            6 CLOSED u32        7 SENDS u64       8 RECVS u64
//!   9 BYTES_SENT u64    10 BYTES_RECV u64   11 SEND_FAIL 4×u64 (would_block timeout closed canceled)
//!  12 RECV_FAIL 4×u64   13 OVERFLOW u64     14 UNDELIVERED u64 15 RV_MATCHES u64
//!  16 RV_CANCELS u64    17 FIRST_OP_NS u64  18 LAST_OP_NS u64  19 TAKEN_NS u64 (server clock)
//!  20 CAPS u32          21 CANCEL_DISCARDS u64 22 PARKED_SENDERS u64 23 PARKED_RECEIVERS u64
//!  24 LOCAL_ID u64 (the channel's id in the server's process)
//! ```

use kcoro::chan::{Failures, Kind, Snapshot};

use crate::proto::{Attr, FrameBuf, FrameRef, Header, ProtoError};

/// One channel's counters as a server reports them, stamped with the server's monotonic
/// clock so rates computed from two of them use the server's intervals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelStats {
    /// The channel's id on its server.
    pub chan_id: u64,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Kind, kcoro numbering (`Kind::code`).
    pub kind: i32,
    /// Capacity; `None` for unbounded.
    pub capacity: Option<u64>,
    /// Values buffered.
    pub len: u64,
    /// Closed.
    pub closed: bool,
    /// Completed sends.
    pub sends: u64,
    /// Completed receives.
    pub recvs: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_recv: u64,
    /// Failed sends by reason.
    pub send_failures: Failures,
    /// Failed receives by reason.
    pub recv_failures: Failures,
    /// Overflow drops.
    pub overflow_drops: u64,
    /// Undelivered values.
    pub undelivered: u64,
    /// Rendezvous hand-offs.
    pub rv_matches: u64,
    /// Rendezvous sends given up.
    pub rv_cancels: u64,
    /// Values dropped at cancel.
    pub cancel_discards: u64,
    /// Capability bits.
    pub capabilities: u32,
    /// First and latest operation (server's coarse monotonic clock, ns).
    pub first_op_ns: u64,
    /// See `first_op_ns`.
    pub last_op_ns: u64,
    /// When the server took the snapshot (its monotonic clock, ns).
    pub taken_ns: u64,
    /// Senders parked on the channel when the snapshot was taken.
    pub parked_senders: u64,
    /// Receivers parked on the channel when the snapshot was taken.
    pub parked_receivers: u64,
    /// The channel's id in the server's process (`Snapshot::id`), unique there for the
    /// channel's life; `chan_id` is the id requests use.
    pub local_id: u64,
}

mod sub {
    pub const CHAN_ID: u16 = 1;
    pub const NAME: u16 = 2;
    pub const KIND: u16 = 3;
    pub const CAPACITY: u16 = 4;
    pub const LEN: u16 = 5;
    pub const CLOSED: u16 = 6;
    pub const SENDS: u16 = 7;
    pub const RECVS: u16 = 8;
    pub const BYTES_SENT: u16 = 9;
    pub const BYTES_RECV: u16 = 10;
    pub const SEND_FAIL: u16 = 11;
    pub const RECV_FAIL: u16 = 12;
    pub const OVERFLOW: u16 = 13;
    pub const UNDELIVERED: u16 = 14;
    pub const RV_MATCHES: u16 = 15;
    pub const RV_CANCELS: u16 = 16;
    pub const FIRST_OP_NS: u16 = 17;
    pub const LAST_OP_NS: u16 = 18;
    pub const TAKEN_NS: u16 = 19;
    pub const CAPS: u16 = 20;
    pub const CANCEL_DISCARDS: u16 = 21;
    pub const PARKED_SENDERS: u16 = 22;
    pub const PARKED_RECEIVERS: u16 = 23;
    pub const LOCAL_ID: u16 = 24;
}

fn failures(f: &Failures) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, v) in [f.would_block, f.timeout, f.closed, f.canceled].into_iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
    }
    out
}

fn read_failures(v: &[u8]) -> Option<Failures> {
    let n = |i: usize| Some(u64::from_be_bytes(v.get(i * 8..i * 8 + 8)?.try_into().ok()?));
    (v.len() == 32).then_some(())?;
    Some(Failures { would_block: n(0)?, timeout: n(1)?, closed: n(2)?, canceled: n(3)? })
}

/// The server's monotonic clock in ns.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec and a clock every Linux has.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

impl ChannelStats {
    /// From a local snapshot, stamped now.
    pub fn from_snapshot(chan_id: u64, s: &Snapshot) -> Self {
        ChannelStats {
            chan_id,
            name: s.name.clone(),
            kind: s.kind.code(),
            capacity: s.capacity.map(|c| c as u64),
            len: s.len as u64,
            closed: s.closed,
            sends: s.sends,
            recvs: s.recvs,
            bytes_sent: s.bytes_sent,
            bytes_recv: s.bytes_recv,
            send_failures: s.send_failures,
            recv_failures: s.recv_failures,
            overflow_drops: s.overflow_drops,
            undelivered: s.undelivered,
            rv_matches: s.rv_matches,
            rv_cancels: s.rv_cancels,
            cancel_discards: s.cancel_discards,
            capabilities: s.capabilities,
            first_op_ns: s.first_op_ns,
            last_op_ns: s.last_op_ns,
            taken_ns: monotonic_ns(),
            parked_senders: s.parked_senders as u64,
            parked_receivers: s.parked_receivers as u64,
            local_id: s.id,
        }
    }

    /// The kind, if it is one of the four.
    pub fn kind(&self) -> Option<Kind> {
        [Kind::Rendezvous, Kind::Buffered, Kind::Conflated, Kind::Unlimited]
            .into_iter()
            .find(|k| k.code() == self.kind)
    }

    /// As a local [`Snapshot`] (stamped with the local clock at the call).
    pub fn to_snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            id: if self.local_id != 0 { self.local_id } else { self.chan_id },
            name: self.name.clone(),
            kind: self.kind().unwrap_or(Kind::Buffered),
            capacity: self.capacity.map(|c| c as usize),
            len: self.len as usize,
            closed: self.closed,
            parked_senders: usize::try_from(self.parked_senders).unwrap_or(usize::MAX),
            parked_receivers: usize::try_from(self.parked_receivers).unwrap_or(usize::MAX),
            sends: self.sends,
            recvs: self.recvs,
            bytes_sent: self.bytes_sent,
            bytes_recv: self.bytes_recv,
            send_failures: self.send_failures,
            recv_failures: self.recv_failures,
            overflow_drops: self.overflow_drops,
            undelivered: self.undelivered,
            rv_matches: self.rv_matches,
            rv_cancels: self.rv_cancels,
            cancel_discards: self.cancel_discards,
            first_op_ns: self.first_op_ns,
            last_op_ns: self.last_op_ns,
            ..Snapshot::default()
        };
        s.set_capabilities(self.capabilities);
        s
    }

    /// Appends this as one `STATS` attribute.
    pub fn encode(&self, f: &mut FrameBuf<'_>) {
        let mut v = Vec::with_capacity(256);
        let mut put = |t: u16, bytes: &[u8]| {
            v.extend_from_slice(&t.to_be_bytes());
            v.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            v.extend_from_slice(bytes);
        };
        put(sub::CHAN_ID, &self.chan_id.to_be_bytes());
        if let Some(n) = &self.name {
            put(sub::NAME, &n.as_bytes()[..n.len().min(u16::MAX as usize)]);
        }
        put(sub::KIND, &self.kind.to_be_bytes());
        put(sub::CAPACITY, &self.capacity.unwrap_or(u64::MAX).to_be_bytes());
        put(sub::LEN, &self.len.to_be_bytes());
        put(sub::CLOSED, &u32::from(self.closed).to_be_bytes());
        put(sub::SENDS, &self.sends.to_be_bytes());
        put(sub::RECVS, &self.recvs.to_be_bytes());
        put(sub::BYTES_SENT, &self.bytes_sent.to_be_bytes());
        put(sub::BYTES_RECV, &self.bytes_recv.to_be_bytes());
        put(sub::SEND_FAIL, &failures(&self.send_failures));
        put(sub::RECV_FAIL, &failures(&self.recv_failures));
        put(sub::OVERFLOW, &self.overflow_drops.to_be_bytes());
        put(sub::UNDELIVERED, &self.undelivered.to_be_bytes());
        put(sub::RV_MATCHES, &self.rv_matches.to_be_bytes());
        put(sub::RV_CANCELS, &self.rv_cancels.to_be_bytes());
        put(sub::FIRST_OP_NS, &self.first_op_ns.to_be_bytes());
        put(sub::LAST_OP_NS, &self.last_op_ns.to_be_bytes());
        put(sub::TAKEN_NS, &self.taken_ns.to_be_bytes());
        put(sub::CAPS, &self.capabilities.to_be_bytes());
        put(sub::CANCEL_DISCARDS, &self.cancel_discards.to_be_bytes());
        put(sub::PARKED_SENDERS, &self.parked_senders.to_be_bytes());
        put(sub::PARKED_RECEIVERS, &self.parked_receivers.to_be_bytes());
        put(sub::LOCAL_ID, &self.local_id.to_be_bytes());
        f.bytes(Attr::STATS, &v);
    }

    /// Reads one `STATS` value; unknown counters are skipped.
    pub fn decode(value: &[u8]) -> Result<ChannelStats, ProtoError> {
        let header = Header { cmd: crate::proto::Cmd(0), flags: 0, len: value.len() as u32 };
        let inner = FrameRef::parse(header, value, 64)?;
        let bad = || ProtoError::BadValue(Attr::STATS.0);
        let u64_of = |t: u16| -> Result<u64, ProtoError> {
            inner.u64(Attr(t)).map(|v| v.unwrap_or(0)).map_err(|_| bad())
        };
        Ok(ChannelStats {
            chan_id: u64_of(sub::CHAN_ID)?,
            name: inner.str(Attr(sub::NAME)).map_err(|_| bad())?.map(str::to_string),
            kind: inner.i32(Attr(sub::KIND)).map_err(|_| bad())?.unwrap_or(1),
            capacity: Some(u64_of(sub::CAPACITY)?).filter(|&c| c != u64::MAX),
            len: u64_of(sub::LEN)?,
            closed: inner.u32(Attr(sub::CLOSED)).map_err(|_| bad())?.unwrap_or(0) != 0,
            sends: u64_of(sub::SENDS)?,
            recvs: u64_of(sub::RECVS)?,
            bytes_sent: u64_of(sub::BYTES_SENT)?,
            bytes_recv: u64_of(sub::BYTES_RECV)?,
            send_failures: inner
                .get(Attr(sub::SEND_FAIL))
                .map_or(Some(Failures::default()), read_failures)
                .ok_or_else(bad)?,
            recv_failures: inner
                .get(Attr(sub::RECV_FAIL))
                .map_or(Some(Failures::default()), read_failures)
                .ok_or_else(bad)?,
            overflow_drops: u64_of(sub::OVERFLOW)?,
            undelivered: u64_of(sub::UNDELIVERED)?,
            rv_matches: u64_of(sub::RV_MATCHES)?,
            rv_cancels: u64_of(sub::RV_CANCELS)?,
            cancel_discards: u64_of(sub::CANCEL_DISCARDS)?,
            capabilities: inner.u32(Attr(sub::CAPS)).map_err(|_| bad())?.unwrap_or(0),
            first_op_ns: u64_of(sub::FIRST_OP_NS)?,
            last_op_ns: u64_of(sub::LAST_OP_NS)?,
            taken_ns: u64_of(sub::TAKEN_NS)?,
            parked_senders: u64_of(sub::PARKED_SENDERS)?,
            parked_receivers: u64_of(sub::PARKED_RECEIVERS)?,
            local_id: u64_of(sub::LOCAL_ID)?,
        })
    }
}

/// A server's scheduler counters (the value of a `SCHED` attribute: nested attributes,
/// one per counter, all `u64`, unknown ones skipped):
///
/// ```text
///   1 WORKERS   2 SPAWNED   3 COMPLETED   4 RUNNING (now)   5 PARKED (now)   6 STEALS
///   7 INJECT_PULLS   8 TIMER_FIRES   9 STACKS_LIVE (now)   10 STACKS_POOLED (now)
///  11 TAKEN_NS (server's monotonic clock)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedStats {
    /// The runtime's counters (the fields the wire carries; the rest are 0).
    pub stats: kcoro::Stats,
    /// When the server read them (its monotonic clock, ns).
    pub taken_ns: u64,
}

impl SchedStats {
    /// The counters of `stats`, stamped now.
    pub fn now(stats: kcoro::Stats) -> SchedStats {
        SchedStats { stats, taken_ns: monotonic_ns() }
    }

    fn fields(&self) -> [(u16, u64); 11] {
        let s = &self.stats;
        [
            (1, s.workers as u64),
            (2, s.spawned),
            (3, s.completed),
            (4, s.running),
            (5, s.parked),
            (6, s.steals),
            (7, s.inject_pulls),
            (8, s.timer_fires),
            (9, s.stacks_live as u64),
            (10, s.stacks_pooled as u64),
            (11, self.taken_ns),
        ]
    }

    /// Appends this as one `SCHED` attribute.
    pub fn encode(&self, f: &mut FrameBuf<'_>) {
        let mut v = Vec::with_capacity(11 * 12);
        for (t, n) in self.fields() {
            v.extend_from_slice(&t.to_be_bytes());
            v.extend_from_slice(&8u16.to_be_bytes());
            v.extend_from_slice(&n.to_be_bytes());
        }
        f.bytes(Attr::SCHED, &v);
    }

    /// Reads one `SCHED` value; unknown counters are skipped.
    pub fn decode(value: &[u8]) -> Result<SchedStats, ProtoError> {
        let header = Header { cmd: crate::proto::Cmd(0), flags: 0, len: value.len() as u32 };
        let inner = FrameRef::parse(header, value, 64)?;
        let n = |t: u16| -> Result<u64, ProtoError> {
            inner.u64(Attr(t)).map(|v| v.unwrap_or(0)).map_err(|_| ProtoError::BadValue(Attr::SCHED.0))
        };
        let size = |t: u16| n(t).map(|v| usize::try_from(v).unwrap_or(usize::MAX));
        Ok(SchedStats {
            stats: kcoro::Stats {
                workers: size(1)?,
                spawned: n(2)?,
                completed: n(3)?,
                running: n(4)?,
                parked: n(5)?,
                steals: n(6)?,
                inject_pulls: n(7)?,
                timer_fires: n(8)?,
                stacks_live: size(9)?,
                stacks_pooled: size(10)?,
                ..kcoro::Stats::default()
            },
            taken_ns: n(11)?,
        })
    }
}
