//! Profiles: runtime configurations generated deterministically from a `u64` seed.
//!
//! A profile fixes every policy a run depends on (adapter, stream, carrier, local buffer
//! sizes, target behaviour) so the same seed always gives the same run, and different
//! seeds give different runs: the collapse scanner checks that they do. Names and padding
//! vary too but carry no behaviour; [`Profile::shape`] leaves them out.
//!
//! Draws come from [`SplitMix64`](crate::rng::SplitMix64) seeded with
//! `mix64(seed ^ POLICY_SALT)`; the id is `kp_` + 16 hex digits of `mix64(seed ^ ID_SALT)`.
//! The drawing itself lives in [`draw`], free of the crate's types, so the build script can
//! run it too (to render the generated twins of `crate::codegen`).

pub mod draw;

use serde::Serialize;

pub use draw::Draw;

use crate::contract::limits;
use crate::error::{AdapterError, Result};
use crate::local::LOCAL_MAX_CHUNK;
use crate::mutant::{Mutant, MutantHook};

/// The seed every profile draws its policies from under the padding-only mutant.
const PADDING_ONLY_SEED: u64 = 0x00c0_ffee;

/// Mapping policies by draw index ([`draw::MAPPING_VARIANTS`]).
const MAPPINGS: [MappingPolicy; 3] =
    [MappingPolicy::Sequential, MappingPolicy::PriorityOrdered, MappingPolicy::Interleaved];
/// Backpressure policies by draw index ([`draw::BACKPRESSURE_VARIANTS`]).
const BACKPRESSURES: [BackpressurePolicy; 2] = [BackpressurePolicy::Tight, BackpressurePolicy::Moderate];
/// Lifecycle policies by draw index ([`draw::LIFECYCLE_VARIANTS`]).
const LIFECYCLES: [LifecyclePolicy; 2] = [LifecyclePolicy::DrainBeforeClose, LifecyclePolicy::CloseOnFinal];
/// Priority policies by draw index ([`draw::PRIORITY_VARIANTS`]).
const PRIORITIES: [PriorityPolicy; 2] = [PriorityPolicy::Fifo, PriorityPolicy::ByClass];
/// Carrier families by draw index ([`draw::CARRIER_FAMILY_VARIANTS`]).
const CARRIER_FAMILIES: [CarrierFamily; 3] =
    [CarrierFamily::StreamMux, CarrierFamily::Datagram, CarrierFamily::FramedPipe];

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
        Profile::from_draw(seed, &draw::draw(seed, policy_seed))
    }

    /// The typed profile of a [`Draw`] from [`draw::draw`] (whose enum indices are in range).
    pub(crate) fn from_draw(seed: u64, d: &Draw) -> Profile {
        Profile {
            id: d.id(),
            seed,
            name: d.name(),
            padding: d.padding(),
            adapter: AdapterPolicy {
                max_flows: d.max_flows,
                max_flow_bytes: d.max_flow_bytes,
                mapping: MAPPINGS[usize::from(d.mapping)],
                backpressure: BACKPRESSURES[usize::from(d.backpressure)],
                lifecycle: LIFECYCLES[usize::from(d.lifecycle)],
            },
            stream: StreamPolicy {
                max_concurrent_streams: d.max_concurrent_streams,
                priority: PRIORITIES[usize::from(d.priority)],
            },
            carrier: CarrierPolicy {
                family: CARRIER_FAMILIES[usize::from(d.carrier_family)],
                max_envelope_bytes: d.max_envelope_bytes,
                max_queue_depth: d.max_queue_depth,
            },
            local: LocalPolicy { max_chunk: d.max_chunk, max_buffered: d.max_buffered },
            targets: TargetPolicy { fault_slot: d.fault_slot, echo_delay_ms: d.echo_delay_ms },
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

#[cfg(all(test, not(loom)))]
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

    /// Pinned before `generate_with` was split into `draw`: the same seeds must keep giving
    /// the same profiles.
    #[test]
    fn seeds_one_and_two_are_pinned() {
        let p = Profile::generate(1);
        assert_eq!(
            (p.id.as_str(), p.name.as_str(), p.padding.len()),
            ("kp_387340e85e8f3d49", "profile-3873", 31)
        );
        assert_eq!(
            p.shape(),
            "flows=8 flow_bytes=4194304 map=Sequential bp=Moderate life=DrainBeforeClose streams=4 prio=Fifo \
             carrier=StreamMux/16384/4 chunk=65536 buf=65536 fault=6 delay=2"
        );
        assert_eq!(p.window(), 98304);
        let p = Profile::generate(2);
        assert_eq!(
            (p.id.as_str(), p.name.as_str(), p.padding.len()),
            ("kp_6667966abe081052", "profile-6667", 28)
        );
        assert_eq!(
            p.shape(),
            "flows=32 flow_bytes=1048576 map=PriorityOrdered bp=Moderate life=CloseOnFinal streams=8 \
             prio=ByClass carrier=Datagram/4096/2 chunk=32768 buf=98304 fault=5 delay=1"
        );
        assert_eq!(p.window(), 49152);
        assert_eq!(p.padding, "~".repeat(28));
        assert_eq!(p.seed, 2);
    }

    /// The draw indices name the same variants the typed enums have, in the same order: the
    /// generated twins spell enums by these names.
    #[test]
    fn draw_variant_names_match_the_enums() {
        fn names<T: std::fmt::Debug>(v: &[T]) -> Vec<String> {
            v.iter().map(|x| format!("{x:?}")).collect()
        }
        assert_eq!(names(&MAPPINGS), draw::MAPPING_VARIANTS);
        assert_eq!(names(&BACKPRESSURES), draw::BACKPRESSURE_VARIANTS);
        assert_eq!(names(&LIFECYCLES), draw::LIFECYCLE_VARIANTS);
        assert_eq!(names(&PRIORITIES), draw::PRIORITY_VARIANTS);
        assert_eq!(names(&CARRIER_FAMILIES), draw::CARRIER_FAMILY_VARIANTS);
        for seed in 0..64 {
            let (p, d) = (Profile::generate(seed), draw::draw(seed, seed));
            assert_eq!(p.window(), d.window());
        }
    }

    #[cfg(feature = "mutants")]
    #[test]
    fn padding_only_mutant_keeps_names_and_pins_policies() {
        let hook = MutantHook::with(Mutant::PaddingOnlyDiversity).unwrap();
        let pinned = Profile::generate(PADDING_ONLY_SEED).shape();
        for seed in 0..20 {
            let (m, p) = (Profile::generate_with(seed, hook), Profile::generate(seed));
            assert_eq!(m.shape(), pinned);
            assert_eq!((&m.id, &m.name, &m.padding, m.seed), (&p.id, &p.name, &p.padding, seed));
        }
    }

    /// Every field of seeds 0..200, folded into one FNV-1a word, pinned the same way.
    #[test]
    fn first_two_hundred_seeds_are_pinned() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for seed in 0..200 {
            for b in format!("{:?}", Profile::generate(seed)).bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        assert_eq!(h, 0x9468_57b9_20d1_1fda);
    }
}
