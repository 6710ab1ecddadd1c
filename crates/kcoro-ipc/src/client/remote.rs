//! Remote channel ends: the local channel API over a connection.
//!
//! # Sends and credits
//! On a buffered, conflated or unlimited channel the server grants each connection a window
//! of send credits: room reserved for this connection's values, counted in values and in
//! inline bytes, in a queue in front of the channel (see `window`). A send takes its share
//! (waiting for it, with the send's deadline and cancel token, when the window is used up),
//! queues its frame and returns: the value is in the
//! channel's distributed buffer, as a local send into a buffered channel puts it in the
//! buffer. The server feeds each connection's queue into the channel in order and returns
//! the credit in CREDIT events, many sends' at once (with the reply of each send, from a
//! server older than minor 7). So a fast sender runs at most one window ahead, the server's
//! memory stays bounded, and many small sends go out batched. A remote buffered channel
//! therefore holds up to `capacity + window` values per connection; if the channel is
//! closed while values wait in the window, they are dropped (undelivered), as values
//! buffered in a cancelled channel are.
//!
//! A rendezvous send waits for its reply: it completes when a receiver took the value, as a
//! local one does. Either way a send that fails hands the value back.
//!
//! # Receives and select
//! A receive is one request: the server waits on the channel with the request's deadline
//! and cancel token. [`RemoteReceiver::local`] gives a local [`Receiver`] that takes part in
//! `select!`: a pump coroutine receives remotely and forwards into it, at most `window`
//! values ahead, so values it has pulled are out of the server's channel (on a rendezvous
//! channel the remote sender completes when the pump takes the value, not when your select
//! does). Dropping the local receiver cancels the pump's receive in flight.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Acquire;
use std::time::{Duration, Instant};

use kcoro::chan::{self, ChanError, Kind, Receiver, SendError, Sender, Snapshot};
use kcoro::sync::{CancelToken, oneshot};
use kcoro::zcopy::ZBuf;

use super::window::Share;
use super::{ChanState, Connection, Pending, Reply, code_to_chan};
use crate::proto::{Attr, Cmd, FrameBuf};
use crate::shm::{Located, Release, decode_element, locate, put_element};
use crate::{Element, IpcError};

/// A send's share of the window: its element's encoded bytes, and whether they go in
/// `lease` (shared memory, counted against this side's own bound) or inline (against the
/// server's). Placed first, so that what is counted is where the element goes.
fn share_of<T: Element>(v: &T, lease: &Option<ZBuf>) -> Share {
    Share { bytes: v.encoded_len() as u64, shared: lease.is_some() }
}

/// The `TIMEOUT_MS` of an operation: 0 try, -1 forever, else the milliseconds left
/// (rounded up, at least 1; 0 once the deadline has passed).
fn timeout_ms(deadline: Option<Instant>, try_only: bool) -> i64 {
    match (try_only, deadline) {
        (true, _) => 0,
        (false, None) => -1,
        (false, Some(t)) => {
            let left = t.saturating_duration_since(Instant::now());
            if left.is_zero() {
                0
            } else {
                i64::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX).max(1)
            }
        }
    }
}

/// The error of a reply's `RESULT`, for an operation that had `deadline` (a server that
/// found the deadline passed answers "would block"; locally that is a timeout).
fn chan_error(code: i32, deadline: Option<Instant>, try_only: bool) -> ChanError {
    match code_to_chan(code) {
        Some(ChanError::WouldBlock) if !try_only && deadline.is_some() => ChanError::Timeout,
        Some(e) => e,
        None => ChanError::Closed,
    }
}

/// A lease of `len` bytes in the connection's shared region, if an element that size goes
/// through shared memory there (the region's fd is queued to the server first, once).
pub(super) fn lease_for(conn: &Connection, len: usize) -> Option<ZBuf> {
    let inner = &conn.inner;
    inner.shm_tx.as_ref().and_then(|s| s.lease(len, |id, fd| drop(inner.share_region(id, fd))))
}

/// Where a send's element goes in its frame.
pub(super) enum Placed<'a, T> {
    /// Encoded in the frame.
    Inline(&'a T),
    /// Already in this connection's region: its descriptor.
    Shared(kcoro::zcopy::ZDesc),
}

impl<'a, T: Element> Placed<'a, T> {
    /// `v`'s place: encoded into `lease` here if there is one, else inline.
    fn of(v: &'a T, lease: &mut Option<ZBuf>) -> Self {
        match lease {
            Some(buf) => {
                let len = v.encoded_len();
                v.encode_into(&mut buf[..len]);
                Placed::Shared(buf.desc())
            }
            None => Placed::Inline(v),
        }
    }
}

/// The sending end of a channel served by another process.
pub struct RemoteSender<T> {
    pub(super) conn: Connection,
    chan: Arc<ChanState>,
    _t: PhantomData<fn(T)>,
}

impl<T> Clone for RemoteSender<T> {
    fn clone(&self) -> Self {
        RemoteSender { conn: self.conn.clone(), chan: Arc::clone(&self.chan), _t: PhantomData }
    }
}

impl<T> std::fmt::Debug for RemoteSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSender").field("name", &self.chan.name).field("id", &self.chan.id).finish()
    }
}

impl<T: Element> RemoteSender<T> {
    pub(crate) fn new(conn: Connection, chan: Arc<ChanState>) -> Self {
        RemoteSender { conn, chan, _t: PhantomData }
    }

    /// Sends, waiting as long as it takes.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.send_op(v, None, false, None)
    }

    /// Sends only if that needs no waiting (a credit is free, or for rendezvous, a remote
    /// receiver is waiting).
    pub fn try_send(&self, v: T) -> Result<(), SendError<T>> {
        self.send_op(v, None, true, None)
    }

    /// Sends, waiting at most `timeout`.
    pub fn send_timeout(&self, v: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.send_op(v, Instant::now().checked_add(timeout), false, None)
    }

    /// Sends, waiting until `deadline` at most.
    pub fn send_deadline(&self, v: T, deadline: Instant) -> Result<(), SendError<T>> {
        self.send_op(v, Some(deadline), false, None)
    }

    /// Sends, giving up with `Canceled` when `token` fires.
    pub fn send_cancellable(&self, v: T, token: &CancelToken) -> Result<(), SendError<T>> {
        self.send_op(v, None, false, Some(token))
    }

    /// Sends with an optional deadline and cancel token.
    pub fn send_with(
        &self,
        v: T,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
    ) -> Result<(), SendError<T>> {
        self.send_op(v, deadline, false, token)
    }

    /// Sends and waits for the server's reply, which comes once the value is in the
    /// channel (or the send failed there): for a program that must know what was
    /// delivered before it exits (`kcoro ipc send`). A plain [`send`](Self::send) on a
    /// buffered, conflated or unlimited channel returns as soon as the value is in this
    /// connection's send window, before the server has applied it. `deadline` bounds the
    /// whole wait (for a credit and for room in the channel).
    pub fn send_acked(&self, v: T, deadline: Option<Instant>) -> Result<(), SendError<T>> {
        if self.chan.closed.load(Acquire) {
            return Err(SendError::new(ChanError::Closed, v));
        }
        let Some(window) = &self.chan.credits else {
            return self.send_round_trip(v, deadline, false, None);
        };
        let mut lease = lease_for(&self.conn, v.encoded_len());
        let share = share_of(&v, &lease);
        if let Err(e) = window.take(share, deadline, false, None) {
            return Err(SendError::new(e, v));
        }
        let placed = Placed::of(&v, &mut lease);
        let r = self.round_trip_placed(placed, lease, deadline, false, None);
        window.give(share);
        r.map_err(|e| SendError::new(e, v))
    }

    fn send_op(
        &self,
        v: T,
        deadline: Option<Instant>,
        try_only: bool,
        token: Option<&CancelToken>,
    ) -> Result<(), SendError<T>> {
        if self.chan.closed.load(Acquire) {
            return Err(SendError::new(ChanError::Closed, v));
        }
        match &self.chan.credits {
            Some(window) => {
                let lease = lease_for(&self.conn, v.encoded_len());
                let share = share_of(&v, &lease);
                match window.take(share, deadline, try_only, token) {
                    Ok(()) => self.queue_credited(v, lease, share),
                    Err(e) => Err(SendError::new(e, v)),
                }
            }
            None => self.send_round_trip(v, deadline, try_only, token),
        }
    }

    /// With its window taken (a value credit and its share of bytes): queue the frame. A server of
    /// minor 7 or later answers nothing and returns the window in CREDIT events (no request
    /// is registered here); an older one replies, and the reply gives the window back
    /// (and releases the lease of a shared-memory element).
    /// This end's send window (`None`: every send is answered by the server).
    pub(super) fn window(&self) -> Option<&super::window::Window> {
        self.chan.credits.as_ref()
    }

    fn queue_credited(&self, v: T, mut lease: Option<ZBuf>, share: Share) -> Result<(), SendError<T>> {
        let placed = Placed::of(&v, &mut lease);
        self.queue_placed(placed, lease, share).map_err(|e| SendError::new(e, v))
    }

    /// [`queue_credited`](Self::queue_credited) of an element already placed (`lease`
    /// holds it if it is shared). On failure the window is given back.
    pub(super) fn queue_placed(
        &self,
        placed: Placed<'_, T>,
        lease: Option<ZBuf>,
        share: Share,
    ) -> Result<(), ChanError> {
        let id = self.chan.id;
        let lease = self.conn.inner.hold(lease);
        let inner = &self.conn.inner;
        let r = if inner.takes_credited() {
            drop(lease); // held until REGION_RELEASE (servers of minor ≥ 2)
            inner.send_unanswered(Cmd::CHAN_SEND, |f| {
                f.u64(Attr::CHAN_ID, id).i64(Attr::TIMEOUT_MS, -1).u32(Attr::CREDITED, 1);
                write_element(f, placed);
            })
        } else {
            let pending = Pending::Credit(Arc::clone(&self.chan), lease, share);
            inner
                .send_request(Cmd::CHAN_SEND, pending, |f| {
                    f.u64(Attr::CHAN_ID, id).i64(Attr::TIMEOUT_MS, -1);
                    write_element(f, placed);
                })
                .map(drop)
        };
        r.map_err(|_| {
            if let Some(w) = &self.chan.credits {
                w.give(share);
            }
            ChanError::Closed
        })
    }

    fn send_round_trip(
        &self,
        v: T,
        deadline: Option<Instant>,
        try_only: bool,
        token: Option<&CancelToken>,
    ) -> Result<(), SendError<T>> {
        let mut lease = lease_for(&self.conn, v.encoded_len());
        let placed = Placed::of(&v, &mut lease);
        self.round_trip_placed(placed, lease, deadline, try_only, token).map_err(|e| SendError::new(e, v))
    }

    /// A send answered by the server (rendezvous, try, or a channel without a window) of
    /// an element already placed (`lease` holds it if it is shared).
    pub(super) fn round_trip_placed(
        &self,
        placed: Placed<'_, T>,
        lease: Option<ZBuf>,
        deadline: Option<Instant>,
        try_only: bool,
        token: Option<&CancelToken>,
    ) -> Result<(), ChanError> {
        let cmd = if try_only { Cmd::CHAN_TRY_SEND } else { Cmd::CHAN_SEND };
        let ms = timeout_ms(deadline, try_only);
        let id = self.chan.id;
        let lease = self.conn.inner.hold(lease);
        let reply = self.conn.request(cmd, token, |f| {
            f.u64(Attr::CHAN_ID, id).i64(Attr::TIMEOUT_MS, ms);
            write_element(f, placed);
        });
        drop(lease); // the reply says the server is done with it (or it holds it)
        match reply.and_then(|r| r.frame().result().map_err(IpcError::from)) {
            Ok(0) => Ok(()),
            Ok(code) => Err(chan_error(code, deadline, try_only)),
            Err(_) => {
                self.chan.mark_closed();
                Err(ChanError::Closed)
            }
        }
    }

    /// Async send, for any executor. Dropping the future while a send that waits for its
    /// reply (rendezvous) is in flight cancels it: the value is then delivered only if a
    /// receiver had already taken it.
    pub async fn send_async(&self, v: T) -> Result<(), SendError<T>> {
        if self.chan.closed.load(Acquire) {
            return Err(SendError::new(ChanError::Closed, v));
        }
        match &self.chan.credits {
            Some(window) => {
                let lease = lease_for(&self.conn, v.encoded_len());
                let share = share_of(&v, &lease);
                if let Err(e) = window.take_async(share).await {
                    return Err(SendError::new(e, v));
                }
                self.queue_credited(v, lease, share)
            }
            None => {
                let (tx, rx) = oneshot::channel();
                let mut lease = lease_for(&self.conn, v.encoded_len());
                let placed = Placed::of(&v, &mut lease);
                let id = self.chan.id;
                let lease = self.conn.inner.hold(lease);
                let sent = self.conn.inner.send_request(Cmd::CHAN_SEND, Pending::Wait(tx), |f| {
                    f.u64(Attr::CHAN_ID, id).i64(Attr::TIMEOUT_MS, -1);
                    write_element(f, placed);
                });
                let Ok(req) = sent else {
                    return Err(SendError::new(ChanError::Closed, v));
                };
                let mut waiting = CancelOnDrop { conn: &self.conn, req, armed: true };
                let reply: Result<Reply, ChanError> = rx.await;
                waiting.armed = false;
                drop(lease);
                match reply.ok().and_then(|r| r.frame().result().ok()) {
                    Some(0) => Ok(()),
                    Some(code) => Err(SendError::new(chan_error(code, None, false), v)),
                    None => Err(SendError::new(ChanError::Closed, v)),
                }
            }
        }
    }

    /// Closes the channel on the server (for every user); returns whether this call did.
    pub fn close(&self) -> bool {
        close(&self.conn, &self.chan)
    }

    /// Whether the channel is known to be closed.
    pub fn is_closed(&self) -> bool {
        self.chan.closed.load(Acquire)
    }

    /// The channel's counters, from the server.
    pub fn snapshot(&self) -> Result<Snapshot, IpcError> {
        self.conn.stats(self.chan.id).map(|s| s.to_snapshot())
    }

    /// The channel's kind.
    pub fn kind(&self) -> Kind {
        self.chan.kind
    }

    /// The channel's capacity on the server (`None`: unbounded).
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity.map(|c| c as usize)
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.chan.name
    }

    /// The send credits this connection holds for the channel (`None` for rendezvous,
    /// whose sends each wait for their reply).
    pub fn credits(&self) -> Option<usize> {
        self.chan.credits.as_ref().map(|w| w.free_values())
    }

    /// A local sender whose values a pump coroutine forwards here, at most `window` ahead:
    /// for `select!` over remote and local channels. If the remote channel closes, the
    /// local one closes too and values still queued locally are dropped.
    pub fn local(&self, window: usize) -> Sender<T> {
        let (tx, rx) = chan::buffered::<T>(window.max(1));
        let me = self.clone();
        drop(self.conn.inner.handle.spawn(move || {
            for v in &rx {
                if me.send(v).is_err() {
                    rx.cancel();
                    break;
                }
            }
        }));
        tx
    }
}

/// Writes `v` inline, or the descriptor of the lease already holding its encoding.
fn write_element<T: Element>(f: &mut FrameBuf<'_>, placed: Placed<'_, T>) {
    match placed {
        Placed::Shared(d) => {
            let z =
                crate::proto::zdesc::encode(&kcoro::zcopy::ZDesc::in_region(d.region_id, d.offset, d.len));
            f.bytes(Attr::ZDESC, &z);
        }
        Placed::Inline(v) => put_element(f, v, None),
    }
}

fn close(conn: &Connection, chan: &ChanState) -> bool {
    let id = chan.id;
    let r = conn.request(Cmd::CHAN_CLOSE, None, |f| {
        f.u64(Attr::CHAN_ID, id);
    });
    chan.mark_closed();
    r.ok()
        .and_then(|r| r.check(Cmd::CHAN_CLOSE).ok().map(|f| f.u32(Attr::CLOSED).ok().flatten() == Some(1)))
        .unwrap_or(false)
}

/// The receiving end of a channel served by another process.
pub struct RemoteReceiver<T> {
    conn: Connection,
    chan: Arc<ChanState>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for RemoteReceiver<T> {
    fn clone(&self) -> Self {
        RemoteReceiver { conn: self.conn.clone(), chan: Arc::clone(&self.chan), _t: PhantomData }
    }
}

impl<T> std::fmt::Debug for RemoteReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteReceiver").field("name", &self.chan.name).field("id", &self.chan.id).finish()
    }
}

impl<T: Element> RemoteReceiver<T> {
    pub(crate) fn new(conn: Connection, chan: Arc<ChanState>) -> Self {
        RemoteReceiver { conn, chan, _t: PhantomData }
    }

    /// Receives, waiting as long as it takes; `Closed` once the channel is closed and
    /// drained (or the connection is gone).
    pub fn recv(&self) -> Result<T, ChanError> {
        self.recv_op(None, false, None)
    }

    /// Receives only what is there now.
    pub fn try_recv(&self) -> Result<T, ChanError> {
        self.recv_op(None, true, None)
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, ChanError> {
        self.recv_op(Instant::now().checked_add(timeout), false, None)
    }

    /// Receives, waiting until `deadline` at most.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, ChanError> {
        self.recv_op(Some(deadline), false, None)
    }

    /// Receives, giving up with `Canceled` when `token` fires.
    pub fn recv_cancellable(&self, token: &CancelToken) -> Result<T, ChanError> {
        self.recv_op(None, false, Some(token))
    }

    /// Receives with an optional deadline and cancel token.
    pub fn recv_with(&self, deadline: Option<Instant>, token: Option<&CancelToken>) -> Result<T, ChanError> {
        self.recv_op(deadline, false, token)
    }

    fn recv_op(
        &self,
        deadline: Option<Instant>,
        try_only: bool,
        token: Option<&CancelToken>,
    ) -> Result<T, ChanError> {
        let cmd = if try_only { Cmd::CHAN_TRY_RECV } else { Cmd::CHAN_RECV };
        let ms = timeout_ms(deadline, try_only);
        let id = self.chan.id;
        let reply = self
            .conn
            .request(cmd, token, |f| {
                f.u64(Attr::CHAN_ID, id).i64(Attr::TIMEOUT_MS, ms);
            })
            .map_err(|_| ChanError::Closed)?;
        self.take_element(&reply, deadline, try_only)
    }

    fn take_element(&self, reply: &Reply, deadline: Option<Instant>, try_only: bool) -> Result<T, ChanError> {
        let f = reply.frame();
        match f.result() {
            Ok(0) => {}
            Ok(code) => return Err(chan_error(code, deadline, try_only)),
            Err(_) => return Err(ChanError::Closed),
        }
        let at = locate(&f).map_err(|_| ChanError::Closed)?;
        // A shared element may be kept in place by the value; the server's span is freed
        // (REGION_RELEASE) when the value is dropped.
        let release = match at {
            Located::Shared(d) => {
                let conn = std::sync::Arc::downgrade(&self.conn.inner);
                Some(Release::new(move || {
                    if let Some(c) = conn.upgrade() {
                        c.release(&d);
                    }
                }))
            }
            Located::Inline(_) => None,
        };
        decode_element::<T>(&at, Some(&reply.payload), release, &self.conn.inner.shm_rx).map_err(|e| {
            eprintln!("kcoro-ipc: channel {:?}: {e}; the element is dropped", self.chan.name);
            ChanError::Closed
        })
    }

    /// Async receive, for any executor. Dropping the future before it completes (a
    /// `select!` or a timeout that gave up on it) cancels the request; a value the server
    /// had already taken for it is sent back into the channel (at its tail, as the server
    /// gives back a value it could not deliver), not dropped.
    pub async fn recv_async(&self) -> Result<T, ChanError> {
        let (tx, rx) = oneshot::channel();
        let id = self.chan.id;
        let req = self
            .conn
            .inner
            .send_request(Cmd::CHAN_RECV, Pending::Wait(tx), |f| {
                f.u64(Attr::CHAN_ID, id).i64(Attr::TIMEOUT_MS, -1);
            })
            .map_err(|_| ChanError::Closed)?;
        let mut waiting = AbandonOnDrop { recv: self, req, rx: Some(rx) };
        let reply = match waiting.rx.as_mut() {
            Some(rx) => rx.await.map_err(|_| ChanError::Closed),
            None => Err(ChanError::Closed),
        };
        waiting.rx = None; // answered: nothing to give back
        self.take_element(&reply?, None, false)
    }

    /// Sends the value a reply brings (if it brings one) back into the channel, from a
    /// coroutine of its own: the caller may be the connection's reader, which must not wait.
    fn give_back(&self, reply: &Reply) {
        let Ok(v) = self.take_element(reply, None, false) else { return };
        let back =
            || RemoteSender::<T> { conn: self.conn.clone(), chan: Arc::clone(&self.chan), _t: PhantomData };
        // The value waits here until a coroutine takes it: a spawn that fails (no stack
        // left, the runtime shutting down) drops only its closure, not the value.
        let value = Arc::new(std::sync::Mutex::new(Some(v)));
        let take = |slot: &std::sync::Mutex<Option<T>>| slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (sender, slot) = (back(), Arc::clone(&value));
        let spawned = self.conn.inner.handle.spawn_detached(kcoro::SpawnOptions::default(), move || {
            if let Some(v) = take(&slot) {
                let _ = sender.send(v);
            }
        });
        let Some(v) = spawned.err().and_then(|_| take(&value)) else { return };
        // A thread of its own instead: its send parks the thread, as any thread's does.
        let sender = back();
        let thread = std::thread::Builder::new().name("kcoro-ipc-give-back".into()).spawn(move || {
            let _ = sender.send(v);
        });
        if let Err(e) = thread {
            eprintln!(
                "kcoro-ipc: channel {:?}: a value taken for a dropped receive is lost: {e}",
                self.chan.name
            );
        }
    }

    /// Closes the channel on the server (for every user); returns whether this call did.
    pub fn close(&self) -> bool {
        close(&self.conn, &self.chan)
    }

    /// The channel's counters, from the server.
    pub fn snapshot(&self) -> Result<Snapshot, IpcError> {
        self.conn.stats(self.chan.id).map(|s| s.to_snapshot())
    }

    /// The channel's kind.
    pub fn kind(&self) -> Kind {
        self.chan.kind
    }

    /// The channel's capacity on the server (`None`: unbounded).
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity.map(|c| c as usize)
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.chan.name
    }

    /// Iterates until the channel is closed and drained.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }

    /// A local receiver fed by a pump coroutine at most `window` values ahead: for
    /// `select!` (see the module docs for what prefetching means). The local channel
    /// closes when the remote one is closed and drained; dropping every local receiver
    /// cancels the pump.
    pub fn local(&self, window: usize) -> Receiver<T> {
        let me = self.clone();
        let pump = move || {
            kcoro::produce(chan::Builder::buffered(window.max(1)), move |tx| {
                let token = kcoro::sync::current_token();
                while let Ok(v) = me.recv_with(None, token.as_ref()) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            })
        };
        match crate::on(&self.conn.inner.handle, pump) {
            Ok(rx) => rx,
            Err(_) => {
                let (_tx, rx) = chan::buffered(1);
                rx
            }
        }
    }
}

/// Cancels a request whose future was dropped before its reply (whose value, if any, is
/// then the server's to keep or deliver).
struct CancelOnDrop<'a> {
    conn: &'a Connection,
    req: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let req = self.req;
            let _ = self.conn.inner.send_request(Cmd::CANCEL, Pending::Ignore, |f| {
                f.u64(Attr::TARGET_REQ_ID, req);
            });
            self.conn.inner.outbox.flush_now(&self.conn.inner.stream);
        }
    }
}

/// An async receive whose future was dropped before it took its reply: the request is
/// cancelled, and the value of a reply that comes anyway, or came already, is given back.
struct AbandonOnDrop<'a, T: Element> {
    recv: &'a RemoteReceiver<T>,
    req: u64,
    rx: Option<oneshot::Receiver<Reply>>,
}

impl<T: Element> Drop for AbandonOnDrop<'_, T> {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            let me = self.recv.clone();
            self.recv.conn.abandon(self.req, rx, Box::new(move |reply| me.give_back(&reply)));
        }
    }
}
