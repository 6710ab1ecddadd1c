//! `kcoro plugin info | call | stream` against the Rust example plugin.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example_plugin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_kcoro"));
    let profile_dir = exe.parent().expect("target/<profile>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(&root).args(["build", "-q", "-p", "kcoro-plugin-echo"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    assert!(c.status().expect("cargo build").success());
    profile_dir.join("libkcoro_plugin_echo.so")
}

fn kcoro(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kcoro")).args(args).output().expect("run kcoro")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn info_call_and_stream() {
    let lib = example_plugin();
    let lib = lib.to_str().expect("utf-8 path");

    let out = kcoro(&["plugin", "info", lib]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = text(&out.stdout);
    assert!(info.contains("name:     echo-rust") && info.contains("entries:  echo, echo_async"), "{info}");

    let out = kcoro(&["plugin", "call", lib, "echo", "--data", "hello", "--header", "k=v"]);
    assert_eq!((out.status.success(), text(&out.stdout)), (true, "hello".into()));
    assert!(text(&out.stderr).contains("status: Ok"));

    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-payload.bin");
    std::fs::write(&file, b"from a file").expect("write payload");
    let at = format!("@{}", file.display());
    let out = kcoro(&["plugin", "call", lib, "echo", "--data", &at]);
    assert_eq!(text(&out.stdout), "from a file");

    let out = kcoro(&["plugin", "call", lib, "error"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(1), "boom".into()));
    assert!(text(&out.stderr).contains("status: Err"));

    let out = kcoro(&["plugin", "stream", lib, "stream", "--data", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "frame-1\nframe-2\nframe-3\n");
    assert!(text(&out.stderr).contains("status: StreamEnd"));
}

#[test]
fn bad_libraries_fail_clearly() {
    let out = kcoro(&["plugin", "info", "/no/such/lib.so"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot load /no/such/lib.so"), "{}", text(&out.stderr));
    let out = kcoro(&["plugin", "call", "x.so"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("required arguments were not provided")
            && text(&out.stderr).contains("<ENTRY>")
    );
}
