//! The adapter contract: what every adapter (ingress, egress, carrier) promises, whatever
//! moves its bytes. Limits, descriptors, chunks, sensitive-value rules; the flow lifecycle
//! lives in [`flow`], capabilities and their negotiation in [`capability`].
//!
//! A chunk crossing the contract carries counts and flags only ([`AdapterChunk`]); the
//! bytes themselves travel beside it and never reach a trace or report.

pub mod capability;
pub mod flow;

use serde::Serialize;

pub use capability::{Capability, CapabilitySet, negotiate};
pub use flow::{FlowLifecycle, FlowState};

use crate::error::{AdapterError, Result};

/// Hard ceilings no configuration may pass.
pub mod limits {
    /// Flows open at once in one adapter.
    pub const MAX_FLOWS: usize = 256;
    /// Bytes one flow may carry in one direction.
    pub const MAX_FLOW_BYTES: u64 = 8 << 20;
    /// Bytes an adapter may hold buffered.
    pub const MAX_BUFFERED_BYTES: u64 = 16 << 20;
    /// Trace events one adapter may emit.
    pub const MAX_EVENTS: usize = 1 << 20;
    /// Defaults when a configuration leaves a limit out.
    pub const DEFAULT_MAX_FLOWS: usize = 16;
    /// Default bytes per flow.
    pub const DEFAULT_MAX_FLOW_BYTES: u64 = 2 << 20;
    /// Default buffered bytes.
    pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 2 << 20;
    /// Default trace events.
    pub const DEFAULT_MAX_EVENTS: usize = 4096;
}

/// Which way a flow carries bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Outside world → runtime.
    Ingress,
    /// Runtime → outside world.
    Egress,
    /// Both.
    Bidirectional,
}

/// What may accompany a flow's chunks as metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataPolicy {
    /// Counts, classes and flags only (the only policy a local adapter accepts).
    MetadataOnly,
}

/// A flow's identity and limits, given to `open_flow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDescriptor {
    /// Non-empty, not sensitive; `local-flow-01` style for the local adapter.
    pub id: String,
    /// A coarse class (`bulk`, `interactive`, …).
    pub class: &'static str,
    /// Which way bytes go.
    pub direction: Direction,
    /// The request class the proxy sees (`object`, `stream`, `request_response`).
    pub request_class: &'static str,
    /// 0 (highest) ..= 7.
    pub priority_class: u8,
    /// Names the synthetic target; not sensitive.
    pub target_hint: String,
    /// Largest read, 1 B ..= 8 MiB.
    pub max_read_bytes: u64,
    /// Largest write, 1 B ..= 8 MiB.
    pub max_write_bytes: u64,
    /// What metadata may travel.
    pub metadata_policy: MetadataPolicy,
}

impl FlowDescriptor {
    /// A descriptor with local-adapter defaults for everything but the id and target.
    pub fn new(id: impl Into<String>, target_hint: impl Into<String>) -> Self {
        FlowDescriptor {
            id: id.into(),
            class: "interactive",
            direction: Direction::Bidirectional,
            request_class: "stream",
            priority_class: 3,
            target_hint: target_hint.into(),
            max_read_bytes: 1 << 20,
            max_write_bytes: 1 << 20,
            metadata_policy: MetadataPolicy::MetadataOnly,
        }
    }

    /// Checks every field against the contract.
    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() {
            return Err(AdapterError::InvalidFlow("empty flow id".into()));
        }
        reject_sensitive("flow id", &self.id)?;
        reject_sensitive("target hint", &self.target_hint)?;
        for (what, n) in [("max_read_bytes", self.max_read_bytes), ("max_write_bytes", self.max_write_bytes)]
        {
            if n == 0 || n > limits::MAX_FLOW_BYTES {
                return Err(AdapterError::InvalidFlow(format!("{what} {n} outside 1..=8 MiB")));
            }
        }
        if self.priority_class > 7 {
            return Err(AdapterError::InvalidFlow(format!("priority class {} > 7", self.priority_class)));
        }
        Ok(())
    }
}

/// What crosses the contract per chunk: counts and flags, never bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdapterChunk {
    /// The flow.
    pub flow_id: String,
    /// 1-based, strictly increasing per flow.
    pub sequence: u64,
    /// Payload length.
    pub byte_count: u64,
    /// The last chunk of the flow.
    #[serde(rename = "final")]
    pub fin: bool,
    /// The flow was reset at this chunk.
    pub reset: bool,
    /// The writer half-closed after this chunk.
    pub half_close: bool,
    /// Metadata class (`data`, `control`).
    pub metadata_class: &'static str,
    /// Producing this chunk had to wait for room.
    pub backpressure: bool,
}

impl AdapterChunk {
    /// A data chunk: `byte_count` bytes at `sequence`, the flow's last if `fin`.
    pub fn data(flow_id: impl Into<String>, sequence: u64, byte_count: u64, fin: bool) -> Self {
        AdapterChunk {
            flow_id: flow_id.into(),
            sequence,
            byte_count,
            fin,
            reset: false,
            half_close: false,
            metadata_class: "data",
            backpressure: false,
        }
    }
}

/// Substrings that mark a value as sensitive (compared lowercased).
pub const SENSITIVE_MARKERS: [&str; 7] =
    ["secret", "token", "password", "private", "credential", "key=", "raw_secret"];

/// Whether `value` looks like a secret or names one.
pub fn is_sensitive(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    SENSITIVE_MARKERS.iter().any(|m| lower.contains(m))
}

/// `value`, or `redacted` when it is sensitive.
pub fn redact(value: &str) -> &str {
    if is_sensitive(value) { "redacted" } else { value }
}

/// Fails with `InvalidConfig` naming `what` (never the value) when `value` is sensitive.
pub fn reject_sensitive(what: &str, value: &str) -> Result<()> {
    if is_sensitive(value) {
        Err(AdapterError::InvalidConfig(format!("{what} looks sensitive (value redacted)")))
    } else {
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sensitive_values_are_rejected_and_redacted() {
        for v in ["my-SECRET", "api_token", "Password1", "private-x", "credentials", "key=abc", "raw_secret"]
        {
            assert!(is_sensitive(v), "{v}");
            assert_eq!(redact(v), "redacted");
            let err = reject_sensitive("runtime id", v).unwrap_err();
            assert!(!err.to_string().contains(v), "the error must not echo the value");
        }
        for v in ["local-adapter", "local-flow-01", "keyboard", "echo"] {
            assert!(!is_sensitive(v), "{v}");
            assert_eq!(redact(v), v);
        }
    }

    #[test]
    fn descriptor_validation() {
        let ok = FlowDescriptor::new("local-flow-01", "echo");
        assert!(ok.validate().is_ok());
        let mut d = ok.clone();
        d.id.clear();
        assert!(matches!(d.validate(), Err(AdapterError::InvalidFlow(_))));
        let mut d = ok.clone();
        d.max_write_bytes = 0;
        assert!(d.validate().is_err());
        let mut d = ok.clone();
        d.max_read_bytes = limits::MAX_FLOW_BYTES + 1;
        assert!(d.validate().is_err());
        let mut d = ok.clone();
        d.target_hint = "token-target".into();
        assert!(matches!(d.validate(), Err(AdapterError::InvalidConfig(_))));
        let mut d = ok;
        d.id = "flow-secret".into();
        assert!(d.validate().is_err());
    }
}
