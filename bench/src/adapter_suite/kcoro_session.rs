//! `adapter` suite, kcoro rows: `kcoro_adapter::session` on a fresh two-worker kcoro
//! runtime, every party a coroutine, the driver the runtime's `block_on` coroutine.

use std::time::Instant;

use kcoro::{JoinHandle, SpawnOptions};
use kcoro_adapter::session::{Acceptor, Event, RecvHalf, SendHalf, ServerStream, Session, SessionConfig};

use super::{FRAME, MAX_STREAMS, STREAMS, Timed, WINDOW, check, check_totals, frame, share, unknown, warmup};
use crate::harness::Measurement;
use crate::runtime_suite::kcoro_rt;

/// Runs `case` with `n` frames on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    let echo = match case {
        "session_streams" => false,
        "session_echo" => true,
        _ => return Err(unknown(case)),
    };
    kcoro_rt::drive(move || {
        one(echo, warmup(n))?;
        let (elapsed, ops) = one(echo, n)?;
        Ok(Measurement::per_op(elapsed, ops))
    })
}

/// Spawns `f` on the worker a stream was opened from, so that a stream's parties share a
/// worker: their hand-offs are local wakes, and each frame is freed on the thread that
/// allocated it. Started coroutines do not migrate, so this is placement's one chance.
fn spawn_beside<T: Send + 'static>(
    opened_on: Option<usize>,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<JoinHandle<Result<T, String>>, String> {
    let opts = opened_on.map_or_else(SpawnOptions::new, |w| SpawnOptions::new().on_worker(w));
    kcoro::spawn_with(opts, f).map_err(|e| format!("kcoro: spawn: {e}"))
}

/// Waits for a coroutine and flattens its result.
fn joined<T>(h: JoinHandle<Result<T, String>>, who: &str) -> Result<T, String> {
    h.join().map_err(|e| format!("kcoro: {who}: {e}"))?
}

/// One run: a fresh session, [`STREAMS`] clients sharing `n` frames, a server that
/// drains (`echo` false) or echoes them.
fn one(echo: bool, n: u64) -> Timed {
    let cfg = SessionConfig { max_streams: MAX_STREAMS, window: WINDOW };
    let (session, acceptor) = Session::new(cfg).map_err(|e| format!("kcoro: session: {e}"))?;
    let server = kcoro::spawn(move || serve(acceptor, echo));

    let start = Instant::now();
    let clients: Vec<_> = (0..STREAMS)
        .map(|i| {
            let session = session.clone();
            let frames = share(n, STREAMS, i);
            kcoro::spawn_with(SpawnOptions::new().spread(), move || client(&session, frames, echo))
                .map_err(|e| format!("kcoro: spawn client: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sent = clients.into_iter().map(|c| joined(c, "client")).collect::<Result<Vec<_>, _>>()?;
    let elapsed = start.elapsed();

    session.close();
    let got = joined(server, "server")?;
    check_totals(n, sent, got)?;
    let st = session.stats();
    let hops = if echo { 2 } else { 1 };
    if st.streams_opened != STREAMS as u64
        || st.streams_closed != STREAMS as u64
        || st.window_violations != 0
        || st.data_frames != hops * n
        || st.data_bytes != hops * n * FRAME as u64
    {
        return Err(format!("kcoro: session counters off after {n} frames: {st:?}"));
    }
    Ok((elapsed, n))
}

/// Opens a stream, sends `frames` frames, half-closes, and waits for the server's
/// half-close; with `echo`, a second coroutine drains the echoes meanwhile.
/// Returns the stream id and the frames sent.
fn client(session: &Session, frames: u64, echo: bool) -> Result<(u64, u64), String> {
    let s = session.open(0).map_err(|e| format!("kcoro: open: {e}"))?;
    let (id, opened_on, mut tx, mut rx) = (s.id, s.opened_on, s.tx, s.rx);
    if echo {
        let reader = spawn_beside(opened_on, move || {
            drain(id, frames, &mut rx)?;
            expect_fin(id, &mut rx)
        })?;
        send_all(id, frames, &mut tx)?;
        joined(reader, "reader")?;
    } else {
        send_all(id, frames, &mut tx)?;
        expect_fin(id, &mut rx)?;
    }
    Ok((id, frames))
}

/// Sends `frames` new frames, then half-closes.
fn send_all(id: u64, frames: u64, tx: &mut SendHalf) -> Result<(), String> {
    for seq in 0..frames {
        tx.send(seq, frame(id, seq)).map_err(|e| format!("kcoro: stream {id}: send: {e}"))?;
    }
    tx.finish().map_err(|e| format!("kcoro: stream {id}: finish: {e}"))
}

/// Receives `frames` data frames in order, checking each.
fn drain(id: u64, frames: u64, rx: &mut RecvHalf) -> Result<(), String> {
    for expected in 0..frames {
        match rx.recv() {
            Event::Data { seq, bytes } => check(id, expected, seq, &bytes)?,
            other => return Err(format!("kcoro: stream {id}: {other:?} before frame {expected}")),
        }
    }
    Ok(())
}

/// The next event must be the peer's half-close.
fn expect_fin(id: u64, rx: &mut RecvHalf) -> Result<(), String> {
    match rx.recv() {
        Event::Fin => Ok(()),
        Event::Data { seq, .. } => Err(format!("kcoro: stream {id}: frame {seq} where the end was due")),
        Event::Reset(code) => Err(format!("kcoro: stream {id}: reset {code:#x}")),
    }
}

/// The accept loop: one coroutine per stream until the session is closed; returns each
/// stream's id and the frames it received.
fn serve(acceptor: Acceptor, echo: bool) -> Result<Vec<(u64, u64)>, String> {
    let mut parties = Vec::new();
    while let Some(s) = acceptor.accept() {
        parties.push(spawn_beside(s.opened_on, move || serve_stream(s, echo))?);
    }
    parties.into_iter().map(|p| joined(p, "server party")).collect()
}

/// Drains one stream (sending every frame back with `echo`), then half-closes.
fn serve_stream(mut s: ServerStream, echo: bool) -> Result<(u64, u64), String> {
    let id = s.id;
    let mut next = 0;
    loop {
        match s.rx.recv() {
            Event::Data { seq, bytes } => {
                check(id, next, seq, &bytes)?;
                next += 1;
                if echo {
                    s.tx.send(seq, bytes).map_err(|e| format!("kcoro: stream {id}: echo: {e}"))?;
                }
            }
            Event::Fin => break,
            Event::Reset(code) => return Err(format!("kcoro: stream {id}: reset {code:#x} by the client")),
        }
    }
    s.tx.finish().map_err(|e| format!("kcoro: stream {id}: finish: {e}"))?;
    Ok((id, next))
}
