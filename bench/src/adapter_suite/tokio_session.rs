//! `adapter` suite, tokio rows: the session protocol of the kcoro rows written on tokio,
//! on a fresh two-worker runtime, every party a task.
//!
//! A half is an unbounded `mpsc` channel of `(seq, frame)` plus a `Semaphore` holding the
//! credit window in permits: the sender takes `len` permits (`acquire_many`, waiting while
//! the window is spent) and forgets them, the receiver adds `len` back after each frame.
//! Half-close is dropping the sending half (the receiver sees the channel end). A session
//! hands the server's end of each opened stream over an unbounded accept channel; a stream
//! holds one permit of the slot semaphore until the client drops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::{MAX_STREAMS, STREAMS, Timed, WINDOW, check, check_totals, frame, share, unknown, warmup};
use crate::harness::Measurement;
use crate::runtime_suite::tokio_rt;

/// Runs `case` with `n` frames on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    let echo = match case {
        "session_streams" => false,
        "session_echo" => true,
        _ => return Err(unknown(case)),
    };
    tokio_rt::drive(async move {
        one(echo, warmup(n)).await?;
        let (elapsed, ops) = one(echo, n).await?;
        Ok(Measurement::per_op(elapsed, ops))
    })
}

/// The sending half: frames out, credit spent.
struct SendHalf {
    frames: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    credit: Arc<Semaphore>,
}

/// The receiving half: frames in, credit returned.
struct RecvHalf {
    frames: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
    credit: Arc<Semaphore>,
}

/// A one-way half pair with `window` bytes of credit.
fn half(window: usize) -> (SendHalf, RecvHalf) {
    let (tx, rx) = mpsc::unbounded_channel();
    let credit = Arc::new(Semaphore::new(window));
    (SendHalf { frames: tx, credit: Arc::clone(&credit) }, RecvHalf { frames: rx, credit })
}

impl SendHalf {
    /// Spends `bytes.len()` of credit, waiting while the window is spent, then sends.
    async fn send(&self, seq: u64, bytes: Vec<u8>) -> Result<(), String> {
        let len = u32::try_from(bytes.len()).map_err(|_| "tokio: frame too large".to_string())?;
        let permits = self.credit.acquire_many(len).await.map_err(|e| format!("tokio: credit: {e}"))?;
        permits.forget();
        self.frames.send((seq, bytes)).map_err(|_| "tokio: the receiving half is gone".to_string())
    }
}

impl RecvHalf {
    /// The next frame, its bytes handed back as credit; `None` after the half-close.
    async fn recv(&mut self) -> Option<(u64, Vec<u8>)> {
        let (seq, bytes) = self.frames.recv().await?;
        self.credit.add_permits(bytes.len());
        Some((seq, bytes))
    }
}

/// One end of a stream.
struct Stream {
    id: u64,
    tx: SendHalf,
    rx: RecvHalf,
    /// The client's end holds the stream's slot.
    _slot: Option<OwnedSemaphorePermit>,
}

/// Opens streams; the last clone dropped ends the acceptor's loop.
struct Session {
    accept: mpsc::UnboundedSender<Stream>,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

impl Session {
    fn new() -> (Arc<Session>, mpsc::UnboundedReceiver<Stream>) {
        let (accept, acceptor) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(MAX_STREAMS));
        (Arc::new(Session { accept, slots, next_id: AtomicU64::new(0) }), acceptor)
    }

    /// Takes a slot, makes both halves and hands the server's end to the acceptor.
    async fn open(&self) -> Result<Stream, String> {
        let slot = Arc::clone(&self.slots).acquire_owned().await.map_err(|e| format!("tokio: slot: {e}"))?;
        let id = 2 * self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let window = WINDOW as usize;
        let (c_tx, s_rx) = half(window);
        let (s_tx, c_rx) = half(window);
        self.accept
            .send(Stream { id, tx: s_tx, rx: s_rx, _slot: None })
            .map_err(|_| "tokio: the acceptor is gone".to_string())?;
        Ok(Stream { id, tx: c_tx, rx: c_rx, _slot: Some(slot) })
    }
}

/// Waits for a task and flattens its result.
async fn joined<T>(h: JoinHandle<Result<T, String>>, who: &str) -> Result<T, String> {
    h.await.map_err(|e| format!("tokio: {who}: {e}"))?
}

/// One run: a fresh session, [`STREAMS`] clients sharing `n` frames, a server that
/// drains (`echo` false) or echoes them.
async fn one(echo: bool, n: u64) -> Timed {
    let (session, acceptor) = Session::new();
    let server = tokio::spawn(serve(acceptor, echo));

    let start = Instant::now();
    let clients: Vec<_> = (0..STREAMS)
        .map(|i| tokio::spawn(client(Arc::clone(&session), share(n, STREAMS, i), echo)))
        .collect();
    let mut sent = Vec::with_capacity(STREAMS);
    for c in clients {
        sent.push(joined(c, "client").await?);
    }
    let elapsed = start.elapsed();

    drop(session); // the last sender of the accept channel: the accept loop ends
    let got = joined(server, "server").await?;
    check_totals(n, sent, got)?;
    Ok((elapsed, n))
}

/// Opens a stream, sends `frames` frames, half-closes, and waits for the server's
/// half-close; with `echo`, a second task drains the echoes meanwhile.
async fn client(session: Arc<Session>, frames: u64, echo: bool) -> Result<(u64, u64), String> {
    let Stream { id, tx, mut rx, _slot } = session.open().await?;
    drop(session);
    if echo {
        let reader = tokio::spawn(async move {
            drain(id, frames, &mut rx).await?;
            expect_fin(id, &mut rx).await
        });
        send_all(id, frames, tx).await?;
        joined(reader, "reader").await?;
    } else {
        send_all(id, frames, tx).await?;
        expect_fin(id, &mut rx).await?;
    }
    Ok((id, frames))
}

/// Sends `frames` new frames, then half-closes by dropping the half.
async fn send_all(id: u64, frames: u64, tx: SendHalf) -> Result<(), String> {
    for seq in 0..frames {
        tx.send(seq, frame(id, seq)).await.map_err(|e| format!("stream {id}: send: {e}"))?;
    }
    Ok(())
}

/// Receives `frames` data frames in order, checking each.
async fn drain(id: u64, frames: u64, rx: &mut RecvHalf) -> Result<(), String> {
    for expected in 0..frames {
        let (seq, bytes) =
            rx.recv().await.ok_or_else(|| format!("tokio: stream {id}: ended before frame {expected}"))?;
        check(id, expected, seq, &bytes)?;
    }
    Ok(())
}

/// The next event must be the peer's half-close.
async fn expect_fin(id: u64, rx: &mut RecvHalf) -> Result<(), String> {
    match rx.recv().await {
        None => Ok(()),
        Some((seq, _)) => Err(format!("tokio: stream {id}: frame {seq} where the end was due")),
    }
}

/// The accept loop: one task per stream until every session handle is gone; returns each
/// stream's id and the frames it received.
async fn serve(mut acceptor: mpsc::UnboundedReceiver<Stream>, echo: bool) -> Result<Vec<(u64, u64)>, String> {
    let mut parties = Vec::new();
    while let Some(s) = acceptor.recv().await {
        parties.push(tokio::spawn(serve_stream(s, echo)));
    }
    let mut got = Vec::with_capacity(parties.len());
    for p in parties {
        got.push(joined(p, "server party").await?);
    }
    Ok(got)
}

/// Drains one stream (sending every frame back with `echo`), then half-closes.
async fn serve_stream(s: Stream, echo: bool) -> Result<(u64, u64), String> {
    let Stream { id, tx, mut rx, .. } = s;
    let mut next = 0;
    while let Some((seq, bytes)) = rx.recv().await {
        check(id, next, seq, &bytes)?;
        next += 1;
        if echo {
            tx.send(seq, bytes).await.map_err(|e| format!("stream {id}: echo: {e}"))?;
        }
    }
    drop(tx); // the half-close
    Ok((id, next))
}
