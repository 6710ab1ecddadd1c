//! The runtime's stream/session manager: one session multiplexes many streams, each a pair
//! of credit-controlled kcoro channels, with half-close and reset. It knows nothing about
//! adapters: the local adapter maps flows onto it today, IPC and plugin streams can later.
//!
//! ```
//! use kcoro_adapter::session::{Event, Session, SessionConfig};
//!
//! kcoro::run(|| {
//!     let (session, acceptor) = Session::new(SessionConfig::default()).unwrap();
//!     let server = kcoro::spawn(move || {
//!         let mut s = acceptor.accept().expect("a stream");
//!         while let Event::Data { seq, bytes } = s.rx.recv() {
//!             s.tx.send(seq, bytes).unwrap(); // echo
//!         }
//!         s.tx.finish().unwrap();
//!     });
//!     let mut c = session.open(0).unwrap();
//!     c.tx.send(1, b"hello".to_vec()).unwrap();
//!     c.tx.finish().unwrap();
//!     assert_eq!(c.rx.recv(), Event::Data { seq: 1, bytes: b"hello".to_vec() });
//!     assert_eq!(c.rx.recv(), Event::Fin);
//!     server.join().unwrap();
//!     assert_eq!(session.stats().streams_closed, 1);
//! });
//! ```
//!
//! # Invariants
//! - streams open now ≤ `max_streams`: `open` parks for a slot (counted as a slot wait).
//! - `streams_opened - streams_closed` = streams open now; each close is counted once.
//! - a backpressure event is one sender parking for credit, counted at that park.

mod credit;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kcoro::chan::{self, Receiver, Sender};
use kcoro::sync::Semaphore;

pub use credit::WaitProbe;
pub(crate) use credit::{CreditGiver, CreditSender, credit};
pub use stream::{Event, RESET_SENDER_GONE, RecvHalf, SendHalf, StreamError, StreamId};

use crate::error::{AdapterError, Result};

/// Largest credit window a session accepts (the adapter contract's flow limit).
pub const MAX_WINDOW: u64 = crate::contract::limits::MAX_FLOW_BYTES;
/// Most streams one session may have open at once.
pub const MAX_STREAMS: usize = 1024;

/// How a session behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Streams open at once (1..=1024); `open` waits beyond.
    pub max_streams: usize,
    /// Credit window per half, in bytes (1..=8 MiB): the most bytes a sender may have
    /// in flight before it parks.
    pub window: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { max_streams: 16, window: 64 << 10 }
    }
}

/// Counters of one session; exact, each counted where it happens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Streams opened.
    pub streams_opened: u64,
    /// Streams whose both halves finished.
    pub streams_closed: u64,
    /// Most streams open at once.
    pub peak_open: u64,
    /// Times a sender parked for credit.
    pub backpressure_events: u64,
    /// Times `open` parked for a free stream slot.
    pub slot_waits: u64,
    /// Data frames queued past the window (a sender that skipped credit). Always 0 for
    /// senders that use `send`.
    pub window_violations: u64,
    /// Data frames sent.
    pub data_frames: u64,
    /// Data bytes sent.
    pub data_bytes: u64,
    /// Halves reset.
    pub resets: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatCells {
    opened: AtomicU64,
    closed: AtomicU64,
    peak_open: AtomicU64,
    backpressure: AtomicU64,
    slot_waits: AtomicU64,
    pub(crate) window_violations: AtomicU64,
    pub(crate) traffic: Traffic,
    pub(crate) resets: AtomicU64,
}

impl StatCells {
    pub(crate) fn count_backpressure(&self) {
        self.backpressure.fetch_add(1, Ordering::Relaxed);
    }
}

/// Shards of [`Traffic`]: one per kcoro worker up to 15, the last for other threads.
const TRAFFIC_SHARDS: usize = 16;

/// Data frames and bytes sent, counted on the sending thread's own cache line and summed
/// when read: one counter pair for the whole session made every frame of every stream
/// move that line between the workers.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    shards: [TrafficShard; TRAFFIC_SHARDS],
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct TrafficShard {
    frames: AtomicU64,
    bytes: AtomicU64,
}

impl Traffic {
    /// Counts one data frame of `bytes` bytes.
    pub(crate) fn count(&self, bytes: u64) {
        let shard = kcoro::worker_index().map_or(TRAFFIC_SHARDS - 1, |w| w % (TRAFFIC_SHARDS - 1));
        let s = &self.shards[shard];
        s.frames.fetch_add(1, Ordering::Relaxed);
        s.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Frames and bytes counted so far.
    fn totals(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(f, b), s| {
            (f + s.frames.load(Ordering::Relaxed), b + s.bytes.load(Ordering::Relaxed))
        })
    }
}

#[derive(Debug)]
pub(crate) struct SessionInner {
    cfg: SessionConfig,
    next_id: AtomicU64,
    slots: Semaphore,
    accept_tx: Sender<ServerStream>,
    pub(crate) stats: StatCells,
}

impl SessionInner {
    fn stream_closed(&self) {
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        self.slots.add_permits(1);
    }
}

/// The client end of a session: opens streams.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

/// The server end of a session: accepts streams in the order they were opened.
#[derive(Debug)]
pub struct Acceptor {
    rx: Receiver<ServerStream>,
}

/// One stream as either end sees it: `tx` sends towards the peer, `rx` receives from it.
#[derive(Debug)]
pub struct ClientStream {
    /// The id, odd for client-opened streams.
    pub id: StreamId,
    /// The priority class given to `open`.
    pub priority: u8,
    /// What the opener said the stream is for (a target name, a route): metadata both
    /// ends see, like a request's headers.
    pub tag: String,
    /// The kcoro worker the stream was opened from ([`kcoro::worker_index`]; `None` off
    /// the workers). Started coroutines stay on their worker, so an accept loop that
    /// spawns a stream's server party with
    /// [`SpawnOptions::on_worker`](kcoro::SpawnOptions::on_worker) of this index keeps
    /// the two parties of the stream on one thread: their hand-offs are local wakes, and
    /// frames are freed on the thread that allocated them.
    pub opened_on: Option<usize>,
    /// Towards the server.
    pub tx: SendHalf,
    /// From the server.
    pub rx: RecvHalf,
}

/// The server's view of a stream.
pub type ServerStream = ClientStream;

impl Session {
    /// A session and its acceptor.
    pub fn new(cfg: SessionConfig) -> Result<(Session, Acceptor)> {
        if cfg.max_streams == 0 || cfg.max_streams > MAX_STREAMS {
            return Err(AdapterError::InvalidConfig(format!(
                "max_streams {} outside 1..={MAX_STREAMS}",
                cfg.max_streams
            )));
        }
        if cfg.window == 0 || cfg.window > MAX_WINDOW {
            return Err(AdapterError::InvalidConfig(format!(
                "window {} outside 1..={MAX_WINDOW}",
                cfg.window
            )));
        }
        let (accept_tx, rx) = chan::unlimited();
        let inner = Arc::new(SessionInner {
            slots: Semaphore::new(cfg.max_streams),
            cfg,
            next_id: AtomicU64::new(0),
            accept_tx,
            stats: StatCells::default(),
        });
        Ok((Session { inner }, Acceptor { rx }))
    }

    /// Opens a stream, parking while `max_streams` are open. Fails once the acceptor is
    /// gone or the session closed.
    pub fn open(&self, priority: u8) -> Result<ClientStream> {
        self.open_with(priority, "")
    }

    /// Opens a stream tagged with `tag`, which the acceptor sees on its end.
    pub fn open_with(&self, priority: u8, tag: &str) -> Result<ClientStream> {
        let inner = &self.inner;
        match inner.slots.try_acquire() {
            Some(p) => std::mem::forget(p),
            None => {
                inner.stats.slot_waits.fetch_add(1, Ordering::Relaxed);
                let p = inner.slots.acquire().map_err(|_| AdapterError::Stream {
                    stream: 0,
                    reason: "cancelled while waiting for a stream slot".into(),
                })?;
                // The slot is returned by `stream_closed`, not by the permit's drop.
                std::mem::forget(p);
            }
        }
        let id = 2 * inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let shared = stream::StreamShared::new(id, Arc::clone(inner));
        let (c_tx, s_rx) = stream::half(&shared, inner.cfg.window, 0b01);
        let (s_tx, c_rx) = stream::half(&shared, inner.cfg.window, 0b10);
        let opened_on = kcoro::worker_index();
        let server = ClientStream { id, priority, tag: tag.to_string(), opened_on, tx: s_tx, rx: s_rx };
        if let Err(refused) = inner.accept_tx.send(server) {
            // Never delivered, so never counted open: it is not counted closed either.
            shared.abandon();
            drop((refused, c_tx, c_rx));
            inner.slots.add_permits(1);
            return Err(AdapterError::Stream { stream: id, reason: "session closed".into() });
        }
        let opened = inner.stats.opened.fetch_add(1, Ordering::Relaxed) + 1;
        let open_now = opened.saturating_sub(inner.stats.closed.load(Ordering::Relaxed));
        inner.stats.peak_open.fetch_max(open_now, Ordering::Relaxed);
        Ok(ClientStream { id, priority, tag: tag.to_string(), opened_on, tx: c_tx, rx: c_rx })
    }

    /// Stops accepting: `Acceptor::accept` returns `None` once it has drained. Call it to
    /// end an accept loop: dropping every `Session` is not enough while streams are alive.
    pub fn close(&self) {
        self.inner.accept_tx.close();
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.cfg
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SessionStats {
        let s = &self.inner.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (data_frames, data_bytes) = s.traffic.totals();
        SessionStats {
            streams_opened: get(&s.opened),
            streams_closed: get(&s.closed),
            peak_open: get(&s.peak_open),
            backpressure_events: get(&s.backpressure),
            slot_waits: get(&s.slot_waits),
            window_violations: get(&s.window_violations),
            data_frames,
            data_bytes,
            resets: get(&s.resets),
        }
    }
}

impl Acceptor {
    /// The next stream, parking until one is opened; `None` after `Session::close`.
    pub fn accept(&self) -> Option<ServerStream> {
        self.rx.recv().ok()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
