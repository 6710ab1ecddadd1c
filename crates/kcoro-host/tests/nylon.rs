//! Plugins of every nylon-ring layout, loaded unchanged: three built with the published
//! `nylon-ring` crates and their own macros (0.2.2's `define_plugin!` and `Plugin` trait,
//! 0.1.4's `define_plugin!`), and C plugins of the 0.2, 0.1, 6-slot and 3-slot layouts.
//! Every mode each layout has is called; what a layout lacks is checked to be reported
//! missing (never a jump into a slot that is not there).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kcoro_host::{Capabilities, HighLevelRequest, HostError, Layout, LoadOptions, NrStatus, Plugin};

/// A stream this small fills at once: frames sent from a plugin thread meet
/// `Backpressure`.
const SMALL_STREAM: usize = 2;

fn load(path: &Path, layout: Layout) -> Plugin {
    let opts = LoadOptions::default().layout(layout).stream_capacity(SMALL_STREAM);
    Plugin::load_with(path, opts).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn frames(p: &Plugin, entry: &str, payload: &[u8]) -> Vec<(NrStatus, String)> {
    let s = p.call_stream_raw(entry, payload).expect("start stream").timeout(Duration::from_secs(20));
    let got = s.collect().expect("stream");
    got.into_iter().map(|f| (f.status, String::from_utf8_lossy(&f.data).into_owned())).collect()
}

fn numbered(n: usize, end: &str) -> Vec<(NrStatus, String)> {
    let mut want: Vec<_> = (1..=n).map(|i| (NrStatus::Ok, format!("frame-{i}"))).collect();
    want.push((NrStatus::StreamEnd, end.to_owned()));
    want
}

fn reply(p: &Plugin, entry: &str, payload: &[u8]) -> (NrStatus, Vec<u8>) {
    let r = p.call_raw(entry, payload).timeout(Duration::from_secs(20)).wait().expect(entry);
    (r.status, r.data.into_vec())
}

/// Unary calls by name, by resolved id, with a request, empty and large.
fn unary(p: &Plugin) {
    assert_eq!(reply(p, "echo", b"hello"), (NrStatus::Ok, b"hello".to_vec()), "{}", p.name());
    assert_eq!(reply(p, "echo", b""), (NrStatus::Ok, vec![]));
    let big = vec![7u8; 1 << 20];
    assert_eq!(reply(p, "echo", &big).1, big);
    let entry = p.entry("echo").expect("resolve echo");
    assert_eq!(entry.id().is_some(), p.capabilities().entry_ids, "{}", p.name());
    let r = p.call_raw(&entry, b"by id").wait().expect("echo by id");
    assert_eq!(&*r.data, b"by id");
    // Without a request in the layout, only the body crosses.
    let req = HighLevelRequest::new("POST", "/echo").header("k", "v").body("the body");
    assert_eq!(&*p.call(&entry, &req).wait().expect("call").data, b"the body");
}

/// A stream from a plugin thread into a two-frame buffer: the plugin is answered
/// `Backpressure` (nylon-ring's 6) until the reader makes room, retries, and loses nothing.
fn backpressured_stream(p: &Plugin, retries: impl Fn() -> u64) {
    let before = (p.metrics().backpressure, retries());
    let mut s = p.call_stream_raw("stream", b"100").expect("stream").timeout(Duration::from_secs(20));
    common::wait_until("the plugin to meet a full stream", || p.metrics().backpressure > before.0);
    let mut got = Vec::new();
    while let Some(f) = s.recv().expect("frame") {
        got.push((f.status, String::from_utf8_lossy(&f.data).into_owned()));
    }
    assert_eq!(got, numbered(100, ""), "{}", p.name());
    assert!(retries() > before.1, "{}: the plugin never saw Backpressure", p.name());
}

fn bidi(p: &Plugin) {
    let mut s = p.call_stream_raw("bidi", b"").expect("open bidi").timeout(Duration::from_secs(20));
    for chunk in ["one", "two", "three"] {
        assert_eq!(s.send(chunk.as_bytes()).expect("stream_data"), NrStatus::Ok);
    }
    s.close().expect("stream_close");
    let got: Vec<_> = s.collect().expect("bidi").into_iter().map(|f| (f.status, f.data.into_vec())).collect();
    let want = [
        (NrStatus::Ok, &b"one"[..]),
        (NrStatus::Ok, b"two"),
        (NrStatus::Ok, b"three"),
        (NrStatus::StreamEnd, b""),
    ];
    assert_eq!(got, want.map(|(s, d)| (s, d.to_vec())), "{}", p.name());
}

/// State the way nylon-ring plugins reach it: nylon-ring-host's `get_host_ext(host_ctx)`.
fn state(p: &Plugin, lib: &Path) {
    // The plugin adds this offset to host_ctx; a mismatch would make it read garbage.
    let offset: usize = common::probe(lib, "test_host_ext_offset");
    assert_eq!(offset, 24, "nylon-ring-host moved its state table: update kcoro-host's gate");
    assert!(p.capabilities().state);
    assert_eq!(reply(p, "state", b"remember me"), (NrStatus::Ok, b"remember me".to_vec()));
}

fn errors(p: &Plugin) {
    // nylon-ring's macros contain a panic and answer Panic (their 5).
    assert_eq!(reply(p, "panic", b"").0, NrStatus::Panic, "{}", p.name());
    assert_eq!(reply(p, "echo", b"alive").1, b"alive", "{}: serving after a panic", p.name());
    assert_eq!(reply(p, "error", b""), (NrStatus::Err, b"boom".to_vec()));
    // nylon-ring answers an unknown entry with Invalid.
    assert_eq!(reply(p, "no-such-entry", b"").0, NrStatus::Invalid);
}

fn quiet(p: &Plugin) {
    let m = p.metrics();
    assert_eq!((m.in_flight, m.dropped_replies), (0, 0), "{}: {m:?}", p.name());
}

fn nylon_caps(entry_ids: bool, leases: bool) -> Capabilities {
    Capabilities {
        bidirectional: true,
        stream_close: true,
        entry_ids,
        state: true,
        owned_replies: true,
        buffer_leases: leases,
        backpressure: true,
        panic_status: true,
        ..Capabilities::default()
    }
}

#[test]
fn nylon_ring_0_2_define_plugin() {
    let lib = common::cargo_lib("kcoro-test-nylon02");
    common::within(120, move || {
        let p = load(&lib, Layout::Auto); // ABI 2 is detected
        assert_eq!((p.name(), p.layout(), p.abi_version()), ("kcoro-test-nylon02", Layout::Nylon02, 2));
        assert_eq!(p.capabilities(), nylon_caps(true, true));
        assert!(p.entries().is_empty() && !p.is_extended());
        assert!(matches!(p.entry("nope"), Err(HostError::UnknownEntry { .. })));
        unary(&p);
        assert_eq!(reply(&p, "echo_async", b"later"), (NrStatus::Ok, b"later".to_vec()));
        assert_eq!(frames(&p, "stream", b"3"), numbered(3, ""));
        assert_eq!(frames(&p, "stream", b"0"), numbered(0, ""));
        // Frames sent inside `handle` are never refused, whatever the bound.
        assert_eq!(frames(&p, "stream_sync", b"300"), numbered(300, ""));
        backpressured_stream(&p, || common::probe(&lib, "test_backpressure_retries"));
        bidi(&p);
        state(&p, &lib);
        errors(&p);
        assert_eq!(reply(&p, "fail", b"").0, NrStatus::Err);

        // send_result_owned: kept without a copy, released once the reply is dropped.
        let released: u64 = common::probe(&lib, "test_owned_releases");
        let r = p.call_raw("owned", b"zero copy").wait().expect("owned");
        assert!(r.data.is_zero_copy());
        assert_eq!(&*r.data, b"zero copy");
        assert_eq!(common::probe::<u64>(&lib, "test_owned_releases"), released);
        drop(r);
        assert_eq!(common::probe::<u64>(&lib, "test_owned_releases"), released + 1);
        let r = p.call_raw("static", b"").wait().expect("static");
        assert_eq!((r.data.is_zero_copy(), &*r.data), (true, &b"static bytes"[..]));
        // A host buffer leased to the plugin, inside the call and from another thread.
        assert_eq!(reply(&p, "lease", b"abc"), (NrStatus::Ok, b"cba".to_vec()));
        assert_eq!(reply(&p, "lease_async", b"xyz"), (NrStatus::Ok, b"zyx".to_vec()));
        assert_eq!(reply(&p, "lease_late", b"late"), (NrStatus::Ok, b"etal".to_vec()));
        // Commits with another token or past the buffer are refused, the lease kept.
        assert_eq!(reply(&p, "lease_fumble", b"fumble"), (NrStatus::Ok, b"elbmuf".to_vec()));
        quiet(&p);
        inline_only(&p, &lib);
        p.shutdown(Duration::from_secs(5)).expect("shutdown");
    });
}

/// Inline-only calls on nylon-ring's own layout: a reply inside `handle` (copied, kept
/// without a copy, or written into a leased buffer) completes them; a reply or a lease's
/// commit from a plugin thread fails them and is dropped when it comes.
fn inline_only(p: &Plugin, lib: &Path) {
    let inline = |entry: &str, payload: &[u8]| p.call_raw(entry, payload).inline_only().wait();
    let r = inline("echo", b"inline").expect("inline echo");
    assert_eq!((r.status, &*r.data), (NrStatus::Ok, &b"inline"[..]));
    let released: u64 = common::probe(lib, "test_owned_releases");
    let r = inline("owned", b"kept").expect("inline owned");
    assert_eq!((r.data.is_zero_copy(), &*r.data), (true, &b"kept"[..]));
    drop(r);
    assert_eq!(common::probe::<u64>(lib, "test_owned_releases"), released + 1);
    let r = inline("lease", b"abc").expect("inline lease");
    assert_eq!((r.status, &*r.data), (NrStatus::Ok, &b"cba"[..]));
    let dropped = p.metrics().dropped_replies;
    let r = inline("lease_fumble", b"fumble").expect("inline lease, bad commits first");
    assert_eq!((r.status, &*r.data), (NrStatus::Ok, &b"elbmuf"[..]));
    assert_eq!(p.metrics().dropped_replies, dropped, "a refused commit is not a dropped reply");

    // Each of these fails its call and has exactly one reply dropped: an async reply; a
    // lease asked for from a plugin thread (refused: the plugin sends its "no lease" error
    // from there); a lease taken inside `handle` and committed from a plugin thread,
    // before or after the call returned (the buffer stays the plugin's until then).
    for (n, entry) in ["echo_async", "lease_async", "lease_late"].into_iter().enumerate() {
        let dropped = p.metrics().dropped_replies;
        assert!(matches!(inline(entry, b"stale"), Err(HostError::NoInlineReply(_))), "{entry}");
        common::wait_until("the late reply to be dropped", || p.metrics().dropped_replies > dropped);
        // Later calls get their own replies.
        assert_eq!(reply(p, "echo_async", b"fresh"), (NrStatus::Ok, b"fresh".to_vec()), "after {n}");
        assert_eq!(&*inline("lease", b"own").expect("inline lease").data, b"nwo");
        let m = p.metrics();
        assert_eq!((m.in_flight, m.dropped_replies), (0, dropped + 1), "{entry}: {m:?}");
    }
}

#[test]
fn nylon_ring_0_2_plugin_trait() {
    let lib = common::cargo_lib("kcoro-test-nylon02-trait");
    common::within(120, move || {
        let p = load(&lib, Layout::Nylon02); // named explicitly: the same as detected
        assert_eq!((p.name(), p.layout()), ("kcoro-test-nylon02-trait", Layout::Nylon02));
        assert_eq!(p.capabilities(), nylon_caps(true, true));
        unary(&p);
        assert_eq!(reply(&p, "shout", b"quiet"), (NrStatus::Ok, b"QUIET".to_vec()));
        let r = p.call_raw("static", b"").wait().expect("static");
        assert_eq!((r.data.is_zero_copy(), &*r.data), (true, &b"static bytes"[..]));
        assert_eq!(frames(&p, "stream", b"4"), numbered(4, "done"));
        bidi(&p);
        // Async entries: ready at once (inline), and woken from another thread.
        assert_eq!(reply(&p, "now", b"inline"), (NrStatus::Ok, b"inline".to_vec()));
        assert_eq!(reply(&p, "later", b"woken"), (NrStatus::Ok, b"woken".to_vec()));
        let r = p.call_raw(&p.entry("later").expect("id"), b"by id").wait().expect("later by id");
        assert_eq!(&*r.data, b"by id");
        assert_eq!(reply(&p, "fail", b"").0, NrStatus::Unsupported);
        assert_eq!(reply(&p, "panic", b"").0, NrStatus::Panic);
        assert_eq!(reply(&p, "echo", b"alive").1, b"alive");
        quiet(&p);
    });
}

#[test]
fn nylon_ring_0_1_define_plugin() {
    let lib = common::cargo_lib("kcoro-test-nylon01");
    common::within(120, move || {
        // A plain version-1 library whose five slots are kcoro-v1's too (only the arguments
        // differ): its layout must be named, and the refusal names the layouts it fits,
        // never the 3-slot one (its table goes on past three functions).
        let e = Plugin::load(&lib).expect_err("ambiguous");
        let HostError::AmbiguousLayout { ref options, .. } = e else { panic!("{e}") };
        assert!(options.starts_with("kcoro-v1, nylon-0.1") && !options.contains("3slot"), "{e}");
        assert!(e.to_string().contains("nylon-0.1"), "{e}");
        let p = load(&lib, Layout::Nylon01);
        assert_eq!((p.name(), p.layout(), p.abi_version()), ("kcoro-test-nylon01", Layout::Nylon01, 1));
        assert_eq!(p.capabilities(), nylon_caps(false, false));
        unary(&p);
        assert_eq!(reply(&p, "echo_async", b"later"), (NrStatus::Ok, b"later".to_vec()));
        assert_eq!(frames(&p, "stream", b"3"), numbered(3, ""));
        assert_eq!(frames(&p, "stream_sync", b"300"), numbered(300, ""));
        backpressured_stream(&p, || common::probe(&lib, "test_backpressure_retries"));
        bidi(&p);
        state(&p, &lib);
        errors(&p);
        assert_eq!(reply(&p, "fail", b"").0, NrStatus::Err);
        quiet(&p);
    });
}

fn c_nylon(v2: bool) -> PathBuf {
    if v2 {
        common::c_test_lib("nylon_rel.c", &["-DNY_V2=1"], "c_nylon02")
    } else {
        common::c_test_lib("nylon_rel.c", &["-DNY_V2=0"], "c_nylon01")
    }
}

/// What both C plugins of the released layouts do.
fn c_released(p: &Plugin, lib: &Path) {
    unary(p);
    assert_eq!(reply(p, "echo_async", b"later"), (NrStatus::Ok, b"later".to_vec()));
    // An owned NrVec is kept without a copy and freed through its own drop_fn.
    let freed: u64 = common::probe(lib, "test_c_frees");
    let r = p.call_raw("echo_vec", b"mine").wait().expect("echo_vec");
    assert_eq!((r.data.is_zero_copy(), &*r.data), (true, &b"mine"[..]));
    drop(r);
    assert_eq!(common::probe::<u64>(lib, "test_c_frees"), freed + 1);
    assert_eq!(frames(p, "stream", b"3"), numbered(3, ""));
    backpressured_stream(p, || common::probe(lib, "test_c_retries"));
    bidi(p);
    // 5 is nylon-ring's Panic; 9 is nobody's.
    assert_eq!(reply(p, "panic", b"").0, NrStatus::Panic);
    assert_eq!(reply(p, "bad", b"").0, NrStatus::Invalid);
    assert_eq!(reply(p, "error", b""), (NrStatus::Err, b"boom".to_vec()));
    assert_eq!(reply(p, "no-such-entry", b"").0, NrStatus::Invalid);
}

#[test]
fn c_plugin_of_nylon_ring_0_2() {
    let lib = c_nylon(true);
    common::within(60, move || {
        let p = load(&lib, Layout::Auto);
        assert_eq!((p.name(), p.layout()), ("c-nylon-0.2", Layout::Nylon02));
        assert_eq!(p.capabilities(), nylon_caps(true, true));
        c_released(&p, &lib);
        let freed: u64 = common::probe(&lib, "test_c_frees");
        let r = p.call_raw("owned", b"zero").wait().expect("owned");
        assert_eq!((r.data.is_zero_copy(), &*r.data), (true, &b"zero"[..]));
        drop(r);
        assert_eq!(common::probe::<u64>(&lib, "test_c_frees"), freed + 1);
        assert_eq!(reply(&p, "lease", b"1234"), (NrStatus::Ok, b"4321".to_vec()));
        quiet(&p);
    });
}

#[test]
fn c_plugin_of_nylon_ring_0_1() {
    let lib = c_nylon(false);
    common::within(60, move || {
        let p = load(&lib, Layout::Nylon01);
        assert_eq!((p.name(), p.layout()), ("c-nylon-0.1", Layout::Nylon01));
        assert_eq!(p.capabilities(), nylon_caps(false, false));
        c_released(&p, &lib);
        // 0.1 has no owned bytes or leases: the plugin answers those entries Invalid.
        assert_eq!(reply(&p, "owned", b"x").0, NrStatus::Invalid);
        quiet(&p);
    });
}

#[test]
fn c_plugin_of_the_6_slot_layout() {
    let lib = common::c_test_lib("early.c", &["-DNY_SLOTS=6"], "c_nylon_6slot");
    common::within(60, move || {
        // Detected: six functions, then no seventh.
        let p = load(&lib, Layout::Auto);
        assert_eq!((p.name(), p.layout(), p.abi_version()), ("c-nylon-6slot", Layout::Nylon6Slot, 1));
        let caps = p.capabilities();
        let want = Capabilities {
            request_metadata: true,
            raw_entry: true,
            bidirectional: true,
            stream_close: true,
            state: true,
            ..Capabilities::default()
        };
        assert_eq!(caps, want);
        // Raw calls go to handle_raw (slot 2), calls with a request to handle (slot 1).
        assert_eq!(reply(&p, "echo", b"hi"), (NrStatus::Ok, b"raw:hi".to_vec()));
        // An entry only handle_raw serves.
        assert_eq!(reply(&p, "fast_echo", b"quick"), (NrStatus::Ok, b"quick".to_vec()));
        let with_req = HighLevelRequest::new("GET", "/").body("quick");
        assert_eq!(p.call("fast_echo", &with_req).wait().expect("fast_echo").status, NrStatus::Unsupported);
        let req = HighLevelRequest::new("POST", "/p").query("a=1").header("k", "v").body("body");
        assert_eq!(&*p.call("echo", &req).wait().expect("echo").data, b"body");
        assert_eq!(&*p.call("meta", &req).wait().expect("meta").data, b"POST /p?a=1 k=v");
        assert_eq!(frames(&p, "stream", b"3"), numbered(3, ""));
        bidi(&p);
        assert_eq!(reply(&p, "state", b"kept"), (NrStatus::Ok, b"kept".to_vec()));
        // These layouts never assigned 5: it reads as Invalid, not Backpressure or Panic.
        assert_eq!(reply(&p, "five", b"").0, NrStatus::Invalid);
        assert_eq!(reply(&p, "error", b""), (NrStatus::Err, b"boom".to_vec()));
        assert_eq!(reply(&p, "nope", b"").0, NrStatus::Unsupported);
        quiet(&p);
    });
}

#[test]
fn c_plugin_of_the_3_slot_layout() {
    let lib = common::c_test_lib("early.c", &["-DNY_SLOTS=3"], "c_nylon_3slot");
    common::within(60, move || {
        let p = load(&lib, Layout::Nylon3Slot);
        assert_eq!((p.name(), p.layout()), ("c-nylon-3slot", Layout::Nylon3Slot));
        let want = Capabilities { request_metadata: true, state: true, ..Capabilities::default() };
        assert_eq!(p.capabilities(), want);
        assert_eq!(reply(&p, "state", b"kept"), (NrStatus::Ok, b"kept".to_vec()));
        assert_eq!(reply(&p, "echo", b"hi"), (NrStatus::Ok, b"hi".to_vec()));
        let req = HighLevelRequest::new("GET", "/q").header("x", "1");
        assert_eq!(&*p.call("meta", &req).wait().expect("meta").data, b"GET /q? x=1");
        assert_eq!(frames(&p, "stream", b"2"), numbered(2, ""));
        // No stream slots: sending into a stream is refused, never a jump past the table.
        let mut s = p.call_stream_raw("bidi", b"").expect("open");
        assert!(matches!(s.send(b"x"), Err(HostError::NoStreamInput(_))));
        assert!(matches!(s.close(), Err(HostError::NoStreamInput(_)) | Err(HostError::StreamClosed)));
        drop(s);
        assert_eq!(reply(&p, "five", b"").0, NrStatus::Invalid);
        let m = p.metrics();
        assert_eq!(m.in_flight, 0, "{m:?}");
    });
}
