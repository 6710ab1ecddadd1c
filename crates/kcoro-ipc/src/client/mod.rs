//! The client side: a connection, its reader coroutine, and requests in flight.
//!
//! A [`Connection`] owns one socket, a reader coroutine that routes replies to their
//! requests by `REQ_ID`, and a writer coroutine draining the outbox (`wire`). Any number of
//! coroutines and threads issue requests on it at once; each waits for its own reply.
//!
//! # Protocol of a request
//! 1. Take a fresh `REQ_ID`; record what to do with the reply (`Pending`).
//! 2. Queue the frame in the outbox.
//! 3. Over the rings, read frames in the reader's place while a ring reader would spin
//!    (`ConnInner::read_own_reply`): the reply may come that way, with no hand-off.
//! 4. Wait for the reply on a oneshot; if the caller's cancel token fires first,
//!    queue `CANCEL` for the request and keep waiting: the reply, not the client, decides
//!    the outcome, so a value is never both delivered and handed back.
//! 5. When the connection dies, the reader fails every pending request with `Closed`.
//!
//! # Invariants
//! - `closed` ⇒ `pending` is empty and stays empty (registration checks `closed` under the
//!   `pending` lock), and every channel's credit window is closed.

mod lease;
mod options;
mod reader;
mod remote;
mod window;

pub use lease::{Lease, LeaseSendError};
pub use options::{ConnectOptions, ServerInfo, Transport};
pub use remote::{RemoteReceiver, RemoteSender};

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use kcoro::chan::{ChanError, Kind};
use kcoro::net::{TcpStream, UnixStream};
use kcoro::sync::{CancelToken, oneshot};
use kcoro::zcopy::ZBuf;

use crate::coros::CoroutineReport;
use crate::ids::IdMap;
use crate::proto::{Attr, Cmd, FrameBuf, FrameRef, Limits, VERSION_MAJOR, VERSION_MINOR};
use crate::ring::link::{DEFAULT_RING, DEFAULT_SPIN, Link, Offer};
use crate::shm::{ShmRx, ShmTx};
use crate::stats::{ChannelStats, SchedStats};
use crate::wire::{FrameReader, Now, Outbox, Sock, Stream};
use crate::{Addr, Element, IpcError, auth, io_handle, on};

use options::DEFAULT_SHARED_WINDOW;

/// Most sends one channel may have in flight on a connection over shared-memory rings,
/// whatever the server grants (a client may count more than the server, never less).
const RING_WINDOW_VALUES: u32 = 256;

/// A reply frame, owned: its payload copied once out of the connection's read buffer, so
/// that a `Bytes` element it carries inline is a view of it (`Element::decode_view`).
pub(crate) struct Reply {
    cmd: Cmd,
    flags: u16,
    pub(crate) payload: Bytes,
}

impl Reply {
    fn of(f: &FrameRef<'_>) -> Reply {
        Reply { cmd: f.cmd, flags: f.flags, payload: Bytes::copy_from_slice(f.payload()) }
    }

    pub(crate) fn frame(&self) -> FrameRef<'_> {
        let h = crate::proto::Header { cmd: self.cmd, flags: self.flags, len: self.payload.len() as u32 };
        // The reader checked this payload when it arrived.
        FrameRef::parse(h, &self.payload, usize::MAX).unwrap_or_else(|e| unreachable!("Reply::frame: {e}"))
    }

    /// `Ok` for `RESULT = 0`, else the error the server gave.
    pub(crate) fn check(&self, what: Cmd) -> Result<FrameRef<'_>, IpcError> {
        let f = self.frame();
        match f.result()? {
            0 => Ok(f),
            code => Err(refused(what, code, f.str(Attr::ERROR).ok().flatten())),
        }
    }
}

pub(crate) fn refused(what: Cmd, code: i32, msg: Option<&str>) -> IpcError {
    match code_to_chan(code) {
        Some(e) => IpcError::Chan(e),
        None => IpcError::Refused { cmd: what.name(), code, message: msg.unwrap_or("").to_string() },
    }
}

/// The channel error a code stands for.
pub(crate) fn code_to_chan(code: i32) -> Option<ChanError> {
    [ChanError::WouldBlock, ChanError::Timeout, ChanError::Closed, ChanError::Canceled]
        .into_iter()
        .find(|e| e.code() == code)
}

/// What the reader does with a reply.
enum Pending {
    /// Hand it to the waiting request.
    Wait(oneshot::Sender<Reply>),
    /// A credited send to a server older than minor 7 (newer ones send CREDIT events
    /// instead of replies), and its share of the window: return it; a failure closes the
    /// channel here too. The lease (shared-memory element) is released with the reply.
    Credit(Arc<ChanState>, Option<ZBuf>, window::Share),
    /// Nothing (REGION_RELEASE, REGION_SHARE, CANCEL).
    Ignore,
    /// The request's waiter went (a dropped future): the reply goes here, to give back
    /// the value it may bring. Runs on the reader: must not wait.
    Abandoned(Box<dyn FnOnce(Reply) + Send>),
}

/// What a connection knows about one channel it opened.
pub(crate) struct ChanState {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) capacity: Option<u64>,
    /// The send window: what may be sent without waiting for a reply (`None`: every send
    /// waits for its reply, as rendezvous sends do).
    pub(crate) credits: Option<window::Window>,
    pub(crate) closed: AtomicBool,
}

impl ChanState {
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Release);
        if let Some(w) = &self.credits {
            w.close();
        }
    }
}

pub(crate) struct ConnInner {
    pub(crate) addr: Addr,
    stream: Arc<Stream>,
    pub(crate) outbox: Arc<Outbox>,
    pending: Mutex<IdMap<Pending>>,
    /// The connection's frame reader: the reader coroutine's, and over the rings also a
    /// waiting request's, which reads its own reply when the reader is not reading
    /// ([`ConnInner::read_own_reply`]).
    frames: Arc<Mutex<FrameReader>>,
    next_req: AtomicU64,
    closed: AtomicBool,
    why: Mutex<Option<String>>,
    chans: Mutex<IdMap<Weak<ChanState>>>,
    pub(crate) shm_tx: Option<ShmTx>,
    shm_rx: ShmRx,
    /// Leases of shared elements we sent that the server still reads, by offset; each
    /// leaves with the server's REGION_RELEASE for it (servers of minor ≥ 2).
    held: Mutex<HashMap<u64, ZBuf>>,
    /// The server's minor version (HELLO reply).
    server_minor: std::sync::atomic::AtomicU32,
    /// `ConnectOptions::shared_window`.
    shared_window: u64,
    pub(crate) max_frame: u32,
    /// [`ConnectOptions::request_timeout`].
    request_timeout: Option<Duration>,
    /// Why the server kept a `shm:` connection on its socket.
    ring_refused: Mutex<Option<String>>,
    pub(crate) handle: kcoro::Handle,
}

/// A connection to a kcoro IPC server. Cheap to clone; the socket closes when the last
/// clone and every remote channel made from it are dropped (or at [`Connection::close`]).
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<ConnInner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.inner.addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Connects to `addr` (`unix:PATH` or `tcp:HOST:PORT`) with default options.
pub fn connect(addr: &str) -> Result<Connection, IpcError> {
    Connection::connect(addr, ConnectOptions::default())
}

impl Connection {
    /// Connects and completes the handshake (version, and the secret if the server asks).
    /// Works from a coroutine or a plain thread.
    pub fn connect(addr: &str, opts: ConnectOptions) -> Result<Connection, IpcError> {
        let started = Instant::now();
        let addr = Addr::parse(addr)?;
        let handle = io_handle()?;
        let target = addr.clone();
        let timeout = opts.connect_timeout;
        let ring = (opts.ring_bytes.unwrap_or(DEFAULT_RING), opts.ring_spin.unwrap_or(DEFAULT_SPIN));
        let (stream, offer) = on(&handle, move || -> Result<(Stream, Option<Offer>), IpcError> {
            Ok(match target {
                Addr::Unix(path) => (Stream::new(Sock::Unix(UnixStream::connect(path)?)), None),
                // The rings are made here, on the runtime their bells register with.
                Addr::Shm(path) => {
                    (Stream::new(Sock::Unix(UnixStream::connect(path)?)), Some(Link::offer(ring.0, ring.1)?))
                }
                Addr::Tcp(hp) => {
                    let s = match timeout {
                        None => TcpStream::connect(hp.as_str())?,
                        Some(t) => {
                            let sa = std::net::ToSocketAddrs::to_socket_addrs(hp.as_str())?
                                .next()
                                .ok_or_else(|| IpcError::BadAddr(hp.clone()))?;
                            TcpStream::connect_timeout(&sa, t)?
                        }
                    };
                    let _ = s.set_nodelay(true);
                    (Stream::new(Sock::Tcp(s)), None)
                }
            })
        })??;
        let ring_fds = match offer {
            Some(Offer { link, fds }) => {
                stream.attach(link);
                fds
            }
            None => Vec::new(),
        };
        let unix = stream.is_unix();
        let stream = Arc::new(stream);
        let (outbox, rings) = Outbox::new(u32::MAX);
        // A LIST reply carries a `STATS` per channel: far more than a request may.
        let max_attrs = opts.limits.max_attrs.max(crate::proto::MAX_REPLY_ATTRS);
        let frames = Arc::new(Mutex::new(FrameReader::new(Limits { max_attrs, ..opts.limits })));
        let shm = match (unix, opts.no_shm) {
            (true, false) => Some(ShmTx::new(opts.shm.unwrap_or_default())),
            _ => None,
        };
        let inner = Arc::new(ConnInner {
            addr,
            stream: Arc::clone(&stream),
            outbox: Arc::clone(&outbox),
            pending: Mutex::new(IdMap::default()),
            frames: Arc::clone(&frames),
            next_req: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            why: Mutex::new(None),
            chans: Mutex::new(IdMap::default()),
            shm_tx: shm,
            shm_rx: ShmRx::for_client(&opts.limits),
            held: Mutex::new(HashMap::new()),
            server_minor: std::sync::atomic::AtomicU32::new(0),
            shared_window: opts.shared_window.unwrap_or(DEFAULT_SHARED_WINDOW),
            max_frame: opts.limits.max_frame,
            request_timeout: opts.request_timeout,
            ring_refused: Mutex::new(None),
            handle: handle.clone(),
        });
        let w = Arc::clone(&stream);
        let wo = Arc::clone(&outbox);
        let weak = Arc::downgrade(&inner);
        let writer = handle.spawn_with(kcoro::SpawnOptions::default(), move || {
            if let Err(e) = wo.run_writer(&w, &rings) {
                if let Some(c) = weak.upgrade() {
                    c.fail(format!("write failed: {e}"));
                }
            }
        });
        let weak = Arc::downgrade(&inner);
        let reader = writer.and_then(|_| {
            handle.spawn_with(kcoro::SpawnOptions::default(), move || reader::run(weak, &stream, &frames))
        });
        let conn = Connection { inner };
        // Without both, requests would wait for answers nothing reads (no stack left).
        if let Err(e) = reader {
            conn.close();
            return Err(IpcError::Closed(Some(format!(
                "cannot start the connection's reader and writer: {e}"
            ))));
        }
        if let Err(e) = conn.handshake(&opts, ring_fds, started) {
            conn.close();
            return Err(e);
        }
        Ok(conn)
    }

    /// HELLO (offering the rings whose descriptors `ring_fds` holds, if any), then AUTH if
    /// the server asks. A stopped server accepts (the kernel does) but never answers, so
    /// with a connect timeout each answer is awaited only for what is left of it, counted
    /// from `started`.
    fn handshake(
        &self,
        opts: &ConnectOptions,
        ring_fds: Vec<OwnedFd>,
        started: Instant,
    ) -> Result<(), IpcError> {
        let patience = || {
            let connect = opts.connect_timeout.and_then(|t| Some((started.checked_add(t)?, t)));
            match (connect, self.inner.patience()) {
                (Some(c), Some(r)) => Some(if c.0 <= r.0 { c } else { r }),
                (c, r) => c.or(r),
            }
        };
        let max = self.inner.max_frame;
        let ring_bytes = self.inner.stream.link().map(Link::cap);
        let reply = self.request_inner(Cmd::HELLO, None, ring_fds, patience(), |f| {
            f.u32(Attr::ABI_MAJOR, VERSION_MAJOR)
                .u32(Attr::ABI_MINOR, VERSION_MINOR)
                .u32(Attr::MAX_FRAME, max);
            if opts.no_shm {
                f.u32(Attr::NO_SHM, 1);
            }
            if let Some(cap) = ring_bytes {
                f.u64(Attr::RING_BYTES, cap);
            }
        })?;
        if ring_bytes.is_some() && !self.inner.stream.on_rings() {
            // The server stays on the socket: the rings go, with a note of why.
            let why = reply.frame().str(Attr::RING_REFUSED).ok().flatten().map(str::to_string);
            *self.inner.ring_refused.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(why.unwrap_or_else(|| "the server does not take rings (protocol minor < 6)".into()));
            if let Some(link) = self.inner.stream.link() {
                link.shutdown();
            }
        }
        let theirs = reply.frame().u32(Attr::ABI_MAJOR)?.unwrap_or(0);
        if theirs != VERSION_MAJOR {
            return Err(IpcError::Version { ours: VERSION_MAJOR, theirs });
        }
        let f = reply.check(Cmd::HELLO)?;
        self.inner.server_minor.store(f.u32(Attr::ABI_MINOR)?.unwrap_or(0), Relaxed);
        if f.u32(Attr::AUTH_REQUIRED)?.unwrap_or(0) == 0 {
            return Ok(());
        }
        let Some(secret) = &opts.secret else {
            return Err(IpcError::Auth("the server requires a secret (ConnectOptions::secret)".into()));
        };
        let s = f.need(Attr::NONCE)?.to_vec();
        let c = auth::nonce()?;
        let mac = auth::client_mac(secret, &s, &c);
        let reply = self.request_inner(Cmd::AUTH, None, Vec::new(), patience(), |f| {
            f.bytes(Attr::NONCE, &c).bytes(Attr::MAC, &mac);
        })?;
        let f = reply
            .check(Cmd::AUTH)
            .map_err(|e| IpcError::Auth(format!("the server refused our answer: {e}")))?;
        if !auth::check_server(secret, &c, &s, f.need(Attr::MAC)?) {
            return Err(IpcError::Auth("the server does not know the secret".into()));
        }
        Ok(())
    }

    /// Where this connection goes.
    pub fn addr(&self) -> &Addr {
        &self.inner.addr
    }

    /// What carries this connection's frames: for a `shm:` address, shared-memory rings
    /// once the server took them, else its Unix socket (see [`ring_refused`](Self::ring_refused)).
    pub fn transport(&self) -> Transport {
        match (&self.inner.addr, self.inner.stream.on_rings()) {
            (_, true) => Transport::Shm,
            (Addr::Tcp(_), _) => Transport::Tcp,
            _ => Transport::Unix,
        }
    }

    /// Why a `shm:` connection stayed on its Unix socket: the server's reason (its limits,
    /// say), or that it is too old to take rings.
    pub fn ring_refused(&self) -> Option<String> {
        self.inner.ring_refused.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the connection is closed (by either side, or by failure).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Acquire)
    }

    /// Why the connection closed, if it did.
    pub fn close_reason(&self) -> Option<String> {
        self.inner.why.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Closes the connection: every pending request fails with `Closed`; the server frees
    /// what this connection held. Reconnecting is [`Connection::connect`] again.
    pub fn close(&self) {
        self.inner.fail("closed by this side".into());
        self.inner.stream.shutdown();
    }

    /// The server's name, version and frame limit.
    pub fn info(&self) -> Result<ServerInfo, IpcError> {
        let reply = self.request(Cmd::GET_INFO, None, |_| {})?;
        let f = reply.check(Cmd::GET_INFO)?;
        Ok(ServerInfo {
            name: f.str(Attr::SERVER)?.unwrap_or("").to_string(),
            version: (f.u32(Attr::ABI_MAJOR)?.unwrap_or(0), f.u32(Attr::ABI_MINOR)?.unwrap_or(0)),
            max_frame: f.u32(Attr::MAX_FRAME)?.unwrap_or(0),
            connections: f.u32(Attr::CONNECTIONS)?.unwrap_or(0),
        })
    }

    /// Every named channel of the server, with its counters.
    pub fn list(&self) -> Result<Vec<ChannelStats>, IpcError> {
        let reply = self.request(Cmd::LIST, None, |_| {})?;
        let f = reply.check(Cmd::LIST)?;
        f.all(Attr::STATS).map(|v| ChannelStats::decode(v).map_err(IpcError::from)).collect()
    }

    /// The server's scheduler counters, if it is a monitor
    /// ([`ServerBuilder::monitor`](crate::ServerBuilder::monitor)).
    pub fn sched(&self) -> Result<SchedStats, IpcError> {
        let reply = self.request(Cmd::GET_SCHED, None, |_| {})?;
        let f = reply.check(Cmd::GET_SCHED)?;
        SchedStats::decode(f.need(Attr::SCHED)?).map_err(IpcError::from)
    }

    /// The server's runtime's coroutines (a monitor's; see [`crate::monitor`]).
    pub fn coroutines(&self) -> Result<CoroutineReport, IpcError> {
        let reply = self.request(Cmd::GET_COROS, None, |_| {})?;
        let f = reply.check(Cmd::GET_COROS)?;
        CoroutineReport::decode(f.need(Attr::COROS)?).map_err(IpcError::from)
    }

    /// The server program's own counters and gauges (see
    /// [`ServerBuilder::metrics`](crate::ServerBuilder::metrics)); refused with `-ENOTSUP`
    /// by a server without them.
    pub fn metrics(&self) -> Result<Vec<kcoro::monitor::Metric>, IpcError> {
        let reply = self.request(Cmd::GET_METRICS, None, |_| {})?;
        let f = reply.check(Cmd::GET_METRICS)?;
        crate::metrics::decode_all(&f).map_err(IpcError::from)
    }

    /// One channel's counters, by id.
    pub(crate) fn stats(&self, chan: u64) -> Result<ChannelStats, IpcError> {
        let reply = self.request(Cmd::GET_STATS, None, |f| {
            f.u64(Attr::CHAN_ID, chan);
        })?;
        let f = reply.check(Cmd::GET_STATS)?;
        ChannelStats::decode(f.need(Attr::STATS)?).map_err(IpcError::from)
    }

    /// A sender for the server's channel `name`.
    pub fn sender<T: Element>(&self, name: &str) -> Result<RemoteSender<T>, IpcError> {
        Ok(RemoteSender::new(self.clone(), self.open(name)?))
    }

    /// A receiver for the server's channel `name`.
    pub fn receiver<T: Element>(&self, name: &str) -> Result<RemoteReceiver<T>, IpcError> {
        Ok(RemoteReceiver::new(self.clone(), self.open(name)?))
    }

    /// Makes a new channel on the server, named `name` (listed, and openable by others),
    /// of `kind` and `capacity` (buffered; 0 means the default), carrying raw elements.
    pub fn make<T: Element>(
        &self,
        name: &str,
        kind: Kind,
        capacity: usize,
    ) -> Result<(RemoteSender<T>, RemoteReceiver<T>), IpcError> {
        let reply = self.request(Cmd::CHAN_MAKE, None, |f| {
            f.i32(Attr::KIND, kind.code()).u64(Attr::CAPACITY, capacity as u64).u32(Attr::ELEM_SIZE, 0);
            if !name.is_empty() {
                f.str(Attr::NAME, name);
            }
        })?;
        let state = self.chan_state(name, reply.check(Cmd::CHAN_MAKE)?)?;
        Ok((RemoteSender::new(self.clone(), Arc::clone(&state)), RemoteReceiver::new(self.clone(), state)))
    }

    fn open(&self, name: &str) -> Result<Arc<ChanState>, IpcError> {
        let reply = self.request(Cmd::CHAN_OPEN, None, |f| {
            f.str(Attr::NAME, name);
        })?;
        self.chan_state(name, reply.check(Cmd::CHAN_OPEN)?)
    }

    /// The connection's state of the channel an OPEN or MAKE reply describes: one per
    /// channel id, shared by every sender and receiver made from this connection, since
    /// the server keeps one send window per channel and connection, and its NOTIFY and
    /// CREDIT events name the channel by id.
    fn chan_state(&self, name: &str, f: FrameRef<'_>) -> Result<Arc<ChanState>, IpcError> {
        let id = f.u64(Attr::CHAN_ID)?.ok_or(crate::proto::ProtoError::Missing(Attr::CHAN_ID.0))?;
        let closed = f.u32(Attr::CLOSED)?.unwrap_or(0) != 0;
        let mut chans = self.inner.chans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = chans.get(&id).and_then(Weak::upgrade) {
            drop(chans);
            if closed || self.is_closed() {
                known.mark_closed();
            }
            return Ok(known);
        }
        let kind = crate::stats::ChannelStats { kind: f.i32(Attr::KIND)?.unwrap_or(1), ..Default::default() }
            .kind()
            .unwrap_or(Kind::Buffered);
        let capacity = f.u64(Attr::CAPACITY)?.filter(|&c| c != u64::MAX);
        let credits = match f.u32(Attr::CREDITS)?.unwrap_or(0) {
            0 => None,
            n => {
                // On rings a credit comes back without a system call: a deeper window than
                // this only grows what is in flight (measured in docs/BENCHMARKS.md).
                let n = if self.inner.on_rings() { n.min(RING_WINDOW_VALUES) } else { n };
                let inline = f.u64(Attr::CREDIT_BYTES)?.unwrap_or(0);
                // Servers of minor 8 on tell shared bytes apart in CREDIT; with older ones
                // they count in the server's window, as those count them, and so they do
                // on a channel that copies them into the server's memory (minor 9).
                let copies = f.u32(Attr::COPIES_SHARED)?.unwrap_or(0) != 0;
                let splits = self.inner.server_minor.load(Relaxed) >= 8 && !copies;
                Some(window::Window::new(n, inline, splits.then_some(self.inner.shared_window)))
            }
        };
        let state = Arc::new(ChanState {
            id,
            name: name.to_string(),
            kind,
            capacity,
            credits,
            closed: AtomicBool::new(closed),
        });
        chans.insert(id, Arc::downgrade(&state));
        drop(chans);
        if self.is_closed() {
            state.mark_closed();
        }
        Ok(state)
    }

    /// Sends a request and waits for its reply; `cancel` firing sends CANCEL and keeps
    /// waiting for the (now prompt) reply.
    pub(crate) fn request(
        &self,
        cmd: Cmd,
        cancel: Option<&CancelToken>,
        build: impl FnOnce(&mut FrameBuf<'_>),
    ) -> Result<Reply, IpcError> {
        self.request_inner(cmd, cancel, Vec::new(), self.inner.patience(), build)
    }

    /// [`request`](Self::request), with `own` descriptors attached to the request's frame,
    /// waiting for the answer until `patience`'s deadline at most (then the connection is
    /// taken as stalled, and the error names `patience`'s timeout).
    fn request_inner(
        &self,
        cmd: Cmd,
        cancel: Option<&CancelToken>,
        own: Vec<OwnedFd>,
        patience: Option<(Instant, Duration)>,
        build: impl FnOnce(&mut FrameBuf<'_>),
    ) -> Result<Reply, IpcError> {
        let (tx, mut rx) = oneshot::channel();
        // We are about to wait for the answer: written now rather than by the writer.
        let req = self.inner.send_frame(cmd, Pending::Wait(tx), own, Some(&self.inner.stream), build)?;
        if let Some(reply) = self.inner.read_own_reply(&mut rx) {
            return Ok(reply);
        }
        match rx.recv_with(patience.map(|(deadline, _)| deadline), cancel) {
            Ok(r) => Ok(r),
            Err(ChanError::Timeout) => {
                let t = patience.map(|(_, t)| t).unwrap_or_default();
                self.inner.fail(format!("no answer within {t:?}"));
                self.inner.stream.shutdown();
                Err(IpcError::Stalled(t))
            }
            Err(ChanError::Canceled) => {
                let _ = self.inner.send_request(Cmd::CANCEL, Pending::Ignore, |f| {
                    f.u64(Attr::TARGET_REQ_ID, req);
                });
                rx.recv().map_err(|_| self.inner.closed_error())
            }
            Err(_) => Err(self.inner.closed_error()),
        }
    }
}

impl Connection {
    /// Request `req`'s waiter has gone, `rx` unread: cancels the request and hands its
    /// reply to `give_back`, whether it comes later or came already.
    pub(crate) fn abandon(
        &self,
        req: u64,
        mut rx: oneshot::Receiver<Reply>,
        give_back: Box<dyn FnOnce(Reply) + Send>,
    ) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Pending::Wait(_)) = pending.remove(&req) {
            pending.insert(req, Pending::Abandoned(give_back));
            drop(pending);
            let _ = self.inner.send_request(Cmd::CANCEL, Pending::Ignore, |f| {
                f.u64(Attr::TARGET_REQ_ID, req);
            });
            self.inner.outbox.flush_now(&self.inner.stream);
            return;
        }
        drop(pending);
        // The reader took the entry: the reply is in `rx`, or will be the moment it is sent
        // (or the connection closed and there is none).
        if let Ok(reply) = rx.recv() {
            give_back(reply);
        }
    }
}

impl ConnInner {
    /// The deadline `request_timeout` sets for a request sent now, with the timeout.
    fn patience(&self) -> Option<(Instant, Duration)> {
        self.request_timeout.and_then(|t| Some((Instant::now().checked_add(t)?, t)))
    }

    pub(crate) fn closed_error(&self) -> IpcError {
        IpcError::Closed(self.why.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Registers `pending` under a fresh id and queues the frame `build` writes. Returns
    /// the id.
    fn send_request(
        &self,
        cmd: Cmd,
        pending: Pending,
        build: impl FnOnce(&mut FrameBuf<'_>),
    ) -> Result<u64, IpcError> {
        self.send_frame(cmd, pending, Vec::new(), None, build)
    }

    /// [`send_request`](Self::send_request), with `own` descriptors attached to the frame;
    /// with `now`, written at once (see [`Now`]).
    fn send_frame(
        &self,
        cmd: Cmd,
        pending: Pending,
        own: Vec<OwnedFd>,
        now: Now<'_>,
        build: impl FnOnce(&mut FrameBuf<'_>),
    ) -> Result<u64, IpcError> {
        let req = self.next_req.fetch_add(1, Relaxed);
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.load(Acquire) {
                return Err(self.closed_error());
            }
            p.insert(req, pending);
        }
        let r = self.outbox.push_with_fds(own, now, |out, max| {
            let mut f = FrameBuf::begin(out, cmd, 0);
            f.u64(Attr::REQ_ID, req);
            build(&mut f);
            f.finish(max)
        });
        match r {
            Ok(()) => Ok(req),
            Err(e) => {
                self.forget(req);
                Err(match e {
                    IpcError::Closed(_) => self.closed_error(),
                    e => e,
                })
            }
        }
    }

    /// Whether the connection's frames go through shared-memory rings.
    pub(crate) fn on_rings(&self) -> bool {
        self.stream.on_rings()
    }

    /// Whether the server takes credited sends without replies (minor 7): their window
    /// comes back in CREDIT events.
    pub(crate) fn takes_credited(&self) -> bool {
        self.server_minor.load(Relaxed) >= 7
    }

    /// Queues a request nobody waits for (a credited send, minor 7): a fresh `REQ_ID`, no
    /// entry in `pending`. Over the rings it is written at once when nobody is writing.
    pub(crate) fn send_unanswered(
        &self,
        cmd: Cmd,
        build: impl FnOnce(&mut FrameBuf<'_>),
    ) -> Result<(), IpcError> {
        if self.closed.load(Acquire) {
            return Err(self.closed_error());
        }
        let req = self.next_req.fetch_add(1, Relaxed);
        let frame = |out: &mut Vec<u8>, max| {
            let mut f = FrameBuf::begin(out, cmd, 0);
            f.u64(Attr::REQ_ID, req);
            build(&mut f);
            f.finish(max)
        };
        if self.on_rings() {
            // Into shared memory is a copy, not a system call: cheaper done here than
            // handed to the writer coroutine (which still batches while it writes).
            self.outbox.push_and_flush(&self.stream, frame)
        } else {
            self.outbox.push(frame)
        }
    }

    /// Queues `REGION_SHARE` of this side's region, its fd attached (from the first
    /// lease: see `ShmTx::lease`). A failure is the connection's: whatever names the
    /// region fails with it.
    pub(crate) fn share_region(&self, export_id: u64, fd: OwnedFd) -> Result<(), IpcError> {
        let sreq = self.next_req.fetch_add(1, Relaxed);
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(sreq, Pending::Ignore);
        self.outbox.push_with_fds(vec![fd], None, |out, max| {
            let mut f = FrameBuf::begin(out, Cmd::REGION_SHARE, 0);
            f.u64(Attr::REQ_ID, sreq).u64(Attr::REGION_ID, export_id);
            f.finish(max)
        })
    }

    fn forget(&self, req: u64) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&req);
    }

    /// Marks the connection dead: pending requests fail (their reply channels drop),
    /// every channel's credits close, the writer stops.
    fn fail(&self, why: String) {
        let drained: Vec<Pending> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.swap(true, AcqRel) {
                return;
            }
            *self.why.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            p.drain().map(|(_, v)| v).collect()
        };
        drop(drained);
        let chans: Vec<Arc<ChanState>> =
            self.chans.lock().unwrap_or_else(|e| e.into_inner()).values().filter_map(Weak::upgrade).collect();
        for c in chans {
            c.mark_closed();
        }
        self.outbox.close();
    }

    /// The lease of a shared element about to be sent: kept here until the server's
    /// REGION_RELEASE if the server sends one (minor ≥ 2; then `None` is returned), else
    /// returned, to be dropped with the reply.
    pub(crate) fn hold(&self, lease: Option<ZBuf>) -> Option<ZBuf> {
        match lease {
            Some(b) if self.server_minor.load(Relaxed) >= 2 => {
                self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(b.desc().offset, b);
                None
            }
            other => other,
        }
    }

    /// Tells the peer we are done with a span of its region.
    pub(crate) fn release(&self, d: &kcoro::zcopy::ZDesc) {
        let z = crate::proto::zdesc::encode(d);
        let _ = self.send_request(Cmd::REGION_RELEASE, Pending::Ignore, |f| {
            f.bytes(Attr::ZDESC, &z);
        });
    }
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        self.outbox.close();
        self.stream.shutdown();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::proto::{FLAG_REPLY, Limits};
    use crate::shm::{decode_element, locate};

    /// A receive reply carrying `element` inline, as the reader keeps it.
    fn reply_with(element: &[u8]) -> Reply {
        let mut wire = Vec::new();
        let mut f = FrameBuf::begin(&mut wire, Cmd::CHAN_RECV, FLAG_REPLY);
        f.u64(Attr::REQ_ID, 7).i32(Attr::RESULT, 0).bytes(Attr::ELEMENT, element);
        f.finish(u32::MAX).unwrap();
        let (frame, _) = crate::proto::split_frame(&wire, &Limits::default()).unwrap().unwrap();
        Reply::of(&frame)
    }

    fn inside(whole: &[u8], part: &[u8]) -> bool {
        let start = whole.as_ptr() as usize;
        (start..=start + whole.len() - part.len()).contains(&(part.as_ptr() as usize))
    }

    #[test]
    fn a_bytes_element_is_a_view_of_its_reply_others_are_copies() {
        let element: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let reply = reply_with(&element);
        let rx = ShmRx::for_client(&Limits::default());
        let frame = reply.frame();
        let at = locate(&frame).unwrap();

        let view: Bytes = decode_element(&at, Some(&reply.payload), None, &rx).unwrap();
        assert_eq!(view, element);
        assert!(inside(&reply.payload, &view), "the Bytes element was copied out of its reply");

        let copy: Vec<u8> = decode_element(&at, Some(&reply.payload), None, &rx).unwrap();
        assert_eq!(copy, element);
        assert!(!inside(&reply.payload, &copy));

        // Without the frame's buffer (the server's reads), or with bytes not inside it,
        // the element is copied.
        let alone: Bytes = decode_element(&at, None, None, &rx).unwrap();
        assert!(!inside(&reply.payload, &alone));
        let other = reply_with(&element);
        let elsewhere: Bytes = decode_element(&at, Some(&other.payload), None, &rx).unwrap();
        assert_eq!(elsewhere, element);
        assert!(!inside(&other.payload, &elsewhere) && !inside(&reply.payload, &elsewhere));
    }
}
