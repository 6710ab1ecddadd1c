//! The deterministic local adapter: memory ingress and egress, source models and the sink.
//! Everything here is in-process and seeded; it exists to drive the real runtime stack
//! with known inputs and check every byte that comes out.

pub mod egress;
pub mod ingress;
pub mod sink;
pub mod source;

pub use egress::{EgressCounters, MemoryEgressAdapter};
pub use ingress::{IngressCounters, MemoryIngressAdapter, SourceFeeder};
pub use sink::{ExpectedFlow, LocalSink, SINK_MODEL, SinkCounters, SinkVerdict, Terminal};
pub use source::{
    FlowPlan, SourceChunk, SourceModel, SourcePlan, flow_id, generate_source_plan, payload_bytes,
};

use crate::contract::is_sensitive;
use crate::error::{AdapterError, Result};

/// Most flows a local adapter runs.
pub const LOCAL_MAX_FLOWS: usize = 64;
/// Most bytes a local adapter buffers.
pub const LOCAL_MAX_BUFFERED: u64 = 8 << 20;
/// Largest local chunk.
pub const LOCAL_MAX_CHUNK: u64 = 256 << 10;
/// Most trace events of one local run.
pub const LOCAL_MAX_EVENTS: usize = 1 << 18;

/// The local adapter's own settings (the profile supplies the policies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Adapter name; not sensitive.
    pub name: String,
    /// Runtime id; not sensitive.
    pub runtime_id: String,
    /// Most flows (1..=64).
    pub max_flows: usize,
    /// Trace events kept (1..=2^18).
    pub max_events: usize,
    /// Plan and schedule seed; `None` uses the profile's seed.
    pub seed: Option<u64>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            name: "local-adapter".into(),
            runtime_id: "runtime-local-adapter".into(),
            max_flows: 16,
            max_events: 4096,
            seed: None,
        }
    }
}

impl LocalConfig {
    /// Checks the settings against the local adapter's limits.
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [("name", &self.name), ("runtime id", &self.runtime_id)] {
            if v.is_empty() {
                return Err(AdapterError::InvalidConfig(format!("empty {what}")));
            }
            if is_sensitive(v) {
                return Err(AdapterError::InvalidConfig(format!("{what} looks sensitive (value redacted)")));
            }
        }
        if self.max_flows == 0 || self.max_flows > LOCAL_MAX_FLOWS {
            return Err(AdapterError::InvalidConfig(format!(
                "max_flows {} outside 1..={LOCAL_MAX_FLOWS}",
                self.max_flows
            )));
        }
        if self.max_events == 0 || self.max_events > LOCAL_MAX_EVENTS {
            return Err(AdapterError::InvalidConfig(format!(
                "max_events {} outside 1..={LOCAL_MAX_EVENTS}",
                self.max_events
            )));
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn config_limits_and_names() {
        assert!(LocalConfig::default().validate().is_ok());
        let bad = [
            LocalConfig { name: "my-secret".into(), ..Default::default() },
            LocalConfig { runtime_id: "TOKEN-1".into(), ..Default::default() },
            LocalConfig { name: String::new(), ..Default::default() },
            LocalConfig { max_flows: 65, ..Default::default() },
            LocalConfig { max_flows: 0, ..Default::default() },
            LocalConfig { max_events: LOCAL_MAX_EVENTS + 1, ..Default::default() },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(AdapterError::InvalidConfig(_))), "{c:?}");
        }
    }
}
