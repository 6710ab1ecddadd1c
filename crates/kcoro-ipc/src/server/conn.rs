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
//!   there is, and a feeder when its queue empties.
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

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kcoro::chan::{self, ChanError, Kind, Receiver, Sender};
use kcoro::sync::CancelToken;
use kcoro::zcopy::ZBuf;

use super::ServerInner;
use super::served::{Encode, Offered, SendFail, Served, Wait};
use crate::coros::CoroutineReport;
use crate::ids::IdMap;
use crate::proto::{
    Attr, Cmd, EVENT_CLOSED, FLAG_EVENT, FLAG_REPLY, FrameBuf, FrameRef, ProtoError, VERSION_MAJOR,
    VERSION_MINOR, zdesc,
};
use crate::shm::{Located, Release, ShmLimits, ShmRx, ShmTx, locate};
use crate::stats::{ChannelStats, SchedStats};
use crate::wire::{FrameReader, Hold, Outbox, Stream};
use crate::{IpcError, auth};

/// Reply bytes a connection may have queued, not yet written, before its reader stops
/// taking requests from the client until the writer has written some (a client that sends
/// requests and never reads the replies would otherwise grow the server without bound).
const QUEUED_REPLY_BYTES: usize = 4 << 20;

/// A credited send waiting its turn in a channel's queue: its element decoded (by the
/// reader, once), and the inline bytes it counts against the window.
struct Feed {
    req: u64,
    value: Box<dyn Any + Send>,
    len: u64,
    wait: Wait,
    token: CancelToken,
    /// A credited send, answered by CREDIT.
    credited: Option<Credited>,
    /// An answered send queued behind others: whoever sets this first answers it (the
    /// feeder when it gets to the send, a CANCEL, or the watcher of its deadline).
    claim: Option<Arc<AtomicBool>>,
}

/// A request CANCEL can find: its token, and for a send queued behind others what lets
/// CANCEL end it before its turn.
struct Tracked {
    token: CancelToken,
    queued: Option<QueuedSend>,
}

/// An answered send waiting its turn in a channel's queue.
#[derive(Clone)]
struct QueuedSend {
    claim: Arc<AtomicBool>,
    len: u64,
    queue: Arc<Queued>,
}

impl QueuedSend {
    /// Takes it out of its queue's counts if nobody answered it yet; true if now ours.
    fn take(&self) -> bool {
        if self.claim.swap(true, AcqRel) {
            return false;
        }
        self.queue.values.fetch_sub(1, AcqRel);
        self.queue.bytes.fetch_sub(self.len, AcqRel);
        true
    }
}

/// What a credited send took from its client's window: the channel, and its element's
/// bytes (shared ones counted apart from minor 8 on).
#[derive(Clone, Copy)]
struct Credited {
    chan: u64,
    bytes: u64,
    shared: bool,
}

/// Send window owed to the client for credited sends that are done, per channel, until a
/// CREDIT event returns it.
#[derive(Default)]
struct Owed(Vec<OwedChan>);

struct OwedChan {
    id: u64,
    values: u32,
    /// Element bytes, shared ones included (as a client older than minor 8 counts them).
    bytes: u64,
    /// Of those, the bytes of elements in the client's shared memory.
    shared: u64,
    /// The first failure among these sends, else 0.
    result: i32,
}

impl Owed {
    fn add(&mut self, c: Credited, result: i32) {
        let shared = if c.shared { c.bytes } else { 0 };
        match self.0.iter_mut().find(|o| o.id == c.chan) {
            Some(o) => {
                o.values += 1;
                o.bytes += c.bytes;
                o.shared += shared;
                if o.result == 0 {
                    o.result = result;
                }
            }
            None => self.0.push(OwedChan { id: c.chan, values: 1, bytes: c.bytes, shared, result }),
        }
    }
}

/// The code a send's outcome is reported with.
fn fail_code(r: &Result<(), SendFail>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(SendFail::Chan(e)) => e.code(),
        Err(SendFail::Decode(_)) => -libc::EINVAL,
    }
}

/// What waits in a channel's send queue: values, and their inline bytes.
#[derive(Default)]
struct Queued {
    values: AtomicUsize,
    bytes: AtomicU64,
}

/// A channel's send queue for this connection, and what waits in it.
type Feeder = (Sender<Feed>, Arc<Queued>);

/// A channel this connection holds, and its queue of sends once one had to wait.
struct Held {
    chan: Arc<dyn Served>,
    feeder: Option<Feeder>,
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
            requests: Mutex::new(HashMap::new()),
            greeted: AtomicBool::new(false),
            shm_declined: AtomicBool::new(false),
            opened: Mutex::new(IdMap::default()),
            made: Mutex::new(HashSet::new()),
            lent: Mutex::new(HashMap::new()),
            shm_rx,
            next_req: AtomicU64::new(1),
        })
    }

    /// Serves the connection until either side ends it.
    pub(crate) fn run(self: Arc<Self>) {
        let Some(rings) = lock(&self.rings).take() else { return };
        let (stream, outbox) = (Arc::clone(&self.stream), Arc::clone(&self.outbox));
        let writer =
            kcoro::spawn_with(self.server.spawn_options(), move || outbox.run_writer(&stream, &rings));
        let mut frames = FrameReader::new(self.server.limits);
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
                        if queued.is_some_and(|q| q.take()) {
                            self.chan_result(
                                Cmd::CHAN_SEND,
                                target,
                                Err(SendFail::Chan(ChanError::Canceled)),
                            );
                            self.untrack(target);
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

    fn hello(&self, f: &FrameRef<'_>, req: u64, fds: &mut VecDeque<OwnedFd>) -> Result<Flow, ProtoError> {
        let major = f.u32(Attr::ABI_MAJOR)?.unwrap_or(0);
        if major != VERSION_MAJOR {
            let msg =
                format!("protocol version {major} is not supported; this server speaks {VERSION_MAJOR}");
            self.reply(Cmd::HELLO, req, -libc::EPROTO, |r| {
                r.u32(Attr::ABI_MAJOR, VERSION_MAJOR).str(Attr::ERROR, &msg);
            });
            return Ok(Flow::Close);
        }
        if let Some(m) = f.u32(Attr::MAX_FRAME)? {
            self.peer_max_frame.store(m, Relaxed);
        }
        self.peer_minor.store(f.u32(Attr::ABI_MINOR)?.unwrap_or(0), Relaxed);
        self.shm_declined.store(f.u32(Attr::NO_SHM)?.unwrap_or(0) != 0, Relaxed);
        let nonce = match &self.server.secret {
            Some(_) => match auth::nonce() {
                Ok(n) => Some(n),
                Err(e) => {
                    self.refuse(Cmd::HELLO, req, -libc::EIO, &e.to_string());
                    return Ok(Flow::Close);
                }
            },
            None => None,
        };
        *lock(&self.nonce) = nonce;
        // The rings are taken (or refused) before anything else is read: the client writes
        // nothing more until this reply, and everything after it comes through them.
        let rings = f.u64(Attr::RING_BYTES)?.map(|cap| self.take_rings(cap, fds));
        self.greeted.store(true, Release);
        let max = self.server.limits.max_frame;
        let build = |r: &mut FrameBuf<'_>| {
            r.u32(Attr::ABI_MAJOR, VERSION_MAJOR)
                .u32(Attr::ABI_MINOR, VERSION_MINOR)
                .u32(Attr::MAX_FRAME, max);
            if let Some(n) = &nonce {
                r.u32(Attr::AUTH_REQUIRED, 1).bytes(Attr::NONCE, n);
            }
            match &rings {
                Some(Ok(cap)) => {
                    r.u64(Attr::RING_BYTES, *cap);
                }
                Some(Err(why)) => {
                    r.str(Attr::RING_REFUSED, why);
                }
                None => {}
            }
        };
        let peer_max = self.peer_max_frame.load(Relaxed);
        let frame = |out: &mut Vec<u8>, _| {
            let mut r = FrameBuf::begin(out, Cmd::HELLO, FLAG_REPLY);
            r.u64(Attr::REQ_ID, req).i32(Attr::RESULT, 0);
            build(&mut r);
            r.finish(peer_max)
        };
        let _ = match rings {
            Some(Ok(_)) => self.outbox.push_then_rings(frame),
            _ => self.outbox.push(frame),
        };
        Ok(Flow::Go)
    }

    /// HELLO's `RING_BYTES`: maps the client's rings (the frame's first three descriptors)
    /// within the limits, and moves this connection's reads to them. `Err` says why not;
    /// the connection then stays on its socket.
    fn take_rings(&self, cap: u64, fds: &mut VecDeque<OwnedFd>) -> Result<u64, String> {
        let limits = &self.server.limits;
        if !self.stream.is_unix() {
            return Err("shared-memory rings need a Unix socket".into());
        }
        if limits.max_ring_bytes == 0 {
            return Err("this server keeps connections on their sockets (max_ring_bytes 0)".into());
        }
        if self.stream.link().is_some() {
            return Err("this connection already runs over rings".into());
        }
        let (Some(mem), Some(bell0), Some(bell1)) = (fds.pop_front(), fds.pop_front(), fds.pop_front())
        else {
            return Err("RING_BYTES needs three descriptors: the rings' memfd and two bell sockets".into());
        };
        let len = crate::ring::mem::layout_len(cap.min(crate::ring::mem::MAX_RING));
        let total = limits.max_server_region_bytes;
        let before = self.server.mapped.fetch_add(len, AcqRel);
        if before.saturating_add(len) as u64 > total {
            self.server.mapped.fetch_sub(len, AcqRel);
            return Err(format!("the server maps {before} bytes of shared memory, its limit is {total}"));
        }
        let link = crate::ring::link::Link::accept(
            [mem, bell0, bell1],
            cap,
            limits.max_ring_bytes,
            self.server.ring_spin,
        );
        match link.map(|l| self.stream.attach(l)) {
            Ok(true) => {
                self.stream.start_ring_reads();
                Ok(cap)
            }
            Ok(false) => {
                self.server.mapped.fetch_sub(len, AcqRel);
                Err("this connection already runs over rings".into())
            }
            Err(e) => {
                self.server.mapped.fetch_sub(len, AcqRel);
                Err(format!("the rings were refused: {e}"))
            }
        }
    }

    fn auth(&self, f: &FrameRef<'_>, req: u64) -> Result<Flow, ProtoError> {
        let (Some(secret), Some(s)) = (&self.server.secret, *lock(&self.nonce)) else {
            self.refuse(Cmd::AUTH, req, -libc::EINVAL, "AUTH without a challenge (send HELLO first)");
            return Ok(Flow::Close);
        };
        let c = f.need(Attr::NONCE)?;
        if c.len() != auth::NONCE_LEN || !auth::check_client(secret, &s, c, f.need(Attr::MAC)?) {
            self.refuse(Cmd::AUTH, req, -libc::EACCES, "wrong secret");
            return Ok(Flow::Close);
        }
        self.authed.store(true, Release);
        let mac = auth::server_mac(secret, c, &s);
        self.reply(Cmd::AUTH, req, 0, |r| {
            r.bytes(Attr::MAC, &mac);
        });
        Ok(Flow::Go)
    }

    fn list(&self, req: u64, one: Option<u64>) {
        let cmd = if one.is_some() { Cmd::GET_STATS } else { Cmd::LIST };
        let stats: Vec<ChannelStats> = {
            let reg = self.server.registry();
            match one {
                // Counters of a channel this connection opened, or of a named one (LIST
                // shows those to anyone); another connection's unnamed channel does not
                // exist for it.
                Some(id) => match reg.by_id(id).filter(|_| self.holds(id) || reg.name_of(id).is_some()) {
                    Some(c) => vec![stats_of(id, reg.name_of(id), &*c)],
                    None => {
                        drop(reg);
                        return self.refuse(cmd, req, -libc::ENOENT, "no such channel");
                    }
                },
                None => {
                    let mut all: Vec<ChannelStats> =
                        reg.named().into_iter().map(|(id, name, c)| stats_of(id, Some(name), &*c)).collect();
                    drop(reg);
                    if self.server.monitor.is_some() {
                        all.extend(unserved_named(&all));
                    }
                    all.truncate(crate::proto::MAX_LISTED_CHANNELS);
                    all
                }
            }
        };
        self.reply(cmd, req, 0, |r| {
            for s in &stats {
                s.encode(r);
            }
        });
    }

    /// GET_SCHED: the monitored runtime's counters.
    fn sched(&self, req: u64) {
        let Some(runtime) = &self.server.monitor else {
            return self.refuse(Cmd::GET_SCHED, req, -libc::ENOTSUP, "this server is not a monitor");
        };
        let Some(stats) = runtime.clone().or_else(kcoro::Handle::try_current).map(|h| h.stats()) else {
            return self.refuse(Cmd::GET_SCHED, req, -libc::ENOTSUP, "no runtime to report");
        };
        let s = SchedStats::now(stats);
        self.reply(Cmd::GET_SCHED, req, 0, |r| s.encode(r));
    }

    /// GET_COROS: the monitored runtime's coroutines.
    fn coros(&self, req: u64) {
        let Some(runtime) = &self.server.monitor else {
            return self.refuse(Cmd::GET_COROS, req, -libc::ENOTSUP, "this server is not a monitor");
        };
        let Some(handle) = runtime.clone().or_else(kcoro::Handle::try_current) else {
            return self.refuse(Cmd::GET_COROS, req, -libc::ENOTSUP, "no runtime to report");
        };
        let report = CoroutineReport::of(&handle);
        self.reply(Cmd::GET_COROS, req, 0, |r| report.encode(r));
    }

    /// GET_METRICS: the program's own metric samples.
    fn metrics(&self, req: u64) {
        let Some(source) = &self.server.metrics else {
            return self.refuse(Cmd::GET_METRICS, req, -libc::ENOTSUP, "this server has no metrics");
        };
        // The program's code: a panic in it fails this request, not the connection.
        let source = std::sync::Arc::clone(source);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source())) {
            Ok(metrics) => self.reply(Cmd::GET_METRICS, req, 0, |r| crate::metrics::encode(&metrics, r)),
            Err(_) => self.refuse(Cmd::GET_METRICS, req, -libc::EIO, "the metrics source panicked"),
        }
    }

    /// Whether OPEN or MAKE gave channel `id` to this connection.
    fn holds(&self, id: u64) -> bool {
        lock(&self.opened).contains_key(&id)
    }

    /// Replies with what a client needs to use channel `id`, and counts it as opened.
    fn describe(&self, cmd: Cmd, req: u64, id: u64, chan: Arc<dyn Served>) {
        {
            let mut o = lock(&self.opened);
            if !o.contains_key(&id) && o.len() >= self.server.limits.max_channels {
                drop(o);
                let msg = format!(
                    "this connection has {} channels open, the limit",
                    self.server.limits.max_channels
                );
                return self.refuse(cmd, req, -libc::EMFILE, &msg);
            }
            o.entry(id).or_insert_with(|| Held { chan: Arc::clone(&chan), feeder: None });
        }
        let (credits, credit_bytes) = match chan.kind() {
            Kind::Rendezvous => (0, 0),
            _ => (self.server.limits.credits, self.server.limits.credit_bytes),
        };
        let (kind, cap, closed) =
            (chan.kind().code(), chan.capacity().map_or(u64::MAX, |c| c as u64), chan.is_closed());
        self.reply(cmd, req, 0, |r| {
            r.u64(Attr::CHAN_ID, id)
                .i32(Attr::KIND, kind)
                .u64(Attr::CAPACITY, cap)
                .u32(Attr::CREDITS, credits)
                .u32(Attr::CLOSED, u32::from(closed));
            if credit_bytes > 0 {
                r.u64(Attr::CREDIT_BYTES, credit_bytes);
            }
        });
    }

    /// The request's `NAME`; a name that is too long or not UTF-8 is refused here (`Err`:
    /// answered, nothing more to do).
    fn name<'a>(&self, cmd: Cmd, req: u64, f: &FrameRef<'a>) -> Result<Option<&'a str>, ProtoError> {
        let name = match f.str(Attr::NAME) {
            Ok(n) => n,
            Err(e) => {
                self.refuse(cmd, req, -libc::EINVAL, "NAME is not UTF-8");
                return Err(e);
            }
        };
        if let Some(n) = name
            && n.len() > self.server.limits.max_name
        {
            self.refuse(
                cmd,
                req,
                -libc::ENAMETOOLONG,
                &format!("names are at most {} bytes", self.server.limits.max_name),
            );
            return Err(ProtoError::BadValue(Attr::NAME.0));
        }
        Ok(name)
    }

    fn open(&self, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
        let Ok(name) = self.name(Cmd::CHAN_OPEN, req, f) else { return Ok(()) };
        let name = name.ok_or(ProtoError::Missing(Attr::NAME.0))?;
        let found = self.server.registry().by_name(name);
        match found {
            Some((id, chan)) => self.describe(Cmd::CHAN_OPEN, req, id, chan),
            None => self.refuse(Cmd::CHAN_OPEN, req, -libc::ENOENT, &format!("no channel named {name:?}")),
        }
        Ok(())
    }

    fn make(&self, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
        let Ok(name) = self.name(Cmd::CHAN_MAKE, req, f) else { return Ok(()) };
        let kind = match f.i32(Attr::KIND)?.unwrap_or(1) {
            0 => Kind::Rendezvous,
            1 => Kind::Buffered,
            -1 => Kind::Conflated,
            -2 => Kind::Unlimited,
            k => {
                let msg = format!("unknown kind {k} (0 rendezvous, 1 buffered, -1 conflated, -2 unlimited)");
                self.refuse(Cmd::CHAN_MAKE, req, -libc::EINVAL, &msg);
                return Ok(());
            }
        };
        let cap = f.u64(Attr::CAPACITY)?.unwrap_or(0);
        let Ok(cap) = usize::try_from(cap).map(|c| c.min(1 << 24)) else {
            return Err(ProtoError::BadValue(Attr::CAPACITY.0));
        };
        if f.u32(Attr::ELEM_SIZE)?.unwrap_or(0) != 0 {
            self.refuse(
                Cmd::CHAN_MAKE,
                req,
                -libc::ENOTSUP,
                "fixed-size elements: use ELEM_SIZE 0 (variable)",
            );
            return Ok(());
        }
        // The limits before the registry: a refused MAKE leaves nothing behind.
        let max = self.server.limits.max_channels;
        if lock(&self.opened).len() >= max {
            let msg = format!("this connection has {max} channels open, the limit");
            self.refuse(Cmd::CHAN_MAKE, req, -libc::EMFILE, &msg);
            return Ok(());
        }
        let server_max = self.server.limits.max_server_channels;
        if self.server.made_channels.fetch_add(1, AcqRel) >= server_max {
            self.server.made_channels.fetch_sub(1, AcqRel);
            let msg = format!("the server has {server_max} channels made by clients, the limit");
            self.refuse(Cmd::CHAN_MAKE, req, -libc::ENFILE, &msg);
            return Ok(());
        }
        let chan = super::make_channel(kind, cap, name);
        let added = self.server.registry().add(name.map(str::to_string), Arc::clone(&chan), true);
        match added {
            Some(id) => {
                if name.is_none() {
                    lock(&self.made).insert(id);
                }
                self.describe(Cmd::CHAN_MAKE, req, id, chan)
            }
            None => {
                self.server.made_channels.fetch_sub(1, AcqRel);
                self.refuse(Cmd::CHAN_MAKE, req, -libc::EEXIST, "a channel of that name exists")
            }
        }
        Ok(())
    }

    /// The channel a request names, if this connection holds it (OPEN or MAKE returned
    /// its id here); else `-ENOENT`, the same answer as for an id that never existed.
    fn channel(&self, cmd: Cmd, req: u64, f: &FrameRef<'_>) -> Result<Found, ProtoError> {
        let found = self.held_channel(f)?;
        if found.is_none() {
            let id = f.u64(Attr::CHAN_ID)?.unwrap_or(0);
            self.refuse(cmd, req, -libc::ENOENT, &format!("no channel {id}"));
        }
        Ok(found)
    }

    /// [`channel`](Self::channel), without answering when there is none.
    fn held_channel(&self, f: &FrameRef<'_>) -> Result<Found, ProtoError> {
        let id = f.u64(Attr::CHAN_ID)?.ok_or(ProtoError::Missing(Attr::CHAN_ID.0))?;
        Ok(lock(&self.opened).get(&id).map(|h| (id, Arc::clone(&h.chan))))
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

    fn done(&self, req: u64) {
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

    fn send(self: &Arc<Self>, f: &FrameRef<'_>, req: u64, owed: &mut Owed) -> Result<(), ProtoError> {
        let cmd = f.cmd;
        let el = locate(f)?;
        // A credited send (minor 7) is never answered: its share of the window goes back,
        // with its outcome, in a CREDIT event, whatever happens to it here.
        let credited = match (cmd, f.u32(Attr::CREDITED)?, f.u64(Attr::CHAN_ID)?) {
            (Cmd::CHAN_SEND, Some(1), Some(chan)) => {
                Some(Credited { chan, bytes: el.len() as u64, shared: matches!(el, Located::Shared(_)) })
            }
            _ => None,
        };
        let answer = |owed: &mut Owed, code: i32, msg: &str| match credited {
            Some(c) => owed.add(c, code),
            None => self.refuse(cmd, req, code, msg),
        };
        if matches!(el, Located::Shared(_)) && !self.stream.is_unix() {
            answer(owed, -libc::EPROTO, "ZDESC needs a Unix socket: over TCP elements are inline");
            return Ok(());
        }
        // First, so that every way out of here, refusals included, frees the client's span.
        let release = self.release_for(&el);
        let Some((id, chan)) = self.held_channel(f)? else {
            let id = f.u64(Attr::CHAN_ID)?.unwrap_or(0);
            answer(owed, -libc::ENOENT, &format!("no channel {id}"));
            return Ok(());
        };
        let wait = if cmd == Cmd::CHAN_TRY_SEND {
            Wait::Try
        } else {
            Wait::from_ms(f.i64(Attr::TIMEOUT_MS)?.unwrap_or(-1))
        };
        let len = match el {
            Located::Inline(b) => b.len() as u64,
            Located::Shared(_) => 0, // in the peer's memory, not ours
        };
        let rendezvous = chan.kind() == Kind::Rendezvous;
        let credited = credited.filter(|_| !rendezvous && wait != Wait::Try);
        let finish = |owed: &mut Owed, r: Result<(), SendFail>| match credited {
            Some(c) => owed.add(c, fail_code(&r)),
            None => self.chan_result(cmd, req, r),
        };
        // A send that need not wait is done here, on the reader: no hand-off, no tracking.
        // A credited one only when none of this connection's earlier sends to the channel
        // still waits in its queue (it must not overtake them).
        let send_now = wait == Wait::Try || rendezvous || self.nothing_queued(id);
        let value = match chan.offer(&el, &self.shm_rx, release, send_now) {
            Offered::Kept(v) if wait != Wait::Try => v,
            done => {
                let r = match done {
                    Offered::Sent => Ok(()),
                    Offered::Failed(e) => Err(e),
                    Offered::Kept(_) => Err(SendFail::Chan(ChanError::WouldBlock)),
                };
                finish(owed, r);
                return Ok(());
            }
        };
        if rendezvous {
            let Some(token) = self.admit(cmd, req, None) else { return Ok(()) };
            let me = Arc::clone(self);
            self.spawn_waiting(cmd, req, move || {
                let r = chan.send_decoded(value, wait, Some(&token));
                me.chan_result(cmd, req, r);
                me.done(req);
            });
            return Ok(());
        }
        // In order, through this connection's queue for the channel, within the window. Only
        // this reader adds to `queued`, so what it reads cannot grow before it adds.
        let (queue, queued) = match self.feeder(id, chan) {
            Ok(Some(feeder)) => feeder,
            Ok(None) => {
                answer(owed, -libc::ENOENT, &format!("no channel {id}")); // destroyed meanwhile
                return Ok(());
            }
            Err(e) => {
                answer(owed, -libc::EBUSY, &format!("cannot queue the send: {e}"));
                return Ok(());
            }
        };
        let limits = &self.server.limits;
        let (values, bytes) = (queued.values.load(Acquire), queued.bytes.load(Acquire));
        let over_bytes = len > 0 && bytes > 0 && bytes.saturating_add(len) > limits.credit_bytes;
        if values >= limits.credits as usize || over_bytes {
            let msg = format!(
                "send window of {} values and {} bytes exceeded",
                limits.credits, limits.credit_bytes
            );
            answer(owed, -libc::ENOBUFS, &msg);
            return Ok(());
        }
        // An answered send with sends ahead of it (which may wait forever) can be ended
        // before its turn: by a CANCEL, or, if it has a deadline, by a watcher of its own
        // (counted in flight, as a waiting receive is).
        let ahead = credited.is_none() && queued.values.load(Acquire) > 0;
        let deadline = match wait {
            Wait::Until(d) if ahead => Some(d),
            _ => None,
        };
        let waiting = ahead.then(|| QueuedSend {
            claim: Arc::new(AtomicBool::new(false)),
            len,
            queue: Arc::clone(&queued),
        });
        let claim = waiting.as_ref().map(|w| Arc::clone(&w.claim));
        // A credited send cannot be cancelled (its client has returned): it waits under the
        // connection's own token, untracked.
        let token = match (credited, deadline) {
            (Some(_), _) => Some(self.token.clone()),
            (None, Some(_)) => self.admit(cmd, req, waiting.clone()),
            (None, None) => self.track(cmd, req, waiting.clone()),
        };
        let Some(token) = token else { return Ok(()) };
        queued.values.fetch_add(1, AcqRel);
        queued.bytes.fetch_add(len, AcqRel);
        let watcher = token.clone();
        let feed = Feed { req, value, len, wait, token, credited, claim };
        if let Err(e) = queue.try_send(feed) {
            queued.values.fetch_sub(1, AcqRel);
            queued.bytes.fetch_sub(len, AcqRel);
            if credited.is_none() {
                self.untrack(e.value().req);
            }
            if deadline.is_some() {
                self.in_flight.fetch_sub(1, AcqRel);
            }
            answer(owed, ChanError::Closed.code(), "connection closing");
        } else if let (Some(deadline), Some(waiting)) = (deadline, waiting) {
            self.watch_deadline(req, deadline, watcher, waiting);
        }
        Ok(())
    }

    /// Ends queued send `req` at `deadline` if nobody has answered it by then; returns at
    /// once when `token` fires (the feeder took it, a CANCEL, the connection's end).
    fn watch_deadline(
        self: &Arc<Self>,
        req: u64,
        deadline: Instant,
        token: CancelToken,
        waiting: QueuedSend,
    ) {
        let (me, claimed) = (Arc::clone(self), waiting.clone());
        let watch = move || {
            let cancelled = token.cancelled_deadline(deadline);
            if waiting.take() {
                let e = if cancelled { ChanError::Canceled } else { ChanError::Timeout };
                me.chan_result(Cmd::CHAN_SEND, req, Err(SendFail::Chan(e)));
                me.untrack(req);
            }
            me.in_flight.fetch_sub(1, AcqRel);
        };
        if let Err(e) = kcoro::spawn_with(self.server.spawn_options(), watch) {
            // Nothing would end it at its deadline: ended now instead, unless its turn came.
            if claimed.take() {
                self.refuse(Cmd::CHAN_SEND, req, -libc::EBUSY, &format!("cannot wait: {e}"));
                self.untrack(req);
            }
            self.in_flight.fetch_sub(1, AcqRel);
        }
    }

    /// Returns the window owed for credited sends, one CREDIT event per channel, and
    /// writes them now when nobody is writing (the caller is about to wait).
    fn credit(&self, owed: &mut Owed) {
        if owed.0.is_empty() {
            return;
        }
        // One push for them all, written at once: the writer is not rung for frames this
        // coroutine writes itself.
        let _ = self.outbox.push_and_flush(&self.stream, |out, max| {
            for o in owed.0.drain(..) {
                let mut f = FrameBuf::begin(out, Cmd::CREDIT, FLAG_EVENT);
                f.u64(Attr::CHAN_ID, o.id)
                    .u32(Attr::CREDITS, o.values)
                    .u64(Attr::CREDIT_BYTES, o.bytes)
                    .u64(Attr::SHARED_BYTES, o.shared)
                    .i32(Attr::RESULT, o.result);
                f.finish(max)?;
            }
            Ok(())
        });
    }

    /// No send of this connection waits in channel `id`'s queue: a new one may go first.
    fn nothing_queued(&self, id: u64) -> bool {
        lock(&self.opened)
            .get(&id)
            .and_then(|h| h.feeder.as_ref())
            .is_none_or(|(_, q)| q.values.load(Acquire) == 0)
    }

    /// For a shared element of a client that takes `REGION_RELEASE` (minor ≥ 2): what
    /// frees its span when the value is done with (the value may keep a view of it).
    fn release_for(self: &Arc<Self>, el: &Located<'_>) -> Option<Release> {
        let Located::Shared(d) = el else { return None };
        if self.peer_minor.load(Relaxed) < 2 {
            return None;
        }
        let (me, z) = (Arc::downgrade(self), zdesc::encode(d));
        Some(Release::new(move || {
            if let Some(me) = me.upgrade() {
                let req = me.next_req.fetch_add(1, Relaxed);
                let _ = me.outbox.push(|out, max| {
                    let mut f = FrameBuf::begin(out, Cmd::REGION_RELEASE, 0);
                    f.u64(Attr::REQ_ID, req).bytes(Attr::ZDESC, &z);
                    f.finish(max)
                });
            }
        }))
    }

    /// The queue (and its coroutine) feeding this connection's sends into channel `id`;
    /// `None` if the connection no longer holds it, an error if no coroutine could start.
    fn feeder(self: &Arc<Self>, id: u64, chan: Arc<dyn Served>) -> Result<Option<Feeder>, kcoro::Error> {
        let mut opened = lock(&self.opened);
        let Some(held) = opened.get_mut(&id) else { return Ok(None) };
        if let Some((tx, n)) = &held.feeder {
            return Ok(Some((tx.clone(), Arc::clone(n))));
        }
        let (tx, rx) = chan::unlimited::<Feed>();
        let queued = Arc::new(Queued::default());
        let (me, q) = (Arc::clone(self), Arc::clone(&queued));
        kcoro::spawn_with(self.server.spawn_options(), move || {
            let mut owed = Owed::default();
            for item in &rx {
                // Else a CANCEL or its deadline ended it while it waited its turn.
                if !item.claim.as_ref().is_some_and(|c| c.swap(true, AcqRel)) {
                    me.feed(&*chan, item, &q, &mut owed);
                }
                if rx.is_empty() {
                    me.credit(&mut owed);
                }
            }
        })?;
        held.feeder = Some((tx.clone(), Arc::clone(&queued)));
        Ok(Some((tx, queued)))
    }

    /// The feeder's turn for `item`: into the channel, then answered (or its credit owed).
    fn feed(&self, chan: &dyn Served, item: Feed, q: &Queued, owed: &mut Owed) {
        let r = chan.send_decoded(item.value, item.wait, Some(&item.token));
        // Before the answer: the client frees its window when the answer comes.
        q.values.fetch_sub(1, AcqRel);
        q.bytes.fetch_sub(item.len, AcqRel);
        match item.credited {
            Some(c) => owed.add(c, fail_code(&r)),
            None => {
                self.chan_result(Cmd::CHAN_SEND, item.req, r);
                self.untrack(item.req);
            }
        }
        if item.claim.is_some() {
            item.token.cancel(); // lets its watcher go
        }
    }

    fn recv(self: &Arc<Self>, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
        let cmd = f.cmd;
        let Some((_, chan)) = self.channel(cmd, req, f)? else { return Ok(()) };
        let wait = if cmd == Cmd::CHAN_TRY_RECV {
            Wait::Try
        } else {
            Wait::from_ms(f.i64(Attr::TIMEOUT_MS)?.unwrap_or(-1))
        };
        if wait == Wait::Try {
            let r = chan.recv(Wait::Try, None);
            self.element_reply(cmd, req, &chan, r);
            return Ok(());
        }
        // A value waiting: answered here, on the reader, like a send that need not wait.
        // Over the rings, looked for again after letting this worker's other coroutines run
        // once: the one that sends it (woken by a send this reader just delivered, say) is
        // often among them, and a reply written here saves spawning a coroutine to wait for
        // it (a pinned 64-byte round trip 2.7-2.9 us -> 2.2 us). Over a socket the second
        // look measured no gain (4 KiB round trips 4% slower), so it looks once.
        let ready = chan.take_ready().or_else(|| {
            self.stream.on_rings().then(|| {
                kcoro::yield_now();
                chan.take_ready()
            })?
        });
        if let Some(v) = ready {
            self.element_reply(cmd, req, &chan, Ok(v));
            return Ok(());
        }
        let Some(token) = self.admit(cmd, req, None) else { return Ok(()) };
        let me = Arc::clone(self);
        self.spawn_waiting(cmd, req, move || {
            let r = chan.recv(wait, Some(&token));
            me.element_reply(cmd, req, &chan, r);
            me.done(req);
        });
        Ok(())
    }

    /// Runs admitted request `req`'s `wait` on a coroutine of its own. If none can start
    /// (no stack left, the runtime shutting down), the request is refused with `-EBUSY`
    /// and let go, so that neither the client nor `in_flight` waits for it.
    fn spawn_waiting(&self, cmd: Cmd, req: u64, wait: impl FnOnce() + Send + 'static) {
        if let Err(e) = kcoro::spawn_with(self.server.spawn_options(), wait) {
            self.refuse(cmd, req, -libc::EBUSY, &format!("cannot wait: {e}"));
            self.done(req);
        }
    }

    /// Replies with a received element: inline, or through our shared region (sharing its
    /// fd first, once) for a large one on a Unix socket whose client takes shared memory.
    /// The value goes back into `chan` ([`Served::put_back`]), never lost, when its reply
    /// cannot be queued (it does not fit the client's `MAX_FRAME`, or the connection is
    /// closing) or the client never gets it whole (the connection broke first: see
    /// [`Hold`]).
    fn element_reply(
        self: &Arc<Self>,
        cmd: Cmd,
        req: u64,
        chan: &Arc<dyn Served>,
        r: Result<Box<dyn Encode>, ChanError>,
    ) {
        let v = match r {
            Ok(v) => v,
            Err(e) => return self.refuse(cmd, req, e.code(), &e.to_string()),
        };
        let len = v.encoded_len();
        let shm = self.shm_tx.as_ref().filter(|_| !self.shm_declined.load(Relaxed));
        let share = |export_id, fd| {
            let sreq = self.next_req.fetch_add(1, Relaxed);
            let _ = self.outbox.push_with_fds(vec![fd], None, |out, max| {
                let mut f = FrameBuf::begin(out, Cmd::REGION_SHARE, 0);
                f.u64(Attr::REQ_ID, sreq).u64(Attr::REGION_ID, export_id);
                f.finish(max)
            });
        };
        let max = self.peer_max_frame.load(Relaxed);
        if let Some(mut lease) = shm.and_then(|s| s.lease(len, share)) {
            v.encode_into(&mut lease[..len]);
            let (z, offset) = (zdesc::encode(&lease.desc()), lease.desc().offset);
            lock(&self.lent).insert(offset, lease);
            let (me, back) = (Arc::downgrade(self), Arc::clone(chan));
            let hold = Hold::new(v, move |v| {
                if let Some(me) = me.upgrade() {
                    lock(&me.lent).remove(&offset);
                }
                back.put_back(v);
            });
            // The client waits for this reply: written now rather than by the writer.
            let _ = self.outbox.push_holding(hold, Some(&self.stream), |_, out, _| {
                let mut f = FrameBuf::begin(out, cmd, FLAG_REPLY);
                f.u64(Attr::REQ_ID, req).i32(Attr::RESULT, 0).bytes(Attr::ZDESC, &z);
                f.finish(max)
            });
            return;
        }
        let back = Arc::clone(chan);
        let hold = Hold::new(v, move |v| back.put_back(v));
        // The client waits for this reply: written now rather than by the writer.
        let queued = self.outbox.push_holding(hold, Some(&self.stream), |v, out, _| {
            let mut f = FrameBuf::begin(out, cmd, FLAG_REPLY);
            f.u64(Attr::REQ_ID, req).i32(Attr::RESULT, 0).header(Attr::ELEMENT, len);
            let out = f.out();
            let at = out.len();
            out.resize(at + len, 0);
            v.encode_into(&mut out[at..]);
            f.finish(max)
        });
        // A failed push gave the value back already.
        if let Err(IpcError::Proto(ProtoError::FrameTooLong { len: frame, max })) = queued {
            let msg = format!(
                "an element of {len} bytes (a reply of {frame}) exceeds this connection's MAX_FRAME of {max}; it stays in the channel"
            );
            self.refuse(cmd, req, -libc::EMSGSIZE, &msg);
            self.outbox.flush_now(&self.stream);
        }
    }

    fn close(&self, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
        let Some((id, chan)) = self.channel(Cmd::CHAN_CLOSE, req, f)? else { return Ok(()) };
        let first = chan.close();
        self.reply(Cmd::CHAN_CLOSE, req, 0, |r| {
            r.u32(Attr::CLOSED, u32::from(first));
        });
        if first {
            for c in self.server.others(self.id) {
                c.notify_closed(id);
            }
        }
        Ok(())
    }

    fn destroy(&self, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
        let Some((id, chan)) = self.channel(Cmd::CHAN_DESTROY, req, f)? else { return Ok(()) };
        let first = chan.close();
        if self.server.registry().remove(id).is_some_and(|e| e.made) {
            self.server.made_channels.fetch_sub(1, AcqRel);
        }
        lock(&self.made).remove(&id);
        lock(&self.opened).remove(&id);
        self.reply(Cmd::CHAN_DESTROY, req, 0, |_| {});
        if first {
            for c in self.server.others(self.id) {
                c.notify_closed(id);
            }
        }
        Ok(())
    }

    /// NOTIFY: channel `id`, which this connection opened, was closed by another.
    fn notify_closed(&self, id: u64) {
        if !lock(&self.opened).contains_key(&id) {
            return;
        }
        let _ = self.outbox.push(|out, max| {
            let mut f = FrameBuf::begin(out, Cmd::NOTIFY, FLAG_EVENT);
            f.u64(Attr::CHAN_ID, id).u32(Attr::EVENT, EVENT_CLOSED);
            f.finish(max)
        });
    }
}

/// The process's named channels (kcoro's registry) that `served` does not already list;
/// their `chan_id` is the channel's process-wide id.
fn unserved_named(served: &[ChannelStats]) -> Vec<ChannelStats> {
    kcoro::chan::registry::list()
        .into_iter()
        .filter(|s| !served.iter().any(|c| c.local_id == s.id))
        .map(|s| ChannelStats::from_snapshot(s.id, &s))
        .collect()
}

fn stats_of(id: u64, name: Option<String>, chan: &dyn Served) -> ChannelStats {
    let mut s = ChannelStats::from_snapshot(id, &chan.snapshot());
    if s.name.is_none() {
        s.name = name;
    }
    s
}
