//! Both binaries as a user meets them: `--help` everywhere with an example, `--version`,
//! usage errors that exit 2 with clap's suggestion, completions, and the plugin commands
//! that send request metadata (`stream`) and stdin lines (`bidi`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run the binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const KCORO: &str = env!("CARGO_BIN_EXE_kcoro");
const KCHECK: &str = env!("CARGO_BIN_EXE_kcheck");

#[test]
fn every_subcommand_has_help_with_an_example() {
    let cases: &[(&str, &[&str])] = &[
        (KCORO, &["--help"]),
        (KCORO, &["demo", "--help"]),
        (KCORO, &["demo", "spawn", "--help"]),
        (KCORO, &["plugin", "info", "--help"]),
        (KCORO, &["plugin", "call", "--help"]),
        (KCORO, &["plugin", "stream", "--help"]),
        (KCORO, &["plugin", "bidi", "--help"]),
        (KCORO, &["localadapter-demo", "--help"]),
        (KCORO, &["ipc", "serve", "--help"]),
        (KCORO, &["ipc", "send", "--help"]),
        (KCORO, &["ipc", "recv", "--help"]),
        (KCORO, &["ipc", "ls", "--help"]),
        (KCORO, &["completions", "--help"]),
        (KCHECK, &["--help"]),
        (KCHECK, &["localadapter", "--help"]),
        (KCHECK, &["codegen", "--help"]),
    ];
    for (bin, args) in cases {
        let out = run(bin, args);
        let help = text(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(help.contains("Example"), "{args:?} shows no example:\n{help}");
        assert!(help.contains("Usage:"), "{args:?}:\n{help}");
    }
    // Flags are listed with their doc.
    assert!(text(&run(KCORO, &["demo", "--help"]).stdout).contains("--inject-fault <INJECT_FAULT>"));
    assert!(text(&run(KCHECK, &["localadapter", "--help"]).stdout).contains("--mutant <MUTANT>"));
}

#[test]
fn misspelt_flags_exit_2_with_a_suggestion() {
    for (bin, args, want) in [
        (KCORO, &["demo", "--secnds", "1"][..], "--seconds"),
        (KCORO, &["plugin", "call", "x.so", "echo", "--daat", "x"], "--data"),
        (KCORO, &["ipc", "ls", "unix:/x", "--secret-fil", "f"], "--secret-file"),
        (KCHECK, &["localadapter", "--quik"], "--quick"),
        (KCHECK, &["codegen", "--quick", "--work-dri", "x"], "--work-dir"),
    ] {
        let out = run(bin, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("a similar argument exists") && err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    // kcheck's contract: 2 for usage, so a mode is required and the two modes exclude each other.
    assert_eq!(run(KCHECK, &["localadapter"]).status.code(), Some(2));
    assert_eq!(run(KCHECK, &["localadapter", "--quick", "--full"]).status.code(), Some(2));
    let out = run(KCHECK, &["localadapter", "--quick", "--mutant", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("local_adapter_duplicates_chunk"), "the possible mutants are listed");
}

#[test]
fn versions_and_completions() {
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(text(&run(KCORO, &["--version"]).stdout).trim(), format!("kcoro {v}"));
    assert_eq!(text(&run(KCHECK, &["--version"]).stdout).trim(), format!("kcheck {v}"));
    for shell in ["bash", "zsh", "fish"] {
        let out = run(KCORO, &["completions", shell]);
        assert!(out.status.success());
        let script = text(&out.stdout);
        assert!(script.contains("localadapter-demo") && script.contains("kcoro"), "{shell}:\n{script}");
    }
    assert_eq!(run(KCORO, &["completions", "tcsh"]).status.code(), Some(2));
}

/// The example plugin, built by cargo for this workspace.
fn echo_plugin() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "kcoro-plugin-echo"])
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(status.success());
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("debug/libkcoro_plugin_echo.so")
}

#[test]
fn plugin_stream_sends_the_request_metadata() {
    let lib = echo_plugin();
    let lib = lib.to_str().unwrap();
    let out = run(
        KCORO,
        &[
            "plugin", "stream", lib, "describe", "--method", "POST", "--path", "/users", "--query", "page=2",
            "--header", "x-id=7",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "POST /users?page=2\nx-id=7\n");
    assert!(text(&out.stderr).contains("status: StreamEnd"));
}

#[test]
fn plugin_bidi_echoes_stdin_lines() {
    let lib = echo_plugin();
    let mut child = Command::new(KCORO)
        .args(["plugin", "bidi", lib.to_str().unwrap(), "bidi"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ping\npong\n\nlast line\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ping\npong\n\nlast line\n");
    assert!(text(&out.stderr).contains("status: StreamEnd"));
}
