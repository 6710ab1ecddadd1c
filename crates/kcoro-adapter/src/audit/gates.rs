//! The ten gates. Each looks at every run of the audit (never a sample) and says what it
//! checked; a run that failed to execute fails every gate that needs its outcome.

use std::collections::BTreeMap;

use super::features::{FeatureVector, ScenarioRuns, scan};
use super::{
    AuditConfig, AuditRun, Auditor, BenchmarkSummary, Correctness, Gate, Mode, REPORT_VERSION, Report,
    TraceScanSummary,
};
use crate::contract::CapabilitySet;
use crate::mutant::Mutant;
use crate::profile::Profile;
use crate::runner::{RunOutcome, Scenario};
use crate::trace::{scan_json, to_jsonl};

/// How many failing items a gate lists before it summarises the rest.
const MAX_DETAILS: usize = 12;

/// Judges `runs` of `profiles` under `cfg` into a report.
pub(super) fn judge(cfg: &AuditConfig, profiles: &[Profile], runs: &[AuditRun]) -> Report {
    let ok: Vec<(&AuditRun, &RunOutcome)> =
        runs.iter().filter_map(|r| r.outcome.as_ref().ok().map(|o| (r, o))).collect();
    let errors: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            r.outcome.as_ref().err().map(|e| format!("{}:{}: {e}", profiles[r.profile].id, r.scenario.name()))
        })
        .collect();
    let total = runs.len();
    let tid = |r: &AuditRun| format!("{}:{}", profiles[r.profile].id, r.scenario.name());

    // Features and collapse.
    let mut groups: Vec<ScenarioRuns<'_>> = Vec::new();
    for s in cfg.mode.scenarios() {
        let runs_of: Vec<_> = ok
            .iter()
            .filter(|(r, _)| r.scenario == *s)
            .map(|(r, o)| (&profiles[r.profile], *o, FeatureVector::of(&profiles[r.profile], o)))
            .collect();
        groups.push(ScenarioRuns { scenario: *s, runs: runs_of });
    }
    let collapse = scan(&groups);

    let mut gates = Vec::new();
    let gate = |name: &'static str, failures: Vec<String>, checked: String| -> Gate {
        let passed = failures.is_empty();
        let mut details: Vec<String> = failures.iter().take(MAX_DETAILS).cloned().collect();
        if failures.len() > MAX_DETAILS {
            details.push(format!("… and {} more", failures.len() - MAX_DETAILS));
        }
        let summary =
            if passed { checked } else { format!("{} problems; first: {}", failures.len(), failures[0]) };
        Gate { name, passed, severity: "required", summary, details }
    };

    // 1. Correctness.
    let mut f = errors.clone();
    f.extend(
        ok.iter()
            .filter(|(_, o)| !o.is_correct())
            .map(|(r, o)| format!("{}: {}", tid(r), o.checks.failures.join("; "))),
    );
    let correct = total - f.len().min(total);
    gates.push(gate(
        "local_adapter_correctness",
        f,
        format!("{correct}/{total} runs correct; every sink digest and terminal event matched the plan"),
    ));

    // 2. Flow lifecycle.
    let mut f = errors.clone();
    for (r, o) in &ok {
        let c = &o.checks;
        if !c.lifecycle_valid {
            f.push(format!("{}: path off the transition table: {:?}", tid(r), c.lifecycle_paths));
        }
        if c.egress_open_at_end > 0 {
            f.push(format!("{}: {} egress flows never ended", tid(r), c.egress_open_at_end));
        }
        if !c.probe_rejected_by_adapter || c.post_close_leaks > 0 {
            f.push(format!("{}: a write after close got past the egress adapter", tid(r)));
        }
        let s = &o.summary;
        if s.flows_closed + s.flows_reset + s.flows_failed != s.flows_opened {
            f.push(format!("{}: closed+reset+failed != opened", tid(r)));
        }
    }
    gates.push(gate("local_adapter_flow_lifecycle", f, format!("{total} runs: every flow path valid and terminal, every egress flow ended, every post-close write refused")));

    // 3. Runtime integration.
    let mut f = errors.clone();
    let want_hash = CapabilitySet::all().hash();
    for (r, o) in &ok {
        let c = &o.checks;
        let s = &o.summary;
        if !c.mapping_consistent {
            f.push(format!("{}: flow/stream mapping disagrees with where records arrived", tid(r)));
        }
        if s.runtime_streams_opened != s.flows_opened || s.runtime_streams_closed != s.runtime_streams_opened
        {
            f.push(format!(
                "{}: streams opened {} closed {} for {} flows",
                tid(r),
                s.runtime_streams_opened,
                s.runtime_streams_closed,
                s.flows_opened
            ));
        }
        if c.capability_hash != want_hash {
            f.push(format!("{}: negotiated capability hash differs", tid(r)));
        }
        if !c.downgrade_rejected {
            f.push(format!("{}: capability downgrade accepted", tid(r)));
        }
    }
    let streams: u64 = ok.iter().map(|(_, o)| o.summary.runtime_streams_opened).sum();
    gates.push(gate(
        "local_adapter_runtime_integration",
        f,
        format!(
            "{streams} runtime streams, one per flow, all closed; mappings consistent; downgrade refused"
        ),
    ));

    // 4. Backpressure.
    let mut f = errors.clone();
    let (mut bp_runs, mut qp_runs, mut qp_only) = (0, 0, 0);
    for (r, o) in &ok {
        let (c, s, e) = (&o.checks, &o.summary, r.scenario.expect());
        if e.backpressure {
            bp_runs += 1;
            if s.backpressure_events == 0 {
                f.push(format!("{}: expected backpressure, none happened", tid(r)));
            }
        }
        if e.queue_pressure {
            qp_runs += 1;
            if s.queue_pressure_events == 0 {
                f.push(format!("{}: expected queue pressure, none happened", tid(r)));
            } else if s.backpressure_events == 0 {
                qp_only += 1;
            }
        }
        if c.window_violations > 0 {
            f.push(format!("{}: {} frames past a credit window", tid(r), c.window_violations));
        }
        if c.peak_buffered > c.max_buffered {
            f.push(format!("{}: ingress buffered {} > limit {}", tid(r), c.peak_buffered, c.max_buffered));
        }
    }
    if qp_runs > 0 && qp_only == 0 {
        f.push("queue pressure never showed apart from flow backpressure".into());
    }
    gates.push(gate("local_adapter_backpressure", f, format!("backpressure in {bp_runs}/{bp_runs} runs that expect it, queue pressure in {qp_runs}/{qp_runs} (counted apart); no window or buffer overrun")));

    // 5. Error and reset isolation.
    let mut f = errors.clone();
    let mut isolation_runs = 0;
    for (r, o) in &ok {
        let (c, s, e) = (&o.checks, &o.summary, r.scenario.expect());
        if e.source_reset || e.target_error || e.target_reset {
            isolation_runs += 1;
            let faults = c.expected_source_resets + c.expected_target_errors + c.expected_target_resets;
            if faults == 0 {
                f.push(format!("{}: the scenario planned no fault", tid(r)));
            }
        }
        if c.healthy_flows_ok != c.healthy_flows {
            f.push(format!(
                "{}: only {}/{} unaffected flows completed intact",
                tid(r),
                c.healthy_flows_ok,
                c.healthy_flows
            ));
        }
        if s.flows_reset != c.expected_source_resets + c.expected_target_resets
            || s.flows_failed != c.expected_target_errors
            || s.target_errors != c.expected_target_errors
            || s.target_resets != c.expected_target_resets
        {
            f.push(format!(
                "{}: resets/errors {}/{} differ from the plan",
                tid(r),
                s.flows_reset,
                s.flows_failed
            ));
        }
    }
    gates.push(gate(
        "local_adapter_error_reset_isolation",
        f,
        format!(
            "{isolation_runs} fault runs: exactly the planned flow reset or failed, every other flow intact"
        ),
    ));

    // 6. Sequence integrity.
    let mut f = errors.clone();
    for (r, o) in &ok {
        let (c, s) = (&o.checks, &o.summary);
        if s.sequence_rejected > 0 {
            f.push(format!(
                "{}: {} duplicated or reordered chunks reached the sink",
                tid(r),
                s.sequence_rejected
            ));
        }
        if !c.sink.chunk_mismatch.is_empty() {
            f.push(format!("{}: chunk sequences differ for {:?}", tid(r), c.sink.chunk_mismatch));
        }
        let want_malformed = u64::from(r.scenario == Scenario::MalformedSourceChunk);
        if s.malformed_rejected != want_malformed {
            f.push(format!(
                "{}: {} malformed chunks refused, expected {want_malformed}",
                tid(r),
                s.malformed_rejected
            ));
        }
    }
    gates.push(gate(
        "local_adapter_sequence_integrity",
        f,
        format!("{total} runs: no duplicate, reordered or lost sequence; malformed chunks refused cleanly"),
    ));

    // 7. Trace hygiene: the scanner reads every emitted trace and summary.
    let mut f = errors.clone();
    let (mut payload, mut secret, mut events) = (0, 0, 0);
    for (r, o) in &ok {
        events += o.trace.len();
        let mut found = scan_json(&to_jsonl(&o.trace));
        found.merge(scan_json(&serde_json::to_string(&o.summary).unwrap_or_default()));
        payload += usize::from(found.payload_logged);
        secret += usize::from(found.secret_logged);
        if !found.is_clean() || o.summary.payload_logged || o.summary.secret_logged {
            f.push(format!("{}: found {:?}", tid(r), found.hits));
        }
    }
    let hygiene_index = gates.len();
    gates.push(gate(
        "local_adapter_trace_hygiene",
        f,
        format!("{} traces, {events} events scanned: payload_logged 0, secret_logged 0", ok.len()),
    ));

    // 8. Collapse resistance.
    let f: Vec<String> =
        collapse.iter().flat_map(|c| c.flags.iter().map(move |fl| format!("{}: {fl}", c.scenario))).collect();
    let min_div = collapse.iter().map(|c| c.diversity_score).fold(f64::INFINITY, f64::min);
    gates.push(gate(
        "local_adapter_collapse_resistance",
        f,
        format!("{} scenarios, lowest diversity {min_div:.2}, no fixed behaviour", collapse.len()),
    ));

    // 9. Mutants.
    gates.push(if cfg.nested || cfg.mutant.is_some() {
        Gate {
            name: "local_adapter_mutant_detection",
            passed: true,
            severity: "required",
            summary: "not run: this audit itself runs a mutant".into(),
            details: Vec::new(),
        }
    } else {
        mutant_gate(cfg)
    });

    // 10. Generated backend parity.
    gates.push(if cfg.nested {
        Gate {
            name: "local_adapter_generated_backend_parity",
            passed: true,
            severity: "required",
            summary: "not run in a mutant sub-audit".into(),
            details: Vec::new(),
        }
    } else {
        parity_gate(cfg, profiles)
    });

    // Summaries.
    let mut by_scenario: BTreeMap<String, [usize; 2]> = BTreeMap::new();
    for r in runs {
        let e = by_scenario.entry(r.scenario.name().to_string()).or_default();
        e[1] += 1;
        e[0] += usize::from(r.outcome.as_ref().is_ok_and(RunOutcome::is_correct));
    }
    let correct_runs = by_scenario.values().map(|v| v[0]).sum();
    let flagged = collapse.iter().filter(|c| !c.flags.is_empty()).count();
    let trace_scan_summary = TraceScanSummary {
        traces_scanned: ok.len(),
        events_scanned: events,
        payload_logged: payload,
        secret_logged: secret,
        correctness: Correctness {
            correct: correct_runs,
            total,
            rate: if total == 0 {
                0.0
            } else {
                (correct_runs as f64 / total as f64 * 1000.0).round() / 1000.0
            },
            by_scenario,
        },
        collapse_reports: collapse,
        conclusion: if payload + secret == 0 && flagged == 0 {
            "clean: no leaks, no collapsed scenario".into()
        } else {
            format!("{} leaking traces, {flagged} collapsed scenarios", payload + secret)
        },
    };
    let mut bench = BenchmarkSummary { runs: total, ..Default::default() };
    for (_, o) in &ok {
        let s = &o.summary;
        bench.flows += s.flows_opened;
        bench.streams += s.runtime_streams_opened;
        bench.source_bytes += s.source_bytes;
        bench.sink_bytes += s.sink_bytes;
        bench.sink_chunks += s.sink_chunks;
        bench.backpressure_events += s.backpressure_events;
        bench.queue_pressure_events += s.queue_pressure_events;
        bench.trace_events += o.trace.len() as u64;
    }
    let mut report = Report {
        version: REPORT_VERSION,
        mode: cfg.mode.name(),
        generated_at: super::time::now_rfc3339(),
        start_seed: cfg.start_seed,
        mutant: cfg.mutant.map(Mutant::name),
        profile_count: profiles.len(),
        trace_count: total,
        gates,
        trace_scan_summary,
        benchmark_summary: bench,
        conclusion: String::new(),
    };
    // The report itself is emitted JSON too: scan it before it leaves.
    let own = scan_json(&report.to_json());
    if !own.is_clean() {
        let g = &mut report.gates[hygiene_index];
        let line = format!("the report itself carries {:?}", own.hits);
        if g.passed {
            g.summary = line.clone();
        }
        g.passed = false;
        g.details.push(line);
    }
    let failed = report.failed_gates();
    report.conclusion =
        if failed.is_empty() { "pass".into() } else { format!("fail: {}", failed.join(", ")) };
    report
}

/// Runs a quick audit per mutant and checks the responsible gate fails.
fn mutant_gate(cfg: &AuditConfig) -> Gate {
    let name = "local_adapter_mutant_detection";
    if !Mutant::compiled_in() {
        return Gate {
            name,
            passed: false,
            severity: "required",
            summary: "mutants not compiled in: build with the `mutants` feature".into(),
            details: Vec::new(),
        };
    }
    let mut details = Vec::new();
    let mut missed = Vec::new();
    for m in Mutant::ALL {
        let sub = AuditConfig {
            mode: Mode::Quick,
            profiles: Some(3),
            mutant: Some(m),
            nested: true,
            ..cfg.clone()
        };
        let report = match Auditor::new(sub) {
            Ok(a) => a.run(),
            Err(e) => {
                missed.push(format!("{m}: could not run: {e}"));
                continue;
            }
        };
        let caught = report.gates.iter().any(|g| g.name == m.gate() && !g.passed);
        if caught {
            details.push(format!("{m}: caught by {}", m.gate()));
        } else {
            missed.push(format!("{m}: NOT caught by {}", m.gate()));
        }
    }
    let passed = missed.is_empty();
    let summary = if passed {
        format!("{}/{} mutants caught by their gates", Mutant::ALL.len(), Mutant::ALL.len())
    } else {
        format!("{} mutants escaped: {}", missed.len(), missed.join("; "))
    };
    missed.extend(details);
    Gate { name, passed, severity: "required", summary, details: missed }
}

/// Compares the compiled, profile-specialised twins with the interpreted runner.
fn parity_gate(cfg: &AuditConfig, profiles: &[Profile]) -> Gate {
    let name = "local_adapter_generated_backend_parity";
    let mut seeds: Vec<u64> = profiles.iter().map(|p| p.seed).collect();
    if seeds.iter().all(|s| crate::codegen::twin(*s).is_none()) {
        // Parity is a property of the generator and the runner, not of the seeds under
        // audit: check the compiled twins instead, and say so.
        seeds = (1..=profiles.len().min(20) as u64).collect();
    }
    let report = crate::codegen::parity(seeds.iter().copied(), cfg.mode.scenarios());
    let mut details: Vec<String> = report.mismatches.iter().map(|m| format!("mismatch: {m}")).collect();
    let passed = report.mismatches.is_empty() && report.checked_profiles > 0;
    if !report.missing_twins.is_empty() {
        details.push(format!(
            "no compiled twin for seeds {:?}: `kcheck codegen` builds any seed",
            report.missing_twins
        ));
    }
    let summary = if passed {
        format!(
            "{} generated profiles, {} runs: summaries identical to the interpreted runner",
            report.checked_profiles, report.checked_runs
        )
    } else if report.checked_profiles == 0 {
        "no compiled twin covers these seeds (twins cover 1..=20); run `kcheck codegen`".into()
    } else {
        format!("{} of {} runs differ", report.mismatches.len(), report.checked_runs)
    };
    Gate { name, passed, severity: "required", summary, details }
}
