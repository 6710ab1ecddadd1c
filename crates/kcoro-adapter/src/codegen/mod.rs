//! The generated backend: per profile, a Rust module that specialises the profile's
//! constants (limits, source model defaults, mapping and backpressure policy, trace hygiene
//! flags) and has a demo entry point; and the parity check between those modules, compiled
//! and run, and the interpreted runner.
//!
//! - [`render`] renders one module ([`render::render_module`]).
//! - [`twins`] holds the modules of seeds 1..=20, rendered by the build script and compiled
//!   into this crate, so [`parity`] (the audit's `local_adapter_generated_backend_parity`
//!   gate) runs them in milliseconds without invoking cargo.
//! - [`standalone`] writes the modules of any seeds into a cargo project of their own,
//!   builds it, runs it and compares its output (`kcheck codegen`).
//!
//! Parity means the generated module's `profile()` equals [`Profile::generate`] for its
//! seed, and its `demo()` gives the same [`Summary`] (compared as serialized JSON) as
//! [`run_scenario`] under the interpreted profile, scenario by scenario.

pub mod render;
pub mod standalone;

/// The compiled twins: `kp_<seed>` for every seed of [`render::TWIN_SEEDS`], and `TWINS`.
// Generated code: its constants are documented, but lints aimed at hand-written code
// (unused constants, missing docs) are silenced here and only here.
#[allow(missing_docs, dead_code)]
pub mod twins {
    include!(concat!(env!("OUT_DIR"), "/twins.rs"));
}

use serde::Serialize;

use crate::profile::Profile;
use crate::runner::{RunConfig, Scenario, Summary, run_scenario};

/// A compiled twin's `profile` and `demo`.
pub type Twin = (fn() -> Profile, fn(Option<usize>) -> Vec<Summary>);

/// The compiled twin of `seed`, if the build rendered one (seeds 1..=20).
pub fn twin(seed: u64) -> Option<Twin> {
    twins::TWINS.iter().find(|(s, ..)| *s == seed).map(|&(_, profile, demo)| (profile, demo))
}

/// What [`parity`] compared and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParityReport {
    /// Twins whose profile was compared.
    pub checked_profiles: usize,
    /// (twin, scenario) runs compared.
    pub checked_runs: usize,
    /// What differed: `kp_<seed>:profile`, or `kp_<seed>:<scenario>` with the reason.
    pub mismatches: Vec<String>,
    /// Seeds without a compiled twin; nothing was checked for them.
    pub missing_twins: Vec<u64>,
}

impl ParityReport {
    /// Something was checked, nothing differed and no twin was missing.
    pub fn is_clean(&self) -> bool {
        self.checked_profiles > 0 && self.mismatches.is_empty() && self.missing_twins.is_empty()
    }
}

/// Compares, for each seed with a compiled twin, the twin's `profile()` with
/// [`Profile::generate`] and, for each of `scenarios`, the summary of the twin's `demo(None)`
/// with that of [`run_scenario`] under the interpreted profile. Seeds without a twin are
/// listed in [`ParityReport::missing_twins`].
pub fn parity(seeds: impl IntoIterator<Item = u64>, scenarios: &[Scenario]) -> ParityReport {
    let mut report = ParityReport::default();
    let cfg = RunConfig::default();
    for seed in seeds {
        let Some((twin_profile, twin_demo)) = twin(seed) else {
            report.missing_twins.push(seed);
            continue;
        };
        let module = render::module_name(seed);
        report.checked_profiles += 1;
        let interpreted = Profile::generate(seed);
        if twin_profile() != interpreted {
            report.mismatches.push(format!("{module}:profile"));
        }
        let generated = twin_demo(None);
        for &scenario in scenarios {
            report.checked_runs += 1;
            let want = run_scenario(&interpreted, scenario, &cfg).map(|run| summary_json(&run.summary));
            let got = generated.iter().find(|s| s.scenario == scenario.name()).map(summary_json);
            if let Some(why) = compare(want, got) {
                report.mismatches.push(format!("{module}:{} ({why})", scenario.name()));
            }
        }
    }
    report
}

/// A summary as the JSON it is compared by.
fn summary_json(s: &Summary) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Why an interpreted run (`want`) and the generated one (`got`, `None` when the demo has
/// no summary for the scenario) differ, if they do.
pub(crate) fn compare<T: PartialEq>(want: crate::Result<T>, got: Option<T>) -> Option<String> {
    match (want, got) {
        (Ok(w), Some(g)) if w == g => None,
        (Ok(_), Some(_)) => Some("summaries differ".into()),
        (Ok(_), None) => Some("the generated demo has no summary".into()),
        (Err(e), _) => Some(format!("the interpreted run failed: {}", e.class())),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::local::{SourceModel, generate_source_plan};
    use crate::profile::draw::draw;

    #[test]
    fn every_twin_is_its_seeds_profile() {
        assert_eq!(twins::TWINS.len(), render::TWIN_SEEDS.count());
        for seed in render::TWIN_SEEDS {
            let (profile, _) = twin(seed).expect("a twin for every default audit seed");
            assert_eq!(profile(), Profile::generate(seed), "seed {seed}");
        }
    }

    #[test]
    fn the_compiled_twins_are_what_render_gives_now() {
        let compiled = include_str!(concat!(env!("OUT_DIR"), "/twins.rs"));
        assert_eq!(compiled, render::render_twins(render::TWIN_SEEDS));
    }

    #[test]
    fn parity_holds_for_the_quick_seeds_on_every_scenario() {
        let r = parity(1..=3, &Scenario::ALL);
        assert_eq!(r.mismatches, Vec::<String>::new());
        assert_eq!((r.checked_profiles, r.checked_runs), (3, 33));
        assert!(r.missing_twins.is_empty() && r.is_clean());
    }

    #[test]
    fn a_seed_without_a_twin_is_reported_not_skipped() {
        assert!(twin(999).is_none());
        let r = parity([2, 999], &Scenario::QUICK);
        assert_eq!(r.missing_twins, [999]);
        assert_eq!((r.checked_profiles, r.checked_runs), (1, 3));
        assert!(r.mismatches.is_empty() && !r.is_clean());
        let none = parity([999], &Scenario::QUICK);
        assert_eq!((none.checked_profiles, none.checked_runs, &none.missing_twins[..]), (0, 0, &[999][..]));
        assert!(!none.is_clean(), "checking nothing is not parity");
    }

    #[test]
    fn compare_names_every_difference() {
        assert_eq!(compare(Ok("a"), Some("a")), None);
        assert!(compare(Ok("a"), Some("b")).is_some());
        assert!(compare(Ok("a"), None).is_some());
        let e: crate::Result<String> = Err(crate::AdapterError::Runtime("x".into()));
        assert!(compare(e.clone(), None).is_some() && compare(e, Some("a".into())).is_some());
    }

    #[test]
    fn twin_constants_match_the_interpreted_runner() {
        for seed in render::TWIN_SEEDS.take(6) {
            let p = Profile::generate(seed);
            let text = render::render_module(&draw(seed, seed), seed, "crate");
            let konst = |name: &str| -> String {
                let line = text
                    .lines()
                    .find(|l| l.starts_with(&format!("pub const {name}:")))
                    .unwrap_or_else(|| panic!("{name} missing"));
                line.rsplit(" = ").next().unwrap().trim_end_matches(';').to_string()
            };
            let num = |name: &str| konst(name).parse::<u64>().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(num("WINDOW"), p.window());
            assert_eq!(num("CARRIER_HEADER_BYTES"), p.carrier.family.header_bytes());
            assert_eq!(konst("BACKEND_VERSION"), format!("{:?}", env!("CARGO_PKG_VERSION")));
            assert_eq!(konst("TRACE_PAYLOAD_HYGIENE"), "true");
            assert_eq!(konst("TRACE_SECRET_HYGIENE"), "true");
            // The source model defaults the module states are the ones the runner uses.
            let c = p.local.max_chunk;
            let small = generate_source_plan(SourceModel::SmallBurst, 2, seed, c).unwrap();
            for f in &small.flows {
                let want = num("SMALL_BURST_BASE") + (seed + f.index as u64) % num("SMALL_BURST_SPAN");
                assert_eq!(f.chunks[0].byte_count, want);
            }
            let large = generate_source_plan(SourceModel::LargeObject, 1, seed, c).unwrap();
            assert_eq!(large.flows[0].chunks.len() as u64, num("LARGE_OBJECT_CHUNKS"));
            assert!(large.flows[0].chunks.iter().all(|c| c.byte_count == num("LARGE_OBJECT_CHUNK")));
            let drip = generate_source_plan(SourceModel::SlowDrip, 1, seed, c).unwrap();
            assert_eq!(drip.flows[0].chunks.len() as u64, num("SLOW_DRIP_CHUNKS"));
            for (i, ch) in drip.flows[0].chunks.iter().enumerate() {
                let i = i as u64;
                assert_eq!(ch.byte_count, num("SLOW_DRIP_BASE") + (seed + i) % num("SLOW_DRIP_SPAN"));
                assert_eq!(ch.tick, num("SLOW_DRIP_TICK_MS") * i);
            }
            let mixed = generate_source_plan(SourceModel::MixedFlow, 3, seed, c).unwrap();
            assert!(mixed.flows[0].chunks.iter().all(|c| c.byte_count == num("MIXED_BULK_CHUNK")));
            assert_eq!(mixed.flows[1].chunks[0].byte_count, num("MIXED_SMALL_BYTES"));
            for m in [SourceModel::Resetting, SourceModel::HalfClose] {
                let plan = generate_source_plan(m, 1, seed, c).unwrap();
                assert_eq!(plan.flows[0].chunks[0].byte_count, num("FIRST_CHUNK_BYTES"));
            }
        }
    }

    #[test]
    fn the_generated_demo_is_the_interpreted_run_and_clean() {
        let (_, demo) = twin(4).unwrap();
        let p = Profile::generate(4);
        let got = demo(None);
        assert_eq!(got.len(), Scenario::ALL.len());
        for (s, scenario) in got.iter().zip(Scenario::ALL) {
            let want = run_scenario(&p, scenario, &RunConfig::default()).unwrap().summary;
            assert_eq!(summary_json(s), summary_json(&want));
            assert!(s.completed, "{}", s.scenario);
            assert_eq!(s.payload_logged, !twins::kp_4::TRACE_PAYLOAD_HYGIENE);
            assert_eq!(s.secret_logged, !twins::kp_4::TRACE_SECRET_HYGIENE);
        }
        // The flow count reaches the runs.
        let two = demo(Some(2));
        let many = two.iter().find(|s| s.scenario == "many_small_flows").unwrap();
        assert_eq!(many.flows_opened, 2);
    }

    #[test]
    fn generated_modules_carry_no_sensitive_words() {
        let compiled = include_str!(concat!(env!("OUT_DIR"), "/twins.rs"));
        let standalone = render::render_module(&draw(77, 77), 77, "kcoro_adapter");
        for text in [compiled, standalone.as_str()] {
            let scan = crate::trace::scan_json(&serde_json::to_string(text).unwrap());
            assert!(scan.is_clean(), "{:?}", scan.hits);
            // Directly too: no word of the scanner's lists outside the audit's own vocabulary.
            let mut lower = text.to_ascii_lowercase();
            for ok in crate::trace::ALLOWED {
                lower = lower.replace(ok, "");
            }
            for bad in ["secret", "token", "payload", "password", "private", "credential"] {
                assert!(!lower.contains(bad), "`{bad}` in a generated module");
            }
        }
    }
}
