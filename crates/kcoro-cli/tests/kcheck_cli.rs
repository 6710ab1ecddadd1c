//! `kcheck localadapter` and `kcoro localadapter-demo` as a user runs them: exit codes,
//! the console format, reports that compare byte for byte, and traces that scan clean.

use std::process::Command;

fn kcheck(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kcheck")).args(args).output().expect("kcheck runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kcheck-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn quick_audit_passes_with_the_console_format() {
    let (code, out) = kcheck(&["localadapter", "--quick"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("kcheck localadapter"));
    assert_eq!(lines[1], "profiles: 3");
    assert_eq!(lines[2], "traces: 9");
    assert_eq!(lines.iter().filter(|l| l.starts_with("[PASS] local_adapter_")).count(), 10, "{out}");
    assert!(out.contains("conclusion: pass"));
}

#[test]
fn reports_are_identical_for_the_same_seed_but_the_timestamp() {
    let (a, b) = (temp("a.json"), temp("b.json"));
    for path in [&a, &b] {
        let (code, out) =
            kcheck(&["localadapter", "--quick", "--start-seed", "5", "--out", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
    }
    let strip = |p: &std::path::Path| -> String {
        let text = std::fs::read_to_string(p).unwrap();
        text.lines().filter(|l| !l.contains("\"generated_at\"")).collect::<Vec<_>>().join("\n")
    };
    let report = std::fs::read_to_string(&a).unwrap();
    assert!(report.starts_with("{\n  \"version\""), "2-space indented JSON");
    assert!(report.contains("\"mode\": \"localadapter-quick\""));
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn a_mutant_fails_the_audit_and_names_its_gate() {
    let (code, out) = kcheck(&["localadapter", "--quick", "--mutant", "local_adapter_duplicates_chunk"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[FAIL] local_adapter_sequence_integrity"), "{out}");
    assert!(out.contains("caught by:") && out.contains("local_adapter_sequence_integrity"), "{out}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["localadapter"][..],
        &["localadapter", "--quick", "--full"],
        &["localadapter", "--quick", "--mutant", "no_such_mutant"],
        &["localadapter", "--quick", "--profiles", "0"],
        &["localadapter", "--quick", "--start-seed", "x"],
        &["frobnicate"],
        &[],
    ] {
        let (code, _) = kcheck(args);
        assert_eq!(code, 2, "{args:?}");
    }
}

#[test]
fn localadapter_demo_prints_a_summary_and_a_clean_trace() {
    let trace = temp("trace.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_kcoro"))
        .args(["localadapter-demo", "--flows", "4", "--trace", trace.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("\"flows_closed\": 4"), "{stdout}");
    assert!(stdout.contains("\"completed\": true"));
    let jsonl = std::fs::read_to_string(&trace).unwrap();
    assert!(jsonl.lines().count() > 10);
    assert!(jsonl.lines().all(|l| l.starts_with("{\"seq\":")));
    for forbidden in ["payload\"", "secret", "token", "plaintext"] {
        assert!(!jsonl.contains(forbidden), "trace carries {forbidden}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_kcoro"))
        .args(["localadapter-demo", "--scenario", "local_nope"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
