//! One served connection: the reader that dispatches requests, the writer, and the
//! requests in flight.
//!
//! # Invariants
//! - A send that need not wait is done on the reader (no hand-off, no tracking); a
//!   credited one only if none of this connection's sends to that channel waits in its
//!   queue, so sends land in the order they were read. So is a receive that finds a value
//!   ready (`take_ready`: an empty look counts nothing, the wait that follows is the
//!   receive). Only an operation that must wait gets a coroutine and a tracking entry.
//! - A credited send (minor 7) is never answered: its share of the window comes back, with
//!   its outcome, in a CREDIT event, which the reader sends when it has read everything
//!   there is, and a feeder when its queue empties; both also as soon as a quarter of the
//!   window is owed (`Owed::due`), so that a client streaming sends never waits on it.
//! - `in_flight` counts requests that wait in their own coroutine (receives, rendezvous
//!   sends, and the watchers of timed sends queued behind others); it never exceeds
//!   `Limits::max_in_flight`, checked before a request is taken on. Credited sends are not
//!   counted there: the window bounds them.
//! - An answered send queued behind others is answered once, by whoever claims it first:
//!   the feeder when its turn comes, a CANCEL, or its deadline's watcher.
//! - A channel's send queue (`feeders`) holds at most `Limits::credits` values and, unless
//!   it holds a single value, at most `Limits::credit_bytes` inline element bytes: a client
//!   that sends past its window gets `-ENOBUFS`, so the server's memory per connection is
//!   bounded by the window, whatever the client does. The queue's counts drop before the
//!   answer (reply or CREDIT) is queued, so a client that counts until the answer never
//!   overruns them.
//! - Until authenticated (when a secret is set), only HELLO and AUTH are answered.
//! - A connection sees only what it was given: a `CHAN_ID` works only if OPEN or MAKE
//!   returned it to this connection (`opened`); a `ZDESC` resolves only in a region this
//!   peer shared on this connection (`shm_rx`), and only on a Unix socket. Anything else
//!   reads as "does not exist", whoever it belongs to.
//! - No descriptor is kept unless a `REGION_SHARE` after HELLO (and AUTH) claims it: the
//!   frame reader hands a frame only its own descriptors and closes what it leaves.
//! - `made` ⇒ an unnamed channel this connection made: only it has the id, and it is
//!   closed and destroyed when the connection ends.
//! - Once `token` is cancelled (the connection ended), every request in flight wakes with
//!   `Canceled`, and its reply has nowhere to go: the outbox is closed first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kcoro::chan::{ChanError, Receiver};
use kcoro::sync::CancelToken;
use kcoro::zcopy::ZBuf;

use super::ServerInner;
use super::served::{SendFail, Served};
use crate::ids::IdMap;
use crate::proto::{
    Attr, Cmd, FLAG_REPLY, FrameBuf, FrameRef, Limits, ProtoError, VERSION_MAJOR, VERSION_MINOR, zdesc,
};
use crate::shm::{ShmLimits, ShmRx, ShmTx};
use crate::wire::{FrameReader, Outbox, Stream};
use crate::{IpcError, auth};

mod channels;
mod handshake;
mod recvs;
mod reports;
mod sends;

use sends::{Feeder, Owed, QueuedSend};

/// Reply bytes a connection may have queued, not yet written, before its reader stops
/// taking requests from the client until the writer has written some (a client that sends
/// requests and never reads the replies would otherwise grow the server without bound).
const QUEUED_REPLY_BYTES: usize = 4 << 20;

/// Largest frame a connection may send before its handshake is done (HELLO and AUTH are
/// well under 1 KiB).
pub(crate) const HANDSHAKE_FRAME: u32 = 4 << 10;

/// A request CANCEL can find: its token, and for a send queued behind others what lets
/// CANCEL end it before its turn.
struct Tracked {
    token: CancelToken,
    queued: Option<QueuedSend>,
}

/// A channel this connection holds, and its queue of sends once one had to wait.
struct Held {
    chan: Arc<dyn Served>,
    feeder: Option<Feeder>,
    /// The budget this connection's send window takes (the sends it may have queued):
    /// the made channels' one or the server's windows' one, given back when the
    /// connection lets go of the channel.
    _window: crate::server::budget::Charge,
}

/// A channel of the registry, by id.
type Found = Option<(u64, Arc<dyn Served>)>;

/// What the reader does after a frame.
#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    /// Stop reading: the frames queued (the refusal) are written, then the socket closes.
    Close,
}

pub(crate) struct ConnState {
    id: u64,
    server: Arc<ServerInner>,
    stream: Arc<Stream>,
    outbox: Arc<Outbox>,
    rings: Mutex<Option<Receiver<()>>>,
    token: CancelToken,
    authed: AtomicBool,
    nonce: Mutex<Option<[u8; auth::NONCE_LEN]>>,
    /// The client's frame limit (HELLO), which replies must respect.
    peer_max_frame: AtomicU32,
    /// The client's minor version (HELLO): from 2 on, it takes `REGION_RELEASE` for the
    /// shared elements it sends, so we may keep them past the reply.
    peer_minor: AtomicU32,
    in_flight: AtomicUsize,
    /// Bytes of our memory held by this connection's waiting rendezvous sends
    /// (`Limits::max_waiting_bytes`).
    waiting_bytes: Arc<AtomicU64>,
    requests: Mutex<HashMap<u64, Tracked>>,
    /// HELLO was answered: REGION_SHARE may bring descriptors.
    greeted: AtomicBool,
    /// The client's HELLO declined shared memory (`NO_SHM`): its elements come inline.
    shm_declined: AtomicBool,
    /// Channels OPEN or MAKE returned to this connection, by id: the only ones it may use,
    /// with the queue of its sends to each (one lock per send finds both).
    opened: Mutex<IdMap<Held>>,
    /// Unnamed channels this connection made: destroyed when it ends.
    made: Mutex<HashSet<u64>>,
    shm_tx: Option<ShmTx>,
    /// Leases of our region lent to the client in receive replies, by offset.
    lent: Mutex<HashMap<u64, ZBuf>>,
    shm_rx: ShmRx,
    next_req: AtomicU64,
    /// When it was accepted: its handshake must be done by `Limits::handshake_timeout`
    /// after.
    accepted_at: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnState {
    pub(crate) fn new(id: u64, server: Arc<ServerInner>, stream: Stream) -> Arc<ConnState> {
        let (outbox, rings) = Outbox::new(u32::MAX);
        let unix = stream.is_unix();
        let shm_rx = ShmRx::new(ShmLimits::of(&server.limits), Arc::clone(&server.mapped));
        Arc::new(ConnState {
            id,
            token: server.token.child(),
            authed: AtomicBool::new(server.secret.is_none()),
            shm_tx: unix.then(|| ShmTx::new(server.shm)),
            server,
            stream: Arc::new(stream),
            outbox,
            rings: Mutex::new(Some(rings)),
            nonce: Mutex::new(None),
            peer_max_frame: AtomicU32::new(16 << 20),
            peer_minor: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            waiting_bytes: Arc::new(AtomicU64::new(0)),
            requests: Mutex::new(HashMap::new()),
            greeted: AtomicBool::new(false),
            shm_declined: AtomicBool::new(false),
            opened: Mutex::new(IdMap::default()),
            made: Mutex::new(HashSet::new()),
            lent: Mutex::new(HashMap::new()),
            shm_rx,
            next_req: AtomicU64::new(1),
            accepted_at: Instant::now(),
        })
    }

    /// Whether the handshake (HELLO, and AUTH when a secret is set) is done.
    fn handshake_done(&self) -> bool {
        self.greeted.load(Acquire) && self.authed.load(Acquire)
    }

    /// Whether the handshake is still not done at `now`, past the server's
    /// `handshake_timeout`.
    pub(crate) fn handshake_overdue(&self, now: Instant) -> bool {
        !self.handshake_done() && now.duration_since(self.accepted_at) >= self.server.limits.handshake_timeout
    }

    /// Serves the connection until either side ends it.
    pub(crate) fn run(self: Arc<Self>) {
        let Some(rings) = lock(&self.rings).take() else { return };
        let (stream, outbox) = (Arc::clone(&self.stream), Arc::clone(&self.outbox));
        let writer =
            kcoro::spawn_with(self.server.spawn_options(), move || outbox.run_writer(&stream, &rings));
        // Until the handshake is done, frames are small: a peer nobody has let in yet does
        // not get the server to set aside `max_frame` bytes for it.
        let limits = self.server.limits;
        let mut frames =
            FrameReader::new(Limits { max_frame: limits.max_frame.min(HANDSHAKE_FRAME), ..limits });
        let mut let_in = false;
        let mut owed = Owed::default();
        // Without a writer (no stack left for it) no reply would leave: the connection
        // ends at once rather than taking requests it cannot answer.
        while writer.is_ok() {
            if !frames.has_frame() {
                // About to wait for the client: give back what its credited sends took.
                self.credit(&mut owed);
                // A client that does not read its replies gets no more requests read.
                self.outbox.wait_below(QUEUED_REPLY_BYTES);
            }
            match frames.next(&self.stream, |f, fds| self.dispatch(f, fds, &mut owed)) {
                Ok(Some(Flow::Go)) => {}
                _ => break,
            }
            if owed.due(&limits) {
                self.credit(&mut owed);
            }
            if !let_in && self.handshake_done() {
                frames.set_max_frame(limits.max_frame);
                let_in = true;
            }
        }
        // The peer is gone or refused: wake everything it was waiting on, drop its queues.
        // The outbox first: see `shut`.
        self.outbox.close();
        self.token.cancel();
        // Dropping the queues ends their feeders.
        for held in lock(&self.opened).values_mut() {
            held.feeder = None;
        }
        if let Ok(w) = writer {
            let _ = w.join();
        }
        self.stream.shutdown();
        if let Some(link) = self.stream.link() {
            self.server.mapped.fetch_sub(link.mapped(), AcqRel);
        }
        lock(&self.lent).clear();
        self.destroy_made();
    }

    /// The unnamed channels this connection made: nobody else has their ids, so they go
    /// with it (closed, their values dropped, forgotten by the server).
    fn destroy_made(&self) {
        let made: Vec<u64> = lock(&self.made).drain().collect();
        for id in made {
            let entry = self.server.registry().remove(id);
            if let Some(e) = entry {
                e.chan.close();
                self.server.made_channels.fetch_sub(1, AcqRel);
            }
        }
    }

    /// Shutdown of the server: end this connection. The outbox closes before the waits
    /// are cancelled, so a receive or send woken by the cancel cannot queue its
    /// `Canceled` reply: the client did not cancel it, and sees `Closed` when the stream
    /// ends. (In the other order the woken request's reply could be written first, in
    /// about one shutdown in twenty.)
    pub(crate) fn shut(&self) {
        self.outbox.close();
        self.token.cancel();
        self.stream.shutdown();
    }

    fn reply(&self, cmd: Cmd, req: u64, result: i32, build: impl FnOnce(&mut FrameBuf<'_>)) {
        let max = self.peer_max_frame.load(Relaxed);
        let r = self.outbox.push(|out, _| {
            let mut f = FrameBuf::begin(out, cmd, FLAG_REPLY);
            f.u64(Attr::REQ_ID, req).i32(Attr::RESULT, result);
            build(&mut f);
            f.finish(max)
        });
        if let Err(IpcError::Proto(ProtoError::FrameTooLong { len, max })) = r {
            // The element was taken from the channel but cannot reach this client.
            self.refuse(
                cmd,
                req,
                -libc::EMSGSIZE,
                &format!("reply of {len} bytes exceeds the client's limit of {max}"),
            );
        }
    }

    fn refuse(&self, cmd: Cmd, req: u64, code: i32, msg: &str) {
        self.reply(cmd, req, code, |f| {
            f.str(Attr::ERROR, msg);
        });
    }

    fn chan_result(&self, cmd: Cmd, req: u64, r: Result<(), SendFail>) {
        match r {
            Ok(()) => self.reply(cmd, req, 0, |_| {}),
            Err(SendFail::Chan(e)) => self.refuse(cmd, req, e.code(), &e.to_string()),
            Err(SendFail::Decode(e)) => self.refuse(cmd, req, -libc::EINVAL, &e.to_string()),
            Err(SendFail::TooLarge { bytes, budget }) => {
                let msg = format!(
                    "an element of {bytes} bytes is more than the server keeps for clients' channels \
                     ({budget} bytes, max_made_bytes)"
                );
                self.refuse(cmd, req, -libc::EMSGSIZE, &msg)
            }
            Err(SendFail::Spent) => self.refuse_spent(cmd, req),
        }
    }

    fn dispatch(self: &Arc<Self>, f: FrameRef<'_>, fds: &mut VecDeque<OwnedFd>, owed: &mut Owed) -> Flow {
        // Answers to our own requests (REGION_SHARE, REGION_RELEASE): nothing to do.
        if f.flags == FLAG_REPLY && matches!(f.cmd, Cmd::REGION_SHARE | Cmd::REGION_RELEASE) {
            return Flow::Go;
        }
        // Every request carries REQ_ID; one without cannot be answered: a broken peer.
        let Ok(Some(req)) = f.u64(Attr::REQ_ID) else { return Flow::Close };
        if f.flags != 0 {
            let msg = format!(
                "flags {:#x} on a {} request: a client sets none (REPLY answers only REGION_SHARE and REGION_RELEASE)",
                f.flags,
                f.cmd.name()
            );
            self.refuse(f.cmd, req, -libc::EINVAL, &msg);
            return Flow::Go;
        }
        match self.handle(f, req, fds, owed) {
            Ok(flow) => flow,
            Err(e) => {
                self.refuse(f.cmd, req, -libc::EINVAL, &format!("malformed {}: {e}", f.cmd.name()));
                Flow::Go
            }
        }
    }

    fn handle(
        self: &Arc<Self>,
        f: FrameRef<'_>,
        req: u64,
        fds: &mut VecDeque<OwnedFd>,
        owed: &mut Owed,
    ) -> Result<Flow, ProtoError> {
        let cmd = f.cmd;
        if !self.authed.load(Acquire) && !matches!(cmd, Cmd::HELLO | Cmd::AUTH) {
            self.refuse(cmd, req, -libc::EACCES, "authenticate first (HELLO, then AUTH)");
            return Ok(Flow::Close);
        }
        match cmd {
            Cmd::HELLO => return self.hello(&f, req, fds),
            Cmd::AUTH => return self.auth(&f, req),
            Cmd::GET_INFO => {
                let (name, max) = (self.server.name.clone(), self.server.limits.max_frame);
                let conns = u32::try_from(self.server.others(0).len()).unwrap_or(u32::MAX);
                self.reply(cmd, req, 0, |r| {
                    r.str(Attr::SERVER, &name)
                        .u32(Attr::ABI_MAJOR, VERSION_MAJOR)
                        .u32(Attr::ABI_MINOR, VERSION_MINOR)
                        .u32(Attr::MAX_FRAME, max)
                        .u32(Attr::CONNECTIONS, conns);
                });
            }
            Cmd::LIST => self.list(req, None),
            Cmd::GET_SCHED => self.sched(req),
            Cmd::GET_COROS => self.coros(req),
            Cmd::GET_METRICS => self.metrics(req),
            Cmd::GET_STATS => self.list(req, f.u64(Attr::CHAN_ID)?),
            Cmd::CHAN_OPEN => self.open(&f, req)?,
            Cmd::CHAN_MAKE => self.make(&f, req)?,
            Cmd::CHAN_SEND | Cmd::CHAN_TRY_SEND => self.send(&f, req, owed)?,
            Cmd::CHAN_RECV | Cmd::CHAN_TRY_RECV => self.recv(&f, req)?,
            Cmd::CHAN_CLOSE => self.close(&f, req)?,
            Cmd::CHAN_DESTROY => self.destroy(&f, req)?,
            Cmd::CANCEL => {
                let target = f.u64(Attr::TARGET_REQ_ID)?.ok_or(ProtoError::Missing(Attr::TARGET_REQ_ID.0))?;
                // Replied before the cancel fires: the outbox is one ordered queue, so the
                // CANCEL's reply always precedes the target's -ECANCELED on the wire.
                let tracked = lock(&self.requests).get(&target).map(|t| (t.token.clone(), t.queued.clone()));
                match tracked {
                    Some((token, queued)) => {
                        self.reply(cmd, req, 0, |_| {});
                        // Still waiting its turn: ended here, its feed skipped later.
                        if let Some(q) = queued.filter(|q| q.take()) {
                            if q.counted {
                                self.done(target);
                            } else {
                                self.untrack(target);
                            }
                            self.chan_result(
                                Cmd::CHAN_SEND,
                                target,
                                Err(SendFail::Chan(ChanError::Canceled)),
                            );
                        }
                        token.cancel();
                    }
                    None => self.refuse(cmd, req, -libc::ENOENT, "no such request in flight"),
                }
            }
            Cmd::REGION_SHARE => {
                let id = f.u64(Attr::REGION_ID)?.ok_or(ProtoError::Missing(Attr::REGION_ID.0))?;
                if !self.greeted.load(Acquire) {
                    self.refuse(cmd, req, -libc::EPROTO, "REGION_SHARE before HELLO");
                    return Ok(Flow::Go);
                }
                match fds.pop_front() {
                    Some(fd) => match self.shm_rx.import(fd, id) {
                        Ok(()) => self.reply(cmd, req, 0, |_| {}),
                        Err(e) => self.refuse(cmd, req, e.code(), &e.to_string()),
                    },
                    None => self.refuse(cmd, req, -libc::EBADF, "REGION_SHARE without a descriptor"),
                }
            }
            Cmd::REGION_RELEASE => {
                let off = zdesc::decode(f.need(Attr::ZDESC)?)?.offset;
                match lock(&self.lent).remove(&off) {
                    Some(lease) => {
                        drop(lease);
                        self.reply(cmd, req, 0, |_| {});
                    }
                    None => self.refuse(cmd, req, -libc::ENOENT, "no such span lent"),
                }
            }
            Cmd::SELECT_REGISTER => self.refuse(
                cmd,
                req,
                -libc::ENOTSUP,
                "select spans connections client-side; use local() proxies",
            ),
            Cmd(n) => self.refuse(Cmd(n), req, -libc::ENOTSUP, &format!("unknown command {n}")),
        }
        Ok(Flow::Go)
    }
    /// Takes on a request that will wait, unless too many already are or its REQ_ID is
    /// already in flight.
    fn admit(&self, cmd: Cmd, req: u64, queued: Option<QueuedSend>) -> Option<CancelToken> {
        let max = self.server.limits.max_in_flight;
        if self.in_flight.fetch_add(1, AcqRel) >= max {
            self.in_flight.fetch_sub(1, AcqRel);
            self.refuse(cmd, req, -libc::EBUSY, &format!("more than {max} requests in flight"));
            return None;
        }
        let token = self.track(cmd, req, queued);
        if token.is_none() {
            self.in_flight.fetch_sub(1, AcqRel);
        }
        token
    }

    /// Lets request `req` go: untracked, out of `in_flight`. Called before its answer is
    /// queued, so that a client sending again as soon as it is answered finds the slot
    /// (and the REQ_ID) free.
    pub(super) fn done(&self, req: u64) {
        self.untrack(req);
        self.in_flight.fetch_sub(1, AcqRel);
    }

    /// A cancel token for request `req`, which CANCEL finds (without counting it in
    /// flight); `None`, refused, if a request with that REQ_ID is still in flight (its
    /// reply and a CANCEL could not tell them apart).
    fn track(&self, cmd: Cmd, req: u64, queued: Option<QueuedSend>) -> Option<CancelToken> {
        let mut requests = lock(&self.requests);
        if requests.contains_key(&req) {
            drop(requests);
            self.refuse(cmd, req, -libc::EINVAL, &format!("REQ_ID {req} is already in flight"));
            return None;
        }
        let t = self.token.child();
        requests.insert(req, Tracked { token: t.clone(), queued });
        Some(t)
    }

    fn untrack(&self, req: u64) {
        lock(&self.requests).remove(&req);
    }

    /// Runs admitted request `req`'s `wait` on a coroutine of its own. If none can start
    /// (no stack left, the runtime shutting down), the request is refused with `-EBUSY`
    /// and let go, so that neither the client nor `in_flight` waits for it.
    fn spawn_waiting(&self, cmd: Cmd, req: u64, wait: impl FnOnce() + Send + 'static) {
        if let Err(e) = kcoro::spawn_with(self.server.spawn_options(), wait) {
            self.done(req);
            self.refuse(cmd, req, -libc::EBUSY, &format!("cannot wait: {e}"));
        }
    }
}
