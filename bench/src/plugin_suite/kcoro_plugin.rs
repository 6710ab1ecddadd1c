//! `plugin` suite, kcoro rows: `kcoro-host` loads `bench/plugins/kcoro` (row `kcoro`) or
//! `bench/plugins/nylon`, nylon-ring-host's own ABI 2 plugin (row `kcoro-ny`); the driver
//! is a coroutine on a fresh `kcoro::Runtime` (one worker; two for `unary_2_workers`) and
//! calls through entries resolved once, with the blocking forms.

use std::path::PathBuf;

use kcoro_host::{Entry, NrStatus, Plugin};

use super::{FRAME, FRAMES, Timed, Unary, check_echo, check_frame, payload, unary_call, unknown, warmup};
use crate::harness::Measurement;

/// Runs `case` with `n` operations on the plugin at `path` (its layout detected).
pub fn run(case: &str, n: u64, path: PathBuf) -> Result<Measurement, String> {
    let plugin = Plugin::load(&path).map_err(|e| format!("kcoro-host: {e}"))?;
    let entry = |name: &str| plugin.entry(name).map_err(|e| format!("kcoro-host: {e}"));
    let out = match case {
        "unary_empty" | "unary_1k" | "unary_any_thread" => {
            let (p, e, sent, how) = (plugin.clone(), entry("echo")?, payload(case), unary_call(case));
            drive(1, move || {
                unary(&p, &e, &sent, how, warmup(n), true)?;
                let t = Timed::start();
                unary(&p, &e, &sent, how, n, false)?;
                Ok(t.stop(n))
            })
        }
        "fire_and_forget" => {
            let (p, e) = (plugin.clone(), entry("noop")?);
            drive(1, move || {
                fire(&p, &e, warmup(n))?;
                let t = Timed::start();
                fire(&p, &e, n)?;
                Ok(t.stop(n))
            })
        }
        "stream_5_frames" => {
            let (p, e) = (plugin.clone(), entry("stream5")?);
            drive(1, move || {
                streams(&p, &e, warmup(n))?;
                let t = Timed::start();
                streams(&p, &e, n)?;
                Ok(t.stop(n))
            })
        }
        "bidi_5_frames_echo" => {
            let (p, e) = (plugin.clone(), entry("bidi")?);
            drive(1, move || {
                bidis(&p, &e, warmup(n))?;
                let t = Timed::start();
                bidis(&p, &e, n)?;
                Ok(t.stop(n))
            })
        }
        "unary_2_workers" => {
            let (p, e) = (plugin.clone(), entry("echo")?);
            drive(2, move || {
                two_drivers(&p, &e, warmup(n))?;
                let t = Timed::start();
                two_drivers(&p, &e, n)?;
                Ok(t.stop(n))
            })
        }
        _ => Err(unknown(case)),
    };
    let metrics = plugin.metrics();
    if out.is_ok() && (metrics.errors() > 0 || metrics.dropped_replies > 0 || metrics.in_flight > 0) {
        return Err(format!("kcoro-host metrics after the run: {metrics:?}"));
    }
    out
}

/// The drivers' coroutine stacks: a thread's size, as nylon-ring-host's driver has (it runs
/// on a thread), so plugin functions run in place (`kcoro_host::PLUGIN_STACK`).
pub const DRIVER_STACK: usize = kcoro_host::PLUGIN_STACK * 4;

/// Builds a runtime with `workers` workers, runs `body` as its `block_on` coroutine and
/// drops (shuts down) the runtime.
fn drive(
    workers: usize,
    body: impl FnOnce() -> Result<Measurement, String> + Send + 'static,
) -> Result<Measurement, String> {
    let rt = kcoro::Runtime::builder()
        .workers(workers)
        .stack_size(DRIVER_STACK)
        .build()
        .map_err(|e| format!("kcoro: cannot build runtime: {e}"))?;
    let out = rt.block_on(body);
    drop(rt);
    out
}

/// `n` calls to `echo` with `sent`, each reply checked (all of it when `full`).
fn unary(p: &Plugin, e: &Entry, sent: &[u8], how: Unary, n: u64, full: bool) -> Result<(), String> {
    for _ in 0..n {
        let call = match how {
            Unary::Inline => p.call_raw(e, sent).inline_only(),
            Unary::AnyThread => p.call_raw(e, sent),
        };
        let reply = call.wait().map_err(|e| format!("call failed: {e}"))?;
        check_echo(reply.status == NrStatus::Ok, &reply.data, sent, full)?;
    }
    Ok(())
}

/// `n` fire-and-forget calls to `noop`.
fn fire(p: &Plugin, e: &Entry, n: u64) -> Result<(), String> {
    for _ in 0..n {
        match p.fire_and_forget(e, &[]) {
            Ok(NrStatus::Ok) => {}
            Ok(status) => return Err(format!("noop returned {status:?}")),
            Err(e) => return Err(format!("call failed: {e}")),
        }
    }
    Ok(())
}

/// `n` streams of `stream5`, each read to its end.
fn streams(p: &Plugin, e: &Entry, n: u64) -> Result<(), String> {
    for _ in 0..n {
        let mut s = p.call_stream_raw(e, &[]).map_err(|e| format!("stream failed: {e}"))?;
        for _ in 0..FRAMES {
            let f = s.recv().map_err(|e| format!("recv failed: {e}"))?.ok_or("stream ended early")?;
            check_frame(f.status == NrStatus::Ok, &f.data)?;
        }
        end(s.recv())?;
    }
    Ok(())
}

/// `n` bidirectional streams on `bidi`: 5 chunks in, 5 echoes out, close, the end.
fn bidis(p: &Plugin, e: &Entry, n: u64) -> Result<(), String> {
    for _ in 0..n {
        let mut s = p.call_stream_raw(e, &[]).map_err(|e| format!("stream failed: {e}"))?;
        for _ in 0..FRAMES {
            match s.send(FRAME) {
                Ok(NrStatus::Ok) => {}
                Ok(status) => return Err(format!("stream_data returned {status:?}")),
                Err(e) => return Err(format!("send failed: {e}")),
            }
        }
        for _ in 0..FRAMES {
            let f = s.recv().map_err(|e| format!("recv failed: {e}"))?.ok_or("stream ended early")?;
            check_frame(f.status == NrStatus::Ok, &f.data)?;
        }
        match s.close() {
            Ok(NrStatus::Ok) => {}
            Ok(status) => return Err(format!("stream_close returned {status:?}")),
            Err(e) => return Err(format!("close failed: {e}")),
        }
        end(s.recv())?;
    }
    Ok(())
}

/// Checks the last frame of a stream is its `StreamEnd`.
fn end(last: Result<Option<kcoro_host::Frame>, kcoro_host::HostError>) -> Result<(), String> {
    match last.map_err(|e| format!("recv failed: {e}"))? {
        Some(f) if f.status == NrStatus::StreamEnd => Ok(()),
        Some(f) => Err(format!("expected StreamEnd, got {:?}", f.status)),
        None => Err("stream ended without StreamEnd".to_string()),
    }
}

/// `n` empty `echo` calls split over two coroutines running at once.
fn two_drivers(p: &Plugin, e: &Entry, n: u64) -> Result<(), String> {
    let half = n / 2;
    let spawn = |calls: u64| {
        let (p, e) = (p.clone(), e.clone());
        kcoro::spawn(move || unary(&p, &e, &[], Unary::Inline, calls, false))
    };
    let a = spawn(half);
    let b = spawn(n - half);
    let a = a.join().map_err(|e| format!("driver failed: {e}"))?;
    let b = b.join().map_err(|e| format!("driver failed: {e}"))?;
    a.and(b)
}
