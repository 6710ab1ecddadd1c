//! `kcheck codegen`'s backend end to end: generate two profiles' modules into a cargo
//! project of their own, build it with cargo, run it, and compare with the interpreted
//! runner. Ignored by default: it runs cargo (about a minute cold, seconds warm).
//!
//! `cargo test -p kcoro-adapter --test codegen_standalone -- --ignored --nocapture`

use std::path::Path;

use kcoro_adapter::Scenario;
use kcoro_adapter::codegen::standalone::{BuildMode, run_standalone};

#[test]
#[ignore = "runs cargo build --release on a generated project (about a minute cold)"]
fn generated_backend_builds_runs_and_matches_the_interpreted_runner() {
    // Under cargo's per-target scratch directory: kept between runs, so reruns build
    // incrementally.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("codegen_standalone");
    let report =
        run_standalone(1, 2, &Scenario::QUICK, &dir, BuildMode::Release).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "standalone: {} profiles, {} runs, build {:.1}s, {} files",
        report.profiles,
        report.runs,
        report.build_seconds,
        report.generated_files.len()
    );
    assert_eq!(report.mismatches, Vec::<String>::new());
    assert_eq!((report.profiles, report.runs), (2, 2 * Scenario::QUICK.len()));
    assert_eq!(report.generated_files.len(), 4, "Cargo.toml, main.rs, two modules");
    for f in &report.generated_files {
        assert!(Path::new(f).is_file(), "{f}");
    }
}
