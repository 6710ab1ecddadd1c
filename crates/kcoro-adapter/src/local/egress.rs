//! `MemoryEgressAdapter`: where flows leave the runtime, into a [`LocalSink`].
//!
//! Owned by one coroutine (the egress pump), so it needs no lock. Every flow it opens it
//! also ends: `closed` on the final chunk, `reset` or `failed` on those events. Writes to
//! a terminal flow are refused here, before the sink, and counted.

use std::collections::BTreeMap;

use serde::Serialize;

use super::sink::{LocalSink, Terminal};
use crate::contract::{AdapterChunk, CapabilitySet, FlowDescriptor, FlowLifecycle, FlowState};
use crate::error::{AdapterError, Result};
use crate::mutant::{Mutant, MutantHook};

/// Counters of an egress adapter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EgressCounters {
    /// Flows opened.
    pub flows_opened: u64,
    /// Flows closed.
    pub flows_closed: u64,
    /// Flows reset.
    pub flows_reset: u64,
    /// Flows failed.
    pub flows_failed: u64,
    /// Chunks written to the sink.
    pub chunks: u64,
    /// Writes refused because the flow was terminal.
    pub post_close_rejected: u64,
}

/// The egress adapter and its sink.
pub struct MemoryEgressAdapter {
    flows: BTreeMap<String, FlowLifecycle>,
    sink: LocalSink,
    caps: CapabilitySet,
    counters: EgressCounters,
    hook: MutantHook,
}

impl MemoryEgressAdapter {
    /// An adapter writing into `sink`.
    pub fn new(sink: LocalSink, caps: CapabilitySet, hook: MutantHook) -> Self {
        MemoryEgressAdapter { flows: BTreeMap::new(), sink, caps, counters: EgressCounters::default(), hook }
    }

    /// Opens a flow (`new → opening → open`).
    pub fn open_flow(&mut self, desc: &FlowDescriptor) -> Result<()> {
        desc.validate()?;
        if self.flows.contains_key(&desc.id) {
            return Err(AdapterError::FlowExists(desc.id.clone()));
        }
        let mut f = FlowLifecycle::new(desc.id.clone());
        f.transition_to(FlowState::Opening, &self.caps)?;
        f.transition_to(FlowState::Open, &self.caps)?;
        self.flows.insert(desc.id.clone(), f);
        self.counters.flows_opened += 1;
        Ok(())
    }

    /// Whether `id` was opened.
    pub fn has_flow(&self, id: &str) -> bool {
        self.flows.contains_key(id)
    }

    /// Writes one chunk that arrived on `stream`; a final chunk closes the flow.
    pub fn write_flow(&mut self, chunk: &AdapterChunk, data: &[u8], stream: u64) -> Result<()> {
        let id = &chunk.flow_id;
        let flow = self.flows.get(id).ok_or_else(|| AdapterError::FlowNotFound(id.clone()))?;
        let state = flow.state();
        if state.is_terminal() && !self.hook.is(Mutant::AcceptsPostCloseWrite) {
            self.counters.post_close_rejected += 1;
            return Err(AdapterError::FlowTerminal { flow: id.clone(), state });
        }
        self.sink.write(chunk, data, stream)?;
        self.counters.chunks += 1;
        if chunk.fin {
            self.end(id, FlowState::Closed)?;
        }
        Ok(())
    }

    /// Ends `id` with a reset or error event that arrived on `stream`.
    pub fn end_flow(&mut self, id: &str, terminal: Terminal, stream: u64) -> Result<()> {
        let state = match terminal {
            Terminal::Final => FlowState::Closed,
            Terminal::Reset => FlowState::Reset,
            Terminal::Error => FlowState::Failed,
        };
        let flow = self.flows.get(id).ok_or_else(|| AdapterError::FlowNotFound(id.to_string()))?;
        if flow.state().is_terminal() {
            self.counters.post_close_rejected += 1;
            return Err(AdapterError::FlowTerminal { flow: id.to_string(), state: flow.state() });
        }
        self.sink.end(id, terminal, stream)?;
        self.end(id, state)
    }

    fn end(&mut self, id: &str, to: FlowState) -> Result<()> {
        let flow = self.flows.get_mut(id).ok_or_else(|| AdapterError::FlowNotFound(id.to_string()))?;
        if flow.state().is_terminal() {
            return Ok(()); // only reachable through the post-close mutant
        }
        flow.transition_to(to, &self.caps)?;
        match to {
            FlowState::Closed => self.counters.flows_closed += 1,
            FlowState::Reset => self.counters.flows_reset += 1,
            _ => self.counters.flows_failed += 1,
        }
        Ok(())
    }

    /// Flows opened and not yet ended.
    pub fn open_flows(&self) -> Vec<String> {
        self.flows.iter().filter(|(_, f)| !f.state().is_terminal()).map(|(id, _)| id.clone()).collect()
    }

    /// The state of `id`.
    pub fn state_of(&self, id: &str) -> Option<FlowState> {
        self.flows.get(id).map(FlowLifecycle::state)
    }

    /// The counters.
    pub fn summary(&self) -> EgressCounters {
        self.counters
    }

    /// The sink.
    pub fn sink(&self) -> &LocalSink {
        &self.sink
    }

    /// Gives up the sink.
    pub fn into_sink(self) -> LocalSink {
        self.sink
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn chunk(seq: u64, fin: bool) -> AdapterChunk {
        AdapterChunk::data("f", seq, 1, fin)
    }

    #[test]
    fn closes_on_final_and_refuses_post_close_writes_before_the_sink() {
        let mut e = MemoryEgressAdapter::new(LocalSink::new(64), CapabilitySet::all(), MutantHook::NONE);
        e.open_flow(&FlowDescriptor::new("f", "echo")).unwrap();
        assert!(matches!(e.open_flow(&FlowDescriptor::new("f", "echo")), Err(AdapterError::FlowExists(_))));
        e.write_flow(&chunk(1, true), b"x", 1).unwrap();
        assert_eq!(e.state_of("f"), Some(FlowState::Closed));
        assert!(e.open_flows().is_empty(), "egress flows are closed");
        assert!(matches!(e.write_flow(&chunk(2, false), b"x", 1), Err(AdapterError::FlowTerminal { .. })));
        assert!(e.end_flow("f", Terminal::Reset, 1).is_err());
        assert_eq!(e.summary().post_close_rejected, 2);
        assert_eq!(e.sink().counters().post_close_rejected, 0, "the adapter refused first");
    }
}
