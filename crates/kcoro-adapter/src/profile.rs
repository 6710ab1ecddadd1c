//! Profiles: runtime configurations generated deterministically from a `u64` seed.
//!
//! A profile fixes every policy a run depends on (adapter, stream, carrier, local buffer
//! sizes, target behaviour) so the same seed always gives the same run, and different
//! seeds give different runs: the collapse scanner checks that they do. Names and padding
//! vary too but carry no behaviour; [`Profile::shape`] leaves them out.
//!
//! Draws come from [`SplitMix64`](crate::rng::SplitMix64) seeded with
//! `mix64(seed ^ POLICY_SALT)`; the id is `kp_` + 16 hex digits of `mix64(seed ^ ID_SALT)`.

use serde::Serialize;

use crate::contract::limits;
use crate::error::{AdapterError, Result};
use crate::local::LOCAL_MAX_CHUNK;
use crate::mutant::{Mutant, MutantHook};
use crate::rng::{SplitMix64, mix64};

/// Salt of the policy draws.
const POLICY_SALT: u64 = 0x706f_6c69_6379_0001;
/// Salt of the id.
const ID_SALT: u64 = 0x6b70_5f69_6400_0002;
/// The seed every profile draws its policies from under the padding-only mutant.
const PADDING_ONLY_SEED: u64 = 0x00c0_ffee;

/// In which order flows get streams (and so which stream id each flow gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingPolicy {
    /// Flow order.
    Sequential,
    /// Highest priority class first, ties in flow order.
    PriorityOrdered,
    /// Even-indexed flows first, then odd.
    Interleaved,
}

/// How much credit a flow's stream gets, relative to the largest chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackpressurePolicy {
    /// Window = one largest chunk.
    Tight,
    /// Window = one and a half largest chunks.
    Moderate,
}

/// When a finished flow counts as closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecyclePolicy {
    /// open → draining when the request ends, → closed when the response ends.
    DrainBeforeClose,
    /// open → closed when the response ends.
    CloseOnFinal,
}

/// How flows get priority classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityPolicy {
    /// Every flow class 3.
    Fifo,
    /// Classes 0..=7 drawn per flow.
    ByClass,
}

/// The carrier's framing family; decides the envelope header size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CarrierFamily {
    /// A multiplexed byte stream (9-byte headers).
    StreamMux,
    /// Datagrams (16-byte headers).
    Datagram,
    /// A plain pipe (4-byte headers).
    FramedPipe,
}

impl CarrierFamily {
    /// Header bytes per envelope.
    pub fn header_bytes(self) -> u64 {
        match self {
            CarrierFamily::StreamMux => 9,
            CarrierFamily::Datagram => 16,
            CarrierFamily::FramedPipe => 4,
        }
    }
}

/// Adapter policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdapterPolicy {
    /// Flows open at once.
    pub max_flows: usize,
    /// Bytes per flow.
    pub max_flow_bytes: u64,
    /// Flow → stream order.
    pub mapping: MappingPolicy,
    /// Credit window policy.
    pub backpressure: BackpressurePolicy,
    /// Close policy.
    pub lifecycle: LifecyclePolicy,
}

/// Stream policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamPolicy {
    /// Streams open at once; more flows wait for a slot.
    pub max_concurrent_streams: usize,
    /// Priority classes.
    pub priority: PriorityPolicy,
}

/// Carrier policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CarrierPolicy {
    /// Framing family.
    pub family: CarrierFamily,
    /// Largest envelope, header included.
    pub max_envelope_bytes: u64,
    /// Envelopes queued before the carrier pushes back.
    pub max_queue_depth: usize,
}

/// Local adapter sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalPolicy {
    /// Largest source chunk.
    pub max_chunk: u64,
    /// Ingress buffer, in bytes, across flows.
    pub max_buffered: u64,
}

/// Synthetic target behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetPolicy {
    /// Which flow (modulo the flow count) gets the faulty target in the error and reset
    /// scenarios.
    pub fault_slot: u64,
    /// Virtual milliseconds the echo target spends per frame.
    pub echo_delay_ms: u64,
}

/// A complete run configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// `kp_` + 16 hex digits.
    pub id: String,
    /// The seed it came from.
    pub seed: u64,
    /// A display name; no behaviour.
    pub name: String,
    /// Filler of varying length; no behaviour.
    pub padding: String,
    /// Adapter policy.
    pub adapter: AdapterPolicy,
    /// Stream policy.
    pub stream: StreamPolicy,
    /// Carrier policy.
    pub carrier: CarrierPolicy,
    /// Local adapter sizes.
    pub local: LocalPolicy,
    /// Target behaviour.
    pub targets: TargetPolicy,
}

impl Profile {
    /// The profile of `seed`.
    pub fn generate(seed: u64) -> Profile {
        Profile::generate_with(seed, MutantHook::NONE)
    }

    /// The profile of `seed`, unless the padding-only mutant pins every policy.
    pub fn generate_with(seed: u64, hook: MutantHook) -> Profile {
        let policy_seed = if hook.is(Mutant::PaddingOnlyDiversity) { PADDING_ONLY_SEED } else { seed };
        let mut g = SplitMix64::new(mix64(policy_seed ^ POLICY_SALT));
        let max_chunk = g.pick(&[8u64 << 10, 16 << 10, 32 << 10, 64 << 10]);
        let adapter = AdapterPolicy {
            max_flows: g.pick(&[8, 16, 32]),
            max_flow_bytes: g.pick(&[1u64 << 20, 2 << 20, 4 << 20]),
            mapping: g.pick(&[
                MappingPolicy::Sequential,
                MappingPolicy::PriorityOrdered,
                MappingPolicy::Interleaved,
            ]),
            backpressure: g.pick(&[BackpressurePolicy::Tight, BackpressurePolicy::Moderate]),
            lifecycle: g.pick(&[LifecyclePolicy::DrainBeforeClose, LifecyclePolicy::CloseOnFinal]),
        };
        let stream = StreamPolicy {
            max_concurrent_streams: g.pick(&[2, 4, 8, 16]),
            priority: g.pick(&[PriorityPolicy::Fifo, PriorityPolicy::ByClass]),
        };
        let carrier = CarrierPolicy {
            family: g.pick(&[CarrierFamily::StreamMux, CarrierFamily::Datagram, CarrierFamily::FramedPipe]),
            max_envelope_bytes: g.pick(&[4u64 << 10, 16 << 10, 64 << 10]),
            max_queue_depth: g.pick(&[2, 4, 8, 16]),
        };
        let local = LocalPolicy { max_chunk, max_buffered: max_chunk * g.pick(&[1u64, 2, 3]) };
        let targets = TargetPolicy { fault_slot: g.below(8), echo_delay_ms: g.below(3) };
        let mut names = SplitMix64::new(mix64(seed ^ ID_SALT));
        let id_bits = names.next_u64();
        let pad_len = 8 + names.below(24) as usize;
        Profile {
            id: format!("kp_{id_bits:016x}"),
            seed,
            name: format!("profile-{:04x}", id_bits >> 48),
            padding: "~".repeat(pad_len),
            adapter,
            stream,
            carrier,
            local,
            targets,
        }
    }

    /// The credit window of a flow's stream, from the backpressure policy.
    pub fn window(&self) -> u64 {
        match self.adapter.backpressure {
            BackpressurePolicy::Tight => self.local.max_chunk,
            BackpressurePolicy::Moderate => self.local.max_chunk * 3 / 2,
        }
    }

    /// Every behaviour-bearing policy as one string: what two profiles must differ in for
    /// their runs to differ. Names, ids, seeds and padding are left out on purpose.
    pub fn shape(&self) -> String {
        let a = &self.adapter;
        format!(
            "flows={} flow_bytes={} map={:?} bp={:?} life={:?} streams={} prio={:?} carrier={:?}/{}/{} chunk={} buf={} fault={} delay={}",
            a.max_flows,
            a.max_flow_bytes,
            a.mapping,
            a.backpressure,
            a.lifecycle,
            self.stream.max_concurrent_streams,
            self.stream.priority,
            self.carrier.family,
            self.carrier.max_envelope_bytes,
            self.carrier.max_queue_depth,
            self.local.max_chunk,
            self.local.max_buffered,
            self.targets.fault_slot,
            self.targets.echo_delay_ms,
        )
    }

    /// Checks every field against the contract's hard limits.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(AdapterError::InvalidConfig(format!("profile {}: {m}", self.id)));
        let a = &self.adapter;
        if a.max_flows == 0 || a.max_flows > limits::MAX_FLOWS {
            return bad(format!("max_flows {} outside 1..={}", a.max_flows, limits::MAX_FLOWS));
        }
        if a.max_flow_bytes == 0 || a.max_flow_bytes > limits::MAX_FLOW_BYTES {
            return bad(format!("max_flow_bytes {} outside 1..=8 MiB", a.max_flow_bytes));
        }
        let l = &self.local;
        if l.max_chunk < 256 || l.max_chunk > LOCAL_MAX_CHUNK {
            return bad(format!("max_chunk {} outside 256..={LOCAL_MAX_CHUNK}", l.max_chunk));
        }
        if l.max_buffered < l.max_chunk || l.max_buffered > crate::local::LOCAL_MAX_BUFFERED {
            return bad(format!("max_buffered {} outside max_chunk..=8 MiB", l.max_buffered));
        }
        let c = &self.carrier;
        if c.max_envelope_bytes <= c.family.header_bytes() || c.max_envelope_bytes > limits::MAX_FLOW_BYTES {
            return bad(format!("max_envelope_bytes {} too small or too large", c.max_envelope_bytes));
        }
        if c.max_queue_depth == 0 || c.max_queue_depth > 4096 {
            return bad(format!("max_queue_depth {} outside 1..=4096", c.max_queue_depth));
        }
        let s = &self.stream;
        if s.max_concurrent_streams == 0 || s.max_concurrent_streams > crate::session::MAX_STREAMS {
            return bad(format!("max_concurrent_streams {} outside 1..=1024", s.max_concurrent_streams));
        }
        crate::contract::reject_sensitive("profile name", &self.name)?;
        crate::contract::reject_sensitive("profile id", &self.id)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_profile_and_ids_look_right() {
        for seed in 0..50 {
            let p = Profile::generate(seed);
            assert_eq!(p, Profile::generate(seed));
            assert!(p.id.starts_with("kp_") && p.id.len() == 19, "{}", p.id);
            assert!(p.id[3..].chars().all(|c| c.is_ascii_hexdigit()));
            p.validate().unwrap();
        }
    }

    #[test]
    fn seeds_vary_the_policies() {
        let shapes: std::collections::BTreeSet<String> =
            (0..20).map(|s| Profile::generate(s).shape()).collect();
        assert!(shapes.len() >= 18, "only {} distinct shapes in 20 seeds", shapes.len());
        let maps: std::collections::HashSet<_> =
            (0..20).map(|s| Profile::generate(s).adapter.mapping).collect();
        assert_eq!(maps.len(), 3);
    }

    #[test]
    fn validate_refuses_out_of_range_values() {
        let good = Profile::generate(1);
        let mut p = good.clone();
        p.adapter.max_flows = limits::MAX_FLOWS + 1;
        assert!(p.validate().is_err());
        let mut p = good.clone();
        p.local.max_chunk = LOCAL_MAX_CHUNK + 1;
        assert!(p.validate().is_err());
        let mut p = good.clone();
        p.carrier.max_envelope_bytes = 4;
        assert!(p.validate().is_err());
        let mut p = good;
        p.name = "my-secret-profile".into();
        assert!(matches!(p.validate(), Err(AdapterError::InvalidConfig(_))));
    }
}
