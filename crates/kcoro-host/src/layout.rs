//! Which plugin layout a library speaks: the names callers choose from, the function
//! slots each layout's vtable holds, how each layout's status codes read, and what a loaded
//! plugin can do.
//!
//! # Detection
//! A library says what it is only in part. `nylon_ring_get_plugin` with `abi_version = 2`
//! is nylon-ring 0.2; `nylon_ring_get_plugin_v1` with `struct_size >= 64` is kcoro's own
//! layout carrying its extension table (no other version-1 layout grew the info). A
//! version-1 plugin with the 56-byte info is any of four layouts that differ only behind
//! the vtable pointer, which declares no size: [`crate::detect`] keeps the ones its vtable
//! fits ([`Layout::slots`], [`Layout::passes_plugin_ctx`]) and loads the plugin when one
//! is left. kcoro-v1 and nylon-0.1 share their five slots and differ only in the arguments
//! those take, so a plugin that fits both is refused with
//! [`crate::HostError::AmbiguousLayout`], and the caller names the layout.
//!
//! # Invariants
//! - `Layout::from_str(l.name()) == Ok(l)` for every layout; [`Layout::ALL`] lists them in
//!   the order errors and `--abi` help show them.
//! - A status a plugin returns is read through its layout ([`Codes::decode`]): a value
//!   that layout never assigned reads as `Invalid`, never as another layout's meaning.

use std::fmt;
use std::str::FromStr;

use kcoro_abi::NrStatus;
use kcoro_abi::nylon::NyStatus;

use crate::HostError;

/// A plugin layout kcoro-host loads, or `Auto` to detect it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Detect the layout from the library and, for a plain version-1 plugin, from the
    /// vtable it fits; refuse one that fits several (the default).
    #[default]
    Auto,
    /// kcoro's version 1 (the seed document's layout): `plugin_ctx` first, a request for
    /// `handle`, five slots, and kcoro's extensions when the info carries them. What the
    /// kcoro SDKs build.
    KcoroV1,
    /// nylon-ring 0.1.0 – 0.1.4: version 1 without `plugin_ctx` or request; replies are
    /// owned `NrVec`s; `Panic` = 5, `Backpressure` = 6.
    Nylon01,
    /// nylon-ring 0.2.x, ABI version 2 (`nylon_ring_get_plugin`): the 0.1 functions plus
    /// `resolve_entry` / `handle_by_id`, and a four-function host vtable.
    Nylon02,
    /// nylon-ring's repository, 30 November to 6 December 2025: `init`, `handle`,
    /// `handle_raw`, `shutdown`, `stream_data`, `stream_close`, with `plugin_ctx`.
    Nylon6Slot,
    /// nylon-ring's repository, 29–30 November 2025: `init`, `handle` (with the entry
    /// name), `shutdown`; no streams in.
    Nylon3Slot,
}

impl Layout {
    /// Every layout, `Auto` first.
    pub const ALL: [Layout; 6] = [
        Layout::Auto,
        Layout::KcoroV1,
        Layout::Nylon01,
        Layout::Nylon02,
        Layout::Nylon6Slot,
        Layout::Nylon3Slot,
    ];

    /// The version-1 layouts a library does not tell apart: the candidates for a plain
    /// version-1 plugin, in the order detection lists them.
    pub const PLAIN_V1: [Layout; 4] =
        [Layout::KcoroV1, Layout::Nylon01, Layout::Nylon6Slot, Layout::Nylon3Slot];

    /// The name `FromStr` and `Display` use (and `kcoro plugin --abi` takes).
    pub const fn name(self) -> &'static str {
        match self {
            Layout::Auto => "auto",
            Layout::KcoroV1 => "kcoro-v1",
            Layout::Nylon01 => "nylon-0.1",
            Layout::Nylon02 => "nylon-0.2",
            Layout::Nylon6Slot => "nylon-6slot",
            Layout::Nylon3Slot => "nylon-3slot",
        }
    }

    /// Other spellings `FromStr` accepts.
    const fn aliases(self) -> &'static [&'static str] {
        match self {
            Layout::Auto => &["detect"],
            Layout::KcoroV1 => &["kcoro", "seed", "v1"],
            Layout::Nylon01 => &["nylon-0.1.4", "nylon01"],
            Layout::Nylon02 => &["nylon-0.2.2", "nylon02", "nylon-v2", "v2"],
            Layout::Nylon6Slot => &["6slot", "nylon-v1-6slot"],
            Layout::Nylon3Slot => &["3slot", "nylon-v1-3slot"],
        }
    }

    /// One line on what the layout is, for help texts.
    pub const fn describe(self) -> &'static str {
        match self {
            Layout::Auto => "detect; a plain version-1 plugin that fits several must be named",
            Layout::KcoroV1 => "kcoro's version 1 (the kcoro SDKs), with its extensions when present",
            Layout::Nylon01 => "nylon-ring 0.1.0-0.1.4 (`nylon_ring_get_plugin_v1`, no plugin_ctx)",
            Layout::Nylon02 => "nylon-ring 0.2.x, ABI 2 (`nylon_ring_get_plugin`)",
            Layout::Nylon6Slot => {
                "nylon-ring before 0.1: init, handle, handle_raw, shutdown, stream_data, stream_close"
            }
            Layout::Nylon3Slot => "nylon-ring before 0.1: init, handle, shutdown",
        }
    }

    /// The `abi_version` the layout's plugins declare (`Auto`: 0).
    pub const fn abi_version(self) -> u32 {
        match self {
            Layout::Auto => 0,
            Layout::Nylon02 => 2,
            _ => 1,
        }
    }

    /// The function slots of the layout's plugin vtable, in order (`Auto`: none). Every
    /// slot may be null but `handle` (slot 1 in every layout).
    pub const fn slots(self) -> &'static [&'static str] {
        match self {
            Layout::Auto => &[],
            Layout::KcoroV1 | Layout::Nylon01 => {
                &["init", "handle", "shutdown", "stream_data", "stream_close"]
            }
            Layout::Nylon02 => &[
                "init",
                "handle",
                "shutdown",
                "stream_data",
                "stream_close",
                "resolve_entry",
                "handle_by_id",
            ],
            Layout::Nylon6Slot => {
                &["init", "handle", "handle_raw", "shutdown", "stream_data", "stream_close"]
            }
            Layout::Nylon3Slot => &["init", "handle", "shutdown"],
        }
    }

    /// Whether the layout's functions take `plugin_ctx` first. The others (nylon-ring 0.1
    /// and 0.2) have no use for the info's `plugin_ctx`, and nylon-ring's own macros and
    /// C example leave it null.
    pub const fn passes_plugin_ctx(self) -> bool {
        matches!(self, Layout::KcoroV1 | Layout::Nylon6Slot | Layout::Nylon3Slot)
    }

    /// The names of `layouts`, comma-separated, for error messages.
    pub fn list(layouts: &[Layout]) -> String {
        layouts.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
    }

    /// How the layout numbers its status codes.
    pub(crate) const fn codes(self) -> Codes {
        match self {
            Layout::Auto | Layout::KcoroV1 => Codes::Kcoro,
            Layout::Nylon6Slot | Layout::Nylon3Slot => Codes::Early,
            Layout::Nylon01 | Layout::Nylon02 => Codes::Nylon,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = HostError;

    /// A layout by name or alias, ASCII case-insensitive.
    fn from_str(s: &str) -> Result<Layout, HostError> {
        let s = s.trim();
        Layout::ALL
            .into_iter()
            .find(|l| {
                l.name().eq_ignore_ascii_case(s) || l.aliases().iter().any(|a| a.eq_ignore_ascii_case(s))
            })
            .ok_or_else(|| HostError::UnknownLayout {
                given: s.to_owned(),
                options: Layout::list(&Layout::ALL),
            })
    }
}

/// A layout's status numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codes {
    /// kcoro's: 0–4, and `Backpressure` = 5 from its extensions.
    Kcoro,
    /// nylon-ring before 0.1: 0–4 only.
    Early,
    /// nylon-ring 0.1 / 0.2: 0–4, `Panic` = 5, `Backpressure` = 6.
    Nylon,
}

impl Codes {
    /// A raw status from the plugin, in kcoro's numbering; unassigned values are `Invalid`.
    #[inline]
    pub(crate) const fn decode(self, raw: u32) -> NrStatus {
        match self {
            Codes::Kcoro if raw <= NrStatus::Backpressure.0 => NrStatus(raw),
            Codes::Early if raw <= NrStatus::StreamEnd.0 => NrStatus(raw),
            Codes::Nylon => NyStatus(raw).to_kcoro(),
            _ => NrStatus::Invalid,
        }
    }

    /// A status for the plugin, in its layout's numbering.
    #[inline]
    pub(crate) const fn encode(self, s: NrStatus) -> u32 {
        match self {
            Codes::Nylon => NyStatus::from_kcoro(s).0,
            Codes::Kcoro if s.0 <= NrStatus::Backpressure.0 => s.0,
            Codes::Early if s.0 <= NrStatus::StreamEnd.0 => s.0,
            _ => NrStatus::Invalid.0,
        }
    }
}

/// What a loaded plugin can do, from its layout and from what it really exports: a
/// function slot the plugin left null is not reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `call` passes method, path, query and headers (layouts whose `handle` takes a
    /// request); elsewhere only the body crosses.
    pub request_metadata: bool,
    /// Raw calls go to a `handle_raw` of their own (the early 6-slot layout).
    pub raw_entry: bool,
    /// The plugin takes data on a stream (`stream_data`): bidirectional streams.
    pub bidirectional: bool,
    /// The plugin hears the host close its side (`stream_close`).
    pub stream_close: bool,
    /// Entries resolve to ids once and calls dispatch by id.
    pub entry_ids: bool,
    /// The plugin lists its entries ([`crate::Plugin::entries`]).
    pub entry_list: bool,
    /// Per-sid state is reachable by the plugin.
    pub state: bool,
    /// Replies can hand the host a plugin buffer without a copy.
    pub owned_replies: bool,
    /// Replies can be written into a buffer the host lends (nylon-ring 0.2).
    pub buffer_leases: bool,
    /// A full stream answers the plugin `Backpressure` instead of waiting.
    pub backpressure: bool,
    /// The plugin reports a contained panic as `Panic` rather than `Err`.
    pub panic_status: bool,
}

impl Capabilities {
    /// The capability names, in a fixed order, starting with the two every plugin has.
    pub fn names(&self) -> Vec<&'static str> {
        let flags = [
            (self.request_metadata, "request-metadata"),
            (self.raw_entry, "raw-entry"),
            (self.bidirectional, "bidirectional"),
            (self.stream_close, "stream-close"),
            (self.entry_ids, "entry-ids"),
            (self.entry_list, "entry-list"),
            (self.state, "state"),
            (self.owned_replies, "owned-replies"),
            (self.buffer_leases, "buffer-leases"),
            (self.backpressure, "backpressure"),
            (self.panic_status, "panic-status"),
        ];
        let mut names = vec!["unary", "stream"];
        names.extend(flags.iter().filter(|(on, _)| *on).map(|(_, n)| *n));
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases_parse() {
        for l in Layout::ALL {
            assert_eq!(l.name().parse::<Layout>().ok(), Some(l));
            assert_eq!(l.to_string(), l.name());
            for a in l.aliases() {
                assert_eq!(a.parse::<Layout>().ok(), Some(l), "{a}");
            }
        }
        assert_eq!(" NYLON-0.2 ".parse::<Layout>().ok(), Some(Layout::Nylon02));
    }

    #[test]
    fn an_unknown_name_lists_every_option() {
        let e = "nylon-0.3".parse::<Layout>().expect_err("no such layout");
        let text = e.to_string();
        assert!(text.contains("`nylon-0.3`"), "{text}");
        for l in Layout::ALL {
            assert!(text.contains(l.name()), "{text}");
        }
    }

    #[test]
    fn slots_are_the_vtables_of_kcoro_abi() {
        use kcoro_abi::nylon::{early, v01, v2};
        use std::mem::size_of;
        let word = size_of::<usize>();
        assert_eq!(Layout::KcoroV1.slots().len() * word, size_of::<kcoro_abi::NrPluginVTable>());
        assert_eq!(Layout::Nylon01.slots().len() * word, size_of::<v01::NyPluginVTable>());
        assert_eq!(Layout::Nylon02.slots().len() * word, size_of::<v2::NyPluginVTable>());
        assert_eq!(Layout::Nylon6Slot.slots().len() * word, size_of::<early::VTable6>());
        assert_eq!(Layout::Nylon3Slot.slots().len() * word, size_of::<early::VTable3>());
        for l in Layout::ALL.into_iter().skip(1) {
            assert_eq!(l.slots()[1], "handle", "{l}");
        }
        assert_eq!(Layout::Nylon6Slot.slots()[3], "shutdown");
    }

    #[test]
    fn statuses_read_through_their_layout() {
        // 5 is Backpressure for kcoro, Panic for nylon-ring, unassigned before 0.1.
        assert_eq!(Codes::Kcoro.decode(5), NrStatus::Backpressure);
        assert_eq!(Codes::Nylon.decode(5), NrStatus::Panic);
        assert_eq!(Codes::Early.decode(5), NrStatus::Invalid);
        assert_eq!(Codes::Nylon.decode(6), NrStatus::Backpressure);
        // kcoro plugins never send Panic: 6 is unknown there.
        assert_eq!(Codes::Kcoro.decode(6), NrStatus::Invalid);
        for c in [Codes::Kcoro, Codes::Early, Codes::Nylon] {
            assert_eq!(c.decode(4), NrStatus::StreamEnd);
            assert_eq!(c.decode(7), NrStatus::Invalid);
            assert_eq!(c.decode(u32::MAX), NrStatus::Invalid);
        }
        assert_eq!(Codes::Nylon.encode(NrStatus::Backpressure), 6);
        assert_eq!(Codes::Kcoro.encode(NrStatus::Backpressure), 5);
        assert_eq!(Codes::Early.encode(NrStatus::Backpressure), NrStatus::Invalid.0);
    }
}
