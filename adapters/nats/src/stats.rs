//! Per-host counters of a bridged channel end, beyond its local channel's snapshot.
//!
//! The receiving ends of work queues, conflated and rendezvous channels move their values
//! through a named local kcoro channel (listed in kcoro's registry, so `chanmon` and
//! `/metrics` show it with exact counters); these counters add what only the bridge sees:
//! server acknowledgements, retries, redeliveries, markers. The sending ends and both
//! fan-out ends hand values to the client directly, so these counters are all they have.
//! Atomics, updated once per event, so exact on this host; no global count exists.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A copy of one channel end's bridge counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BridgeStats {
    /// Values the server acknowledged (JetStream) or the client accepted (core, KV).
    pub published: u64,
    /// Publishes the stream refused as full and retried later (backpressure).
    pub full_retries: u64,
    /// Publishes retried because no acknowledgement came in time (server down,
    /// reconnecting); the `Nats-Msg-Id` makes the retry a duplicate the server drops.
    pub timeout_retries: u64,
    /// Publishes the server acknowledged as duplicates (the retry of one it already had).
    pub duplicates: u64,
    /// Failed operations reported to callers (other than timeouts and cancels).
    pub errors: u64,
    /// Messages received from the server (including redeliveries); for a fan-out
    /// subscriber, messages its receives took from the client.
    pub delivered: u64,
    /// Received messages that the server had delivered before (unacked elsewhere).
    pub redelivered: u64,
    /// Acks sent.
    pub acks: u64,
    /// Negative acks sent (redeliver now), including undelivered values of a closed end.
    pub naks: u64,
    /// Messages that did not decode as the element type (terminated, never redelivered).
    pub decode_errors: u64,
    /// End markers sent or seen (for a work queue: closes recorded, and the queue's end seen).
    pub end_markers: u64,
    /// Messages already acked that a work queue's stream still held (after a server
    /// crash) and a receiver removed, so they no longer take capacity.
    pub acked_leftovers: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) full_retries: AtomicU64,
    pub(crate) timeout_retries: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) acks: AtomicU64,
    pub(crate) naks: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) end_markers: AtomicU64,
    pub(crate) acked_leftovers: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> BridgeStats {
        BridgeStats {
            published: self.published.load(Relaxed),
            full_retries: self.full_retries.load(Relaxed),
            timeout_retries: self.timeout_retries.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            errors: self.errors.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            redelivered: self.redelivered.load(Relaxed),
            acks: self.acks.load(Relaxed),
            naks: self.naks.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            end_markers: self.end_markers.load(Relaxed),
            acked_leftovers: self.acked_leftovers.load(Relaxed),
        }
    }
}
