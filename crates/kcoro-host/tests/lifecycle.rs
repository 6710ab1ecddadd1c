//! Loading by name, unloading with a grace period (and under 1,000 in-flight streams),
//! reloading, and the clear errors bad input gets.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kcoro_host::{Host, HostError, NrStatus, Plugin};

/// A library can be initialised once per process at a time; these tests take turns.
fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn plugins_are_found_by_name_and_names_are_unique() {
    let _turn = serial();
    let host = Host::new();
    let p = host.load(common::rust_echo()).expect("load");
    assert_eq!(host.names(), ["echo-rust"]);
    assert_eq!(host.get("echo-rust").expect("by name").name(), p.name());
    let again = host.load(common::rust_echo()).expect_err("second load");
    assert!(matches!(&again, HostError::NameTaken(n) if n == "echo-rust"), "{again}");
    // The refused second load did not re-initialise the first.
    assert_eq!(&*p.call_raw("echo", b"still here").wait().expect("echo").data, b"still here");
    // Outside this host, the same library is refused too: its statics are shared.
    let elsewhere = Plugin::load(common::rust_echo()).expect_err("load in a second host");
    assert!(matches!(elsewhere, HostError::AlreadyLoaded { .. }), "{elsewhere}");
    host.unload("echo-rust", Duration::from_secs(1)).expect("unload");
    assert!(host.get("echo-rust").is_none());
    assert!(matches!(p.call_raw("echo", b"x").wait(), Err(HostError::Unloading(_))));
    assert!(matches!(host.unload("echo-rust", Duration::ZERO), Err(HostError::NotLoaded(_))));
}

#[test]
fn unload_waits_for_1000_in_flight_streams_and_loses_nothing() {
    let _turn = serial();
    common::within(60, || {
        let host = Host::new();
        let p = host.load(common::rust_echo()).expect("load");
        let mut streams: Vec<_> = (0..1000).map(|_| p.call_stream_raw("bidi", b"").expect("open")).collect();
        assert_eq!(p.metrics().in_flight, 1000);
        let host = std::sync::Arc::new(host);
        let unloader = {
            let host = host.clone();
            std::thread::spawn(move || host.unload("echo-rust", Duration::from_secs(30)))
        };
        // Once unloading has begun, new calls are refused...
        while p.call_raw("echo", b"").wait().is_ok() {
            std::thread::yield_now();
        }
        assert!(matches!(p.call_raw("echo", b"").wait(), Err(HostError::Unloading(_))));
        // ...while every stream already in flight runs to its end.
        for (i, s) in streams.iter_mut().enumerate() {
            assert_eq!(s.send(i.to_string().as_bytes()).expect("send"), NrStatus::Ok);
            s.close().expect("close");
        }
        for (i, s) in streams.into_iter().enumerate() {
            let frames = s.collect().expect("frames");
            assert_eq!(frames.len(), 2);
            assert_eq!(&*frames[0].data, i.to_string().as_bytes());
            assert_eq!(frames[1].status, NrStatus::StreamEnd);
        }
        unloader.join().expect("unloader").expect("unload once drained");
        assert!(p.is_shut_down());
        let m = p.metrics();
        assert_eq!((m.in_flight, m.dropped_replies, m.status(NrStatus::StreamEnd)), (0, 0, 1000), "{m:?}");
    });
}

#[test]
fn calls_racing_an_unload_are_served_whole_or_refused() {
    let _turn = serial();
    common::within(60, || {
        let host = std::sync::Arc::new(Host::new());
        let p = host.load(common::rust_echo()).expect("load");
        // Callers that have had a call answered: the unload starts once all three have.
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let callers: Vec<_> = (0..3)
            .map(|t| {
                let (p, running) = (p.clone(), running.clone());
                std::thread::spawn(move || {
                    let mut served = 0u64;
                    for i in 0u64.. {
                        let msg = format!("{t}-{i}");
                        // One caller of three makes inline-only calls: no sid, the same
                        // in-flight mark.
                        let call = p.call_raw("echo", msg.as_bytes());
                        let call = if t == 1 { call.inline_only() } else { call };
                        match call.wait() {
                            Ok(r) => {
                                assert_eq!(&*r.data, msg.as_bytes());
                                if served == 0 {
                                    running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                }
                                served += 1;
                            }
                            Err(HostError::Unloading(_)) => return served,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    unreachable!("the loop ends when unloading refuses a call")
                })
            })
            .collect();
        while running.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        host.unload("echo-rust", Duration::from_secs(10)).expect("unload");
        let served: u64 = callers.into_iter().map(|c| c.join().expect("caller")).sum();
        let m = p.metrics();
        assert!(served >= 3, "every caller had a call answered before the unload");
        // Every call admitted was answered before `shutdown`: none in flight, none lost.
        assert_eq!((m.in_flight, m.calls, m.status(NrStatus::Ok)), (0, served, served), "{m:?}");
    });
}

#[test]
fn unload_fails_busy_after_the_grace_period_and_the_plugin_keeps_serving() {
    let _turn = serial();
    common::within(30, || {
        let host = Host::new();
        let p = host.load(common::rust_echo()).expect("load");
        let stream = p.call_stream_raw("bidi", b"").expect("open");
        let err = host.unload("echo-rust", Duration::from_millis(20)).expect_err("busy");
        assert!(matches!(err, HostError::Busy { in_flight: 1, .. }), "{err}");
        assert_eq!(&*p.call_raw("echo", b"serving").wait().expect("echo").data, b"serving");
        drop(stream);
        host.unload("echo-rust", Duration::from_secs(1)).expect("unload");
    });
}

#[test]
fn reload_swaps_in_a_fresh_instance() {
    let _turn = serial();
    let host = Host::new();
    let old = host.load(common::rust_echo()).expect("load");
    let new = host.reload("echo-rust", Duration::from_secs(1)).expect("reload");
    assert!(old.is_shut_down() && !new.is_shut_down());
    assert!(matches!(old.call_raw("echo", b"x").wait(), Err(HostError::Unloading(_))));
    assert_eq!(&*new.call_raw("echo", b"fresh").wait().expect("echo").data, b"fresh");
    assert_eq!(
        &*host.get("echo-rust").expect("by name").call_raw("echo", b"y").wait().expect("echo").data,
        b"y"
    );
    host.unload("echo-rust", Duration::from_secs(1)).expect("unload");
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("not-a-library.so");
    std::fs::write(&path, b"just text").expect("write");
    let err = Plugin::load(&path).expect_err("not a library");
    assert!(matches!(err, HostError::Open { .. }), "{err}");
    assert!(err.to_string().contains("not-a-library.so"), "{err}");
    let missing = Plugin::load(dir.join("no-such-file.so")).expect_err("missing");
    assert!(matches!(missing, HostError::Open { .. }), "{missing}");
}
