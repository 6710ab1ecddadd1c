//! Proxy semantics and the carrier: synthetic targets at the far end of each stream, and
//! carrier envelopes on the way back, through one bounded queue shared by every flow.
//!
//! ```text
//! flow driver --stream--> target (echo | discard | error | reset)
//!      response pump <--stream-- target
//!      response pump --envelopes--> [carrier queue, bounded] --> egress pump
//! ```
//!
//! Queue pressure is the carrier queue being full when a pump offers an envelope: counted
//! there, once per envelope that had to wait. It is a different thing from a flow's
//! backpressure (a spent credit window or a full ingress buffer) and counted apart.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kcoro::chan::{self, ChanError, Receiver, Sender};

use crate::error::{AdapterError, Result};
use crate::local::Terminal;
use crate::profile::CarrierPolicy;
use crate::session::{Event, RecvHalf, ServerStream, StreamId};

/// Reset code: the source reset the flow.
pub const CODE_SOURCE_RESET: u32 = 1;
/// Reset code: the target failed the request.
pub const CODE_TARGET_ERROR: u32 = 2;
/// Reset code: the target reset the stream.
pub const CODE_TARGET_RESET: u32 = 3;

/// A synthetic target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// Sends every data frame back, then finishes when the request finishes.
    Echo,
    /// Consumes everything, sends nothing, finishes when the request finishes.
    Discard,
    /// Fails the request at its first frame.
    Error,
    /// Resets the stream at its first frame.
    Reset,
}

impl TargetKind {
    /// The target's name, also the flow's target hint.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Echo => "echo",
            TargetKind::Discard => "discard",
            TargetKind::Error => "error",
            TargetKind::Reset => "reset",
        }
    }

    /// Parses a target name.
    pub fn from_name(name: &str) -> Result<TargetKind> {
        [TargetKind::Echo, TargetKind::Discard, TargetKind::Error, TargetKind::Reset]
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| AdapterError::InvalidConfig(format!("unknown target `{name}`")))
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters of the targets, counted where the target acts.
#[derive(Debug, Default)]
pub struct TargetCounters {
    /// Requests failed by an error target.
    pub errors: AtomicU64,
    /// Streams reset by a reset target.
    pub resets: AtomicU64,
    /// Data frames the targets received.
    pub frames: AtomicU64,
}

/// Serves one stream as `kind` would. Echo waits `echo_delay` of (virtual) time per frame.
pub fn run_target(kind: TargetKind, mut s: ServerStream, echo_delay: Duration, counters: &TargetCounters) {
    loop {
        let event = s.rx.recv();
        if let Event::Data { .. } = event {
            counters.frames.fetch_add(1, Ordering::Relaxed);
        }
        match (kind, event) {
            (TargetKind::Error, _) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                s.rx.stop(CODE_TARGET_ERROR);
                let _ = s.tx.reset(CODE_TARGET_ERROR);
                return;
            }
            (TargetKind::Reset, _) => {
                counters.resets.fetch_add(1, Ordering::Relaxed);
                s.rx.stop(CODE_TARGET_RESET);
                let _ = s.tx.reset(CODE_TARGET_RESET);
                return;
            }
            (TargetKind::Echo, Event::Data { seq, bytes }) => {
                if !echo_delay.is_zero() {
                    kcoro::sleep(echo_delay);
                }
                if let Err(e) = s.tx.send(seq, bytes) {
                    // The client stopped reading responses: stop reading its requests.
                    let code = match e {
                        crate::session::StreamError::Reset(c) => c,
                        _ => CODE_TARGET_RESET,
                    };
                    s.rx.stop(code);
                    return;
                }
            }
            (TargetKind::Discard, Event::Data { .. }) => {}
            (_, Event::Fin) => {
                let _ = s.tx.finish();
                return;
            }
            (_, Event::Reset(code)) => {
                let _ = s.tx.reset(code);
                return;
            }
        }
    }
}

/// What travels on the carrier.
#[derive(Debug, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// A fragment of one data chunk; the last fragment completes it.
    Data {
        /// The chunk's sequence.
        seq: u64,
        /// The fragment's bytes.
        bytes: Vec<u8>,
        /// Whether this fragment completes the chunk.
        last_fragment: bool,
    },
    /// The stream's response finished.
    Fin,
    /// The stream's response was aborted with a code.
    Reset(u32),
}

/// One carrier envelope: which stream, and what.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The stream it belongs to.
    pub stream: StreamId,
    /// The content.
    pub kind: EnvelopeKind,
}

/// Carrier counters.
#[derive(Debug, Default)]
pub struct CarrierCounters {
    /// Envelopes queued.
    pub envelopes: AtomicU64,
    /// Bytes queued, headers included.
    pub wire_bytes: AtomicU64,
    /// Envelopes that found the queue full and waited.
    pub queue_pressure_events: AtomicU64,
}

/// The sending side of the carrier; clone one per flow.
#[derive(Debug, Clone)]
pub struct Carrier {
    tx: Sender<Envelope>,
    header: u64,
    max_fragment: usize,
    counters: Arc<CarrierCounters>,
}

/// A carrier with `policy`'s envelope size and a queue of `depth` envelopes.
pub fn carrier(policy: &CarrierPolicy, depth: usize) -> (Carrier, Receiver<Envelope>, Arc<CarrierCounters>) {
    let (tx, rx) = chan::buffered(depth.max(1));
    let header = policy.family.header_bytes();
    let counters = Arc::new(CarrierCounters::default());
    let max_fragment = (policy.max_envelope_bytes - header).max(1) as usize;
    (Carrier { tx, header, max_fragment, counters: Arc::clone(&counters) }, rx, counters)
}

impl Carrier {
    /// Queues one envelope, waiting (and counting queue pressure) when the queue is full.
    pub fn send(&self, env: Envelope) -> Result<()> {
        let len = match &env.kind {
            EnvelopeKind::Data { bytes, .. } => bytes.len() as u64,
            _ => 0,
        };
        let env = match self.tx.try_send(env) {
            Ok(()) => None,
            Err(e) if e.kind() == ChanError::WouldBlock => Some(e.into_inner()),
            Err(_) => return Err(AdapterError::Stream { stream: 0, reason: "carrier closed".into() }),
        };
        if let Some(env) = env {
            self.counters.queue_pressure_events.fetch_add(1, Ordering::Relaxed);
            self.tx
                .send(env)
                .map_err(|_| AdapterError::Stream { stream: 0, reason: "carrier closed".into() })?;
        }
        self.counters.envelopes.fetch_add(1, Ordering::Relaxed);
        self.counters.wire_bytes.fetch_add(self.header + len, Ordering::Relaxed);
        Ok(())
    }

    /// Queues one data chunk as envelopes of at most the policy's size.
    pub fn send_data(&self, stream: StreamId, seq: u64, bytes: Vec<u8>) -> Result<()> {
        if bytes.len() <= self.max_fragment {
            return self
                .send(Envelope { stream, kind: EnvelopeKind::Data { seq, bytes, last_fragment: true } });
        }
        let n = bytes.len().div_ceil(self.max_fragment);
        for (i, part) in bytes.chunks(self.max_fragment).enumerate() {
            let kind = EnvelopeKind::Data { seq, bytes: part.to_vec(), last_fragment: i + 1 == n };
            self.send(Envelope { stream, kind })?;
        }
        Ok(())
    }
}

/// Carries one stream's responses onto the carrier until the target finishes or resets;
/// returns how the response ended.
pub fn pump_responses(mut rx: RecvHalf, carrier: &Carrier) -> Result<Terminal> {
    let stream = rx.stream_id();
    loop {
        match rx.recv() {
            Event::Data { seq, bytes } => carrier.send_data(stream, seq, bytes)?,
            Event::Fin => {
                carrier.send(Envelope { stream, kind: EnvelopeKind::Fin })?;
                return Ok(Terminal::Final);
            }
            Event::Reset(code) => {
                carrier.send(Envelope { stream, kind: EnvelopeKind::Reset(code) })?;
                return Ok(if code == CODE_TARGET_ERROR { Terminal::Error } else { Terminal::Reset });
            }
        }
    }
}
