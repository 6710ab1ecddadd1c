//! The same calls from a kcoro coroutine (parking, not blocking, its worker), from plain
//! threads, and from tokio; timeouts in every mode.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use kcoro_host::{HostError, NrStatus, Plugin};

/// Tests here compare the shared plugin's counters before and after; they take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static M: std::sync::Mutex<()> = std::sync::Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Rust example plugin, loaded once for this test binary.
fn plugin() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| Plugin::load(common::rust_echo()).expect("load the Rust example plugin"))
}

#[test]
fn a_waiting_call_parks_its_coroutine_and_frees_the_worker() {
    let _turn = serial();
    let p = plugin();
    common::within(30, move || {
        let rt = kcoro::Runtime::builder().workers(1).build().expect("runtime");
        rt.block_on(move || {
            // `bidi` answers only when the host sends data. On one worker, the sender below
            // can run only if the receiver parked instead of blocking the thread.
            let mut s = p.call_stream_raw("bidi", b"").expect("open");
            let sid = s.sid();
            let sender = kcoro::spawn(move || {
                assert_eq!(p.send_stream_data(sid, b"ping").expect("send"), NrStatus::Ok);
                assert_eq!(p.close_stream(sid).expect("close"), NrStatus::Ok);
            });
            let first = s.recv().expect("recv").expect("a frame");
            assert_eq!(&*first.data, b"ping");
            assert_eq!(s.recv().expect("recv").expect("end").status, NrStatus::StreamEnd);
            assert!(s.recv().expect("after end").is_none());
            sender.join().expect("sender");
        });
    });
}

#[test]
fn many_coroutines_wait_for_async_replies() {
    let _turn = serial();
    let p = plugin();
    let total = common::within(60, move || {
        kcoro::run(move || {
            let handles: Vec<_> = (0..200u32)
                .map(|i| {
                    kcoro::spawn(move || {
                        let msg = i.to_string();
                        let r = p.call_raw("echo_async", msg.as_bytes()).wait().expect("call");
                        assert_eq!(&*r.data, msg.as_bytes());
                        1u32
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("join")).sum::<u32>()
        })
    });
    assert_eq!(total, 200);
}

#[test]
fn plain_threads_share_a_plugin() {
    let _turn = serial();
    let p = plugin();
    common::within(60, move || {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let msg = format!("{t}-{i}");
                        let entry = if i % 2 == 0 { "echo" } else { "echo_async" };
                        let r = p.call_raw(entry, msg.as_bytes()).wait().expect("call");
                        assert_eq!(&*r.data, msg.as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    });
}

#[test]
fn blocking_timeout_ends_the_call_and_drops_a_late_reply() {
    let _turn = serial();
    let p = plugin();
    common::within(30, move || {
        // `bidi` never answers a unary call.
        let err = p.call_raw("bidi", b"").timeout(Duration::from_millis(30)).wait().expect_err("no reply");
        assert!(matches!(err, HostError::Timeout), "{err}");
        let mut s = p.call_stream_raw("bidi", b"").expect("open").timeout(Duration::from_millis(30));
        assert!(matches!(s.recv(), Err(HostError::Timeout)));
        // After the timeout the sid is finished: the plugin's frames for it are dropped.
        let before = p.metrics().dropped_replies;
        assert_eq!(
            p.send_stream_data(s.sid(), b"late").map_err(|e| e.to_string()),
            Err("the stream is finished".into())
        );
        assert_eq!(p.metrics().dropped_replies, before);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard only makes whole tests take turns; each test runs on its own runtime.
#[allow(clippy::await_holding_lock)]
async fn calls_are_futures_on_tokio() {
    let _turn = serial();
    let p = plugin();
    let r = p.call_raw("echo_async", b"from tokio").await.expect("async echo");
    assert_eq!(&*r.data, b"from tokio");
    let r = p.call_raw("echo", b"sync").await.expect("sync echo");
    assert_eq!(&*r.data, b"sync");
    // Inline-only calls are futures too, ready at their first poll either way.
    let r = p.call_raw("echo", b"inline").inline_only().await.expect("inline echo");
    assert_eq!(&*r.data, b"inline");
    let dropped = p.metrics().dropped_replies;
    let err = p.call_raw("echo_async", b"late").inline_only().await.expect_err("answered from a thread");
    assert!(matches!(err, kcoro_host::HostError::NoInlineReply(_)), "{err}");
    // Its late reply is dropped before the next test counts drops of its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while p.metrics().dropped_replies == dropped {
        assert!(std::time::Instant::now() < deadline, "the late reply was never dropped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let tasks: Vec<_> = (0..100)
        .map(|i| {
            tokio::spawn(async move {
                let msg = format!("task-{i}");
                let r = p.call_raw("echo_async", msg.as_bytes()).await.expect("call");
                assert_eq!(&*r.data, msg.as_bytes());
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }

    let mut s = p.call_stream_raw("stream", b"4").expect("stream");
    let mut got = Vec::new();
    while let Some(f) =
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut s), cx)).await
    {
        got.push(f.expect("frame").status);
    }
    assert_eq!(got, [NrStatus::Ok, NrStatus::Ok, NrStatus::Ok, NrStatus::Ok, NrStatus::StreamEnd]);

    let err = p.call_raw("bidi", b"").timeout(Duration::from_millis(20)).await.expect_err("times out");
    assert!(matches!(err, HostError::Timeout));
}

#[tokio::test]
// The guard only makes whole tests take turns; each test runs on its own runtime.
#[allow(clippy::await_holding_lock)]
async fn dropping_a_pending_future_finishes_its_sid() {
    let _turn = serial();
    let p = plugin();
    let before = p.metrics();
    {
        let mut call = std::pin::pin!(p.call_raw("bidi", b""));
        let pending =
            std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx).is_pending())).await;
        assert!(pending);
    }
    let after = p.metrics();
    assert_eq!(after.calls, before.calls + 1);
    assert_eq!(after.in_flight, before.in_flight, "{after:?}");
}

use std::future::Future as _;
