//! Libraries and plugins that break the contract: each gets a clear error (or an ignored,
//! counted reply), and nothing else is lost. The plain version-1 ones are loaded as
//! kcoro's layout (`Layout::Auto` refuses those that fit several layouts: see
//! `plain_version_1_needs_a_named_layout`).

mod common;

use std::time::Duration;

use kcoro_host::{Host, HostError, Layout, LoadOptions, NrStatus, Plugin};

fn kcoro_v1() -> LoadOptions {
    LoadOptions::default().layout(Layout::KcoroV1)
}

fn load_err(rel: &str) -> HostError {
    let path = common::c_lib(rel);
    match Plugin::load_with(&path, kcoro_v1()) {
        Ok(p) => panic!("{rel} loaded as {p:?}"),
        Err(e) => {
            // Every load error names the file.
            let text = e.to_string();
            assert!(text.contains(path.file_name().and_then(|n| n.to_str()).unwrap_or("?")), "{text}");
            e
        }
    }
}

#[test]
fn libraries_that_cannot_be_plugins_are_refused_with_the_reason() {
    let e = load_err("bad/no_symbol.c");
    assert!(matches!(e, HostError::MissingSymbol { symbol: "nylon_ring_get_plugin_v1", .. }), "{e}");
    assert!(matches!(load_err("bad/null_info.c"), HostError::NullInfo { .. }));
    let e = load_err("bad/abi0.c");
    assert!(matches!(e, HostError::AbiVersion { found: 0, expected: 1, .. }), "{e}");
    let e = load_err("bad/abi2.c");
    assert!(matches!(e, HostError::AbiVersion { found: 2, .. }), "{e}");
    let e = load_err("bad/short_info.c");
    assert!(matches!(e, HostError::TruncatedInfo { found: 40, min: 56, .. }), "{e}");
    let e = load_err("bad/null_vtable.c");
    assert!(matches!(e, HostError::NullPointer { what: "vtable", .. }), "{e}");
    let e = load_err("bad/null_handle.c");
    assert!(matches!(e, HostError::NullPointer { what: "handle function", .. }), "{e}");
    let e = load_err("bad/bad_utf8.c");
    assert!(matches!(e, HostError::BadUtf8 { what: "entry name", .. }), "{e}");
    let e = load_err("bad/bad_name.c");
    assert!(matches!(e, HostError::BadUtf8 { what: "name", .. }), "{e}");
}

/// Each library is loaded by one test only: tests run in parallel, and a library may be
/// initialised once per process at a time.
#[test]
fn a_failed_init_leaves_the_host_untouched() {
    let host = Host::with_options(kcoro_v1());
    let e = host.load(common::c_lib("bad/init_fails.c")).expect_err("init fails");
    assert!(matches!(e, HostError::InitFailed { status: NrStatus::Err, .. }), "{e}");
    assert!(host.names().is_empty());
    // The refused library can be loaded again later (it was not left initialised).
    assert!(matches!(host.load(common::c_lib("bad/init_fails.c")), Err(HostError::InitFailed { .. })));
}

#[test]
fn unknown_status_codes_read_as_invalid() {
    let p = Plugin::load_with(common::c_lib("bad/bad_status.c"), kcoro_v1()).expect("load");
    // Its handle returns 7 after replying with 9: the reply wins and reads as Invalid.
    let r = p.call_raw("echo", b"x").wait().expect("call");
    assert_eq!(r.status, NrStatus::Invalid);
    assert_eq!(p.metrics().status(NrStatus::Invalid), 1);
}

#[test]
fn replies_after_the_end_are_ignored_and_counted() {
    let p = Plugin::load_with(common::c_lib("bad/late_reply.c"), kcoro_v1()).expect("load");
    let r = p.call_raw("twice", b"").wait().expect("call");
    assert_eq!((r.status, &*r.data), (NrStatus::Ok, &b"a"[..]));
    assert_eq!(p.metrics().dropped_replies, 1);
    let frames = p.call_stream_raw("after_end", b"").expect("stream").collect().expect("frames");
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].status, NrStatus::StreamEnd);
    let m = p.metrics();
    assert_eq!((m.dropped_replies, m.in_flight), (2, 0), "{m:?}");
    // Still serving.
    assert_eq!(p.call_raw("twice", b"").wait().expect("again").status, NrStatus::Ok);
    p.shutdown(Duration::from_secs(1)).expect("shutdown");
}

#[test]
fn plain_version_1_needs_a_named_layout() {
    // Four layouts share the 56-byte version-1 info. This vtable (init, null, shutdown,
    // null, null) fits three of them: detection refuses to guess, naming those, before
    // any plugin function runs.
    let path = common::c_lib("bad/null_handle.c");
    let e = Plugin::load(&path).expect_err("ambiguous");
    assert!(matches!(e, HostError::AmbiguousLayout { .. }), "{e}");
    let text = e.to_string();
    for l in [Layout::KcoroV1, Layout::Nylon01, Layout::Nylon3Slot] {
        assert!(text.contains(l.name()), "{text}");
    }
    assert!(text.contains("null_handle") && text.contains("LoadOptions::layout"), "{text}");
    // Layouts that contradict the library are refused with the options too.
    let e = Plugin::load_with(&path, LoadOptions::default().layout(Layout::Nylon02)).expect_err("not ABI 2");
    assert!(matches!(e, HostError::WrongLayout { chosen: Layout::Nylon02, .. }), "{e}");
    assert!(e.to_string().contains("nylon_ring_get_plugin_v1") && e.to_string().contains("kcoro-v1"), "{e}");
    // An extended kcoro plugin is detected, and cannot be read as a nylon-ring layout.
    let e = load_err_with("bad/bad_utf8.c", Layout::Nylon01);
    assert!(matches!(e, HostError::WrongLayout { chosen: Layout::Nylon01, .. }), "{e}");
}

fn load_err_with(rel: &str, layout: Layout) -> HostError {
    match Plugin::load_with(common::c_lib(rel), LoadOptions::default().layout(layout)) {
        Ok(p) => panic!("{rel} loaded as {p:?}"),
        Err(e) => e,
    }
}
