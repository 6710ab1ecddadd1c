//! `MemoryIngressAdapter`: where local source chunks enter the runtime.
//!
//! The source side pushes through a [`SourceFeeder`]; flow drivers read with
//! [`MemoryIngressAdapter::read_flow`]. Each flow's chunks wait in a kcoro channel; the
//! bytes waiting across all flows are bounded by `max_buffered` with credit, so a source
//! that outruns the runtime parks (one backpressure event per park) until a read drains.
//!
//! # Invariants
//! - buffered bytes = pushed − read ≤ `max_buffered` (peak recorded; the audit checks it).
//! - flows open now (opening, open, half-closed, draining) ≤ `max_flows`; terminal flows
//!   do not count against the cap.
//! - each lifecycle counter moves once, at the transition that defines it.
//! - reads of a terminal flow fail with `FlowTerminal`.
//!
//! The state lock is never held across a park: reads clone the flow's receiver first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kcoro::chan::{self, Receiver, Sender};
use serde::Serialize;

use super::source::SourceChunk;
use crate::contract::{AdapterChunk, CapabilitySet, FlowDescriptor, FlowLifecycle, FlowState};
use crate::error::{AdapterError, Result};
use crate::mutant::{Mutant, MutantHook};
use crate::session::{CreditGiver, CreditSender, credit};

/// Counters of an ingress adapter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngressCounters {
    /// Flows that reached `open`.
    pub flows_opened: u64,
    /// Flows that reached `closed`.
    pub flows_closed: u64,
    /// Flows that reached `reset`.
    pub flows_reset: u64,
    /// Flows that reached `failed`.
    pub flows_failed: u64,
    /// Chunks accepted from the source.
    pub chunks: u64,
    /// Bytes accepted from the source.
    pub bytes: u64,
    /// Source chunks refused as malformed.
    pub malformed_rejected: u64,
    /// Times the source parked for buffer room.
    pub backpressure_events: u64,
    /// Reads refused because the flow was terminal.
    pub reads_after_close_rejected: u64,
    /// Most bytes buffered at once.
    pub peak_buffered: u64,
}

struct IngressFlow {
    lifecycle: FlowLifecycle,
    tx: Sender<SourceChunk>,
    rx: Receiver<SourceChunk>,
    last_pushed: u64,
}

struct State {
    flows: BTreeMap<String, IngressFlow>,
    open_now: usize,
    counters: IngressCounters,
}

struct Inner {
    max_flows: usize,
    max_chunk: u64,
    caps: CapabilitySet,
    state: Mutex<State>,
    buffered: AtomicU64,
    giver: CreditGiver,
}

/// The ingress adapter; clones share one adapter.
#[derive(Clone)]
pub struct MemoryIngressAdapter {
    inner: Arc<Inner>,
}

/// The source's end: pushes chunks, parking while the buffer is full.
pub struct SourceFeeder {
    adapter: MemoryIngressAdapter,
    credit: CreditSender,
    hook: MutantHook,
}

impl MemoryIngressAdapter {
    /// An adapter for at most `max_flows` open flows, chunks up to `max_chunk` and
    /// `max_buffered` bytes waiting; `caps` decide which transitions are allowed.
    pub fn new(
        max_flows: usize,
        max_chunk: u64,
        max_buffered: u64,
        caps: CapabilitySet,
        hook: MutantHook,
    ) -> (MemoryIngressAdapter, SourceFeeder) {
        let (credit, giver) = credit(max_buffered);
        let state = State { flows: BTreeMap::new(), open_now: 0, counters: IngressCounters::default() };
        let inner = Arc::new(Inner {
            max_flows,
            max_chunk,
            caps,
            state: Mutex::new(state),
            buffered: AtomicU64::new(0),
            giver,
        });
        let adapter = MemoryIngressAdapter { inner };
        (adapter.clone(), SourceFeeder { adapter, credit, hook })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a flow (`new → opening`); refused past `max_flows` flows open now.
    pub fn open_flow(&self, desc: &FlowDescriptor) -> Result<()> {
        desc.validate()?;
        let mut st = self.state();
        if st.flows.contains_key(&desc.id) {
            return Err(AdapterError::FlowExists(desc.id.clone()));
        }
        if st.open_now >= self.inner.max_flows {
            return Err(AdapterError::ResourceLimit(format!("{} flows open", st.open_now)));
        }
        let mut lifecycle = FlowLifecycle::new(desc.id.clone());
        lifecycle.transition_to(FlowState::Opening, &self.inner.caps)?;
        let (tx, rx) = chan::unlimited();
        st.flows.insert(desc.id.clone(), IngressFlow { lifecycle, tx, rx, last_pushed: 0 });
        st.open_now += 1;
        Ok(())
    }

    /// Moves `id` to `to`, counting the transition once.
    pub fn transition(&self, id: &str, to: FlowState) -> Result<()> {
        let mut st = self.state();
        let st = &mut *st;
        let flow = st.flows.get_mut(id).ok_or_else(|| AdapterError::FlowNotFound(id.to_string()))?;
        flow.lifecycle.transition_to(to, &self.inner.caps)?;
        let c = &mut st.counters;
        match to {
            FlowState::Open => c.flows_opened += 1,
            FlowState::Closed => c.flows_closed += 1,
            FlowState::Reset => c.flows_reset += 1,
            FlowState::Failed => c.flows_failed += 1,
            _ => {}
        }
        if to.is_terminal() {
            st.open_now -= 1;
            // Whatever the source queued for this flow is dropped with it, and its room
            // returned, so a flow that ends early cannot starve the others.
            flow.tx.close();
            let mut freed = 0;
            while let Ok(chunk) = flow.rx.try_recv() {
                freed += chunk.byte_count;
            }
            if freed > 0 {
                self.inner.buffered.fetch_sub(freed, Ordering::AcqRel);
                self.inner.giver.grant(freed);
            }
        }
        Ok(())
    }

    /// Closes `id`.
    pub fn close_flow(&self, id: &str) -> Result<()> {
        self.transition(id, FlowState::Closed)
    }

    /// Resets `id`. The reason is a class (`source_reset`), never data.
    pub fn reset_flow(&self, id: &str, _reason: &'static str) -> Result<()> {
        self.transition(id, FlowState::Reset)
    }

    /// The next chunk of `id`, parking until the source offers one. Refused once the flow
    /// is terminal.
    pub fn read_flow(&self, id: &str) -> Result<(AdapterChunk, Vec<u8>)> {
        let rx = {
            let mut st = self.state();
            let st = &mut *st;
            let flow = st.flows.get(id).ok_or_else(|| AdapterError::FlowNotFound(id.to_string()))?;
            let state = flow.lifecycle.state();
            if state.is_terminal() {
                st.counters.reads_after_close_rejected += 1;
                return Err(AdapterError::FlowTerminal { flow: id.to_string(), state });
            }
            flow.rx.clone()
        };
        let chunk = rx.recv().map_err(|_| AdapterError::FlowTerminal {
            flow: id.to_string(),
            state: self.state_of(id).unwrap_or(FlowState::Closed),
        })?;
        let len = chunk.byte_count;
        self.inner.buffered.fetch_sub(len, Ordering::AcqRel);
        self.inner.giver.grant(len);
        let meta = AdapterChunk {
            flow_id: chunk.flow_id,
            sequence: chunk.sequence,
            byte_count: len,
            fin: chunk.fin,
            reset: chunk.reset,
            half_close: chunk.half_close,
            metadata_class: if len == 0 { "control" } else { "data" },
            backpressure: false,
        };
        Ok((meta, chunk.data.unwrap_or_default()))
    }

    /// The state of `id`.
    pub fn state_of(&self, id: &str) -> Option<FlowState> {
        self.state().flows.get(id).map(|f| f.lifecycle.state())
    }

    /// The lifecycle path of `id`.
    pub fn path_of(&self, id: &str) -> Option<Vec<FlowState>> {
        self.state().flows.get(id).map(|f| f.lifecycle.path().to_vec())
    }

    /// Flows open now (not terminal).
    pub fn open_now(&self) -> usize {
        self.state().open_now
    }

    /// Bytes waiting now.
    pub fn buffered(&self) -> u64 {
        self.inner.buffered.load(Ordering::Acquire)
    }

    /// The counters.
    pub fn summary(&self) -> IngressCounters {
        self.state().counters
    }
}

impl SourceFeeder {
    /// Offers one chunk. Malformed chunks are refused and counted; a full buffer parks the
    /// caller (counted once per park). Returns whether it had to wait.
    pub fn push(&mut self, chunk: SourceChunk) -> Result<bool> {
        let adapter = &self.adapter;
        if let Err(e) = chunk.validate(adapter.inner.max_chunk) {
            adapter.state().counters.malformed_rejected += 1;
            return Err(e);
        }
        {
            let mut st = adapter.state();
            let flow = st
                .flows
                .get_mut(&chunk.flow_id)
                .ok_or_else(|| AdapterError::FlowNotFound(chunk.flow_id.clone()))?;
            let state = flow.lifecycle.state();
            if state.is_terminal() {
                return Err(AdapterError::FlowTerminal { flow: chunk.flow_id.clone(), state });
            }
            if chunk.sequence <= flow.last_pushed {
                let last = flow.last_pushed;
                st.counters.malformed_rejected += 1;
                return Err(AdapterError::InvalidFlow(format!(
                    "{}: sequence {} after {last}",
                    chunk.flow_id, chunk.sequence
                )));
            }
            flow.last_pushed = chunk.sequence;
        }
        let len = chunk.byte_count;
        let mut waited = false;
        if !self.hook.is(Mutant::IgnoresSourceBackpressure) {
            let on_wait = || {
                waited = true;
                adapter.state().counters.backpressure_events += 1;
            };
            if self.credit.acquire(len, on_wait).is_err() {
                return Err(AdapterError::Backpressure(chunk.flow_id));
            }
        }
        let now = adapter.inner.buffered.fetch_add(len, Ordering::AcqRel) + len;
        let tx = {
            let mut st = adapter.state();
            st.counters.chunks += 1;
            st.counters.bytes += len;
            st.counters.peak_buffered = st.counters.peak_buffered.max(now);
            st.flows.get(&chunk.flow_id).map(|f| f.tx.clone())
        };
        let flow_id = chunk.flow_id.clone();
        match tx.map(|tx| tx.send(chunk)) {
            Some(Ok(())) => Ok(waited),
            _ => {
                // The flow ended while we waited: give the room back.
                adapter.inner.buffered.fetch_sub(len, Ordering::AcqRel);
                adapter.inner.giver.grant(len);
                Err(AdapterError::FlowTerminal { flow: flow_id, state: FlowState::Closed })
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::local::source::{SourceModel, generate_source_plan};

    fn adapter(max_flows: usize, max_buffered: u64) -> (MemoryIngressAdapter, SourceFeeder) {
        MemoryIngressAdapter::new(max_flows, 1024, max_buffered, CapabilitySet::all(), MutantHook::NONE)
    }

    #[test]
    fn flow_cap_counts_open_flows_not_flows_ever_opened() {
        kcoro::sim::run(1, || {
            let (a, _f) = adapter(2, 4096);
            a.open_flow(&FlowDescriptor::new("a", "echo")).unwrap();
            a.open_flow(&FlowDescriptor::new("b", "echo")).unwrap();
            assert!(matches!(
                a.open_flow(&FlowDescriptor::new("c", "echo")),
                Err(AdapterError::ResourceLimit(_))
            ));
            a.transition("a", FlowState::Reset).unwrap();
            a.open_flow(&FlowDescriptor::new("c", "echo")).expect("a reset flow frees its slot");
            assert!(matches!(
                a.open_flow(&FlowDescriptor::new("b", "echo")),
                Err(AdapterError::FlowExists(_))
            ));
            assert_eq!(a.open_now(), 2);
        });
    }

    #[test]
    fn reads_drain_the_buffer_and_reads_after_close_fail() {
        kcoro::sim::run(2, || {
            let (a, mut feeder) = adapter(4, 4096);
            let plan = generate_source_plan(SourceModel::SlowDrip, 1, 1, 1024).unwrap();
            let id = plan.flows[0].id.clone();
            a.open_flow(&FlowDescriptor::new(id.clone(), "echo")).unwrap();
            let total: u64 = plan.flows[0].chunks.iter().map(|c| c.byte_count).sum();
            for c in plan.flows[0].chunks.clone() {
                feeder.push(c).unwrap();
            }
            assert_eq!(a.buffered(), total);
            for _ in 0..12 {
                a.read_flow(&id).unwrap();
            }
            assert_eq!(a.buffered(), 0, "reads drain the buffer");
            a.transition(&id, FlowState::Open).unwrap();
            a.close_flow(&id).unwrap();
            assert!(matches!(a.read_flow(&id), Err(AdapterError::FlowTerminal { .. })));
            assert_eq!(a.summary().reads_after_close_rejected, 1);
            assert_eq!(a.summary().flows_closed, 1);
        });
    }

    #[test]
    fn a_full_buffer_parks_the_source() {
        kcoro::sim::run(3, || {
            let (a, mut feeder) = adapter(4, 1024);
            let plan = generate_source_plan(SourceModel::LargeObject, 1, 1, 1024).unwrap();
            let id = plan.flows[0].id.clone();
            a.open_flow(&FlowDescriptor::new(id.clone(), "echo")).unwrap();
            let chunks = plan.flows[0].chunks.clone();
            let source =
                kcoro::spawn(move || chunks.into_iter().map(|c| feeder.push(c).unwrap()).collect::<Vec<_>>());
            let mut spins = 0;
            while a.summary().backpressure_events == 0 && spins < 1000 {
                kcoro::yield_now();
                spins += 1;
            }
            assert_eq!(a.summary().backpressure_events, 1, "the source parked on a full buffer");
            assert!(!source.is_finished());
            assert_eq!(a.buffered(), 1024);
            for _ in 0..4 {
                a.read_flow(&id).unwrap();
            }
            let waited = source.join().unwrap();
            assert_eq!(waited, [false, false, true, false]);
            assert!(a.summary().peak_buffered <= 1024);
        });
    }
}
