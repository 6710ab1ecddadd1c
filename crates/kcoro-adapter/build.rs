//! Renders the profile-specialised twins (`crate::codegen::twins`) for the default audit
//! seeds into `$OUT_DIR/twins.rs`, with the same drawing and rendering code the crate uses
//! at run time (included here by path), so the audit can check generated-backend parity
//! without invoking cargo.

use std::path::PathBuf;

// The build script's crate mirrors the paths these files use inside the adapter crate:
// `crate::rng`, `crate::profile::draw`.
#[allow(dead_code)]
#[path = "src/rng.rs"]
mod rng;

#[allow(dead_code)]
#[path = "src/profile/draw.rs"]
mod draw;

mod profile {
    pub(crate) use super::draw;
}

#[allow(dead_code)]
#[path = "src/codegen/render.rs"]
mod render;

fn main() {
    for f in ["build.rs", "src/profile/draw.rs", "src/codegen/render.rs", "src/rng.rs"] {
        println!("cargo:rerun-if-changed={f}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    let text = render::render_twins(render::TWIN_SEEDS);
    let path = out.join("twins.rs");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
