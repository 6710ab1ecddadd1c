//! `plugin` suite, nylon-ring rows: `nylon-ring-host` 0.2.2 loads `bench/plugins/nylon`
//! (with `load`, so it stays unloadable, as kcoro-host's plugins are); the driver runs in
//! `block_on` of a tokio `current_thread` runtime (`unary_2_workers`: two tasks on a
//! `multi_thread` runtime with two workers) and calls through [`PluginEntry`]s resolved
//! once. The API per case, each the fastest nylon-ring-host 0.2.2 has for a plugin that
//! replies inside the call:
//!
//! - `unary_empty`, `unary_1k`, `unary_2_workers`: [`PluginEntry::call_response_fast`] —
//!   the synchronous fast path by entry id: no pending-map entry, the reply lands in a
//!   thread-local slot. It fails if the plugin does not reply inside `handle`, as
//!   kcoro-host's `inline_only` calls do.
//! - `unary_any_thread`: [`PluginEntry::call_response`], the general call that also takes
//!   a later reply, as kcoro-host's plain `call_raw` does: it inserts into and removes
//!   from a sharded `DashMap` per call.
//! - `fire_and_forget`: [`PluginEntry::call`].
//! - `stream_5_frames`: [`PluginEntry::call_stream`], then [`StreamReceiver::recv`]; frames
//!   sent inside `handle` go straight to the stream's pooled channel.
//! - `bidi_5_frames_echo`: [`PluginEntry::call_stream`], [`PluginHandle::send_stream_data`]
//!   ×5, `recv` ×5, [`PluginHandle::close_stream`], `recv` of the end.

use std::future::Future;

use nylon_ring_host::{NrStatus, NylonRingHost, PluginEntry, PluginHandle, StreamReceiver};

use super::{
    FRAME, FRAMES, NYLON, Timed, Unary, check_echo, check_frame, payload, unary_call, unknown, warmup,
};
use crate::harness::Measurement;

/// The name the plugin is loaded under.
const NAME: &str = "bench";

/// Runs `case` with `n` operations.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    let path = super::nylon_plugin_path()?;
    let path = path.to_str().ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    let mut host = NylonRingHost::new();
    host.load(NAME, path).map_err(|e| format!("{NYLON}: cannot load {path}: {e}"))?;
    let handle = host.plugin(NAME).ok_or_else(|| format!("{NYLON}: plugin {NAME} not loaded"))?;
    let entry = |name: &str| handle.entry(name).map_err(|e| format!("{NYLON}: entry {name}: {e}"));
    let out = match case {
        "unary_empty" | "unary_1k" | "unary_any_thread" => {
            let (e, sent, how) = (entry("echo")?, payload(case), unary_call(case));
            drive(async move {
                unary(&e, &sent, how, warmup(n), true).await?;
                let t = Timed::start();
                unary(&e, &sent, how, n, false).await?;
                Ok(t.stop(n))
            })
        }
        "fire_and_forget" => {
            let e = entry("noop")?;
            drive(async move {
                fire(&e, warmup(n)).await?;
                let t = Timed::start();
                fire(&e, n).await?;
                Ok(t.stop(n))
            })
        }
        "stream_5_frames" => {
            let e = entry("stream5")?;
            drive(async move {
                streams(&e, warmup(n)).await?;
                let t = Timed::start();
                streams(&e, n).await?;
                Ok(t.stop(n))
            })
        }
        "bidi_5_frames_echo" => {
            let (h, e) = (handle.clone(), entry("bidi")?);
            drive(async move {
                bidis(&h, &e, warmup(n)).await?;
                let t = Timed::start();
                bidis(&h, &e, n).await?;
                Ok(t.stop(n))
            })
        }
        "unary_2_workers" => {
            let e = entry("echo")?;
            drive_two_workers(async move {
                two_drivers(&e, warmup(n)).await?;
                let t = Timed::start();
                two_drivers(&e, n).await?;
                Ok(t.stop(n))
            })
        }
        _ => Err(unknown(case)),
    };
    let metrics = host.metrics();
    if out.is_ok() && (metrics.pending_requests > 0 || metrics.in_flight_calls > 0) {
        return Err(format!("{NYLON}: host metrics after the run: {metrics:?}"));
    }
    out
}

/// Runs `body` in `block_on` of a new `current_thread` runtime and drops the runtime.
fn drive(body: impl Future<Output = Result<Measurement, String>>) -> Result<Measurement, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("tokio: cannot build runtime: {e}"))?;
    let out = rt.block_on(body);
    drop(rt);
    out
}

/// Runs `body` as a task on a new two-worker `multi_thread` runtime and drops the runtime.
fn drive_two_workers(
    body: impl Future<Output = Result<Measurement, String>> + Send + 'static,
) -> Result<Measurement, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .map_err(|e| format!("tokio: cannot build runtime: {e}"))?;
    let out = rt
        .block_on(async move { tokio::spawn(body).await })
        .map_err(|e| format!("tokio driver failed: {e}"))?;
    drop(rt);
    out
}

/// `n` calls to `echo` with `sent`, each reply checked (all of it when `full`).
async fn unary(e: &PluginEntry, sent: &[u8], how: Unary, n: u64, full: bool) -> Result<(), String> {
    for _ in 0..n {
        let reply = match how {
            Unary::Inline => e.call_response_fast(sent).await,
            Unary::AnyThread => e.call_response(sent).await,
        };
        let (status, data) = reply.map_err(|e| format!("call failed: {e}"))?;
        check_echo(status == NrStatus::Ok, &data, sent, full)?;
    }
    Ok(())
}

/// `n` fire-and-forget calls to `noop`.
async fn fire(e: &PluginEntry, n: u64) -> Result<(), String> {
    for _ in 0..n {
        match e.call(&[]).await {
            Ok(NrStatus::Ok) => {}
            Ok(status) => return Err(format!("noop returned {status:?}")),
            Err(e) => return Err(format!("call failed: {e}")),
        }
    }
    Ok(())
}

/// `n` streams of `stream5`, each read to its end.
async fn streams(e: &PluginEntry, n: u64) -> Result<(), String> {
    for _ in 0..n {
        let (_sid, mut rx) = e.call_stream(&[]).await.map_err(|e| format!("stream failed: {e}"))?;
        for _ in 0..FRAMES {
            let f = rx.recv().await.ok_or("stream ended early")?;
            check_frame(f.status == NrStatus::Ok, &f.data)?;
        }
        end(&mut rx).await?;
    }
    Ok(())
}

/// `n` bidirectional streams on `bidi`: 5 chunks in, 5 echoes out, close, the end.
async fn bidis(h: &PluginHandle, e: &PluginEntry, n: u64) -> Result<(), String> {
    for _ in 0..n {
        let (sid, mut rx) = e.call_stream(&[]).await.map_err(|e| format!("stream failed: {e}"))?;
        for _ in 0..FRAMES {
            match h.send_stream_data(sid, FRAME) {
                Ok(NrStatus::Ok) => {}
                Ok(status) => return Err(format!("stream_data returned {status:?}")),
                Err(e) => return Err(format!("send failed: {e}")),
            }
        }
        for _ in 0..FRAMES {
            let f = rx.recv().await.ok_or("stream ended early")?;
            check_frame(f.status == NrStatus::Ok, &f.data)?;
        }
        match h.close_stream(sid) {
            Ok(NrStatus::Ok) => {}
            Ok(status) => return Err(format!("stream_close returned {status:?}")),
            Err(e) => return Err(format!("close failed: {e}")),
        }
        end(&mut rx).await?;
    }
    Ok(())
}

/// Checks the next frame of `rx` is its `StreamEnd`.
async fn end(rx: &mut StreamReceiver) -> Result<(), String> {
    match rx.recv().await {
        Some(f) if f.status == NrStatus::StreamEnd => Ok(()),
        Some(f) => Err(format!("expected StreamEnd, got {:?}", f.status)),
        None => Err("stream ended without StreamEnd".to_string()),
    }
}

/// `n` empty `echo` calls split over two tasks running at once.
async fn two_drivers(e: &PluginEntry, n: u64) -> Result<(), String> {
    let half = n / 2;
    let spawn = |calls: u64| {
        let e = e.clone();
        tokio::spawn(async move { unary(&e, &[], Unary::Inline, calls, false).await })
    };
    let a = spawn(half);
    let b = spawn(n - half);
    let a = a.await.map_err(|e| format!("driver failed: {e}"))?;
    let b = b.await.map_err(|e| format!("driver failed: {e}"))?;
    a.and(b)
}
