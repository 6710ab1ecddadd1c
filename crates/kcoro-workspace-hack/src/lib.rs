//! No code: this crate aligns the features of the workspace's dependencies across its
//! release builds, so that they share one compile of each (see its `Cargo.toml`).
