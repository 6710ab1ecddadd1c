//! The audit behind `kcheck localadapter`: run every (profile, scenario) pair, extract
//! features, scan for collapse, prove the mutants are caught, check the generated
//! backend, and judge ten gates.
//!
//! ```no_run
//! use kcoro_adapter::audit::{AuditConfig, Auditor, Mode};
//!
//! let report = Auditor::new(AuditConfig::new(Mode::Quick)).unwrap().run();
//! assert!(report.passed(), "{}", report.console());
//! ```
//!
//! # Determinism
//! Runs are spread over threads but each has its own seeded runtime and results are
//! collected in (profile, scenario) order, so the same configuration gives the same report
//! byte for byte, except `generated_at`. Timings go to the console, never the report.

pub mod features;
mod gates;
mod time;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

pub use features::{CollapseReport, FeatureVector};

use crate::error::{AdapterError, Result};
use crate::local::LocalConfig;
use crate::mutant::{Mutant, MutantHook};
use crate::profile::Profile;
use crate::runner::{RunConfig, RunOutcome, Scenario, run_scenario};

/// Report format version.
pub const REPORT_VERSION: &str = "1";
/// Most profiles one audit may run.
pub const MAX_PROFILES: usize = 256;

/// Quick or full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 3 profiles × the first three scenarios.
    Quick,
    /// 20 profiles × all eleven scenarios.
    Full,
}

impl Mode {
    /// The report's mode string.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "localadapter-quick",
            Mode::Full => "localadapter-full",
        }
    }

    /// Default profile count.
    pub fn profiles(self) -> usize {
        match self {
            Mode::Quick => 3,
            Mode::Full => 20,
        }
    }

    /// The scenarios.
    pub fn scenarios(self) -> &'static [Scenario] {
        match self {
            Mode::Quick => &Scenario::QUICK,
            Mode::Full => &Scenario::ALL,
        }
    }
}

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Quick or full.
    pub mode: Mode,
    /// Seed of the first profile; profile `i` has seed `start_seed + i`.
    pub start_seed: u64,
    /// Profiles (default by mode).
    pub profiles: Option<usize>,
    /// Run every scenario with this mutant active.
    pub mutant: Option<Mutant>,
    /// Local adapter settings.
    pub local: LocalConfig,
    /// Worker threads for runs (default: the machine's parallelism).
    pub threads: Option<usize>,
    /// Skip the mutant and parity gates (used for the mutant sub-audits themselves).
    pub(crate) nested: bool,
}

impl AuditConfig {
    /// The defaults of `mode`, starting at seed 1.
    pub fn new(mode: Mode) -> Self {
        AuditConfig {
            mode,
            start_seed: 1,
            profiles: None,
            mutant: None,
            local: LocalConfig::default(),
            threads: None,
            nested: false,
        }
    }

    fn profile_count(&self) -> usize {
        self.profiles.unwrap_or(self.mode.profiles())
    }
}

/// One gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    /// The gate.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// `required` for all ten.
    pub severity: &'static str,
    /// One line.
    pub summary: String,
    /// What it looked at or what failed.
    pub details: Vec<String>,
}

/// Correct runs, overall and by scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correctness {
    /// Correct runs.
    pub correct: usize,
    /// Runs.
    pub total: usize,
    /// correct / total.
    pub rate: f64,
    /// scenario → [correct, total].
    pub by_scenario: std::collections::BTreeMap<String, [usize; 2]>,
}

/// What the scanners found over every trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceScanSummary {
    /// Traces scanned.
    pub traces_scanned: usize,
    /// Events scanned.
    pub events_scanned: usize,
    /// Traces with payload words.
    pub payload_logged: usize,
    /// Traces with secret words.
    pub secret_logged: usize,
    /// Correct runs.
    pub correctness: Correctness,
    /// Collapse analysis per scenario, sorted by scenario.
    pub collapse_reports: Vec<CollapseReport>,
    /// One line.
    pub conclusion: String,
}

/// How much work the audit moved (counts only; timings stay on the console so reports
/// compare byte for byte).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BenchmarkSummary {
    /// Runs.
    pub runs: usize,
    /// Flows opened.
    pub flows: u64,
    /// Runtime streams opened.
    pub streams: u64,
    /// Source bytes.
    pub source_bytes: u64,
    /// Sink bytes.
    pub sink_bytes: u64,
    /// Sink chunks.
    pub sink_chunks: u64,
    /// Backpressure events.
    pub backpressure_events: u64,
    /// Queue pressure events.
    pub queue_pressure_events: u64,
    /// Trace events.
    pub trace_events: u64,
}

/// The audit report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Format version.
    pub version: &'static str,
    /// `localadapter-quick` or `localadapter-full`.
    pub mode: &'static str,
    /// When it was generated (UTC, RFC 3339).
    pub generated_at: String,
    /// Seed of the first profile.
    pub start_seed: u64,
    /// The active mutant, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutant: Option<&'static str>,
    /// Profiles.
    pub profile_count: usize,
    /// Runs.
    pub trace_count: usize,
    /// The ten gates.
    pub gates: Vec<Gate>,
    /// Scanner results.
    pub trace_scan_summary: TraceScanSummary,
    /// Work counts.
    pub benchmark_summary: BenchmarkSummary,
    /// `pass`, or `fail:` and the failed gates.
    pub conclusion: String,
}

impl Report {
    /// Every required gate passed.
    pub fn passed(&self) -> bool {
        self.gates.iter().all(|g| g.passed || g.severity != "required")
    }

    /// The gates that failed.
    pub fn failed_gates(&self) -> Vec<&'static str> {
        self.gates.iter().filter(|g| !g.passed).map(|g| g.name).collect()
    }

    /// The report as JSON with 2-space indentation.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The console rendering: title, counts, one line per gate, conclusion.
    pub fn console(&self) -> String {
        let mut out = format!("kcheck localadapter ({})\n", self.mode);
        if let Some(m) = self.mutant {
            out.push_str(&format!("mutant: {m}\n"));
        }
        out.push_str(&format!("profiles: {}\ntraces: {}\n", self.profile_count, self.trace_count));
        for g in &self.gates {
            out.push_str(&format!(
                "[{}] {}: {}\n",
                if g.passed { "PASS" } else { "FAIL" },
                g.name,
                g.summary
            ));
        }
        out.push_str(&format!("conclusion: {}\n", self.conclusion));
        out
    }
}

/// One executed run.
pub(crate) struct AuditRun {
    pub profile: usize,
    pub scenario: Scenario,
    pub outcome: std::result::Result<RunOutcome, AdapterError>,
}

/// Runs audits.
#[derive(Debug, Clone)]
pub struct Auditor {
    cfg: AuditConfig,
}

impl Auditor {
    /// Checks the configuration.
    pub fn new(cfg: AuditConfig) -> Result<Self> {
        cfg.local.validate()?;
        let n = cfg.profile_count();
        if n == 0 || n > MAX_PROFILES {
            return Err(AdapterError::InvalidConfig(format!("{n} profiles outside 1..={MAX_PROFILES}")));
        }
        if cfg.start_seed.checked_add(n as u64).is_none() {
            return Err(AdapterError::InvalidConfig("start seed + profiles overflows".into()));
        }
        if let Some(m) = cfg.mutant {
            MutantHook::with(m)?;
        }
        Ok(Auditor { cfg })
    }

    /// The profiles this audit runs.
    pub fn profiles(&self) -> Vec<Profile> {
        let hook = self.cfg.mutant.and_then(|m| MutantHook::with(m).ok()).unwrap_or_default();
        (0..self.cfg.profile_count() as u64)
            .map(|i| Profile::generate_with(self.cfg.start_seed + i, hook))
            .collect()
    }

    /// Runs the audit.
    pub fn run(&self) -> Report {
        let profiles = self.profiles();
        let runs = self.execute(&profiles);
        gates::judge(&self.cfg, &profiles, &runs)
    }

    fn execute(&self, profiles: &[Profile]) -> Vec<AuditRun> {
        let scenarios = self.cfg.mode.scenarios();
        let jobs: Vec<(usize, Scenario)> =
            (0..profiles.len()).flat_map(|p| scenarios.iter().map(move |s| (p, *s))).collect();
        let mut run_cfg = RunConfig { local: self.cfg.local.clone(), ..RunConfig::default() };
        if let Some(m) = self.cfg.mutant {
            run_cfg.mutant = MutantHook::with(m).unwrap_or_default();
        }
        let threads = self
            .cfg
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
            .clamp(1, 16)
            .min(jobs.len().max(1));
        let next = AtomicUsize::new(0);
        let slots: Mutex<Vec<Option<AuditRun>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(p, scenario)) = jobs.get(i) else { break };
                        let outcome = run_scenario(&profiles[p], scenario, &run_cfg);
                        let mut slots = slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        slots[i] = Some(AuditRun { profile: p, scenario, outcome });
                    }
                });
            }
        });
        let slots = slots.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.into_iter().flatten().collect()
    }
}
