//! Gives the shared library the soname it is installed under, so programs linked with
//! `-lkcoro` record `libkcoro.so` and find it at run time.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkcoro.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
