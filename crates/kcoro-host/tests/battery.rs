//! One battery of calls, run against the example plugin of every SDK: Rust, C, C++ and Go
//! (high-level and low-level), and a plain version-1 C plugin.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use kcoro_host::{HighLevelRequest, HostError, Layout, LoadOptions, NrStatus, Plugin};

/// What a plugin's example supports beyond `echo` and `stream`.
#[derive(Clone, Copy)]
struct Full {
    extended: bool,
    can_panic: bool,
}

fn frames(p: &Plugin, entry: &str, payload: &[u8]) -> Vec<(NrStatus, String)> {
    let s = p.call_stream_raw(entry, payload).expect("start stream").timeout(Duration::from_secs(10));
    s.collect()
        .expect("stream")
        .into_iter()
        .map(|f| (f.status, String::from_utf8_lossy(&f.data).into()))
        .collect()
}

fn expect_stream(p: &Plugin, n: usize) {
    let got = frames(p, "stream", n.to_string().as_bytes());
    let mut want: Vec<_> = (1..=n).map(|i| (NrStatus::Ok, format!("frame-{i}"))).collect();
    want.push((NrStatus::StreamEnd, String::new()));
    assert_eq!(got, want, "{}", p.name());
}

fn basic(p: &Plugin) {
    let r = p.call_raw("echo", b"hello").wait().expect("echo");
    assert_eq!((r.status, &*r.data), (NrStatus::Ok, &b"hello"[..]), "{}", p.name());
    let empty = p.call_raw("echo", b"").wait().expect("empty echo");
    assert_eq!((empty.status, empty.data.len()), (NrStatus::Ok, 0));
    let req = HighLevelRequest::new("POST", "/echo").query("a=1").header("x-k", "v").body("with request");
    let r = p.call("echo", &req).wait().expect("echo with request");
    assert_eq!(&*r.data, b"with request");
    let big = vec![7u8; 1 << 20];
    assert_eq!(&*p.call_raw("echo", &big).wait().expect("1 MiB echo").data, &big[..]);
    expect_stream(p, 3);
    let unknown = p.call_raw("no-such-entry", b"x").wait().expect("unknown entry");
    assert_eq!(unknown.status, NrStatus::Unsupported, "{}", p.name());
}

fn full(p: &Plugin, f: Full) {
    basic(p);
    assert_eq!(p.is_extended(), f.extended, "{}", p.name());
    if f.extended {
        let entry = p.entry("echo").expect("resolve echo");
        assert!(entry.id().is_some());
        assert_eq!(&*p.call_raw(&entry, b"by id").wait().expect("echo by id").data, b"by id");
        assert!(p.entry("no-such-entry").is_err());
    }
    let r = p.call_raw("echo_async", b"later").timeout(Duration::from_secs(10)).wait().expect("async echo");
    assert_eq!((r.status, &*r.data), (NrStatus::Ok, &b"later"[..]), "{}", p.name());
    expect_stream(p, 5);
    expect_stream(p, 0);

    let mut s = p.call_stream_raw("bidi", b"").expect("open bidi").timeout(Duration::from_secs(10));
    for chunk in ["one", "two", "three"] {
        assert_eq!(s.send(chunk.as_bytes()).expect("stream_data"), NrStatus::Ok);
    }
    s.close().expect("stream_close");
    let got: Vec<_> = s.collect().expect("bidi").into_iter().map(|f| (f.status, f.data.into_vec())).collect();
    let want = vec![
        (NrStatus::Ok, b"one".to_vec()),
        (NrStatus::Ok, b"two".to_vec()),
        (NrStatus::Ok, b"three".to_vec()),
        (NrStatus::StreamEnd, vec![]),
    ];
    assert_eq!(got, want, "{}", p.name());

    let r = p.call_raw("state", b"remember me").wait().expect("state");
    if f.extended {
        assert_eq!((r.status, &*r.data), (NrStatus::Ok, &b"remember me"[..]), "{}", p.name());
    } else {
        assert_eq!(r.status, NrStatus::Unsupported, "{}", p.name());
    }
    if f.can_panic {
        let r = p.call_raw("panic", b"").wait().expect("panic entry");
        assert_eq!(r.status, NrStatus::Err, "{}: a panic must come back as Err", p.name());
        // The plugin is still serving.
        assert_eq!(&*p.call_raw("echo", b"alive").wait().expect("echo after panic").data, b"alive");
    }
    let r = p.call_raw("error", b"").wait().expect("error entry");
    assert_eq!((r.status, &*r.data), (NrStatus::Err, &b"boom"[..]), "{}", p.name());

    let m = p.metrics();
    assert_eq!(m.in_flight, 0, "{}: {m:?}", p.name());
    assert!(m.status(NrStatus::Err) >= 1 && m.status(NrStatus::Unsupported) >= 1, "{m:?}");
    assert_eq!(m.dropped_replies, 0, "{}: {m:?}", p.name());
    inline_only(p, f);
}

/// Inline-only calls: answered inside `handle` they behave as any call; a reply from a
/// plugin thread fails the call, and is dropped and counted when it comes, reaching no
/// later call.
fn inline_only(p: &Plugin, f: Full) {
    let r = p.call_raw("echo", b"inline").inline_only().wait().expect("inline echo");
    assert_eq!((r.status, &*r.data), (NrStatus::Ok, &b"inline"[..]), "{}", p.name());
    let r = p.call_raw("error", b"").inline_only().wait().expect("inline error entry");
    assert_eq!((r.status, &*r.data), (NrStatus::Err, &b"boom"[..]), "{}", p.name());

    let dropped = p.metrics().dropped_replies;
    match p.call_raw("echo_async", b"stale").inline_only().wait() {
        Err(HostError::NoInlineReply(name)) => assert_eq!(name, p.name()),
        other => panic!("{}: an inline-only call answered from a thread gave {other:?}", p.name()),
    }
    common::wait_until("the plugin thread's reply to be dropped", || p.metrics().dropped_replies > dropped);
    let r = p.call_raw("echo_async", b"fresh").timeout(Duration::from_secs(10)).wait().expect("async echo");
    assert_eq!(&*r.data, b"fresh", "{}", p.name());
    assert_eq!(&*p.call_raw("echo", b"own").inline_only().wait().expect("inline echo").data, b"own");

    if f.extended {
        // No per-call state for an inline-only call: the plugin's request for it fails.
        let r = p.call_raw("state", b"remember me").inline_only().wait().expect("inline state");
        assert_ne!((r.status, &*r.data), (NrStatus::Ok, &b"remember me"[..]), "{}", p.name());
    }
    let m = p.metrics();
    assert_eq!((m.in_flight, m.dropped_replies), (0, dropped + 1), "{}: {m:?}", p.name());
}

fn load(path: PathBuf, opts: LoadOptions) -> Plugin {
    Plugin::load_with(&path, opts).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

#[test]
fn rust_plugin() {
    common::within(60, || {
        let p = load(common::rust_echo(), LoadOptions::default());
        assert_eq!((p.name(), p.version(), p.info_size()), ("echo-rust", "1.0.0", 64));
        full(&p, Full { extended: true, can_panic: true });
        // Owned replies arrive without a copy.
        let r = p.call_raw("echo_owned", b"zero copy").wait().expect("owned echo");
        assert!(r.data.is_zero_copy());
        assert_eq!(&*r.data, b"zero copy");
        expect_sync_stream(&p);
        p.shutdown(Duration::from_secs(1)).expect("shutdown");
    });
}

/// A plugin that sends every frame from inside `handle` never blocks on the stream bound.
fn expect_sync_stream(p: &Plugin) {
    let got = frames(p, "stream_sync", b"1000");
    assert_eq!(got.len(), 1001);
    assert_eq!(got[999], (NrStatus::Ok, "frame-1000".into()));
}

#[test]
fn c_plugin() {
    common::within(60, || {
        let p = load(common::c_lib("echo.c"), LoadOptions::default());
        assert_eq!(p.name(), "echo-c");
        full(&p, Full { extended: true, can_panic: false });
        let r = p.call_raw("panic", b"").wait().expect("panic entry");
        assert_eq!(r.status, NrStatus::Err);
    });
}

#[test]
fn version_1_c_plugin_loads_unchanged() {
    common::within(60, || {
        let p = load(common::c_lib("v1_only.c"), LoadOptions::default().layout(Layout::KcoroV1));
        assert_eq!((p.name(), p.info_size(), p.is_extended()), ("v1-c", 56, false));
        assert!(p.entries().is_empty());
        basic(&p);
    });
}

#[test]
fn cpp_plugin() {
    common::within(60, || {
        let p = load(common::cpp_echo(), LoadOptions::default());
        assert_eq!(p.name(), "echo-cpp");
        full(&p, Full { extended: true, can_panic: true });
    });
}

#[test]
fn go_plugin() {
    let Some(path) = common::go_lib("echo") else { return };
    common::within(120, move || {
        let p = load(path, LoadOptions::default().keep_mapped(true));
        assert_eq!(p.name(), "echo-go");
        full(&p, Full { extended: true, can_panic: true });
    });
}

#[test]
fn go_lowlevel_plugin() {
    let Some(path) = common::go_lib("lowlevel") else { return };
    common::within(120, move || {
        let p = load(path, LoadOptions::default().layout(Layout::KcoroV1));
        assert_eq!((p.name(), p.is_extended()), ("echo-go-lowlevel", false));
        basic(&p);
    });
}
