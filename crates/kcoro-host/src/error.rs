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
    /// A plain version-1 plugin under [`Layout::Auto`] whose vtable fits more than one
    /// layout (`options`, the candidates), or lies where its end cannot be found.
    #[error(
        "{path} is a plain version-1 plugin (56-byte info, no declared vtable size) whose layout cannot be \
         detected: {why}; load it with LoadOptions::layout(..) (`kcoro plugin --abi LAYOUT`) set to one of: \
         {options}"
    )]
    AmbiguousLayout { path: PathBuf, options: String, why: String },
    /// A plain version-1 plugin under [`Layout::Auto`] whose vtable fits no layout: `why`
    /// gives each layout's reason.
    #[error(
        "{path} is a plain version-1 plugin whose vtable fits no known layout ({why}); if you know its \
         layout, name it with LoadOptions::layout(..) (`kcoro plugin --abi LAYOUT`)"
    )]
    NoLayoutFits { path: PathBuf, why: String },
    /// A function slot that is neither null nor code of the library: calling it would jump
    /// into data or nowhere (`0x911`). Nothing of the plugin has run. Boxed: every call's
    /// `Result` carries this enum.
    #[error("{0}")]
    BadSlot(Box<BadSlot>),
    /// A vtable inside the library's image that the layout would read past its mapped data.
    #[error("{path}: the {layout} vtable ({len} bytes) runs past the end of {image}'s mapped data{hint}")]
    TableOutsideImage { path: PathBuf, layout: Layout, len: usize, image: Box<str>, hint: &'static str },
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
    /// The process-wide barrier that orders unload against calls in flight failed; the
    /// plugin keeps serving.
    #[error("plugin `{name}` cannot be unloaded: the barrier against calls in flight failed: {reason}")]
    Fence { name: String, reason: String },
    #[error("plugin `{plugin}` has no entry `{entry}`")]
    UnknownEntry { plugin: String, entry: String },
    #[error("plugin `{0}` does not implement bidirectional streams")]
    NoStreamInput(String),
    #[error("{what} is {len} bytes, past the ABI's limit of {max}")]
    TooLarge { what: &'static str, len: usize, max: u64 },
    #[error("the call timed out")]
    Timeout,
    /// An [inline-only](crate::Call::inline_only) call whose plugin returned from `handle`
    /// without a reply on the calling thread. A reply it sends later is dropped and counted.
    #[error("plugin `{0}` did not reply inside `handle` to an inline-only call")]
    NoInlineReply(String),
    #[error("the stream is finished")]
    StreamClosed,
}

/// A plugin's function slot that does not point into its own code ([`HostError::BadSlot`]).
#[derive(Debug)]
pub struct BadSlot {
    pub path: PathBuf,
    /// "the nylon-6slot vtable", "kcoro's extension table".
    pub table: String,
    /// The slot's index in its table, in words.
    pub slot: usize,
    pub name: &'static str,
    pub value: usize,
    /// The library's file name.
    pub image: String,
    /// Where `value` does point: the library's data, another library, nowhere mapped.
    pub whereabouts: String,
    /// What to try: ": wrong --abi layout?" when the caller named the layout.
    pub hint: &'static str,
}

impl std::fmt::Display for BadSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let BadSlot { path, table, slot, name, value, image, whereabouts, hint } = self;
        write!(
            f,
            "{}: {table} slot {slot} (`{name}`) = {value:#x} does not point into executable code of {image} \
             ({whereabouts}){hint}",
            path.display()
        )
    }
}

/// The tail of [`HostError::MissingSymbol`]'s message when both symbols were looked for.
fn also_v2(layout: Layout) -> &'static str {
    if layout == Layout::Auto { " or `nylon_ring_get_plugin`" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every call's `Result` carries a `HostError`: a bad slot's details are boxed, so the
    /// enum stays at 80 bytes on 64-bit targets.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_error_stays_small() {
        assert!(std::mem::size_of::<HostError>() <= 80, "{}", std::mem::size_of::<HostError>());
    }
}
