//! `kcoro plugin info | call | stream` against the Rust example plugin, and against C
//! plugins of nylon-ring's early layouts and of the seed's version 1: layouts detected,
//! wrong layouts refused by name (never a crash), `--raw` calls.

use std::os::unix::process::ExitStatusExt;
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

/// `tests/plugins/c/<src>` built with `defines` as `lib<name>.so` (one name per test: the
/// tests run in parallel).
fn c_plugin(src: &str, defines: &[&str], name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    let out = dir.join(format!("lib{name}.so"));
    // Through a temporary name: another test binary never loads a half-written library.
    let tmp = dir.join(format!("lib{name}.so.tmp{}", std::process::id()));
    let st = Command::new("cc")
        .args(["-std=c11", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root.join("tests/plugins/c"))
        .arg("-I")
        .arg(root.join("sdk/c"))
        .args(defines)
        .arg("-o")
        .arg(&tmp)
        .arg(root.join("tests/plugins/c").join(src))
        .arg("-lpthread")
        .status()
        .expect("cc");
    assert!(st.success(), "building {name} failed");
    std::fs::rename(&tmp, &out).expect("rename");
    out.to_str().expect("utf-8 path").to_owned()
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

/// The regression: `--abi nylon-6slot` on a 3-slot plugin called the word after its table
/// (0x911 in nylon-ring's example plugins) as `shutdown`, and even `info` died of SIGSEGV.
#[test]
fn a_wrong_layout_is_refused_naming_the_slot_never_a_crash() {
    let lib = c_plugin("early.c", &["-DNY_SLOTS=3", "-DNY_TRAILER=0x911"], "cli_3slot_trailer");
    for (abi, slot) in [("nylon-6slot", "slot 3 (`shutdown`)"), ("kcoro-v1", "slot 3 (`stream_data`)")] {
        for cmd in [&["info", &lib][..], &["call", &lib, "echo", "--data", "x"]] {
            let out = kcoro(&[&["plugin", "--abi", abi][..], cmd].concat());
            let err = text(&out.stderr);
            assert_eq!((out.status.signal(), out.status.code()), (None, Some(1)), "{abi} {cmd:?}: {err}");
            let want =
                format!("{slot} = 0x911 does not point into executable code of libcli_3slot_trailer.so");
            assert!(err.contains(&want) && err.contains("wrong --abi layout?"), "{abi} {cmd:?}: {err}");
            assert!(out.stdout.is_empty(), "{abi}: nothing printed before the refusal");
        }
    }
    // Detected without --abi, and served.
    let out = kcoro(&["plugin", "info", &lib]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("layout:   nylon-3slot"), "{}", text(&out.stdout));
    let out = kcoro(&["plugin", "call", &lib, "echo", "--data", "3-slot"]);
    assert_eq!((out.status.success(), text(&out.stdout)), (true, "3-slot".into()), "{}", text(&out.stderr));
}

#[test]
fn plain_version_1_layouts_are_detected() {
    for (src, defines, name, layout) in [
        ("seed_v1.c", &[][..], "cli_seed_v1", "kcoro-v1"),
        ("early.c", &["-DNY_SLOTS=6"][..], "cli_6slot_detect", "nylon-6slot"),
    ] {
        let lib = c_plugin(src, defines, name);
        let out = kcoro(&["plugin", "info", &lib]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let info = text(&out.stdout);
        assert!(info.contains(&format!("layout:   {layout} (")), "{name}: {info}");
        let out = kcoro(&["plugin", "call", &lib, "echo", "--data", "found"]);
        assert!(
            out.status.success() && text(&out.stdout).ends_with("found"),
            "{name}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn raw_calls_reach_entries_only_handle_raw_serves() {
    let lib = c_plugin("early.c", &["-DNY_SLOTS=6"], "cli_6slot_raw");
    // With a request, the call goes to `handle`, which does not know the entry.
    let out = kcoro(&["plugin", "--abi", "nylon-6slot", "call", &lib, "fast_echo", "--data", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("status: Unsupported"), "{}", text(&out.stderr));
    let out = kcoro(&["plugin", "--abi", "nylon-6slot", "call", "--raw", &lib, "fast_echo", "--data", "hi"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "hi".into()), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("status: Ok"));
    // A raw stream: handle_raw too.
    let out = kcoro(&["plugin", "stream", "--raw", &lib, "stream", "--data", "2"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "frame-1\nframe-2\n".into()));
    // A raw call has no request to describe.
    let out = kcoro(&["plugin", "call", "--raw", &lib, "fast_echo", "--header", "k=v"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be used with"), "{}", text(&out.stderr));
}
