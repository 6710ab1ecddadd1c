//! One stream of a session: two one-way halves, each a kcoro channel of frames plus a
//! credit counter the receiver adds to. A client's `SendHalf` feeds the server's
//! `RecvHalf` and the server's `SendHalf` feeds the client's `RecvHalf`.
//!
//! # Invariants
//! - a half is *done* once its receiver saw `Fin` or `Reset`, stopped reading, or was
//!   dropped; done is recorded once per half (a bit in `done`).
//! - both halves done ⇒ the stream is closed: counted once in the session's stats and its
//!   slot returned, by whichever half finished second.
//! - data bytes buffered in a half ≤ the window, unless a sender skipped credit; that is
//!   counted as a window violation where the frame is queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use kcoro::chan::{self, Receiver, Sender};

use super::SessionInner;
use super::credit::{CreditGiver, CreditSender, WaitProbe, credit};

/// A stream id: client-opened streams are odd (1, 3, 5, …).
pub type StreamId = u64;

/// Reset code a receiver reports when the sender vanished without `Fin` or `Reset`.
pub const RESET_SENDER_GONE: u32 = 0xdead;

/// What crosses a half.
#[derive(Debug)]
pub(crate) enum Frame {
    Data { seq: u64, bytes: Vec<u8> },
    Fin,
    Reset(u32),
}

/// What a receiver gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Payload with the sender's sequence number.
    Data {
        /// The sender's sequence number.
        seq: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The sender finished cleanly (half-close).
    Fin,
    /// The sender aborted, with a code.
    Reset(u32),
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The receiver stopped reading (or reset), with its code.
    #[error("stream reset by peer (code {0})")]
    Reset(u32),
    /// `send` after `finish` or `reset`.
    #[error("stream half already finished")]
    Finished,
    /// One frame larger than the whole credit window could never be sent.
    #[error("frame of {len} bytes exceeds the {window}-byte window")]
    TooLarge {
        /// The frame.
        len: u64,
        /// The window.
        window: u64,
    },
}

/// Shared by the four ends of one stream.
#[derive(Debug)]
pub(crate) struct StreamShared {
    pub(crate) id: StreamId,
    done: AtomicU8,
    session: Arc<SessionInner>,
}

impl StreamShared {
    pub(crate) fn new(id: StreamId, session: Arc<SessionInner>) -> Arc<Self> {
        Arc::new(StreamShared { id, done: AtomicU8::new(0), session })
    }

    /// Marks a stream that was never delivered to the acceptor as done without counting
    /// a close (it was never counted open either).
    pub(crate) fn abandon(&self) {
        self.done.store(0b11, Ordering::Release);
    }

    /// Marks half `bit` done; the second half to finish closes the stream, once.
    fn half_done(&self, bit: u8) {
        let before = self.done.fetch_or(bit, Ordering::AcqRel);
        if before & bit == 0 && before | bit == 0b11 {
            self.session.stream_closed();
        }
    }
}

/// Sends frames one way, spending credit.
#[derive(Debug)]
pub struct SendHalf {
    frames: Sender<Frame>,
    credit: CreditSender,
    buffered: Arc<AtomicU64>,
    window: u64,
    finished: bool,
    shared: Arc<StreamShared>,
    waiting: WaitProbe,
}

/// Receives frames one way, returning credit.
#[derive(Debug)]
pub struct RecvHalf {
    frames: Receiver<Frame>,
    giver: CreditGiver,
    buffered: Arc<AtomicU64>,
    bit: u8,
    done: bool,
    /// The terminal event seen (`None` until then); later calls repeat it.
    ended: Option<Result<(), u32>>,
    shared: Arc<StreamShared>,
}

/// A one-way half pair; `bit` names the half in the stream's done mask.
pub(crate) fn half(shared: &Arc<StreamShared>, window: u64, bit: u8) -> (SendHalf, RecvHalf) {
    let (ftx, frx) = chan::unlimited();
    let (cs, giver) = credit(window);
    let buffered = Arc::new(AtomicU64::new(0));
    let waiting = cs.wait_probe();
    (
        SendHalf {
            frames: ftx,
            credit: cs,
            buffered: Arc::clone(&buffered),
            window,
            finished: false,
            shared: Arc::clone(shared),
            waiting,
        },
        RecvHalf { frames: frx, giver, buffered, bit, done: false, ended: None, shared: Arc::clone(shared) },
    )
}

impl SendHalf {
    /// The stream.
    pub fn stream_id(&self) -> StreamId {
        self.shared.id
    }

    /// Sends `bytes` as sequence `seq`, parking while the window is spent. A wait is one
    /// backpressure event in the session's stats.
    pub fn send(&mut self, seq: u64, bytes: Vec<u8>) -> Result<(), StreamError> {
        let len = bytes.len() as u64;
        self.check_sendable(len)?;
        let stats = &self.shared.session.stats;
        if let Err(code) = self.credit.acquire(len, || stats.count_backpressure()) {
            return self.fail(code);
        }
        self.push(seq, bytes)
    }

    fn check_sendable(&self, len: u64) -> Result<(), StreamError> {
        if self.finished {
            return Err(StreamError::Finished);
        }
        if len > self.window {
            return Err(StreamError::TooLarge { len, window: self.window });
        }
        Ok(())
    }

    fn push(&mut self, seq: u64, bytes: Vec<u8>) -> Result<(), StreamError> {
        let len = bytes.len() as u64;
        let in_flight = self.buffered.fetch_add(len, Ordering::AcqRel) + len;
        if self.frames.send(Frame::Data { seq, bytes }).is_err() {
            // The receiver is gone: nothing was delivered, so nothing is counted.
            self.buffered.fetch_sub(len, Ordering::AcqRel);
            return self.fail(RESET_SENDER_GONE);
        }
        let stats = &self.shared.session.stats;
        if in_flight > self.window {
            stats.window_violations.fetch_add(1, Ordering::Relaxed);
        }
        stats.traffic.count(len);
        Ok(())
    }

    fn fail(&mut self, code: u32) -> Result<(), StreamError> {
        self.finished = true;
        Err(StreamError::Reset(code))
    }

    /// Half-closes: the receiver sees `Fin` after every data frame sent before.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        if std::mem::replace(&mut self.finished, true) {
            return Err(StreamError::Finished);
        }
        let _ = self.frames.send(Frame::Fin);
        Ok(())
    }

    /// Aborts this half: the receiver sees `Reset(code)` after the frames already sent.
    pub fn reset(&mut self, code: u32) -> Result<(), StreamError> {
        if std::mem::replace(&mut self.finished, true) {
            return Err(StreamError::Finished);
        }
        self.shared.session.stats.resets.fetch_add(1, Ordering::Relaxed);
        let _ = self.frames.send(Frame::Reset(code));
        Ok(())
    }

    /// True while the sender is parked waiting for credit.
    pub fn is_waiting_for_credit(&self) -> bool {
        self.waiting.is_waiting()
    }

    /// A probe of `is_waiting_for_credit` that outlives moving this half into a coroutine.
    pub fn wait_probe(&self) -> WaitProbe {
        self.waiting.clone()
    }

    /// Whether `finish` or `reset` ran (or a send failed).
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

impl RecvHalf {
    /// The stream.
    pub fn stream_id(&self) -> StreamId {
        self.shared.id
    }

    /// The next frame, parking until one arrives. After `Fin` or `Reset(code)` every call
    /// returns that event again; after `stop` (or a vanished sender) it returns
    /// `Reset(code)` with the stop code (`RESET_SENDER_GONE`).
    pub fn recv(&mut self) -> Event {
        match self.ended {
            Some(Ok(())) => return Event::Fin,
            Some(Err(code)) => return Event::Reset(code),
            None if self.done => return Event::Reset(RESET_SENDER_GONE),
            None => {}
        }
        match self.frames.recv() {
            Ok(Frame::Data { seq, bytes }) => {
                let len = bytes.len() as u64;
                self.buffered.fetch_sub(len, Ordering::AcqRel);
                self.giver.grant(len);
                Event::Data { seq, bytes }
            }
            Ok(Frame::Fin) => {
                self.ended = Some(Ok(()));
                self.mark_done();
                Event::Fin
            }
            Ok(Frame::Reset(code)) => {
                self.ended = Some(Err(code));
                self.mark_done();
                Event::Reset(code)
            }
            Err(_) => {
                self.ended = Some(Err(RESET_SENDER_GONE));
                self.mark_done();
                Event::Reset(RESET_SENDER_GONE)
            }
        }
    }

    /// Stops reading: the sender's next (or current, parked) send fails with `Reset(code)`.
    pub fn stop(&mut self, code: u32) {
        if !self.done {
            self.giver.stop(code);
            self.mark_done();
        }
    }

    /// Whether `Fin`/`Reset` arrived or `stop` ran.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn mark_done(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            self.shared.half_done(self.bit);
        }
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        if !self.done {
            self.giver.stop(RESET_SENDER_GONE);
            self.mark_done();
        }
    }
}
