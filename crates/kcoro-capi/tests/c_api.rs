//! Builds the C tests in `tests/c/` with the system compiler against `include/` and the
//! library cargo just built, links them three ways (shared `-lkcoro`, static
//! `libkcoro.a`, shared with the C side under AddressSanitizer), adds a C++ program that
//! includes every header, and runs each: a test passes when its program exits 0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const C_TESTS: [&str; 10] = [
    "test_chan",
    "test_select",
    "test_sched",
    "test_scope",
    "test_actor",
    "test_region",
    "test_bench",
    "test_coro",
    "test_coro_sched",
    "test_coro_abandon",
];
const WARN: [&str; 4] = ["-Wall", "-Wextra", "-Werror", "-g"];

/// Where cargo put `libkcoro_capi.{so,a}` for this test: `target/<profile>/deps` (this
/// test's own folder, written whenever the test is built), or `target/<profile>` after a
/// `cargo build` of the library.
fn built_lib(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps/<test>");
    let candidates = [Some(deps), deps.parent()];
    let found = candidates.into_iter().flatten().map(|d| d.join(name)).find(|p| p.exists());
    found.unwrap_or_else(|| panic!("{name} not found next to {} or above it", exe.display()))
}

/// A folder holding the library under its installed names, `libkcoro.so` and `libkcoro.a`.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi-lib");
        std::fs::create_dir_all(&dir).expect("create lib dir");
        for (from, to) in [("libkcoro_capi.so", "libkcoro.so"), ("libkcoro_capi.a", "libkcoro.a")] {
            let staged = private(&dir.join(to));
            std::fs::copy(built_lib(from), &staged).unwrap_or_else(|e| panic!("copy {from}: {e}"));
            replace(&staged, &dir.join(to));
        }
        dir
    })
}

/// `path` with this process's id appended: what only this process writes. Two runs of
/// this test at once (two `cargo test`s in one checkout, `scripts/stress.sh -j 2`) share
/// the target folder, and one's compiler wrote a program while the other ran it
/// (`ETXTBSY`). Each run builds under a private name and then renames into place: a
/// rename never leaves a path half written, and a program or library already running
/// keeps the file it started from.
fn private(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}", std::process::id()));
    PathBuf::from(name)
}

fn replace(staged: &Path, path: &Path) {
    std::fs::rename(staged, path).unwrap_or_else(|e| panic!("rename into {}: {e}", path.display()));
}

fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c").join(name)
}

fn out(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn run(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{what} failed ({}):\n{text}", o.status);
    text
}

/// Compiles `test` with `compiler`, links per `link`, runs it, checks its "ok" line.
fn build_and_run(compiler: &str, std: &str, file: &str, exe: &str, extra: &[&str], link: &[String]) {
    let lib = lib_dir();
    let bin = out(exe);
    let staged = private(&bin);
    let mut cc = Command::new(compiler);
    cc.arg(std).args(WARN).args(extra).arg(src(file)).arg("-o").arg(&staged).args(link);
    cc.arg("-pthread").arg("-ldl").arg("-lm");
    run(&mut cc, &format!("compiling {file} ({exe})"));
    replace(&staged, &bin);
    let mut prog = Command::new(&bin);
    prog.env("LD_LIBRARY_PATH", lib);
    let text = run(&mut prog, &format!("running {exe}"));
    let stem = file.split('.').next().unwrap_or(file);
    assert!(text.contains(&format!("{stem}: ok")), "{exe} printed no ok line:\n{text}");
}

fn shared_link() -> Vec<String> {
    let lib = lib_dir().display().to_string();
    vec![format!("-L{lib}"), "-lkcoro".into(), format!("-Wl,-rpath,{lib}")]
}

#[test]
fn c_tests_shared() {
    for t in C_TESTS {
        build_and_run("cc", "-std=c11", &format!("{t}.c"), &format!("{t}_shared"), &[], &shared_link());
    }
}

#[test]
fn c_tests_static() {
    let a = lib_dir().join("libkcoro.a").display().to_string();
    for t in C_TESTS {
        build_and_run(
            "cc",
            "-std=c11",
            &format!("{t}.c"),
            &format!("{t}_static"),
            &[],
            &[a.clone(), "-lrt".into()],
        );
    }
}

#[test]
fn c_tests_address_sanitizer() {
    let asan = ["-fsanitize=address", "-fno-omit-frame-pointer"];
    for t in C_TESTS {
        build_and_run("cc", "-std=c11", &format!("{t}.c"), &format!("{t}_asan"), &asan, &shared_link());
    }
}

#[test]
fn cpp_includes_every_header() {
    build_and_run("c++", "-std=c++17", "test_headers.cpp", "test_headers", &[], &shared_link());
}

#[test]
fn each_header_compiles_alone_in_c11_and_cpp() {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include");
    let mut n = 0;
    for entry in std::fs::read_dir(&include).expect("include/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "h") {
            continue;
        }
        n += 1;
        let name = path.file_name().and_then(|s| s.to_str()).expect("header name").to_string();
        for (compiler, std, ext) in [("cc", "-std=c11", "c"), ("c++", "-std=c++11", "cpp")] {
            let file = private(&out(&format!("alone_{name}.{ext}")));
            std::fs::write(
                &file,
                format!("#include \"{}\"\nint main(void) {{ return 0; }}\n", path.display()),
            )
            .expect("write probe");
            let object = private(&out("alone.o"));
            let mut cc = Command::new(compiler);
            cc.arg(std)
                .args(WARN)
                .arg("-pedantic")
                .arg(format!("-x{}", if ext == "c" { "c" } else { "c++" }));
            cc.arg("-c").arg(&file).arg("-o").arg(&object);
            run(&mut cc, &format!("{name} alone in {std}"));
            let _ = (std::fs::remove_file(&file), std::fs::remove_file(&object));
        }
    }
    assert_eq!(n, 7, "include/ holds the seven headers of the ABI page");
}
