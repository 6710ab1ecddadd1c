//! The audit: the full run passes 220/220 with every gate, reports are byte-identical
//! for the same seed (but `generated_at`), every mutant is caught by its own gate, and
//! the gates look at every profile.

use kcoro_adapter::Mutant;
use kcoro_adapter::audit::{AuditConfig, Auditor, Mode};

fn audit(cfg: AuditConfig) -> kcoro_adapter::Report {
    Auditor::new(cfg).expect("valid config").run()
}

fn without_timestamp(json: &str) -> String {
    json.lines().filter(|l| !l.trim_start().starts_with("\"generated_at\"")).collect::<Vec<_>>().join("\n")
}

#[test]
fn full_audit_passes_with_220_correct_runs() {
    let r = audit(AuditConfig::new(Mode::Full));
    assert!(r.passed(), "{}", r.console());
    assert_eq!((r.profile_count, r.trace_count), (20, 220));
    assert_eq!(r.trace_scan_summary.correctness.correct, 220);
    assert_eq!(r.gates.len(), 10);
    let names: Vec<&str> = r.gates.iter().map(|g| g.name).collect();
    assert_eq!(
        names,
        [
            "local_adapter_correctness",
            "local_adapter_flow_lifecycle",
            "local_adapter_runtime_integration",
            "local_adapter_backpressure",
            "local_adapter_error_reset_isolation",
            "local_adapter_sequence_integrity",
            "local_adapter_trace_hygiene",
            "local_adapter_collapse_resistance",
            "local_adapter_mutant_detection",
            "local_adapter_generated_backend_parity",
        ]
    );
    let scenarios: Vec<&str> =
        r.trace_scan_summary.collapse_reports.iter().map(|c| c.scenario.as_str()).collect();
    let mut sorted = scenarios.clone();
    sorted.sort();
    assert_eq!(scenarios, sorted, "collapse reports are sorted");
    assert!(kcoro_adapter::trace::scan_json(&r.to_json()).is_clean(), "the report itself is clean");
}

#[test]
fn same_seed_gives_a_byte_identical_report() {
    let mut cfg = AuditConfig::new(Mode::Quick);
    cfg.start_seed = 11;
    let a = audit(cfg.clone()).to_json();
    let b = audit(cfg.clone()).to_json();
    assert_eq!(without_timestamp(&a), without_timestamp(&b));
    cfg.threads = Some(1);
    let c = audit(cfg).to_json();
    assert_eq!(without_timestamp(&a), without_timestamp(&c), "thread count does not change the report");
    assert!(a.contains("\"generated_at\""));
}

#[test]
fn bad_audit_configs_are_refused() {
    let mut cfg = AuditConfig::new(Mode::Quick);
    cfg.profiles = Some(0);
    assert!(Auditor::new(cfg.clone()).is_err());
    cfg.profiles = Some(kcoro_adapter::audit::MAX_PROFILES + 1);
    assert!(Auditor::new(cfg.clone()).is_err());
    cfg.profiles = Some(3);
    cfg.start_seed = u64::MAX;
    assert!(Auditor::new(cfg).is_err());
}

#[cfg(feature = "mutants")]
#[test]
fn every_mutant_is_caught_by_its_own_gate() {
    for m in Mutant::ALL {
        let mut cfg = AuditConfig::new(Mode::Quick);
        cfg.mutant = Some(m);
        let r = audit(cfg);
        assert!(!r.passed(), "{m} went unnoticed:\n{}", r.console());
        let gate = r.gates.iter().find(|g| g.name == m.gate()).unwrap();
        assert!(!gate.passed, "{m} must fail {}:\n{}", m.gate(), r.console());
    }
}

#[cfg(feature = "mutants")]
#[test]
fn gates_look_at_every_profile_not_a_sample() {
    // The prototype's gates looked at 3 profiles; a fault in every run must show in every
    // run, all 220 of them.
    let mut cfg = AuditConfig::new(Mode::Full);
    cfg.mutant = Some(Mutant::DropsFinalChunk);
    let r = audit(cfg);
    let correctness = &r.gates[0];
    assert!(!correctness.passed);
    // Every scenario has a flow that ends with a final chunk, so every run fails.
    assert!(correctness.summary.starts_with("220 problems"), "{}", correctness.summary);
    assert_eq!(r.trace_scan_summary.correctness.correct, 0);
    let judged: usize = r.trace_scan_summary.correctness.by_scenario.values().map(|v| v[1]).sum();
    assert_eq!(judged, 220);
}

#[test]
fn mutants_need_the_feature_or_are_real_code_paths() {
    let hook = kcoro_adapter::mutant::MutantHook::with(Mutant::DuplicatesChunk);
    assert_eq!(hook.is_ok(), Mutant::compiled_in());
}
