//! `kcheck`: audits that prove adapter flows drive the kcoro runtime.
//!
//! - `kcheck localadapter --quick|--full` runs every profile × scenario through the local
//!   adapter on deterministic runtimes and judges the ten gates
//!   ([`kcoro_adapter::audit`]). Exit 0: every gate passed; 1: a gate failed; 2: bad
//!   arguments.
//! - `kcheck codegen --quick|--full` generates a profile-specialised Rust crate, builds and
//!   runs it, and compares its summaries with the interpreted runner's.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use kcoro_adapter::audit::{AuditConfig, Auditor, Mode};
use kcoro_adapter::codegen::standalone::BuildMode;
use kcoro_adapter::{Mutant, Scenario};

/// kcheck: audits that prove adapter flows drive the kcoro runtime.
#[derive(Debug, Parser)]
#[command(
    name = "kcheck",
    version,
    propagate_version = true,
    after_help = "\
Exit status: 0 every gate passed, 1 a gate or parity check failed, 2 bad usage.

Examples:
  kcheck localadapter --quick
  kcheck localadapter --full --out report.json
  kcheck localadapter --quick --mutant local_adapter_duplicates_chunk   (must exit 1)
  kcheck codegen --quick"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run profiles x scenarios (quick: 3 x 3, full: 20 x 11) through the deterministic
    /// local adapter and judge the ten gates
    #[command(after_help = "\
The same seed gives the same report except generated_at. --mutant switches one
deliberate fault on: the audit must fail and name the gate that caught it.

Examples:
  kcheck localadapter --quick
  kcheck localadapter --full --start-seed 500 --profiles 40 --out report.json
  kcheck localadapter --quick --mutant local_adapter_wrong_flow_stream_mapping")]
    Localadapter(LocalAdapterArgs),
    /// Generate one Rust module per profile into a fresh crate, build and run it, and check
    /// every summary equals the interpreted runner's
    #[command(after_help = "Example:\n  kcheck codegen --quick --work-dir target/kcheck-codegen")]
    Codegen(CodegenArgs),
}

/// `--quick` or `--full`: exactly one.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ModeArgs {
    /// The quick audit (3 profiles x 3 scenarios)
    #[arg(long)]
    quick: bool,
    /// The full audit (20 profiles x 11 scenarios)
    #[arg(long)]
    full: bool,
}

/// Flags both commands share.
#[derive(Debug, Args)]
struct Common {
    #[command(flatten)]
    mode: ModeArgs,
    /// First profile seed
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=u64::MAX / 2))]
    start_seed: u64,
    /// Profiles instead of the mode's default
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=kcoro_adapter::audit::MAX_PROFILES as u64))]
    profiles: Option<u64>,
}

impl Common {
    fn mode(&self) -> Mode {
        if self.mode.full { Mode::Full } else { Mode::Quick }
    }
}

#[derive(Debug, Args)]
struct LocalAdapterArgs {
    #[command(flatten)]
    common: Common,
    /// Write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Switch one deliberate fault on
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Mutant::ALL.map(Mutant::name)))]
    mutant: Option<String>,
}

#[derive(Debug, Args)]
struct CodegenArgs {
    #[command(flatten)]
    common: Common,
    /// Where to write the generated crate
    #[arg(long, value_name = "DIR", default_value = "target/kcheck-codegen")]
    work_dir: PathBuf,
    /// Build the generated crate optimised (default: cargo's dev profile, with overflow
    /// checks and debug assertions, in less than half the build time)
    #[arg(long)]
    release: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Localadapter(a) => localadapter(&a),
        Command::Codegen(a) => codegen(&a),
    }
}

fn localadapter(a: &LocalAdapterArgs) -> ExitCode {
    let mutant = a.mutant.as_deref().and_then(Mutant::from_name);
    let mut cfg = AuditConfig::new(a.common.mode());
    cfg.start_seed = a.common.start_seed;
    cfg.profiles = a.common.profiles.map(|p| p as usize);
    cfg.mutant = mutant;
    let auditor = match Auditor::new(cfg) {
        Ok(au) => au,
        Err(e) => {
            eprintln!("kcheck: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let report = auditor.run();
    let elapsed = started.elapsed();
    print!("{}", report.console());
    println!("elapsed: {:.3} s", elapsed.as_secs_f64());
    if let Some(path) = &a.out {
        if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
            eprintln!("kcheck: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
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
    if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn codegen(a: &CodegenArgs) -> ExitCode {
    let mode = a.common.mode();
    let work_dir = &a.work_dir;
    let profiles = a.common.profiles.map_or(mode.profiles(), |p| p as usize);
    let scenarios: &[Scenario] = mode.scenarios();
    println!("kcheck codegen ({})", if mode == Mode::Quick { "quick" } else { "full" });
    println!("profiles: {profiles}");
    let started = Instant::now();
    let report = kcoro_adapter::codegen::standalone::run_standalone(
        a.common.start_seed,
        profiles,
        scenarios,
        work_dir,
        if a.release { BuildMode::Release } else { BuildMode::Debug },
    );
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            println!("[FAIL] local_adapter_generated_backend_parity: {e}");
            println!("conclusion: fail");
            return ExitCode::from(1);
        }
    };
    let ok = report.mismatches.is_empty() && report.runs > 0;
    println!("generated: {} modules in {}", report.generated_files.len(), work_dir.display());
    println!("build: {:.1} s ({})", report.build_seconds, if a.release { "release" } else { "debug" });
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
    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
