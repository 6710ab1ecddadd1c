//! Builds the example plugins the tests load: the Rust one with cargo, the C and C++ ones
//! with the system compiler, the Go ones with `go` when it is installed.
#![allow(dead_code)] // each test file uses part of this

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin output dir");
    dir
}

static BUILD: Mutex<()> = Mutex::new(());

/// Runs `cmd` to produce `out` unless it is newer than every input; writes through a
/// temporary name so concurrent test binaries never load a half-written library.
fn build(out: &Path, inputs: &[PathBuf], cmd: impl FnOnce(&Path) -> Command) -> PathBuf {
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let newest = inputs.iter().filter_map(|p| p.metadata().and_then(|m| m.modified()).ok()).max();
    let fresh = out.metadata().and_then(|m| m.modified()).ok();
    if let (Some(n), Some(f)) = (newest, fresh)
        && f >= n
    {
        return out.to_path_buf();
    }
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let mut c = cmd(&tmp);
    let st = c.status().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
    assert!(st.success(), "{c:?} failed");
    std::fs::rename(&tmp, out).expect("rename built plugin");
    out.to_path_buf()
}

/// The Rust example plugin, built by cargo for this test's profile.
pub fn rust_echo() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let lib = profile_dir.join("libkcoro_plugin_echo.so");
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(root()).args(["build", "-q", "-p", "kcoro-plugin-echo"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    let st = c.status().expect("cargo build of the Rust example plugin");
    assert!(st.success() && lib.exists(), "building {} failed", lib.display());
    lib
}

/// Whether `tool arg` runs and succeeds (Go answers `go version`, not `--version`).
fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success())
}

/// A C file from `sdk/c/examples` built as a shared library.
pub fn c_lib(rel: &str) -> PathBuf {
    let src = root().join("sdk/c/examples").join(rel);
    let examples = root().join("sdk/c/examples");
    let inputs = [
        src.clone(),
        root().join("sdk/c/kcoro_plugin.h"),
        examples.join("kc_workers.h"),
        examples.join("bad/common.h"),
    ];
    let name = format!("lib{}.so", rel.replace(['/', '.'], "_"));
    build(&out_dir().join(name), &inputs, |tmp| {
        let mut c = Command::new("cc");
        c.args(["-std=c11", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(root().join("sdk/c"))
            .arg("-o")
            .arg(tmp)
            .arg(&src)
            .arg("-lpthread");
        c
    })
}

/// The C++ example built as a shared library.
pub fn cpp_echo() -> PathBuf {
    let src = root().join("sdk/cpp/examples/echo.cpp");
    let inputs = [
        src.clone(),
        root().join("sdk/cpp/kcoro_plugin.hpp"),
        root().join("sdk/c/kcoro_plugin.h"),
        root().join("sdk/c/examples/kc_workers.h"),
    ];
    build(&out_dir().join("libecho_cpp.so"), &inputs, |tmp| {
        let mut c = Command::new("c++");
        c.args(["-std=c++17", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(root().join("sdk/c"))
            .arg("-I")
            .arg(root().join("sdk/cpp"))
            .arg("-o")
            .arg(tmp)
            .arg(&src)
            .arg("-lpthread");
        c
    })
}

/// A Go example built with `-buildmode=c-shared`, or `None` (with a note) without `go`.
pub fn go_lib(example: &str) -> Option<PathBuf> {
    if !have("go", "version") {
        eprintln!("note: `go` is not installed; skipping the Go plugin {example}");
        return None;
    }
    let dir = root().join("sdk/go");
    let mut inputs: Vec<PathBuf> = vec![
        dir.join("go.mod"),
        dir.join(format!("examples/{example}/main.go")),
        root().join("sdk/c/kcoro_plugin.h"),
    ];
    if let Ok(rd) = std::fs::read_dir(dir.join("plugin")) {
        inputs.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    Some(build(&out_dir().join(format!("libgo_{example}.so")), &inputs, |tmp| {
        let mut c = Command::new("go");
        c.current_dir(&dir)
            .args(["build", "-buildmode=c-shared", "-o"])
            .arg(tmp)
            .arg(format!("./examples/{example}"));
        c
    }))
}

/// Fails the test if `f` does not finish within `secs`: a hang becomes a failure.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("test body did not finish in {secs} s"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("test body panicked (see above)"),
    }
}
