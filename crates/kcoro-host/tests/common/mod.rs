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
    cargo_lib("kcoro-plugin-echo")
}

/// The `cdylib` of workspace package `package`, built by cargo for this test's profile.
pub fn cargo_lib(package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let lib = profile_dir.join(format!("lib{}.so", package.replace('-', "_")));
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(root()).args(["build", "-q", "-p", package]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    let st = c.status().expect("cargo build of a test plugin");
    assert!(st.success() && lib.exists(), "building {} failed", lib.display());
    lib
}

/// A C test plugin from `tests/plugins/c`, built with `defines` (`-DNAME=VALUE`) as
/// `lib<name>.so`.
pub fn c_test_lib(src: &str, defines: &[&str], name: &str) -> PathBuf {
    let dir = root().join("tests/plugins/c");
    let inputs = [
        dir.join(src),
        dir.join("nylon_abi.h"),
        dir.join("ny_threads.h"),
        root().join("sdk/c/kcoro_plugin.h"),
    ];
    build(&out_dir().join(format!("lib{name}.so")), &inputs, |tmp| {
        let mut c = Command::new("cc");
        c.args(["-std=c11", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(&dir)
            .arg("-I")
            .arg(root().join("sdk/c"))
            .args(defines)
            .arg("-o")
            .arg(tmp)
            .arg(dir.join(src))
            .arg("-lpthread");
        c
    })
}

/// Calls `symbol`, a `fn() -> T` the already loaded library at `lib` exports (the test
/// plugins' counters).
pub fn probe<T>(lib: &Path, symbol: &str) -> T {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(lib.as_os_str().as_bytes()).expect("path");
    let name = std::ffi::CString::new(symbol).expect("symbol");
    // SAFETY: RTLD_NOLOAD only returns a handle to a library already loaded (and adds a
    // reference, which keeps it mapped; that is what these tests want anyway).
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    assert!(!handle.is_null(), "{} is not loaded", lib.display());
    // SAFETY: `handle` is open; `name` is NUL-terminated.
    let f = unsafe { libc::dlsym(handle, name.as_ptr()) };
    assert!(!f.is_null(), "{} does not export {symbol}", lib.display());
    // SAFETY: the test plugins export these as `extern "C" fn() -> T`.
    let f: extern "C" fn() -> T = unsafe { std::mem::transmute_copy(&f) };
    f()
}

/// Waits (up to 20 s) until `cond` holds; fails the test otherwise.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
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
