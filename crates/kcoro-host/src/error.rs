//! The host's one error type.

use std::path::PathBuf;

use kcoro_abi::NrStatus;

use crate::Layout;

/// Everything loading or calling a plugin can fail with.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot load {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// The library exports none of the entry symbols `layout` looks for (`symbol` is the
    /// first of them).
    #[error("{path} does not export `{symbol}`{}; is it a kcoro / nylon-ring plugin?", also_v2(*layout))]
    MissingSymbol { path: PathBuf, symbol: &'static str, layout: Layout },
    #[error("{path}: `{symbol}` returned a null plugin info")]
    NullInfo { path: PathBuf, symbol: &'static str },
    #[error("{path}: plugin speaks ABI version {found}, `{symbol}` must say {expected}")]
    AbiVersion { path: PathBuf, symbol: &'static str, found: u32, expected: u32 },
    /// A plain version-1 plugin under [`Layout::Auto`]: four layouts share its bytes.
    #[error(
        "{path} is a plain version-1 plugin (56-byte info, no declared vtable size): its layout cannot be \
         detected; load it with LoadOptions::layout(..) (`kcoro plugin --abi LAYOUT`) set to one of: {options}"
    )]
    AmbiguousLayout { path: PathBuf, options: String },
    /// The layout chosen does not fit what the library declares.
    #[error("{path}: layout `{chosen}` does not fit: {why}; use one of: {options}")]
    WrongLayout { path: PathBuf, chosen: Layout, why: String, options: String },
    /// A layout name nobody knows (from `Layout::from_str`).
    #[error("unknown plugin layout `{given}`; choose one of: {options}")]
    UnknownLayout { given: String, options: String },
    #[error("{path}: plugin info is {found} bytes, at least {min} are needed")]
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

/// The tail of [`HostError::MissingSymbol`]'s message when both symbols were looked for.
fn also_v2(layout: Layout) -> &'static str {
    if layout == Layout::Auto { " or `nylon_ring_get_plugin`" } else { "" }
}
