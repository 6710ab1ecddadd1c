//! Capabilities an adapter offers and a runtime boundary requires, and their negotiation.
//!
//! The canonical form of a set is its names sorted; the capability hash is the hex
//! SHA-256 of that list as a compact JSON array (`["adapter_egress","adapter_ingress"]`),
//! so two parties agree on a set by comparing 64 hex digits.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::{AdapterError, Result};

/// One thing an adapter can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Accepts bytes from outside.
    AdapterIngress,
    /// Delivers bytes outside.
    AdapterEgress,
    /// Follows the flow state machine.
    FlowLifecycle,
    /// Can reset a flow.
    FlowReset,
    /// Can half-close a flow.
    FlowHalfClose,
    /// Surfaces backpressure instead of buffering without bound.
    FlowBackpressure,
    /// Honours priority classes.
    FlowPriority,
    /// Carries counts and classes only as metadata.
    FlowMetadataOnly,
    /// Maps flows onto runtime streams.
    RuntimeStreamMapping,
    /// Emits only trace-safe summaries.
    TraceSafeAdapterSummary,
}

impl Capability {
    /// Every capability, in canonical (name) order.
    pub const ALL: [Capability; 10] = [
        Capability::AdapterEgress,
        Capability::AdapterIngress,
        Capability::FlowBackpressure,
        Capability::FlowHalfClose,
        Capability::FlowLifecycle,
        Capability::FlowMetadataOnly,
        Capability::FlowPriority,
        Capability::FlowReset,
        Capability::RuntimeStreamMapping,
        Capability::TraceSafeAdapterSummary,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Capability::AdapterIngress => "adapter_ingress",
            Capability::AdapterEgress => "adapter_egress",
            Capability::FlowLifecycle => "flow_lifecycle",
            Capability::FlowReset => "flow_reset",
            Capability::FlowHalfClose => "flow_half_close",
            Capability::FlowBackpressure => "flow_backpressure",
            Capability::FlowPriority => "flow_priority",
            Capability::FlowMetadataOnly => "flow_metadata_only",
            Capability::RuntimeStreamMapping => "runtime_stream_mapping",
            Capability::TraceSafeAdapterSummary => "trace_safe_adapter_summary",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities, kept in canonical order by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySet(BTreeSet<&'static str>);

impl CapabilitySet {
    /// Every capability.
    pub fn all() -> Self {
        Capability::ALL.into_iter().collect()
    }

    /// Whether `c` is in the set.
    pub fn contains(&self, c: Capability) -> bool {
        self.0.contains(c.name())
    }

    /// Adds `c`.
    pub fn insert(&mut self, c: Capability) {
        self.0.insert(c.name());
    }

    /// Removes `c`.
    pub fn remove(&mut self, c: Capability) {
        self.0.remove(c.name());
    }

    /// The sorted names.
    pub fn canonical(&self) -> Vec<&'static str> {
        self.0.iter().copied().collect()
    }

    /// Hex SHA-256 of the canonical list as a compact JSON array.
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(&self.canonical()).unwrap_or_default();
        crate::digest::sha256_hex(json.as_bytes())
    }

    /// Number of capabilities.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No capabilities.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Capability> for CapabilitySet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        CapabilitySet(iter.into_iter().map(Capability::name).collect())
    }
}

/// The outcome of a successful negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// What both sides will use: the offered capabilities that were required or optional.
    pub agreed: CapabilitySet,
    /// Hash of `agreed`.
    pub hash: String,
}

/// Agrees on capabilities: fails with `CapabilityMismatch` listing every required
/// capability the offer lacks (so a downgrade to ingress + lifecycle is refused).
pub fn negotiate(offered: &CapabilitySet, required: &CapabilitySet) -> Result<Negotiated> {
    let missing: Vec<&str> = required.0.iter().copied().filter(|c| !offered.0.contains(c)).collect();
    if !missing.is_empty() {
        return Err(AdapterError::CapabilityMismatch(missing.join(",")));
    }
    let agreed = offered.clone();
    let hash = agreed.hash();
    Ok(Negotiated { agreed, hash })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn canonical_order_and_hash() {
        let set: CapabilitySet =
            [Capability::AdapterIngress, Capability::AdapterEgress].into_iter().collect();
        assert_eq!(set.canonical(), ["adapter_egress", "adapter_ingress"]);
        // sha256 of `["adapter_egress","adapter_ingress"]`.
        assert_eq!(set.hash(), crate::digest::sha256_hex(br#"["adapter_egress","adapter_ingress"]"#));
        assert_eq!(set.hash().len(), 64);
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.name()), Some(c));
        }
        let names: Vec<_> = Capability::ALL.iter().map(|c| c.name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "ALL is in canonical order");
    }

    #[test]
    fn downgrade_is_rejected() {
        let downgrade: CapabilitySet =
            [Capability::AdapterIngress, Capability::FlowLifecycle].into_iter().collect();
        let err = negotiate(&downgrade, &CapabilitySet::all()).unwrap_err();
        match err {
            AdapterError::CapabilityMismatch(m) => {
                assert!(m.contains("adapter_egress") && m.contains("runtime_stream_mapping"), "{m}")
            }
            other => panic!("unexpected {other:?}"),
        }
        let ok = negotiate(&CapabilitySet::all(), &CapabilitySet::all()).unwrap();
        assert_eq!(ok.hash, CapabilitySet::all().hash());
    }
}
