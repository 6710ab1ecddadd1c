//! The coroutines of one run, on the runtime the caller provides:
//!
//! ```text
//! feeder ──chunks──▶ ingress ◀──read── driver (one per flow) ──stream──▶ target (per stream)
//!                                         │ spawns                            │
//!                                  response pump ◀──────stream───────────────┘
//!                                         │ envelopes
//!                                  [carrier queue] ──▶ egress pump ──▶ egress ──▶ sink
//! ```
//!
//! The mapper (the main coroutine) opens streams in mapping order, so flows get slots in
//! the order the feeder serves them and a flow never waits on data stuck behind a flow
//! that waits for a slot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kcoro::chan::Receiver;

use super::Plan;
use crate::boundary::RuntimeBoundary;
use crate::contract::{AdapterChunk, CapabilitySet, FlowState};
use crate::error::{AdapterError, Result};
use crate::local::{
    LocalSink, MemoryEgressAdapter, MemoryIngressAdapter, SourceChunk, SourceFeeder, Terminal,
};
use crate::mutant::{Mutant, MutantHook};
use crate::profile::LifecyclePolicy;
use crate::proxy::{
    CODE_SOURCE_RESET, Carrier, CarrierCounters, Envelope, EnvelopeKind, TargetCounters, TargetKind, carrier,
    pump_responses, run_target,
};
use crate::session::{ClientStream, Session, SessionConfig, SessionStats, StreamError};
use crate::trace::{TraceEvent, Tracer};

/// Everything a finished pipeline hands back to the runner.
pub(crate) struct Finished {
    pub ingress: MemoryIngressAdapter,
    pub egress: MemoryEgressAdapter,
    pub session: SessionStats,
    pub carrier: Arc<CarrierCounters>,
    pub targets: Arc<TargetCounters>,
    pub mapping: Vec<(String, u64)>,
    pub capability_hash: String,
    pub probe_rejected_by_adapter: bool,
    pub flow_errors: Vec<String>,
}

/// Runs the whole pipeline; called on a coroutine of the run's runtime.
pub(crate) fn run(plan: Arc<Plan>, tracer: Tracer, hook: MutantHook) -> Result<Finished> {
    let p = &plan.profile;
    let caps = CapabilitySet::all();
    let mut start = TraceEvent::new("session_start").state("negotiating");
    if hook.is(Mutant::SecretTraceLeak) {
        start.extra.insert("session_secret", format!("{}:{:016x}", plan.runtime_id, p.seed));
    }
    tracer.emit(start);

    let (ingress, feeder) = MemoryIngressAdapter::new(
        plan.max_flows,
        p.local.max_chunk,
        p.local.max_buffered,
        caps.clone(),
        hook,
    );
    let (session, acceptor) =
        Session::new(SessionConfig { max_streams: p.stream.max_concurrent_streams, window: p.window() })?;
    let boundary = Arc::new(RuntimeBoundary::new(session.clone(), &caps, hook)?);
    let capability_hash = boundary.negotiated().hash.clone();
    let (carrier_tx, carrier_rx, carrier_counters) = carrier(&p.carrier, plan.queue_depth);
    let targets = Arc::new(TargetCounters::default());

    for f in &plan.flows {
        ingress.open_flow(&f.desc)?;
        tracer.emit(TraceEvent::new("flow_state").flow(&f.desc.id).state("opening"));
    }

    let server = {
        let targets = Arc::clone(&targets);
        let delay = Duration::from_millis(p.targets.echo_delay_ms);
        kcoro::spawn(move || {
            let mut served = Vec::new();
            while let Some(stream) = acceptor.accept() {
                let kind = TargetKind::from_name(&stream.tag).unwrap_or(TargetKind::Error);
                let targets = Arc::clone(&targets);
                served.push(kcoro::spawn(move || run_target(kind, stream, delay, &targets)));
            }
            served.into_iter().for_each(|h| {
                let _ = h.join();
            });
        })
    };

    let egress = {
        let egress = MemoryEgressAdapter::new(LocalSink::new(p.local.max_chunk), caps.clone(), hook);
        let boundary = Arc::clone(&boundary);
        let plan = Arc::clone(&plan);
        let tracer = tracer.clone();
        kcoro::spawn(move || egress_pump(carrier_rx, egress, &boundary, &plan, &tracer, hook))
    };

    let feeder = {
        let chunks = plan.feed_order();
        let tracer = tracer.clone();
        kcoro::spawn(move || feed(feeder, chunks, &tracer))
    };

    let mut drivers = Vec::new();
    for &i in &plan.mapping_order {
        let f = &plan.flows[i];
        let stream = boundary.map_flow(&f.desc.id, f.desc.priority_class, f.target.name())?;
        tracer.emit(TraceEvent::new("stream_mapped").flow(&f.desc.id).stream(stream.id));
        ingress.transition(&f.desc.id, FlowState::Open)?;
        tracer.emit(TraceEvent::new("flow_state").flow(&f.desc.id).state("open"));
        let ctx = DriverCtx {
            id: f.desc.id.clone(),
            ingress: ingress.clone(),
            carrier: carrier_tx.clone(),
            tracer: tracer.clone(),
            lifecycle: p.adapter.lifecycle,
            hook,
        };
        drivers.push(kcoro::spawn(move || drive(ctx, stream)));
    }
    drop(carrier_tx);
    let flow_errors: Vec<String> = drivers
        .into_iter()
        .filter_map(|d| match d.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.class().to_string()),
            Err(e) => Some(format!("driver: {e}")),
        })
        .collect();
    session.close();
    let fed = feeder.join().map_err(|e| AdapterError::Runtime(format!("feeder: {e}")))?;
    fed?;
    server.join().map_err(|e| AdapterError::Runtime(format!("server: {e}")))?;
    let mut egress = egress.join().map_err(|e| AdapterError::Runtime(format!("egress: {e}")))?;

    // The lifecycle probe: one write to a flow the egress has closed must be refused.
    let probe_rejected_by_adapter =
        match plan.flows.iter().find(|f| egress.state_of(&f.desc.id) == Some(FlowState::Closed)) {
            Some(f) => {
                let probe = AdapterChunk {
                    metadata_class: "probe",
                    ..AdapterChunk::data(f.desc.id.clone(), u64::MAX, 0, false)
                };
                let before = egress.summary().post_close_rejected;
                let _ = egress.write_flow(&probe, &[], 0);
                egress.summary().post_close_rejected == before + 1
            }
            None => true,
        };

    Ok(Finished {
        ingress,
        egress,
        session: session.stats(),
        carrier: carrier_counters,
        targets,
        mapping: boundary.mapping(),
        capability_hash,
        probe_rejected_by_adapter,
        flow_errors,
    })
}

fn feed(mut feeder: SourceFeeder, chunks: Vec<SourceChunk>, tracer: &Tracer) -> Result<()> {
    let start = kcoro::now();
    for c in chunks {
        let at = start + Duration::from_millis(c.tick);
        if kcoro::now() < at {
            kcoro::sleep_until(at);
        }
        let flow = c.flow_id.clone();
        let bytes = c.byte_count;
        match feeder.push(c) {
            Ok(waited) => {
                if waited {
                    tracer.emit(TraceEvent::new("backpressure").flow(&flow).state("ingress_buffer_full"));
                }
            }
            Err(e @ AdapterError::InvalidFlow(_)) => {
                tracer.emit(TraceEvent::new("chunk_rejected").flow(&flow).state(e.class()).bytes(bytes));
            }
            // The flow ended (its target failed it) before the source finished: drop.
            Err(AdapterError::FlowTerminal { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct DriverCtx {
    id: String,
    ingress: MemoryIngressAdapter,
    carrier: Carrier,
    tracer: Tracer,
    lifecycle: LifecyclePolicy,
    hook: MutantHook,
}

/// Moves one flow from the ingress adapter onto its stream and drives its lifecycle.
fn drive(ctx: DriverCtx, stream: ClientStream) -> Result<()> {
    let ClientStream { id: sid, mut tx, rx, .. } = stream;
    let pump = {
        let carrier = ctx.carrier.clone();
        kcoro::spawn(move || pump_responses(rx, &carrier))
    };
    let state = |s: FlowState| -> Result<()> {
        ctx.ingress.transition(&ctx.id, s)?;
        ctx.tracer.emit(TraceEvent::new("flow_state").flow(&ctx.id).stream(sid).state(s.name()));
        Ok(())
    };
    let mut source_reset = false;
    loop {
        let (meta, data) = ctx.ingress.read_flow(&ctx.id)?;
        let mut ev = TraceEvent::new("chunk_in").flow(&ctx.id).stream(sid).bytes(meta.byte_count);
        if ctx.hook.is(Mutant::PayloadTraceLeak) {
            let hex: String = data.iter().take(8).map(|b| format!("{b:02x}")).collect();
            ev.extra.insert("payload", hex);
        }
        ctx.tracer.emit(ev);
        if meta.byte_count > 0 {
            match tx.send(meta.sequence, data) {
                Ok(()) => {}
                // The target stopped reading; the response pump learns how it ended.
                Err(StreamError::Reset(_)) => break,
                Err(e) => return Err(AdapterError::Stream { stream: sid, reason: e.to_string() }),
            }
        }
        if meta.reset {
            let _ = tx.reset(CODE_SOURCE_RESET);
            source_reset = true;
            state(FlowState::Reset)?;
            break;
        }
        if meta.half_close {
            let _ = tx.finish();
            state(FlowState::HalfClosed)?;
            break;
        }
        if meta.fin {
            let _ = tx.finish();
            if ctx.lifecycle == LifecyclePolicy::DrainBeforeClose {
                state(FlowState::Draining)?;
            }
            break;
        }
    }
    let ended = pump.join().map_err(|e| AdapterError::Runtime(format!("response pump: {e}")))??;
    if source_reset {
        return Ok(());
    }
    match ended {
        Terminal::Final => {
            let now = ctx.ingress.state_of(&ctx.id);
            if now == Some(FlowState::HalfClosed) && ctx.lifecycle == LifecyclePolicy::DrainBeforeClose {
                state(FlowState::Draining)?;
            }
            state(FlowState::Closed)
        }
        Terminal::Reset => state(FlowState::Reset),
        Terminal::Error => state(FlowState::Failed),
    }
}

/// Per-stream reassembly at the egress: the chunk being assembled and the last complete
/// chunk, held back until the next envelope says whether it was the final one.
#[derive(Default)]
struct Reassembly {
    partial: Vec<u8>,
    held: Option<(u64, Vec<u8>)>,
    last_seq: u64,
}

fn egress_pump(
    rx: Receiver<Envelope>,
    mut egress: MemoryEgressAdapter,
    boundary: &RuntimeBoundary,
    plan: &Plan,
    tracer: &Tracer,
    hook: MutantHook,
) -> MemoryEgressAdapter {
    let mut streams: BTreeMap<u64, Reassembly> = BTreeMap::new();
    let service = Duration::from_millis(plan.egress_service_ms);
    for env in rx.iter() {
        if !service.is_zero() {
            kcoro::sleep(service);
        }
        let Some(flow) = boundary.flow_for_stream(env.stream) else {
            tracer.emit(TraceEvent::new("envelope_rejected").stream(env.stream).state("unknown_stream"));
            continue;
        };
        if !egress.has_flow(&flow)
            && let Some(f) = plan.flows.iter().find(|f| f.desc.id == flow)
            && egress.open_flow(&f.desc).is_ok()
        {
            tracer.emit(TraceEvent::new("egress_flow").flow(&flow).stream(env.stream).state("open"));
        }
        let r = streams.entry(env.stream).or_default();
        let write = |seq: u64, data: Vec<u8>, fin: bool, egress: &mut MemoryEgressAdapter| {
            let chunk = AdapterChunk::data(flow.clone(), seq, data.len() as u64, fin);
            let outcome = egress.write_flow(&chunk, &data, env.stream);
            if !fin && hook.is(Mutant::DuplicatesChunk) {
                let _ = egress.write_flow(&chunk, &data, env.stream);
            }
            let mut ev = TraceEvent::new("chunk_out").flow(&flow).stream(env.stream).bytes(chunk.byte_count);
            if let Err(e) = outcome {
                ev = ev.state(e.class());
            } else if fin {
                ev = ev.state("final");
            }
            tracer.emit(ev);
        };
        match env.kind {
            EnvelopeKind::Data { seq, bytes, last_fragment } => {
                r.partial.extend_from_slice(&bytes);
                if last_fragment {
                    let done = std::mem::take(&mut r.partial);
                    if let Some((s, d)) = r.held.replace((seq, done)) {
                        write(s, d, false, &mut egress);
                    }
                    r.last_seq = seq;
                }
            }
            EnvelopeKind::Fin => {
                if hook.is(Mutant::DropsFinalChunk) {
                    continue;
                }
                let (seq, data) = r.held.take().unwrap_or((r.last_seq + 1, Vec::new()));
                write(seq, data, true, &mut egress);
            }
            EnvelopeKind::Reset(code) => {
                if let Some((s, d)) = r.held.take() {
                    write(s, d, false, &mut egress);
                }
                let terminal =
                    if code == crate::proxy::CODE_TARGET_ERROR { Terminal::Error } else { Terminal::Reset };
                let outcome = egress.end_flow(&flow, terminal, env.stream);
                let mut ev =
                    TraceEvent::new("egress_end").flow(&flow).stream(env.stream).state(terminal.name());
                if let Err(e) = outcome {
                    ev = ev.state(e.class());
                }
                tracer.emit(ev);
            }
        }
    }
    egress
}
