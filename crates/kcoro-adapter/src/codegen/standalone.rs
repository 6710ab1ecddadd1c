//! `kcheck codegen`'s backend: the generated modules of any seeds as a cargo project of
//! their own, built, run, and compared with the interpreted runner.
//!
//! [`run_standalone`] writes into `work_dir`:
//!
//! ```text
//! Cargo.toml             package `kcoro-generated-backend`, its own workspace, depending on
//!                        this crate by absolute path, and on serde_json
//! Cargo.lock             copied once from this crate's workspace, so versions match
//! src/main.rs            runs every module's demo, one JSON line per profile and per run
//! src/profiles/kp_N.rs   render::render_module(seed N, root `kcoro_adapter`)
//! ```
//!
//! then builds it with `cargo build --quiet` (`--release` for [`BuildMode::Release`]; `$CARGO` or `cargo`, with
//! `CARGO_TARGET_DIR=work_dir/target`, so it never waits on the workspace's build lock and
//! later runs build incrementally), runs the binary and compares each printed profile and
//! summary with [`Profile::generate`] and [`run_scenario`].
//!
//! The binary prints, per profile, `{"seed":N,"profile":{…}}` and then, per scenario its
//! demo ran, `{"seed":N,"scenario":"…","summary":{…}}`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::{compare, render};
use crate::error::{AdapterError, Result};
use crate::profile::Profile;
use crate::profile::draw::draw;
use crate::runner::{RunConfig, Scenario, run_scenario};

/// The generated package (and binary) name.
pub const PACKAGE: &str = "kcoro-generated-backend";

/// Lines of cargo's or the binary's stderr kept in an error.
const STDERR_TAIL_LINES: usize = 30;

/// How [`run_standalone`] builds the generated crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildMode {
    /// Cargo's dev profile: overflow checks and debug assertions on, and built in less than
    /// half the CPU time of a release build (the check runs in milliseconds either way).
    #[default]
    Debug,
    /// `--release`: optimised, as a deployed backend would be built.
    Release,
}

impl BuildMode {
    /// What `cargo build` is given for this mode.
    fn cargo_args(self) -> &'static [&'static str] {
        match self {
            BuildMode::Debug => &[],
            BuildMode::Release => &["--release"],
        }
    }

    /// Cargo's name for the profile's output directory.
    fn dir(self) -> &'static str {
        match self {
            BuildMode::Debug => "debug",
            BuildMode::Release => "release",
        }
    }
}

/// What [`run_standalone`] built and found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandaloneReport {
    /// Profiles generated and compared.
    pub profiles: usize,
    /// (profile, scenario) runs compared.
    pub runs: usize,
    /// What differed: `kp_<seed>:profile`, or `kp_<seed>:<scenario>` with the reason.
    pub mismatches: Vec<String>,
    /// Wall-clock seconds `cargo build` took.
    pub build_seconds: f64,
    /// The files written (absolute paths): Cargo.toml, src/main.rs, src/profiles/*.rs.
    pub generated_files: Vec<String>,
}

/// Generates the modules of `profiles` seeds from `start_seed` into a cargo project in
/// `work_dir` (created if missing, reused if present), builds it (`build_mode`) and runs it, and
/// compares the output for each of `scenarios` with the interpreted runner.
///
/// Fails with [`AdapterError::InvalidConfig`] for no profiles or a seed range past
/// `u64::MAX`, [`AdapterError::Io`] when a file cannot be written or cargo or the binary
/// cannot be started, and [`AdapterError::Runtime`] when the build or the binary fails
/// (with the tail of its stderr) or prints a line that is not what it should print.
pub fn run_standalone(
    start_seed: u64,
    profiles: usize,
    scenarios: &[Scenario],
    work_dir: &Path,
    build_mode: BuildMode,
) -> Result<StandaloneReport> {
    if profiles == 0 {
        return Err(AdapterError::InvalidConfig("codegen needs at least one profile".into()));
    }
    let seeds: Vec<u64> =
        (0..profiles as u64).map(|i| start_seed.checked_add(i)).collect::<Option<_>>().ok_or_else(|| {
            AdapterError::InvalidConfig(format!("{profiles} seeds from {start_seed} overflow u64"))
        })?;
    let dir = std::path::absolute(work_dir)
        .map_err(|e| AdapterError::Io(format!("work dir {}: {e}", work_dir.display())))?;
    let generated_files = write_project(&seeds, &dir)?;

    let started = Instant::now();
    build(&dir, build_mode)?;
    let build_seconds = started.elapsed().as_secs_f64();

    let output = run_binary(&dir, build_mode)?;
    let lines = parse_output(&output)?;

    let cfg = RunConfig::default();
    let mut mismatches = Vec::new();
    let mut runs = 0;
    for &seed in &seeds {
        let module = render::module_name(seed);
        let profile = Profile::generate(seed);
        let want = serde_json::to_value(&profile)
            .map_err(|e| AdapterError::Runtime(format!("cannot serialise profile {seed}: {e}")));
        let got = lines.iter().find(|l| l.seed == seed && l.scenario.is_none()).map(|l| l.value.clone());
        if let Some(why) = compare(want, got) {
            mismatches.push(format!("{module}:profile ({why})"));
        }
        for &scenario in scenarios {
            runs += 1;
            let want = run_scenario(&profile, scenario, &cfg).and_then(|run| {
                serde_json::to_value(&run.summary)
                    .map_err(|e| AdapterError::Runtime(format!("cannot serialise a summary: {e}")))
            });
            let got = lines
                .iter()
                .find(|l| l.seed == seed && l.scenario.as_deref() == Some(scenario.name()))
                .map(|l| l.value.clone());
            if let Some(why) = compare(want, got) {
                mismatches.push(format!("{module}:{} ({why})", scenario.name()));
            }
        }
    }
    Ok(StandaloneReport { profiles: seeds.len(), runs, mismatches, build_seconds, generated_files })
}

/// The adapter crate's directory, for the generated project's path dependency.
fn adapter_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes the project; returns the generated files.
fn write_project(seeds: &[u64], dir: &Path) -> Result<Vec<String>> {
    let profiles_dir = dir.join("src").join("profiles");
    std::fs::create_dir_all(&profiles_dir)
        .map_err(|e| AdapterError::Io(format!("cannot create {}: {e}", profiles_dir.display())))?;
    // Modules of earlier runs with other seeds: not part of this project any more.
    if let Ok(entries) = std::fs::read_dir(&profiles_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let current = seeds.iter().any(|&s| name == format!("{}.rs", render::module_name(s)));
            if name.starts_with("kp_") && name.ends_with(".rs") && !current {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let lock = dir.join("Cargo.lock");
    let workspace_lock = adapter_dir().join("../../Cargo.lock");
    if !lock.exists() && workspace_lock.exists() {
        std::fs::copy(&workspace_lock, &lock)
            .map_err(|e| AdapterError::Io(format!("cannot copy {}: {e}", workspace_lock.display())))?;
    }
    let mut files =
        vec![(dir.join("Cargo.toml"), cargo_toml()), (dir.join("src").join("main.rs"), main_rs(seeds))];
    for &seed in seeds {
        let path = profiles_dir.join(format!("{}.rs", render::module_name(seed)));
        files.push((path, render::render_module(&draw(seed, seed), seed, "kcoro_adapter")));
    }
    let mut written = Vec::new();
    for (path, text) in files {
        // Unchanged files are left alone, so a rerun rebuilds nothing.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text)
                .map_err(|e| AdapterError::Io(format!("cannot write {}: {e}", path.display())))?;
        }
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn cargo_toml() -> String {
    format!(
        "# Generated by kcoro_adapter::codegen::standalone: do not edit.\n\
         [package]\n\
         name = \"{PACKAGE}\"\n\
         version = {version}\n\
         edition = \"2024\"\n\
         publish = false\n\
         \n\
         [dependencies]\n\
         kcoro-adapter = {{ path = {path} }}\n\
         serde_json = \"1\"\n\
         \n\
         # A workspace of its own: never part of the adapter's workspace, never on its lock.\n\
         [workspace]\n",
        version = toml_string(env!("CARGO_PKG_VERSION")),
        path = toml_string(&adapter_dir().display().to_string()),
    )
}

fn main_rs(seeds: &[u64]) -> String {
    let mut mods = String::new();
    let mut table = String::new();
    for &seed in seeds {
        let m = render::module_name(seed);
        mods.push_str(&format!("    pub mod {m};\n"));
        table.push_str(&format!("    ({seed}, profiles::{m}::profile, profiles::{m}::demo),\n"));
    }
    format!(
        r#"//! Generated by `kcoro_adapter::codegen::standalone`: do not edit. Runs every generated
//! module's demo and prints one JSON line per profile and one per run.

// Not every constant of a generated module is used by this binary.
#![allow(dead_code)]

mod profiles {{
{mods}}}

type Twin = (u64, fn() -> kcoro_adapter::Profile, fn(Option<usize>) -> Vec<kcoro_adapter::Summary>);

const TWINS: &[Twin] = &[
{table}];

fn main() {{
    for &(seed, profile, demo) in TWINS {{
        println!("{{}}", serde_json::json!({{ "seed": seed, "profile": profile() }}));
        for summary in demo(None) {{
            println!("{{}}", serde_json::json!({{ "seed": seed, "scenario": summary.scenario, "summary": summary }}));
        }}
    }}
}}
"#
    )
}

/// The last lines of `stderr`.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
}

fn build(dir: &Path, mode: BuildMode) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let shown = Path::new(&cargo).display().to_string();
    let out = Command::new(&cargo)
        .args(["build", "--quiet"])
        .args(mode.cargo_args())
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            AdapterError::Io(if e.kind() == std::io::ErrorKind::NotFound {
                format!("cannot run `{shown}`: not found (set CARGO or put cargo on PATH)")
            } else {
                format!("cannot run `{shown}`: {e}")
            })
        })?;
    if !out.status.success() {
        return Err(AdapterError::Runtime(format!(
            "`{}` of the generated backend in {} failed ({}):\n{}",
            [&["cargo", "build"], mode.cargo_args()].concat().join(" "),
            dir.display(),
            out.status,
            tail(&out.stderr)
        )));
    }
    Ok(())
}

fn run_binary(dir: &Path, mode: BuildMode) -> Result<String> {
    let exe = dir.join("target").join(mode.dir()).join(format!("{PACKAGE}{}", std::env::consts::EXE_SUFFIX));
    let out = Command::new(&exe)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| AdapterError::Io(format!("cannot run {}: {e}", exe.display())))?;
    if !out.status.success() {
        return Err(AdapterError::Runtime(format!(
            "the generated backend {} failed ({}):\n{}",
            exe.display(),
            out.status,
            tail(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| AdapterError::Runtime("the generated backend printed invalid UTF-8".into()))
}

/// One line of the binary's output: a profile (`scenario` is `None`) or a run's summary.
#[derive(Debug)]
struct Line {
    seed: u64,
    scenario: Option<String>,
    value: Value,
}

fn parse_output(stdout: &str) -> Result<Vec<Line>> {
    let mut lines = Vec::new();
    for (n, text) in stdout.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |why: &str| {
            let shown: String = text.chars().take(120).collect();
            AdapterError::Runtime(format!("generated backend output line {}: {why}: {shown}", n + 1))
        };
        let v: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
        let seed = v.get("seed").and_then(Value::as_u64).ok_or_else(|| bad("no numeric `seed`"))?;
        let line = match (v.get("profile"), v.get("scenario"), v.get("summary")) {
            (Some(p), None, None) => Line { seed, scenario: None, value: p.clone() },
            (None, Some(Value::String(s)), Some(summary)) => {
                Line { seed, scenario: Some(s.clone()), value: summary.clone() }
            }
            _ => return Err(bad("neither a profile nor a scenario with its summary")),
        };
        lines.push(line);
    }
    Ok(lines)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn output_lines_parse_or_fail_clearly() {
        let ok =
            "{\"seed\":1,\"profile\":{\"id\":\"kp_1\"}}\n\n{\"seed\":1,\"scenario\":\"a\",\"summary\":{}}\n";
        let lines = parse_output(ok).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].seed, lines[0].scenario.as_deref()), (1, None));
        assert_eq!(lines[1].scenario.as_deref(), Some("a"));
        for bad in
            ["not json", "{\"profile\":{}}", "{\"seed\":1}", "{\"seed\":1,\"scenario\":2,\"summary\":{}}"]
        {
            let e = parse_output(bad).unwrap_err();
            assert!(matches!(e, AdapterError::Runtime(ref m) if m.contains("line 1")), "{e}");
        }
    }

    #[test]
    fn the_project_files_are_well_formed_and_clean() {
        let toml = cargo_toml();
        assert!(toml.contains("[workspace]\n") && toml.contains("serde_json = \"1\""));
        assert!(toml.contains(&toml_string(&adapter_dir().display().to_string())));
        assert_eq!(toml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let main = main_rs(&[3, 4]);
        assert!(main.contains("    pub mod kp_3;\n    pub mod kp_4;\n"));
        assert!(main.contains("(4, profiles::kp_4::profile, profiles::kp_4::demo),"));
        for text in [toml.as_str(), main.as_str()] {
            assert!(crate::trace::scan_json(&serde_json::to_string(text).unwrap()).is_clean());
        }
    }

    #[test]
    fn bad_arguments_are_refused_before_any_work() {
        let dir = std::env::temp_dir().join("kcoro-codegen-never-written");
        assert!(matches!(
            run_standalone(1, 0, &Scenario::QUICK, &dir, BuildMode::Debug),
            Err(AdapterError::InvalidConfig(_))
        ));
        assert!(matches!(
            run_standalone(u64::MAX, 2, &Scenario::QUICK, &dir, BuildMode::Debug),
            Err(AdapterError::InvalidConfig(_))
        ));
        assert!(!dir.exists());
    }
}
