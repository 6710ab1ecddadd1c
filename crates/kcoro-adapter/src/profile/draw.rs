//! The seed → policy draws behind [`Profile::generate`](crate::profile::Profile::generate),
//! as plain numbers, enum indices and strings.
//!
//! This file is compiled twice: as `crate::profile::draw` inside the crate, and by the
//! crate's build script, which includes it with `#[path]` next to `src/rng.rs` to render
//! the profile-specialised twins (see `crate::codegen`). So it may use only `core`, `std`
//! and `crate::rng` (which resolves in both places), nothing else of the crate.
//!
//! Policies come from [`SplitMix64`] seeded with `mix64(policy_seed ^ POLICY_SALT)`; the id,
//! name and padding from one seeded with `mix64(seed ^ ID_SALT)`. The draw order is part of
//! the format: reordering a draw changes every profile.

use crate::rng::{SplitMix64, mix64};

/// Salt of the policy draws.
pub const POLICY_SALT: u64 = 0x706f_6c69_6379_0001;
/// Salt of the id.
pub const ID_SALT: u64 = 0x6b70_5f69_6400_0002;

/// `MappingPolicy` variants, by draw index.
pub const MAPPING_VARIANTS: [&str; 3] = ["Sequential", "PriorityOrdered", "Interleaved"];
/// `BackpressurePolicy` variants, by draw index.
pub const BACKPRESSURE_VARIANTS: [&str; 2] = ["Tight", "Moderate"];
/// `LifecyclePolicy` variants, by draw index.
pub const LIFECYCLE_VARIANTS: [&str; 2] = ["DrainBeforeClose", "CloseOnFinal"];
/// `PriorityPolicy` variants, by draw index.
pub const PRIORITY_VARIANTS: [&str; 2] = ["Fifo", "ByClass"];
/// `CarrierFamily` variants, by draw index.
pub const CARRIER_FAMILY_VARIANTS: [&str; 3] = ["StreamMux", "Datagram", "FramedPipe"];

/// One profile's draws: every number a `Profile` is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    /// The id word: the id is `kp_` + its 16 hex digits.
    pub id_bits: u64,
    /// Length of the `~` padding.
    pub pad_len: usize,
    /// Largest source chunk.
    pub max_chunk: u64,
    /// Flows open at once.
    pub max_flows: usize,
    /// Bytes per flow.
    pub max_flow_bytes: u64,
    /// Index into [`MAPPING_VARIANTS`].
    pub mapping: u8,
    /// Index into [`BACKPRESSURE_VARIANTS`].
    pub backpressure: u8,
    /// Index into [`LIFECYCLE_VARIANTS`].
    pub lifecycle: u8,
    /// Streams open at once.
    pub max_concurrent_streams: usize,
    /// Index into [`PRIORITY_VARIANTS`].
    pub priority: u8,
    /// Index into [`CARRIER_FAMILY_VARIANTS`].
    pub carrier_family: u8,
    /// Largest envelope, header included.
    pub max_envelope_bytes: u64,
    /// Envelopes queued before the carrier pushes back.
    pub max_queue_depth: usize,
    /// Ingress buffer in bytes: `max_chunk` × 1, 2 or 3.
    pub max_buffered: u64,
    /// Which flow gets the faulty target.
    pub fault_slot: u64,
    /// Virtual milliseconds per echoed frame.
    pub echo_delay_ms: u64,
}

impl Draw {
    /// `kp_` + 16 hex digits.
    pub fn id(&self) -> String {
        format!("kp_{:016x}", self.id_bits)
    }

    /// The display name.
    pub fn name(&self) -> String {
        format!("profile-{:04x}", self.id_bits >> 48)
    }

    /// The padding.
    pub fn padding(&self) -> String {
        "~".repeat(self.pad_len)
    }

    /// The credit window: one largest chunk (`Tight`) or one and a half (`Moderate`).
    pub fn window(&self) -> u64 {
        if self.backpressure == 0 { self.max_chunk } else { self.max_chunk * 3 / 2 }
    }
}

/// The draws of `seed`: names from `seed`, policies from `policy_seed` (equal to `seed`
/// except under the padding-only mutant).
pub fn draw(seed: u64, policy_seed: u64) -> Draw {
    let mut g = SplitMix64::new(mix64(policy_seed ^ POLICY_SALT));
    let max_chunk = g.pick(&[8u64 << 10, 16 << 10, 32 << 10, 64 << 10]);
    let max_flows = g.pick(&[8usize, 16, 32]);
    let max_flow_bytes = g.pick(&[1u64 << 20, 2 << 20, 4 << 20]);
    let mapping = g.pick(&[0u8, 1, 2]);
    let backpressure = g.pick(&[0u8, 1]);
    let lifecycle = g.pick(&[0u8, 1]);
    let max_concurrent_streams = g.pick(&[2usize, 4, 8, 16]);
    let priority = g.pick(&[0u8, 1]);
    let carrier_family = g.pick(&[0u8, 1, 2]);
    let max_envelope_bytes = g.pick(&[4u64 << 10, 16 << 10, 64 << 10]);
    let max_queue_depth = g.pick(&[2usize, 4, 8, 16]);
    let max_buffered = max_chunk * g.pick(&[1u64, 2, 3]);
    let fault_slot = g.below(8);
    let echo_delay_ms = g.below(3);
    let mut names = SplitMix64::new(mix64(seed ^ ID_SALT));
    let id_bits = names.next_u64();
    let pad_len = 8 + names.below(24) as usize;
    Draw {
        id_bits,
        pad_len,
        max_chunk,
        max_flows,
        max_flow_bytes,
        mapping,
        backpressure,
        lifecycle,
        max_concurrent_streams,
        priority,
        carrier_family,
        max_envelope_bytes,
        max_queue_depth,
        max_buffered,
        fault_slot,
        echo_delay_ms,
    }
}
