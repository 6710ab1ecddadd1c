//! Runs one scenario under one profile through the whole stack, on a fresh deterministic
//! kcoro runtime seeded by the run, and checks the result.
//!
//! ```
//! use kcoro_adapter::{Profile, RunConfig, Scenario, run_scenario};
//!
//! let profile = Profile::generate(7);
//! let out = run_scenario(&profile, Scenario::ManySmallFlows, &RunConfig::default()).unwrap();
//! assert!(out.summary.completed, "{:?}", out.checks.failures);
//! assert_eq!(out.summary.flows_closed, 4);
//! assert_eq!(out.summary.source_bytes, out.summary.sink_bytes);
//! // Same seed, same run: the trace is identical too.
//! let again = run_scenario(&profile, Scenario::ManySmallFlows, &RunConfig::default()).unwrap();
//! assert_eq!(out.trace, again.trace);
//! ```

mod pipeline;
pub mod scenario;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

pub use scenario::{Expect, Scenario};

use crate::boundary::{downgrade_offer, required_capabilities};
use crate::contract::flow::path_is_valid;
use crate::contract::{Direction, FlowDescriptor, FlowState, MetadataPolicy, negotiate};
use crate::error::{AdapterError, Result};
use crate::local::{
    ExpectedFlow, LocalConfig, SINK_MODEL, SinkVerdict, SourceChunk, SourcePlan, Terminal,
    generate_source_plan, sink::digest_of,
};
use crate::mutant::{Mutant, MutantHook};
use crate::profile::{MappingPolicy, PriorityPolicy, Profile};
use crate::proxy::TargetKind;
use crate::rng::{SplitMix64, mix64};
use crate::trace::{HygieneFindings, TraceEvent, Tracer, scan_json, to_jsonl};

/// Carrier queue depth of the queue-pressure scenario.
const PRESSURE_QUEUE_DEPTH: usize = 2;
/// Virtual milliseconds the egress spends per envelope in the queue-pressure scenario.
const PRESSURE_EGRESS_MS: u64 = 1;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// The local adapter's settings.
    pub local: LocalConfig,
    /// Flow count instead of the scenario's.
    pub flows: Option<usize>,
    /// The active mutant (none by default).
    pub mutant: MutantHook,
}

impl RunConfig {
    /// Switches `m` on; fails without the `mutants` feature.
    pub fn with_mutant(mut self, m: Mutant) -> Result<Self> {
        self.mutant = MutantHook::with(m)?;
        Ok(self)
    }
}

/// A run's summary: counts only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Adapter name.
    pub name: String,
    /// Scenario name.
    pub scenario: String,
    /// Source model name.
    pub source_model: String,
    /// Sink model name.
    pub sink_model: String,
    /// Flows that reached `open` at the ingress.
    pub flows_opened: u64,
    /// Flows closed.
    pub flows_closed: u64,
    /// Flows reset.
    pub flows_reset: u64,
    /// Flows failed.
    pub flows_failed: u64,
    /// Chunks the ingress accepted.
    pub source_chunks: u64,
    /// Chunks the sink accepted.
    pub sink_chunks: u64,
    /// Bytes the ingress accepted.
    pub source_bytes: u64,
    /// Bytes the sink accepted.
    pub sink_bytes: u64,
    /// Parks for ingress room or stream credit.
    pub backpressure_events: u64,
    /// Envelopes that found the carrier queue full.
    pub queue_pressure_events: u64,
    /// Streams opened.
    pub runtime_streams_opened: u64,
    /// Streams closed.
    pub runtime_streams_closed: u64,
    /// Requests failed by targets.
    pub target_errors: u64,
    /// Streams reset by targets.
    pub target_resets: u64,
    /// Malformed source chunks refused.
    pub malformed_rejected: u64,
    /// Duplicates and reorderings the sink refused.
    pub sequence_rejected: u64,
    /// Writes after close refused (egress and sink).
    pub post_close_rejected: u64,
    /// The hygiene scanner found payload bytes in the trace or summary.
    pub payload_logged: bool,
    /// The hygiene scanner found secret material in the trace or summary.
    pub secret_logged: bool,
    /// Every flow ended as planned and the sink saw exactly the plan.
    pub completed: bool,
}

/// Everything the checks looked at, for the audit's gates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunChecks {
    /// Why the run is not correct; empty when it is.
    pub failures: Vec<String>,
    /// The sink's comparison with the plan.
    pub sink: SinkVerdict,
    /// Each flow's lifecycle path at the ingress, as `new>opening>…`.
    pub lifecycle_paths: Vec<String>,
    /// Every path follows the transition table and ends terminal.
    pub lifecycle_valid: bool,
    /// Egress flows still open at the end.
    pub egress_open_at_end: u64,
    /// The post-close probe was refused by the egress adapter.
    pub probe_rejected_by_adapter: bool,
    /// Post-close writes that got past the egress adapter to the sink.
    pub post_close_leaks: u64,
    /// (flow, stream) pairs.
    pub mapping: Vec<(String, u64)>,
    /// Each flow's sink records arrived only on its own stream, and streams are distinct.
    pub mapping_consistent: bool,
    /// Hash of the negotiated capabilities.
    pub capability_hash: String,
    /// Negotiation refused the ingress + lifecycle downgrade.
    pub downgrade_rejected: bool,
    /// Data frames queued past a credit window.
    pub window_violations: u64,
    /// Most bytes the ingress buffered.
    pub peak_buffered: u64,
    /// The ingress buffer limit.
    pub max_buffered: u64,
    /// Flows the plan resets at the source.
    pub expected_source_resets: u64,
    /// Flows with an error target.
    pub expected_target_errors: u64,
    /// Flows with a reset target.
    pub expected_target_resets: u64,
    /// Flows that should complete with a final chunk.
    pub expected_finals: u64,
    /// Flows not faulted by plan or target that completed with matching digests.
    pub healthy_flows_ok: u64,
    /// Flows not faulted by plan or target.
    pub healthy_flows: u64,
    /// Driver errors, by class.
    pub flow_errors: Vec<String>,
    /// Trace events dropped at the limit.
    pub trace_dropped: u64,
    /// Stream slot waits.
    pub slot_waits: u64,
    /// Carrier envelopes.
    pub envelopes: u64,
    /// What the hygiene scanner found.
    pub hygiene: HygieneFindings,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The profile's id.
    pub profile_id: String,
    /// The scenario.
    pub scenario: Scenario,
    /// The summary.
    pub summary: Summary,
    /// The checks.
    pub checks: RunChecks,
    /// The safe trace.
    pub trace: Vec<TraceEvent>,
}

impl RunOutcome {
    /// Every check passed.
    pub fn is_correct(&self) -> bool {
        self.checks.failures.is_empty()
    }

    /// The trace as JSON lines.
    pub fn trace_jsonl(&self) -> String {
        to_jsonl(&self.trace)
    }
}

/// One flow as planned.
pub(crate) struct PlannedFlow {
    pub desc: FlowDescriptor,
    pub chunks: Vec<SourceChunk>,
    pub target: TargetKind,
    pub expected: ExpectedFlow,
}

/// Everything a run is decided by, computed before the runtime starts.
pub(crate) struct Plan {
    pub profile: Profile,
    pub runtime_id: String,
    pub max_flows: usize,
    pub flows: Vec<PlannedFlow>,
    pub mapping_order: Vec<usize>,
    pub malformed: Option<SourceChunk>,
    pub queue_depth: usize,
    pub egress_service_ms: u64,
}

impl Plan {
    /// The feeder's order: by tick, then mapping order, then sequence; the malformed chunk
    /// goes first.
    pub fn feed_order(&self) -> Vec<SourceChunk> {
        let rank: Vec<usize> = {
            let mut r = vec![0; self.flows.len()];
            for (pos, &i) in self.mapping_order.iter().enumerate() {
                r[i] = pos;
            }
            r
        };
        let mut all: Vec<(u64, usize, u64, SourceChunk)> = self
            .flows
            .iter()
            .enumerate()
            .flat_map(|(i, f)| {
                let r = rank[i];
                f.chunks.iter().map(move |c| (c.tick, r, c.sequence, c.clone()))
            })
            .collect();
        all.sort_by_key(|(t, r, s, _)| (*t, *r, *s));
        self.malformed.iter().cloned().chain(all.into_iter().map(|(.., c)| c)).collect()
    }
}

fn build_plan(profile: &Profile, scenario: Scenario, cfg: &RunConfig, seed: u64) -> Result<Plan> {
    let flows = cfg.flows.unwrap_or(scenario.flows());
    let max_flows = cfg.local.max_flows.min(profile.adapter.max_flows);
    if flows == 0 || flows > max_flows {
        return Err(AdapterError::ResourceLimit(format!(
            "{flows} flows; this profile allows 1..={max_flows}"
        )));
    }
    let source = generate_source_plan(scenario.source_model(), flows, seed, profile.local.max_chunk)?;
    let largest_flow =
        source.flows.iter().map(|f| f.chunks.iter().map(|c| c.byte_count).sum::<u64>()).max().unwrap_or(0);
    if largest_flow > profile.adapter.max_flow_bytes {
        return Err(AdapterError::ResourceLimit(format!(
            "a flow of {largest_flow} bytes exceeds the profile's {}",
            profile.adapter.max_flow_bytes
        )));
    }
    let fault = (profile.targets.fault_slot % flows as u64) as usize;
    let mut g = SplitMix64::new(mix64(seed ^ 0x7072_696f));
    let planned: Vec<PlannedFlow> = source
        .flows
        .iter()
        .map(|f| {
            let target = match scenario {
                Scenario::TargetErrorMapping if f.index == fault => TargetKind::Error,
                Scenario::TargetResetMapping if f.index == fault => TargetKind::Reset,
                _ => TargetKind::Echo,
            };
            let priority = match profile.stream.priority {
                PriorityPolicy::Fifo => 3,
                PriorityPolicy::ByClass => g.below(8) as u8,
            };
            let flow_bytes: u64 = f.chunks.iter().map(|c| c.byte_count).sum();
            let desc = FlowDescriptor {
                id: f.id.clone(),
                class: if flow_bytes > 4096 { "bulk" } else { "interactive" },
                direction: Direction::Bidirectional,
                request_class: match scenario.source_model() {
                    crate::local::SourceModel::HalfClose => "request_response",
                    crate::local::SourceModel::LargeObject => "object",
                    _ => "stream",
                },
                priority_class: priority,
                target_hint: target.name().to_string(),
                max_read_bytes: profile.local.max_chunk,
                max_write_bytes: profile.local.max_chunk,
                metadata_policy: MetadataPolicy::MetadataOnly,
            };
            PlannedFlow {
                expected: expected_flow(&f.id, &f.chunks, target),
                desc,
                chunks: f.chunks.clone(),
                target,
            }
        })
        .collect();
    let mut mapping_order: Vec<usize> = (0..flows).collect();
    match profile.adapter.mapping {
        MappingPolicy::Sequential => {}
        MappingPolicy::PriorityOrdered => mapping_order.sort_by_key(|&i| planned[i].desc.priority_class),
        MappingPolicy::Interleaved => mapping_order.sort_by_key(|&i| (i % 2, i)),
    }
    let malformed = (scenario == Scenario::MalformedSourceChunk).then(|| malformed_chunk(&source, seed));
    let pressure = scenario == Scenario::QueuePressure;
    Ok(Plan {
        profile: profile.clone(),
        runtime_id: cfg.local.runtime_id.clone(),
        max_flows,
        flows: planned,
        mapping_order,
        malformed,
        queue_depth: if pressure { PRESSURE_QUEUE_DEPTH } else { profile.carrier.max_queue_depth },
        egress_service_ms: if pressure { PRESSURE_EGRESS_MS } else { 0 },
    })
}

/// The malformed chunk the source also offers: sequence 0, oversize, or a lying length,
/// chosen by the seed.
fn malformed_chunk(source: &SourcePlan, seed: u64) -> SourceChunk {
    let mut c = source.flows[0].chunks[0].clone();
    match seed % 3 {
        0 => c.sequence = 0,
        1 => {
            c.byte_count = crate::local::LOCAL_MAX_CHUNK + 1;
            c.data = None;
        }
        _ => c.byte_count += 1,
    }
    c
}

/// What the sink must see for a flow: the echo of its data chunks and its terminal event,
/// or only the terminal event for a faulty target.
fn expected_flow(id: &str, chunks: &[SourceChunk], target: TargetKind) -> ExpectedFlow {
    let resets = chunks.iter().any(|c| c.reset);
    let (data, terminal): (Vec<&SourceChunk>, Terminal) = match target {
        TargetKind::Error => (Vec::new(), Terminal::Error),
        TargetKind::Reset => (Vec::new(), Terminal::Reset),
        TargetKind::Discard => (Vec::new(), if resets { Terminal::Reset } else { Terminal::Final }),
        TargetKind::Echo => (
            chunks.iter().filter(|c| c.byte_count > 0).collect(),
            if resets { Terminal::Reset } else { Terminal::Final },
        ),
    };
    let mut list: Vec<(u64, u64)> = data.iter().map(|c| (c.sequence, c.byte_count)).collect();
    if list.is_empty() && terminal == Terminal::Final {
        list.push((1, 0));
    }
    ExpectedFlow {
        id: id.to_string(),
        chunks: list,
        digest: digest_of(data.iter().map(|c| c.data.as_deref().unwrap_or(&[]))),
        terminal,
    }
}

/// FNV-1a of a name: the run's runtime seed mixes in the scenario's name, not its enum
/// position, so reordering the enum changes no run.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Runs `scenario` under `profile` on a fresh deterministic runtime.
pub fn run_scenario(profile: &Profile, scenario: Scenario, cfg: &RunConfig) -> Result<RunOutcome> {
    cfg.local.validate()?;
    profile.validate()?;
    let seed = cfg.local.seed.unwrap_or(profile.seed);
    let plan = Arc::new(build_plan(profile, scenario, cfg, seed)?);
    let tracer = Tracer::new(cfg.local.max_events);
    let rt = kcoro::Runtime::builder()
        .deterministic(mix64(seed ^ name_hash(scenario.name())))
        .name("kcoro-local-adapter")
        .build()
        .map_err(|e| AdapterError::Runtime(format!("cannot start a runtime: {e}")))?;
    let finished = {
        let (plan, tracer, hook) = (Arc::clone(&plan), tracer.clone(), cfg.mutant);
        rt.spawn(move || pipeline::run(plan, tracer, hook)).join()
    };
    let deadlock = rt.handle().sim_trace().and_then(|t| t.deadlock);
    drop(rt);
    let finished = match (finished, deadlock) {
        (_, Some((stuck, _))) => {
            return Err(AdapterError::Runtime(format!(
                "{} deadlocked: {stuck} coroutines parked",
                scenario.name()
            )));
        }
        (Ok(r), None) => r?,
        (Err(e), None) => return Err(AdapterError::Runtime(e.to_string())),
    };
    let (trace, trace_dropped) = tracer.take();
    Ok(assess(&plan, scenario, &cfg.local, finished, trace, trace_dropped))
}

fn assess(
    plan: &Plan,
    scenario: Scenario,
    local: &LocalConfig,
    f: pipeline::Finished,
    trace: Vec<TraceEvent>,
    trace_dropped: u64,
) -> RunOutcome {
    let ing = f.ingress.summary();
    let eg = f.egress.summary();
    let sink = f.egress.sink();
    let sc = sink.counters();
    let expected: Vec<ExpectedFlow> = plan.flows.iter().map(|p| p.expected.clone()).collect();
    let verdict = sink.verify(&expected);
    let mut c = RunChecks { sink: verdict, ..RunChecks::default() };
    let mut fail = |m: String| c.failures.push(m);

    // Lifecycle.
    let mut all_valid = true;
    let mut paths = Vec::new();
    for p in &plan.flows {
        let path = f.ingress.path_of(&p.desc.id).unwrap_or_default();
        let ok = path_is_valid(&path) && path.last().is_some_and(|s| s.is_terminal());
        all_valid &= ok;
        let want = match p.expected.terminal {
            Terminal::Final => FlowState::Closed,
            Terminal::Reset => FlowState::Reset,
            Terminal::Error => FlowState::Failed,
        };
        if path.last() != Some(&want) {
            fail(format!(
                "{}: ended {:?}, expected {}",
                p.desc.id,
                path.last().map(|s| s.name()),
                want.name()
            ));
        }
        paths.push(path.iter().map(|s| s.name()).collect::<Vec<_>>().join(">"));
    }
    c.lifecycle_paths = paths;
    c.lifecycle_valid = all_valid;
    c.egress_open_at_end = f.egress.open_flows().len() as u64;
    c.probe_rejected_by_adapter = f.probe_rejected_by_adapter;
    c.post_close_leaks = sc.post_close_rejected;
    c.flow_errors = f.flow_errors;

    // Mapping: distinct streams, and each flow's sink records came only from its stream.
    let mut streams: Vec<u64> = f.mapping.iter().map(|(_, s)| *s).collect();
    streams.sort_unstable();
    streams.dedup();
    c.mapping_consistent = streams.len() == f.mapping.len()
        && f.mapping.len() == plan.flows.len()
        && f.mapping.iter().all(|(flow, s)| sink.streams_of(flow).iter().all(|got| got == s));
    c.mapping = f.mapping;
    c.capability_hash = f.capability_hash;
    c.downgrade_rejected = negotiate(&downgrade_offer(), &required_capabilities()).is_err();
    c.window_violations = f.session.window_violations;
    c.peak_buffered = ing.peak_buffered;
    c.max_buffered = plan.profile.local.max_buffered;
    c.slot_waits = f.session.slot_waits;
    c.envelopes = f.carrier.envelopes.load(Ordering::Relaxed);
    c.trace_dropped = trace_dropped;

    // Faults by plan.
    c.expected_source_resets = plan.flows.iter().filter(|p| p.chunks.iter().any(|c| c.reset)).count() as u64;
    c.expected_target_errors = plan.flows.iter().filter(|p| p.target == TargetKind::Error).count() as u64;
    c.expected_target_resets = plan.flows.iter().filter(|p| p.target == TargetKind::Reset).count() as u64;
    c.expected_finals = plan.flows.iter().filter(|p| p.expected.terminal == Terminal::Final).count() as u64;
    let healthy: Vec<&PlannedFlow> = plan
        .flows
        .iter()
        .filter(|p| p.target == TargetKind::Echo && !p.chunks.iter().any(|c| c.reset))
        .collect();
    c.healthy_flows = healthy.len() as u64;
    c.healthy_flows_ok = healthy
        .iter()
        .filter(|p| {
            let id = &p.desc.id;
            sink.terminal(id) == Some(Terminal::Final)
                && !c.sink.digest_mismatch.contains(id)
                && !c.sink.chunk_mismatch.contains(id)
                && f.ingress.state_of(id) == Some(FlowState::Closed)
        })
        .count() as u64;

    let target_errors = f.targets.errors.load(Ordering::Relaxed);
    let target_resets = f.targets.resets.load(Ordering::Relaxed);
    let mut summary = Summary {
        name: crate::contract::redact(&local.name).to_string(),
        scenario: scenario.name().to_string(),
        source_model: scenario.source_model().name().to_string(),
        sink_model: SINK_MODEL.to_string(),
        flows_opened: ing.flows_opened,
        flows_closed: ing.flows_closed,
        flows_reset: ing.flows_reset,
        flows_failed: ing.flows_failed,
        source_chunks: ing.chunks,
        sink_chunks: sc.chunks,
        source_bytes: ing.bytes,
        sink_bytes: sc.bytes,
        backpressure_events: ing.backpressure_events + f.session.backpressure_events,
        queue_pressure_events: f.carrier.queue_pressure_events.load(Ordering::Relaxed),
        runtime_streams_opened: f.session.streams_opened,
        runtime_streams_closed: f.session.streams_closed,
        target_errors,
        target_resets,
        malformed_rejected: ing.malformed_rejected,
        sequence_rejected: sc.sequence_rejected,
        post_close_rejected: eg.post_close_rejected + sc.post_close_rejected,
        payload_logged: false,
        secret_logged: false,
        completed: false,
    };

    // Hygiene: scan what was emitted, the trace and the summary.
    let mut hygiene = scan_json(&to_jsonl(&trace));
    hygiene.merge(scan_json(&serde_json::to_string(&summary).unwrap_or_default()));
    summary.payload_logged = hygiene.payload_logged;
    summary.secret_logged = hygiene.secret_logged;
    c.hygiene = hygiene;

    let mut fail = |m: String| c.failures.push(m);
    if !c.sink.is_clean() {
        fail(format!("sink: {}", serde_json::to_string(&c.sink).unwrap_or_default()));
    }
    if !c.lifecycle_valid {
        fail("a lifecycle path breaks the transition table or is not terminal".into());
    }
    if c.egress_open_at_end > 0 {
        fail(format!("{} egress flows never ended", c.egress_open_at_end));
    }
    if !c.probe_rejected_by_adapter || c.post_close_leaks > 0 {
        fail("a write after close got past the egress adapter".into());
    }
    if !c.mapping_consistent {
        fail("flow/stream mapping inconsistent with where the sink's records arrived".into());
    }
    if !c.downgrade_rejected {
        fail("capability downgrade accepted".into());
    }
    if c.window_violations > 0 {
        fail(format!("{} frames queued past a credit window", c.window_violations));
    }
    if c.peak_buffered > c.max_buffered {
        fail(format!("ingress buffered {} bytes, limit {}", c.peak_buffered, c.max_buffered));
    }
    if !c.flow_errors.is_empty() {
        fail(format!("flow drivers failed: {:?}", c.flow_errors));
    }
    if c.trace_dropped > 0 {
        fail(format!("{} trace events dropped at the limit", c.trace_dropped));
    }
    if summary.runtime_streams_opened != plan.flows.len() as u64
        || summary.runtime_streams_closed != summary.runtime_streams_opened
    {
        fail(format!(
            "streams opened {} closed {} for {} flows",
            summary.runtime_streams_opened,
            summary.runtime_streams_closed,
            plan.flows.len()
        ));
    }
    if summary.flows_opened != plan.flows.len() as u64
        || summary.flows_closed + summary.flows_reset + summary.flows_failed != summary.flows_opened
    {
        fail("flow counters do not add up".into());
    }
    if summary.flows_reset != c.expected_source_resets + c.expected_target_resets
        || summary.target_errors != c.expected_target_errors
        || summary.target_resets != c.expected_target_resets
        || summary.flows_failed != c.expected_target_errors
    {
        fail("resets or target errors differ from the plan".into());
    }
    if c.healthy_flows_ok != c.healthy_flows {
        fail(format!("{} of {} unaffected flows completed intact", c.healthy_flows_ok, c.healthy_flows));
    }
    if summary.sequence_rejected > 0 {
        fail(format!("the sink refused {} duplicated or reordered chunks", summary.sequence_rejected));
    }
    let e = scenario.expect();
    if e.backpressure && summary.backpressure_events == 0 {
        fail("expected backpressure, none happened".into());
    }
    if e.queue_pressure && summary.queue_pressure_events == 0 {
        fail("expected queue pressure, none happened".into());
    }
    if summary.malformed_rejected != u64::from(plan.malformed.is_some()) {
        fail(format!(
            "{} malformed chunks refused, expected {}",
            summary.malformed_rejected,
            u64::from(plan.malformed.is_some())
        ));
    }
    if !c.hygiene.is_clean() {
        fail(format!("trace hygiene: {:?}", c.hygiene.hits));
    }
    summary.completed = c.failures.is_empty();
    RunOutcome { profile_id: plan.profile.id.clone(), scenario, summary, checks: c, trace }
}
