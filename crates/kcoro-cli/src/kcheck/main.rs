//! `kcheck`: audits that prove adapter flows drive the kcoro runtime.
//!
//! - `kcheck localadapter --quick|--full` runs every profile × scenario through the local
//!   adapter on deterministic runtimes and judges the ten gates
//!   ([`kcoro_adapter::audit`]). Exit 0: every gate passed; 1: a gate failed; 2: bad
//!   arguments.
//! - `kcheck codegen --quick|--full` generates a profile-specialised Rust crate, builds and
//!   runs it, and compares its summaries with the interpreted runner's.

#[path = "../flags.rs"]
mod flags;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use flags::Flags;
use kcoro_adapter::audit::{AuditConfig, Auditor, Mode};
use kcoro_adapter::{Mutant, Scenario};

const USAGE: &str = "\
usage: kcheck localadapter (--quick | --full) [--out FILE] [--start-seed N] [--profiles N]
                           [--mutant NAME]
       kcheck codegen (--quick | --full) [--start-seed N] [--profiles N] [--work-dir DIR]

localadapter  runs profiles × scenarios (quick: 3 × 3, full: 20 × 11) through the
              deterministic local adapter and judges ten gates; --out writes the JSON
              report; the same seed gives the same report except generated_at.
              --mutant NAME switches one deliberate fault on: the audit must fail and
              name the gate that caught it. Mutants:
                local_adapter_ignores_source_backpressure, local_adapter_accepts_post_close_write,
                local_adapter_drops_final_chunk, local_adapter_duplicates_chunk,
                local_adapter_wrong_flow_stream_mapping, local_adapter_payload_trace_leak,
                local_adapter_secret_trace_leak, local_adapter_padding_only_diversity
codegen       writes one Rust module per profile into a fresh crate (default directory
              target/kcheck-codegen), builds it with cargo, runs it, and checks every
              summary equals the interpreted runner's (quick: 3 profiles × 3 scenarios,
              full: 20 × 11)

exit status: 0 pass, 1 a gate or parity failed, 2 bad arguments";

#[derive(Debug)]
struct Common {
    mode: Option<Mode>,
    start_seed: u64,
    profiles: Option<usize>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("localadapter") => localadapter(&argv[1..]),
        Some("codegen") => codegen(&argv[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}")),
        None => Err("missing command".into()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kcheck: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Handles the flags both commands share; returns false for a flag it does not know.
fn common(flag: &str, flags: &mut Flags<'_>, c: &mut Common) -> Result<bool, String> {
    match flag {
        "--quick" | "--full" => {
            flags.switch(flag)?;
            let m = if flag == "--quick" { Mode::Quick } else { Mode::Full };
            if c.mode.is_some_and(|old| old != m) {
                return Err("--quick and --full exclude each other".into());
            }
            c.mode = Some(m);
        }
        "--start-seed" => c.start_seed = flags.number(flag, 0, u64::MAX / 2)?,
        "--profiles" => {
            c.profiles = Some(flags.number(flag, 1, kcoro_adapter::audit::MAX_PROFILES as u64)? as usize)
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn localadapter(args: &[String]) -> Result<ExitCode, String> {
    let mut c = Common { mode: None, start_seed: 1, profiles: None };
    let mut out: Option<PathBuf> = None;
    let mut mutant = None;
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag()? {
        if common(&flag, &mut flags, &mut c)? {
            continue;
        }
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(flags.value(&flag)?)),
            "--mutant" => {
                let name = flags.value(&flag)?;
                mutant = Some(
                    Mutant::from_name(&name).ok_or_else(|| format!("--mutant: unknown mutant {name:?}"))?,
                );
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let mode = c.mode.ok_or("localadapter needs --quick or --full")?;
    let mut cfg = AuditConfig::new(mode);
    cfg.start_seed = c.start_seed;
    cfg.profiles = c.profiles;
    cfg.mutant = mutant;
    let auditor = Auditor::new(cfg).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let report = auditor.run();
    let elapsed = started.elapsed();
    print!("{}", report.console());
    println!("elapsed: {:.3} s", elapsed.as_secs_f64());
    if let Some(path) = out {
        if let Err(e) = std::fs::write(&path, report.to_json() + "\n") {
            eprintln!("kcheck: cannot write {}: {e}", path.display());
            return Ok(ExitCode::from(1));
        }
        println!("report: {}", path.display());
    }
    if let Some(m) = mutant {
        let caught: Vec<&str> = report.failed_gates();
        if caught.is_empty() {
            println!("mutant {m} was NOT caught by any gate");
        } else {
            println!("mutant {m} caught by: {}", caught.join(", "));
        }
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn codegen(args: &[String]) -> Result<ExitCode, String> {
    let mut c = Common { mode: None, start_seed: 1, profiles: None };
    let mut work_dir = PathBuf::from("target/kcheck-codegen");
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag()? {
        if common(&flag, &mut flags, &mut c)? {
            continue;
        }
        match flag.as_str() {
            "--work-dir" => work_dir = PathBuf::from(flags.value(&flag)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let mode = c.mode.ok_or("codegen needs --quick or --full")?;
    let profiles = c.profiles.unwrap_or(mode.profiles());
    let scenarios: &[Scenario] = mode.scenarios();
    println!("kcheck codegen ({})", if mode == Mode::Quick { "quick" } else { "full" });
    println!("profiles: {profiles}");
    let started = Instant::now();
    let report =
        kcoro_adapter::codegen::standalone::run_standalone(c.start_seed, profiles, scenarios, &work_dir);
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            println!("[FAIL] local_adapter_generated_backend_parity: {e}");
            println!("conclusion: fail");
            return Ok(ExitCode::from(1));
        }
    };
    let ok = report.mismatches.is_empty() && report.runs > 0;
    println!("generated: {} modules in {}", report.generated_files.len(), work_dir.display());
    println!("build: {:.1} s", report.build_seconds);
    println!(
        "[{}] local_adapter_generated_backend_parity: {} runs compared, {} differ",
        if ok { "PASS" } else { "FAIL" },
        report.runs,
        report.mismatches.len()
    );
    for m in report.mismatches.iter().take(12) {
        println!("  mismatch: {m}");
    }
    println!("conclusion: {}", if ok { "pass" } else { "fail" });
    println!("elapsed: {:.1} s", started.elapsed().as_secs_f64());
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
