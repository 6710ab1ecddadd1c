//! Bridges to other async runtimes, each behind its cargo feature.

#[cfg(feature = "tokio")]
pub mod tokio;
