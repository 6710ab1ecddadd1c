//! Plugins whose threads keep replying after `shutdown` has returned (as nylon-ring's Go
//! SDK does: its `shutdown` joins no goroutine). Every such reply is harmless: dropped and
//! counted while a handle to the plugin remains, ignored at its gate once the last handle
//! is gone, and the plugin's code stays mapped while its threads run it.

mod common;

use std::path::Path;
use std::time::Duration;

use kcoro_host::{HostError, Layout, LoadOptions, NrStatus, Plugin};

/// Loads `lib`, starts its `forever` entry on a stream that times out, unloads it, and
/// watches the plugin's thread keep sending through every stage.
fn outlives_its_plugin(lib: &Path, layout: Layout) {
    let p = Plugin::load_with(lib, LoadOptions::default().layout(layout)).expect("load");
    let sent = || common::probe::<u64>(lib, "test_late_sends");

    // A stream whose caller gives up (once the thread has started): the plugin's thread
    // does not.
    let mut s = p.call_stream_raw("forever", b"").expect("stream");
    let first = s.recv().expect("a tick").expect("a frame");
    assert_eq!((first.status, &*first.data), (NrStatus::Ok, &b"tick"[..]));
    let mut s = s.timeout(Duration::from_millis(50));
    loop {
        match s.recv() {
            Ok(Some(_)) => continue,
            Err(HostError::Timeout) => break,
            other => panic!("expected the stream to time out, got {other:?}"),
        }
    }
    drop(s);

    // Unloaded (shutdown has returned), the handle still held: replies are dropped and
    // counted in the plugin's metrics.
    p.shutdown(Duration::from_secs(5)).expect("shutdown");
    assert!(p.is_shut_down());
    let dropped = p.metrics().dropped_replies;
    common::wait_until("replies after shutdown to be dropped", || {
        p.metrics().dropped_replies >= dropped + 20
    });
    assert!(matches!(p.call_raw("echo", b"x").wait(), Err(HostError::Unloading(_))));
    assert!(matches!(p.call_raw("echo", b"x").inline_only().wait(), Err(HostError::Unloading(_))));

    // Every handle gone: the host context is freed, the plugin's thread finds the gate
    // closed, and the library it runs in is still mapped.
    let late = p.late_replies();
    assert!(!late.is_retired());
    drop(p);
    assert!(late.is_retired());
    // Both counts grow while the thread runs, each compared with itself. Not one with the
    // other: the plugin counts a send after it returns, so a thread preempted between the
    // two (a busy machine) has its last send at the gate and not yet in its own count.
    let (count, at) = (late.count(), sent());
    common::wait_until("the plugin's thread to keep sending, its replies ignored at the gate", || {
        late.count() >= count + 20 && sent() >= at + 20
    });
}

#[test]
fn a_kcoro_plugin_thread_outlives_its_plugin() {
    let lib = common::c_test_lib("late_thread.c", &[], "c_late_thread");
    common::within(60, move || outlives_its_plugin(&lib, Layout::KcoroV1));
}

#[test]
fn a_nylon_ring_plugin_thread_outlives_its_plugin() {
    let lib = common::cargo_lib("kcoro-test-nylon02");
    common::within(60, move || outlives_its_plugin(&lib, Layout::Auto));
}

/// The same library loaded again while the old instance's thread still calls the old
/// `host_ctx`: the two never mix.
#[test]
fn a_reload_is_not_reached_by_the_old_instances_thread() {
    let lib = common::c_test_lib("late_thread.c", &["-DLATE_RELOAD"], "c_late_thread_reload");
    common::within(60, move || {
        let opts = LoadOptions::default().layout(Layout::KcoroV1);
        let old = Plugin::load_with(&lib, opts.clone()).expect("load");
        let mut s = old.call_stream_raw("forever", b"").expect("stream");
        assert_eq!(s.recv().expect("tick").expect("frame").status, NrStatus::Ok);
        drop(s);
        let late = old.late_replies();
        old.shutdown(Duration::from_secs(5)).expect("shutdown");
        drop(old);
        let new = Plugin::load_with(&lib, opts).expect("reload");
        let count = late.count();
        common::wait_until("the old thread to keep calling", || late.count() >= count + 20);
        assert_eq!(&*new.call_raw("echo", b"fresh").wait().expect("echo").data, b"fresh");
        let m = new.metrics();
        assert_eq!((m.dropped_replies, m.in_flight), (0, 0), "{m:?}");
    });
}
