//! The adversary's view of a run, and the collapse scanner.
//!
//! A [`FeatureVector`] keeps what a run *did* (counts and buckets) plus the shape of the
//! policy that made it do so, never names: two profiles that differ only in names or
//! padding give the same vector. The scanner groups vectors by scenario and flags
//! behaviour that does not move when the profile does.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::profile::Profile;
use crate::runner::{RunOutcome, Scenario};
use crate::trace::{byte_bucket, count_bucket};

/// Diversity below which a scenario's behaviour counts as fixed (`N > 2` runs).
pub const MIN_DIVERSITY: f64 = 0.12;
/// Share of one flow→stream mapping shape above which the mapping counts as fixed.
pub const MAX_DOMINANT_MAPPING_SHARE: f64 = 0.94;
/// Fewest runs before equal backpressure counts across profiles count as a fixed pattern.
pub const MIN_RUNS_FOR_PATTERN: usize = 5;
/// Fewest correct runs per scenario, as a share.
pub const MIN_SCENARIO_SUCCESS: f64 = 0.90;

/// A run, as the adversary sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureVector {
    /// `profile:scenario`.
    pub trace_id: String,
    /// Scenario name.
    pub scenario: String,
    /// Flows.
    pub flows: u64,
    /// Source chunks.
    pub source_chunks: u64,
    /// Sink chunks.
    pub sink_chunks: u64,
    /// Source bytes.
    pub source_bytes: u64,
    /// Sink bytes.
    pub sink_bytes: u64,
    /// Backpressure events.
    pub backpressure: u64,
    /// Queue pressure events.
    pub queue_pressure: u64,
    /// Flows reset.
    pub resets: u64,
    /// Target errors.
    pub target_errors: u64,
    /// Target resets.
    pub target_resets: u64,
    /// Sequence rejections.
    pub sequence_rejected: u64,
    /// The profile's policies (no names).
    pub policy_shape: String,
    /// Source model.
    pub source_model: String,
    /// Sink model.
    pub sink_model: String,
    /// First failure class, or `none`.
    pub failure_reason: String,
    /// Byte bucket of the sink bytes.
    pub byte_bucket: &'static str,
    /// Count bucket of the sink chunks.
    pub chunk_bucket: &'static str,
    /// Every flow's lifecycle path, in flow order.
    pub lifecycle_path: String,
    /// Mapping policy and the order flows got streams in (`Sequential:1,2,3`).
    pub mapping_shape: String,
}

impl FeatureVector {
    /// Extracts the features of `run` under `profile`.
    pub fn of(profile: &Profile, run: &RunOutcome) -> Self {
        let s = &run.summary;
        let mut by_stream: Vec<(u64, usize)> = run
            .checks
            .mapping
            .iter()
            .map(|(flow, stream)| {
                (*stream, flow.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0))
            })
            .collect();
        by_stream.sort_unstable();
        let order: Vec<String> = by_stream.iter().map(|(_, f)| f.to_string()).collect();
        FeatureVector {
            trace_id: format!("{}:{}", profile.id, run.scenario.name()),
            scenario: run.scenario.name().to_string(),
            flows: s.flows_opened,
            source_chunks: s.source_chunks,
            sink_chunks: s.sink_chunks,
            source_bytes: s.source_bytes,
            sink_bytes: s.sink_bytes,
            backpressure: s.backpressure_events,
            queue_pressure: s.queue_pressure_events,
            resets: s.flows_reset,
            target_errors: s.target_errors,
            target_resets: s.target_resets,
            sequence_rejected: s.sequence_rejected,
            policy_shape: profile.shape(),
            source_model: s.source_model.clone(),
            sink_model: s.sink_model.clone(),
            failure_reason: run
                .checks
                .failures
                .first()
                .map(|f| f.split(':').next().unwrap_or("failure").to_string())
                .unwrap_or_else(|| "none".into()),
            byte_bucket: byte_bucket(s.sink_bytes),
            chunk_bucket: count_bucket(s.sink_chunks),
            lifecycle_path: run.checks.lifecycle_paths.join("|"),
            mapping_shape: format!("{:?}:{}", profile.adapter.mapping, order.join(",")),
        }
    }

    /// Everything but the trace id: equal shapes mean indistinguishable behaviour.
    pub fn shape(&self) -> String {
        let mut v = self.clone();
        v.trace_id.clear();
        serde_json::to_string(&v).unwrap_or_default()
    }
}

/// One scenario's collapse analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollapseReport {
    /// Scenario name.
    pub scenario: String,
    /// Runs.
    pub runs: usize,
    /// Distinct feature shapes.
    pub unique_shapes: usize,
    /// unique / runs.
    pub diversity_score: f64,
    /// Share of the most common flow→stream mapping shape (multi-flow scenarios).
    pub dominant_mapping_share: Option<f64>,
    /// Correct runs / runs.
    pub success_rate: f64,
    /// Flags raised, sorted.
    pub flags: Vec<String>,
}

/// Runs of one scenario under distinct profiles.
pub struct ScenarioRuns<'a> {
    /// The scenario.
    pub scenario: Scenario,
    /// (profile, run, features) of each run.
    pub runs: Vec<(&'a Profile, &'a RunOutcome, FeatureVector)>,
}

/// Scans every scenario's runs; reports come back sorted by scenario name.
pub fn scan(groups: &[ScenarioRuns<'_>]) -> Vec<CollapseReport> {
    let mut out: Vec<CollapseReport> = groups.iter().map(scan_one).collect();
    out.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    out
}

fn scan_one(g: &ScenarioRuns<'_>) -> CollapseReport {
    let n = g.runs.len();
    let mut flags = BTreeSet::new();
    let shapes: BTreeSet<String> = g.runs.iter().map(|(_, _, f)| f.shape()).collect();
    let diversity = if n == 0 { 0.0 } else { shapes.len() as f64 / n as f64 };
    if n > 2 && diversity < MIN_DIVERSITY {
        flags.insert("local_adapter_behavior_fixed".to_string());
    }
    let multi_flow = g.runs.iter().any(|(_, r, _)| r.checks.mapping.len() > 1);
    let dominant_mapping_share = multi_flow.then(|| {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, _, f) in &g.runs {
            *counts.entry(f.mapping_shape.as_str()).or_default() += 1;
        }
        counts.values().copied().max().unwrap_or(0) as f64 / n.max(1) as f64
    });
    if n > 2 && dominant_mapping_share.is_some_and(|s| s > MAX_DOMINANT_MAPPING_SHARE) {
        flags.insert("flow_to_stream_mapping_shape".to_string());
    }
    // Backpressure that never changes while the policies that should move it do.
    // Five runs at least: with fewer, equal counts happen by chance (a quick audit has 3).
    let expects_bp = g.scenario.expect().backpressure;
    if n >= MIN_RUNS_FOR_PATTERN && expects_bp {
        let counts: BTreeSet<u64> = g.runs.iter().map(|(_, _, f)| f.backpressure).collect();
        let policies: BTreeSet<(u64, u64, u64)> =
            g.runs.iter().map(|(p, _, _)| (p.window(), p.local.max_buffered, p.local.max_chunk)).collect();
        if counts.len() == 1 && policies.len() > 1 {
            flags.insert("fixed_backpressure_pattern".to_string());
        }
    }
    // Reset and close paths that never change though the fault and lifecycle policies do.
    let e = g.scenario.expect();
    if n > 2 && (e.source_reset || e.target_error || e.target_reset) {
        let patterns: BTreeSet<&str> = g.runs.iter().map(|(_, _, f)| f.lifecycle_path.as_str()).collect();
        if patterns.len() == 1 {
            flags.insert("fixed_reset_close_behavior".to_string());
        }
    }
    // Profiles that differ only in names or padding.
    let ids: BTreeSet<&str> = g.runs.iter().map(|(p, _, _)| p.id.as_str()).collect();
    let policy_shapes: BTreeSet<String> = g.runs.iter().map(|(p, _, _)| p.shape()).collect();
    if ids.len() > 1 && policy_shapes.len() == 1 {
        flags.insert("padding_only_diversity".to_string());
    }
    let correct = g.runs.iter().filter(|(_, r, _)| r.is_correct()).count();
    let success_rate = if n == 0 { 0.0 } else { correct as f64 / n as f64 };
    if success_rate < MIN_SCENARIO_SUCCESS {
        flags.insert("scenario_success_below_threshold".to_string());
    }
    CollapseReport {
        scenario: g.scenario.name().to_string(),
        runs: n,
        unique_shapes: shapes.len(),
        diversity_score: (diversity * 1000.0).round() / 1000.0,
        dominant_mapping_share: dominant_mapping_share.map(|s| (s * 1000.0).round() / 1000.0),
        success_rate: (success_rate * 1000.0).round() / 1000.0,
        flags: flags.into_iter().collect(),
    }
}
