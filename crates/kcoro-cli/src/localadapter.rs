//! `kcoro localadapter-demo`: one scenario through the whole stack, its summary, and
//! optionally its trace.

use std::process::ExitCode;

use kcoro_adapter::{Profile, RunConfig, Scenario, run_scenario};

use crate::args::LocalDemoArgs;

pub fn run(a: &LocalDemoArgs) -> ExitCode {
    let scenario = match Scenario::from_name(&a.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kcoro: {e}");
            return ExitCode::from(2);
        }
    };
    let profile = Profile::generate(a.seed);
    let cfg = RunConfig { flows: a.flows.map(|f| f as usize), ..RunConfig::default() };
    let out = match run_scenario(&profile, scenario, &cfg) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kcoro: {scenario} under {}: {e}", profile.id);
            return ExitCode::from(1);
        }
    };
    println!("profile: {} (seed {})", profile.id, profile.seed);
    println!("policies: {}", profile.shape());
    println!("{}", serde_json::to_string_pretty(&out.summary).unwrap_or_default());
    for f in &out.checks.failures {
        println!("failure: {f}");
    }
    if let Some(path) = &a.trace {
        if let Err(e) = std::fs::write(path, out.trace_jsonl()) {
            eprintln!("kcoro: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
        println!("trace: {} events in {}", out.trace.len(), path.display());
    }
    if out.is_correct() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
