//! The host's one error type.

use std::path::PathBuf;

use kcoro_abi::NrStatus;

/// Everything loading or calling a plugin can fail with.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot load {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path} does not export `{symbol}`; is it a kcoro / nylon-ring plugin?")]
    MissingSymbol { path: PathBuf, symbol: &'static str },
    #[error("{path}: `nylon_ring_get_plugin_v1` returned a null plugin info")]
    NullInfo { path: PathBuf },
    #[error("{path}: plugin speaks ABI version {found}, this host speaks {expected}")]
    AbiVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("{path}: plugin info is {found} bytes, version 1 needs at least {min}")]
    TruncatedInfo { path: PathBuf, found: u32, min: u32 },
    #[error("{path}: plugin {what} is null")]
    NullPointer { path: PathBuf, what: &'static str },
    #[error("{path}: plugin {what} is not valid UTF-8")]
    BadUtf8 { path: PathBuf, what: &'static str },
    #[error("{path}: plugin init failed with status {status}")]
    InitFailed { path: PathBuf, status: NrStatus },
    #[error("{path} is already loaded in this process; unload it first")]
    AlreadyLoaded { path: PathBuf },
    #[error("too many calls in flight")]
    TooManyCalls,
    #[error("a plugin named `{0}` is already loaded")]
    NameTaken(String),
    #[error("no plugin named `{0}` is loaded")]
    NotLoaded(String),
    #[error("plugin `{0}` is unloading")]
    Unloading(String),
    #[error("plugin `{name}` still has {in_flight} calls in flight after the grace period")]
    Busy { name: String, in_flight: u64 },
    #[error("plugin `{plugin}` has no entry `{entry}`")]
    UnknownEntry { plugin: String, entry: String },
    #[error("plugin `{0}` does not implement bidirectional streams")]
    NoStreamInput(String),
    #[error("{what} is {len} bytes, past the ABI's limit of {max}")]
    TooLarge { what: &'static str, len: usize, max: u64 },
    #[error("the call timed out")]
    Timeout,
    #[error("the stream is finished")]
    StreamClosed,
}
