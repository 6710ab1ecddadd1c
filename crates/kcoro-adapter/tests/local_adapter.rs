//! The local adapter end to end: determinism, isolation, backpressure, queue pressure, bad
//! input, and one regression test per defect of the prototype this design replaces.

use kcoro_adapter::local::{SourceModel, generate_source_plan};
use kcoro_adapter::runner::RunOutcome;
use kcoro_adapter::{AdapterError, LocalConfig, Profile, RunConfig, Scenario, run_scenario};

fn run(seed: u64, s: Scenario) -> RunOutcome {
    let out = run_scenario(&Profile::generate(seed), s, &RunConfig::default())
        .unwrap_or_else(|e| panic!("seed {seed} {s}: {e}"));
    assert!(out.is_correct(), "seed {seed} {s}: {:?}", out.checks.failures);
    out
}

fn run_flows(seed: u64, s: Scenario, flows: usize) -> RunOutcome {
    let cfg = RunConfig { flows: Some(flows), ..RunConfig::default() };
    run_scenario(&Profile::generate(seed), s, &cfg).unwrap_or_else(|e| panic!("seed {seed} {s}: {e}"))
}

#[test]
fn same_seed_same_plan_same_run() {
    for s in Scenario::ALL {
        let a = run(5, s);
        let b = run(5, s);
        assert_eq!(a.summary, b.summary, "{s}");
        assert_eq!(a.trace, b.trace, "{s}: the trace, event by event");
        assert_eq!(a.checks, b.checks, "{s}");
    }
    let p = generate_source_plan(SourceModel::MixedFlow, 4, 9, 4096).unwrap();
    assert_eq!(p, generate_source_plan(SourceModel::MixedFlow, 4, 9, 4096).unwrap());
}

#[test]
fn every_scenario_passes_for_many_seeds() {
    for seed in 100..130 {
        for s in Scenario::ALL {
            run(seed, s);
        }
    }
}

#[test]
fn reset_and_target_error_stay_in_their_flow() {
    for seed in 1..=20 {
        for s in [Scenario::ResetFlowIsolation, Scenario::TargetErrorMapping, Scenario::TargetResetMapping] {
            let o = run(seed, s);
            let c = &o.checks;
            assert_eq!(c.healthy_flows, 2, "{s}: three flows, one faulted");
            assert_eq!(c.healthy_flows_ok, 2, "{s}: the other flows complete intact");
            assert!(c.sink.is_clean(), "{s}: digests and terminals match the plan");
            let faulted = o.summary.flows_reset + o.summary.flows_failed;
            assert_eq!(faulted, 1, "{s}: exactly one flow faulted");
        }
        let o = run(seed, Scenario::TargetErrorMapping);
        assert_eq!((o.summary.target_errors, o.summary.flows_failed, o.summary.target_resets), (1, 1, 0));
        let o = run(seed, Scenario::TargetResetMapping);
        assert_eq!((o.summary.target_resets, o.summary.flows_reset, o.summary.target_errors), (1, 1, 0));
    }
}

#[test]
fn large_flows_meet_backpressure_and_never_overrun() {
    for seed in 1..=20 {
        let o = run(seed, Scenario::LargeFlowBackpressure);
        assert!(o.summary.backpressure_events > 0, "seed {seed}");
        assert_eq!(o.checks.window_violations, 0);
        assert!(o.checks.peak_buffered <= o.checks.max_buffered);
    }
}

#[test]
fn queue_pressure_is_counted_apart_from_flow_backpressure() {
    for seed in 1..=20 {
        let o = run(seed, Scenario::QueuePressure);
        assert!(o.summary.queue_pressure_events > 0, "seed {seed}: the small carrier queue filled");
        assert_eq!(o.summary.backpressure_events, 0, "seed {seed}: no flow ran out of credit or buffer");
        let o = run(seed, Scenario::SingleFlowEcho);
        assert_eq!(o.summary.queue_pressure_events, 0);
    }
}

#[test]
fn malformed_chunks_are_refused_and_the_flow_still_completes() {
    // Seeds 0, 1, 2 pick sequence 0, oversize and a lying length.
    for seed in 0..3 {
        let o = run(seed, Scenario::MalformedSourceChunk);
        assert_eq!(o.summary.malformed_rejected, 1, "seed {seed}");
        assert_eq!(o.summary.flows_closed, 1);
        assert!(o.trace.iter().any(|e| e.event == "chunk_rejected"), "seed {seed}: the rejection is traced");
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let p = Profile::generate(1);
    assert!(matches!(Scenario::from_name("local_firehose"), Err(AdapterError::InvalidConfig(_))));
    assert_eq!(Scenario::from_name("local_queue_pressure").unwrap(), Scenario::QueuePressure);
    assert!(matches!(SourceModel::from_name("nope"), Err(AdapterError::InvalidConfig(_))));
    let too_many = RunConfig { flows: Some(65), ..RunConfig::default() };
    assert!(matches!(
        run_scenario(&p, Scenario::ManySmallFlows, &too_many),
        Err(AdapterError::ResourceLimit(_))
    ));
    let secret_name = RunConfig {
        local: LocalConfig { name: "adapter-secret".into(), ..LocalConfig::default() },
        ..RunConfig::default()
    };
    let err = run_scenario(&p, Scenario::SingleFlowEcho, &secret_name).unwrap_err();
    assert!(matches!(err, AdapterError::InvalidConfig(_)) && !err.to_string().contains("adapter-secret"));
    let mut past_limits = p.clone();
    past_limits.local.max_chunk = 1 << 20;
    assert!(matches!(
        run_scenario(&past_limits, Scenario::SingleFlowEcho, &RunConfig::default()),
        Err(AdapterError::InvalidConfig(_))
    ));
    let events =
        RunConfig { local: LocalConfig { max_events: 0, ..LocalConfig::default() }, ..RunConfig::default() };
    assert!(run_scenario(&p, Scenario::SingleFlowEcho, &events).is_err());
}

#[test]
fn traces_are_clean_and_carry_real_states() {
    let o = run(3, Scenario::ResetFlowIsolation);
    let jsonl = o.trace_jsonl();
    assert!(kcoro_adapter::trace::scan_json(&jsonl).is_clean());
    assert!(!o.summary.payload_logged && !o.summary.secret_logged);
    // Each flow's states in the trace are the states it went through, not a constant.
    for (i, path) in o.checks.lifecycle_paths.iter().enumerate() {
        let id = format!("local-flow-{:02}", i + 1);
        let traced: Vec<&str> = o
            .trace
            .iter()
            .filter(|e| e.event == "flow_state" && e.flow.as_deref() == Some(id.as_str()))
            .filter_map(|e| e.state)
            .collect();
        let expected: Vec<&str> = path.split('>').skip(1).collect();
        assert_eq!(traced, expected, "{id}");
    }
}

// Regression tests: one per defect of the prototype.

#[test]
fn regression_one_closed_flow_counts_once() {
    let o = run(1, Scenario::SingleFlowEcho);
    assert_eq!((o.summary.flows_opened, o.summary.flows_closed), (1, 1));
    assert_eq!((o.summary.runtime_streams_opened, o.summary.runtime_streams_closed), (1, 1));
    assert_eq!((o.summary.source_chunks, o.summary.sink_chunks), (1, 1));
}

#[test]
fn regression_no_backpressure_is_reported_when_none_happened() {
    for seed in 1..=10 {
        assert_eq!(run(seed, Scenario::SingleFlowEcho).summary.backpressure_events, 0);
    }
}

#[test]
fn regression_target_errors_count_only_targets_that_ran() {
    let o = run(1, Scenario::ManySmallFlows);
    assert_eq!((o.summary.target_errors, o.summary.target_resets), (0, 0));
    let o = run(1, Scenario::TargetErrorMapping);
    assert_eq!(o.summary.target_errors, 1);
    assert_eq!(o.checks.expected_target_errors, 1);
}

#[test]
fn regression_queue_pressure_is_incremented() {
    assert!(run(2, Scenario::QueuePressure).summary.queue_pressure_events > 0);
}

#[test]
fn regression_egress_flows_are_closed() {
    for s in Scenario::ALL {
        assert_eq!(run(4, s).checks.egress_open_at_end, 0, "{s}");
    }
}

#[test]
fn regression_reads_after_close_and_post_close_writes_are_refused() {
    for s in Scenario::ALL {
        let o = run(6, s);
        assert!(o.checks.probe_rejected_by_adapter, "{s}");
        assert_eq!(o.checks.post_close_leaks, 0, "{s}");
        assert!(o.summary.post_close_rejected >= 1, "{s}: the probe was refused and counted");
    }
}

#[test]
fn regression_mixed_flows_reset_with_two_flows() {
    for seed in 1..=10 {
        let o = run_flows(seed, Scenario::MixedFlows, 2);
        assert!(o.is_correct(), "{:?}", o.checks.failures);
        assert_eq!(o.summary.flows_reset, 1, "seed {seed}: the last of two flows resets");
    }
}

#[test]
fn regression_sink_compares_payloads_and_terminals() {
    // The sink's verdict is part of every run: a clean run has matching digests and a
    // terminal event per flow, checked against the plan (the sink unit tests show it
    // catching mismatches and missing terminals).
    let o = run(7, Scenario::LargeFlowBackpressure);
    assert!(o.checks.sink.is_clean());
    assert_eq!(o.summary.source_bytes, o.summary.sink_bytes);
}
