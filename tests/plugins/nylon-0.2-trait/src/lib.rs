//! A plugin built with nylon-ring 0.2.2's high-level API, the one its README teaches: a
//! [`Plugin`] implementation exported with [`export_plugin!`]. kcoro-host loads it
//! unchanged (`crates/kcoro-host/tests/nylon.rs`).
//!
//! | entry        | reply                                                                 |
//! |--------------|-----------------------------------------------------------------------|
//! | `echo`       | `Reply::Bytes(payload)`                                               |
//! | `shout`      | `Reply::Text(payload in upper case)`                                  |
//! | `static`     | `Reply::Static(b"static bytes")` (zero-copy, `send_result_owned`)     |
//! | `stream`     | N × `send_frame("frame-i")`, then `end_stream(b"done")` (N = payload) |
//! | `fail`       | `Reply::Fail(Unsupported)`                                            |
//! | `panic`      | panics inside `on_call` (the SDK answers `Panic`)                     |
//! | `bidi`       | `Reply::None`; `on_stream_data` echoes, `on_stream_close` ends        |
//! | `later`      | async: the payload, after a wake-up from another thread               |
//! | `now`        | async, ready at once: the payload, inline on the host thread          |

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use nylon_ring::plugin::send_result;
use nylon_ring::{AsyncSession, NrStatus, NrVec, Plugin, Reply, Session, export_plugin};

struct TraitPlugin {
    /// Calls seen, across all of them (the trait's cross-call state).
    calls: AtomicU32,
}

impl Plugin for TraitPlugin {
    type Ctx = ();
    const ENTRIES: &'static [&'static str] = &["echo", "shout", "static", "stream", "fail", "panic", "bidi"];
    const ASYNC_ENTRIES: &'static [&'static str] = &["later", "now"];

    fn new() -> Self {
        TraitPlugin { calls: AtomicU32::new(0) }
    }

    fn new_ctx(&self) -> Self::Ctx {}

    fn on_call(&self, session: &mut Session<'_>, _ctx: &mut Self::Ctx) -> Reply {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match session.entry() {
            "echo" => Reply::Bytes(session.payload().to_vec()),
            "shout" => Reply::Text(String::from_utf8_lossy(session.payload()).to_uppercase()),
            "static" => Reply::Static(b"static bytes"),
            "stream" => {
                let n: u32 =
                    std::str::from_utf8(session.payload()).ok().and_then(|s| s.parse().ok()).unwrap_or(5);
                for i in 1..=n {
                    let status = session.send_frame(format!("frame-{i}").into_bytes());
                    if status != NrStatus::Ok {
                        return Reply::Fail(status);
                    }
                }
                match session.end_stream(b"done".to_vec()) {
                    NrStatus::Ok => Reply::None,
                    status => Reply::Fail(status),
                }
            }
            "fail" => Reply::Fail(NrStatus::Unsupported),
            "panic" => panic!("the panic entry panics"),
            _ => Reply::None, // `bidi`: frames come from the stream handlers
        }
    }

    fn on_async_call(&self, session: AsyncSession, _ctx: Self::Ctx) -> impl Future<Output = Reply> + Send {
        let later = session.entry() == "later";
        async move {
            if later {
                WokenFromAnotherThread::default().await;
            }
            Reply::Bytes(session.into_payload())
        }
    }

    fn on_stream_data(&self, sid: u64, data: &[u8]) -> NrStatus {
        send_result(sid, NrStatus::Ok, NrVec::from_vec(data.to_vec()))
    }

    fn on_stream_close(&self, sid: u64) -> NrStatus {
        send_result(sid, NrStatus::StreamEnd, NrVec::from_vec(Vec::new()))
    }
}

/// Pending on its first poll; a thread it starts then wakes it: the reply is sent from
/// the SDK's executor thread, not from inside the host's call.
#[derive(Default)]
struct WokenFromAnotherThread {
    state: Option<Wakeup>,
}

/// Set once the thread ran, and the waker it wakes.
type Wakeup = (Arc<AtomicBool>, Arc<Mutex<Option<Waker>>>);

impl Future for WokenFromAnotherThread {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.state {
            None => {
                let (done, waker) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(None::<Waker>)));
                let (d, w) = (done.clone(), waker.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    d.store(true, Ordering::Release);
                    if let Some(w) = w.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        w.wake();
                    }
                });
                self.state = Some((done, waker));
                self.poll(cx)
            }
            Some((done, waker)) => {
                *waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                if done.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
            }
        }
    }
}

export_plugin!(TraitPlugin);
