//! The runtime adapter boundary: capability negotiation, then flow ↔ stream mapping.
//!
//! An adapter offers capabilities; the boundary requires a set and refuses the session
//! when any is missing. Each flow then gets its own session stream, opened in the order the
//! profile's mapping policy gives; the boundary records the mapping both ways, and the
//! egress side finds a stream's flow only through it.
//!
//! # Invariants
//! - the mapping is a bijection between mapped flows and opened streams.
//! - a stream's entry is recorded before anything can arrive from it: the recording
//!   happens before `map_flow` returns, and only the flow's own coroutines, started after
//!   that, put its stream's envelopes on the carrier.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::contract::capability::Negotiated;
use crate::contract::{Capability, CapabilitySet, negotiate};
use crate::error::Result;
use crate::mutant::{Mutant, MutantHook};
use crate::session::{ClientStream, Session, StreamId};

/// Everything the local runtime boundary requires of an adapter.
pub fn required_capabilities() -> CapabilitySet {
    CapabilitySet::all()
}

/// A downgraded offer (ingress and lifecycle only): negotiation must refuse it.
pub fn downgrade_offer() -> CapabilitySet {
    [Capability::AdapterIngress, Capability::FlowLifecycle].into_iter().collect()
}

#[derive(Debug, Default)]
struct Maps {
    by_flow: BTreeMap<String, StreamId>,
    by_stream: BTreeMap<StreamId, String>,
}

/// The boundary between adapter flows and runtime streams.
#[derive(Debug)]
pub struct RuntimeBoundary {
    session: Session,
    negotiated: Negotiated,
    maps: Mutex<Maps>,
    hook: MutantHook,
}

impl RuntimeBoundary {
    /// Negotiates `offered` against [`required_capabilities`] and binds to `session`.
    pub fn new(session: Session, offered: &CapabilitySet, hook: MutantHook) -> Result<Self> {
        let negotiated = negotiate(offered, &required_capabilities())?;
        Ok(RuntimeBoundary { session, negotiated, maps: Mutex::new(Maps::default()), hook })
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The agreed capabilities and their hash.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Opens `flow`'s stream (parking for a free slot) tagged with its target, and records
    /// the mapping.
    pub fn map_flow(&self, flow: &str, priority: u8, target: &str) -> Result<ClientStream> {
        let stream = self.session.open_with(priority, target)?;
        let mut maps = self.maps();
        maps.by_flow.insert(flow.to_string(), stream.id);
        maps.by_stream.insert(stream.id, flow.to_string());
        Ok(stream)
    }

    /// The flow a stream carries.
    pub fn flow_for_stream(&self, stream: StreamId) -> Option<String> {
        let maps = self.maps();
        if self.hook.is(Mutant::WrongFlowStreamMapping) {
            // The faulty lookup: the next stream's flow (wrapping), an off-by-one table.
            let next = maps.by_stream.range(stream + 1..).next().or_else(|| maps.by_stream.iter().next());
            return next.map(|(_, f)| f.clone());
        }
        maps.by_stream.get(&stream).cloned()
    }

    /// The stream a flow was mapped to.
    pub fn stream_for_flow(&self, flow: &str) -> Option<StreamId> {
        self.maps().by_flow.get(flow).copied()
    }

    /// (flow, stream) pairs in flow order.
    pub fn mapping(&self) -> Vec<(String, StreamId)> {
        self.maps().by_flow.iter().map(|(f, s)| (f.clone(), *s)).collect()
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }
}
