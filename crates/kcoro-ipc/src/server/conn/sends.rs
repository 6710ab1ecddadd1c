//! Sends: done on the reader when they need not wait, else queued in order per channel
//! behind a feeder coroutine, within the client's window; credited ones answered in bulk
//! by CREDIT events.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::time::Instant;

use kcoro::chan::{self, ChanError, Kind, Sender};
use kcoro::sync::CancelToken;

use super::{ConnState, lock};
use crate::proto::{Attr, Cmd, FLAG_EVENT, FrameBuf, FrameRef, ProtoError, fixed_value, zdesc};
use crate::server::budget::{Budget, Charge};
use crate::server::served::{Offered, SendFail, Served, Wait};
use crate::shm::{Located, Release, locate_in};

/// A credited send waiting its turn in a channel's queue: its element decoded (by the
/// reader, once), and the inline bytes it counts against the window.
pub(super) struct Feed {
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
    /// Counted in `in_flight` (it has a deadline watcher): whoever answers it lets go of
    /// the slot, before answering.
    counted: bool,
}

/// An answered send waiting its turn in a channel's queue.
#[derive(Clone)]
pub(super) struct QueuedSend {
    claim: Arc<AtomicBool>,
    len: u64,
    queue: Arc<Queued>,
    /// As [`Feed::counted`].
    pub(super) counted: bool,
}

impl QueuedSend {
    /// Takes it out of its queue's counts if nobody answered it yet; true if now ours.
    pub(super) fn take(&self) -> bool {
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
pub(super) struct Credited {
    chan: u64,
    bytes: u64,
    shared: bool,
}

/// Send window owed to the client for credited sends that are done, per channel, until a
/// CREDIT event returns it.
#[derive(Default)]
pub(super) struct Owed {
    chans: Vec<OwedChan>,
    /// Over every channel: the values and element bytes owed.
    values: u64,
    bytes: u64,
}

pub(super) struct OwedChan {
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
    pub(super) fn add(&mut self, c: Credited, result: i32) {
        let shared = if c.shared { c.bytes } else { 0 };
        self.values += 1;
        self.bytes += c.bytes;
        match self.chans.iter_mut().find(|o| o.id == c.chan) {
            Some(o) => {
                o.values += 1;
                o.bytes += c.bytes;
                o.shared += shared;
                if o.result == 0 {
                    o.result = result;
                }
            }
            None => self.chans.push(OwedChan { id: c.chan, values: 1, bytes: c.bytes, shared, result }),
        }
    }

    /// A quarter of a channel's window (`limits`) is owed: returned now, before the client
    /// runs out, it keeps sending while the rest is served instead of waiting for it.
    pub(super) fn due(&self, limits: &crate::proto::Limits) -> bool {
        let quarter_bytes = limits.credit_bytes / 4;
        self.values >= u64::from(limits.credits / 4).max(1)
            || (quarter_bytes > 0 && self.bytes >= quarter_bytes)
    }
}

/// The code a send's outcome is reported with.
pub(super) fn fail_code(r: &Result<(), SendFail>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(SendFail::Chan(e)) => e.code(),
        Err(SendFail::Decode(_)) => -libc::EINVAL,
        Err(SendFail::TooLarge { .. }) => -libc::EMSGSIZE,
        Err(SendFail::Spent) => -libc::ENOMEM,
    }
}

/// A waiting rendezvous send's bytes, counted in its connection's `waiting_bytes` until
/// it is done (dropped with the coroutine that waits, or with it if none could start).
pub(super) struct WaitingHold {
    count: Arc<AtomicU64>,
    len: u64,
    /// Its share of the server's budget of windows (`max_server_window_bytes`).
    _charge: Charge,
}

impl Drop for WaitingHold {
    fn drop(&mut self) {
        self.count.fetch_sub(self.len, AcqRel);
    }
}

/// What waits in a channel's send queue: values, and their inline bytes.
#[derive(Default)]
pub(super) struct Queued {
    values: AtomicUsize,
    bytes: AtomicU64,
}

/// A channel's send queue for this connection (its feeder coroutine takes from it), and
/// what waits in it. The queue closes, and its feeder ends, when the last holder lets go.
pub(super) struct FeedQueue {
    tx: Sender<Feed>,
    queued: Arc<Queued>,
}

pub(super) type Feeder = Arc<FeedQueue>;

/// A channel a send names, as this connection holds it: one look under the lock.
pub(super) struct SendTarget {
    chan: Arc<dyn Served>,
    /// Its queue, if one was made.
    feeder: Option<Feeder>,
}

/// The attributes a send reads, the first value of each, found in one pass over its frame
/// (a scan per attribute was most of a send's parsing).
#[derive(Default)]
struct SendAttrs<'a> {
    element: Option<&'a [u8]>,
    zdesc: Option<&'a [u8]>,
    credited: Option<&'a [u8]>,
    chan_id: Option<&'a [u8]>,
    timeout: Option<&'a [u8]>,
}

impl<'a> SendAttrs<'a> {
    fn of(f: &FrameRef<'a>) -> SendAttrs<'a> {
        let mut at = SendAttrs::default();
        for (a, v) in f.attrs() {
            let slot = match a {
                Attr::ELEMENT => &mut at.element,
                Attr::ZDESC => &mut at.zdesc,
                Attr::CREDITED => &mut at.credited,
                Attr::CHAN_ID => &mut at.chan_id,
                Attr::TIMEOUT_MS => &mut at.timeout,
                _ => continue,
            };
            slot.get_or_insert(v);
        }
        at
    }
}

impl ConnState {
    pub(super) fn send(
        self: &Arc<Self>,
        f: &FrameRef<'_>,
        req: u64,
        owed: &mut Owed,
    ) -> Result<(), ProtoError> {
        let cmd = f.cmd;
        let at = SendAttrs::of(f);
        let el = locate_in(at.element, at.zdesc)?;
        let credited = fixed_value(Attr::CREDITED, at.credited)?.map(u32::from_be_bytes);
        let chan_id = fixed_value(Attr::CHAN_ID, at.chan_id)?.map(u64::from_be_bytes);
        // A credited send (minor 7) is never answered: its share of the window goes back,
        // with its outcome, in a CREDIT event, whatever happens to it here.
        let credited = match (cmd, credited, chan_id) {
            (Cmd::CHAN_SEND, Some(1), Some(chan)) => {
                Some(Credited { chan, bytes: el.len() as u64, shared: matches!(el, Located::Shared(_)) })
            }
            _ => None,
        };
        // Takes the send's `credited` as it stands where it is called (it is refined below).
        let answer = |owed: &mut Owed, credited: Option<Credited>, code: i32, msg: &str| match credited {
            Some(c) => owed.add(c, code),
            None => self.refuse(cmd, req, code, msg),
        };
        if matches!(el, Located::Shared(_)) && !self.stream.is_unix() {
            answer(owed, credited, -libc::EPROTO, "ZDESC needs a Unix socket: over TCP elements are inline");
            return Ok(());
        }
        // First, so that every way out of here, refusals included, frees the client's span.
        let release = self.release_for(&el);
        let id = chan_id.ok_or(ProtoError::Missing(Attr::CHAN_ID.0))?;
        let Some(SendTarget { chan, feeder }) = self.send_target(id) else {
            answer(owed, credited, -libc::ENOENT, &format!("no channel {id}"));
            return Ok(());
        };
        let wait = if cmd == Cmd::CHAN_TRY_SEND {
            Wait::Try
        } else {
            Wait::from_ms(fixed_value(Attr::TIMEOUT_MS, at.timeout)?.map_or(-1, i64::from_be_bytes))
        };
        // A shared element stays in the peer's memory only as a view; a copy (the channel's
        // type copies, or the peer takes no REGION_RELEASE) is in ours, and counts in the
        // window as an inline element does. A client of minor 9 counts it so too
        // (COPIES_SHARED), and is told so in CREDIT; an older one counts it apart.
        let copied = matches!(el, Located::Shared(_)) && (release.is_none() || !chan.keeps_shared_views());
        let len = match el {
            Located::Inline(b) => b.len() as u64,
            Located::Shared(_) if copied => el.len() as u64,
            Located::Shared(_) => 0,
        };
        let credited = match credited {
            Some(c) if copied && self.peer_minor.load(Relaxed) >= 9 => Some(Credited { shared: false, ..c }),
            c => c,
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
        let nothing_queued = feeder.as_ref().is_none_or(|q| q.queued.values.load(Acquire) == 0);
        let send_now = wait == Wait::Try || rendezvous || nothing_queued;
        let offered = match chan.offer(&el, &self.shm_rx, release, send_now) {
            // The channel is full. Its receiver may be runnable behind this reader on the
            // same worker: let it take what is there once before this send goes the
            // queue's way (a box, a hand-off to the feeder coroutine, its wake).
            Offered::Kept(v) if send_now && wait != Wait::Try && !rendezvous => {
                kcoro::yield_now();
                chan.offer_kept(v)
            }
            offered => offered,
        };
        let value = match offered {
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
            let Some(hold) = self.hold_waiting(cmd, req, len) else { return Ok(()) };
            let Some(token) = self.admit(cmd, req, None) else { return Ok(()) };
            let me = Arc::clone(self);
            self.spawn_waiting(cmd, req, move || {
                let r = chan.send_decoded(value, wait, Some(&token));
                // Let go before the answer: a client that sends again once answered finds
                // the room this one held.
                drop(hold);
                me.done(req);
                me.chan_result(cmd, req, r);
            });
            return Ok(());
        }
        // In order, through this connection's queue for the channel, within the window. Only
        // this reader adds to `queued`, so what it reads cannot grow before it adds.
        let made = match feeder {
            Some(feeder) => Ok(Some(feeder)),
            None => self.feeder(id, chan),
        };
        let feeder = match made {
            Ok(Some(feeder)) => feeder,
            Ok(None) => {
                answer(owed, credited, -libc::ENOENT, &format!("no channel {id}")); // destroyed meanwhile
                return Ok(());
            }
            Err(e) => {
                answer(owed, credited, -libc::EBUSY, &format!("cannot queue the send: {e}"));
                return Ok(());
            }
        };
        let (queue, queued) = (&feeder.tx, &feeder.queued);
        let limits = &self.server.limits;
        let (values, bytes) = (queued.values.load(Acquire), queued.bytes.load(Acquire));
        let over_bytes = len > 0 && bytes > 0 && bytes.saturating_add(len) > limits.credit_bytes;
        if values >= limits.credits as usize || over_bytes {
            let msg = format!(
                "send window of {} values and {} bytes exceeded",
                limits.credits, limits.credit_bytes
            );
            answer(owed, credited, -libc::ENOBUFS, &msg);
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
            queue: Arc::clone(queued),
            counted: deadline.is_some(),
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
        let counted = deadline.is_some();
        let feed = Feed { req, value, len, wait, token, credited, claim, counted };
        if let Err(e) = queue.try_send(feed) {
            queued.values.fetch_sub(1, AcqRel);
            queued.bytes.fetch_sub(len, AcqRel);
            if credited.is_none() {
                self.untrack(e.value().req);
            }
            if deadline.is_some() {
                self.in_flight.fetch_sub(1, AcqRel);
            }
            answer(owed, credited, ChanError::Closed.code(), "connection closing");
        } else if let (Some(deadline), Some(waiting)) = (deadline, waiting) {
            self.watch_deadline(req, deadline, watcher, waiting);
        }
        Ok(())
    }

    /// Counts `len` bytes of a rendezvous send that is about to wait against
    /// `Limits::max_waiting_bytes` (one send always fits when none holds any) and charges
    /// them to the server's budget of windows; `None`, refused with `-ENOBUFS`, past
    /// either.
    fn hold_waiting(&self, cmd: Cmd, req: u64, len: u64) -> Option<WaitingHold> {
        let max = self.server.limits.max_waiting_bytes;
        let fits = |held: u64| held == 0 || held.saturating_add(len) <= max;
        let counted =
            self.waiting_bytes.fetch_update(AcqRel, Acquire, |h| fits(h).then(|| h.saturating_add(len)));
        if let Err(held) = counted {
            let msg = format!(
                "this connection's waiting rendezvous sends hold {held} bytes; {len} more is past the limit of {max} (max_waiting_bytes)"
            );
            self.refuse(cmd, req, -libc::ENOBUFS, &msg);
            return None;
        }
        let Some(charge) = self.server.window_budget.try_charge(Budget::value_cost(len)) else {
            self.waiting_bytes.fetch_sub(len, AcqRel);
            self.refuse(cmd, req, -libc::ENOBUFS, &self.windows_spent());
            return None;
        };
        let hold = WaitingHold { count: Arc::clone(&self.waiting_bytes), len, _charge: charge };
        Some(hold)
    }

    /// Ends queued send `req` at `deadline` if nobody has answered it by then; returns at
    /// once when `token` fires (the feeder took it, a CANCEL, the connection's end).
    pub(super) fn watch_deadline(
        self: &Arc<Self>,
        req: u64,
        deadline: Instant,
        token: CancelToken,
        waiting: QueuedSend,
    ) {
        let (me, claimed) = (Arc::clone(self), waiting.clone());
        let watch = move || {
            let cancelled = token.cancelled_deadline(deadline);
            // Else its answerer (the feeder, a CANCEL) let go of its slot.
            if waiting.take() {
                me.done(req); // before the answer (see `done`)
                let e = if cancelled { ChanError::Canceled } else { ChanError::Timeout };
                me.chan_result(Cmd::CHAN_SEND, req, Err(SendFail::Chan(e)));
            }
        };
        if let Err(e) = kcoro::spawn_with(self.server.spawn_options(), watch) {
            // Nothing would end it at its deadline: ended now instead, unless its turn came.
            // Unless its turn came: then the feeder answers it and lets go of its slot.
            if claimed.take() {
                self.done(req);
                self.refuse(Cmd::CHAN_SEND, req, -libc::EBUSY, &format!("cannot wait: {e}"));
            }
        }
    }

    /// Returns the window owed for credited sends, one CREDIT event per channel, and
    /// writes them now when nobody is writing (the caller is about to wait).
    pub(super) fn credit(&self, owed: &mut Owed) {
        if owed.chans.is_empty() {
            return;
        }
        (owed.values, owed.bytes) = (0, 0);
        // One push for them all, written at once: the writer is not rung for frames this
        // coroutine writes itself.
        let _ = self.outbox.push_and_flush(&self.stream, |out, max| {
            for o in owed.chans.drain(..) {
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

    /// For a shared element of a client that takes `REGION_RELEASE` (minor ≥ 2): what
    /// frees its span when the value is done with (the value may keep a view of it).
    pub(super) fn release_for(self: &Arc<Self>, el: &Located<'_>) -> Option<Release> {
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

    /// Channel `id` as this connection holds it, with its send queue if it has one: one
    /// look under the lock for what a send needs.
    fn send_target(&self, id: u64) -> Option<SendTarget> {
        let opened = lock(&self.opened);
        opened.get(&id).map(|h| SendTarget { chan: Arc::clone(&h.chan), feeder: h.feeder.clone() })
    }

    /// The queue (and its coroutine) feeding this connection's sends into channel `id`;
    /// `None` if the connection no longer holds it, an error if no coroutine could start.
    pub(super) fn feeder(
        self: &Arc<Self>,
        id: u64,
        chan: Arc<dyn Served>,
    ) -> Result<Option<Feeder>, kcoro::Error> {
        let mut opened = lock(&self.opened);
        let Some(held) = opened.get_mut(&id) else { return Ok(None) };
        if let Some(feeder) = &held.feeder {
            return Ok(Some(Arc::clone(feeder)));
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
                if rx.is_empty() || owed.due(&me.server.limits) {
                    me.credit(&mut owed);
                }
            }
        })?;
        let feeder = Arc::new(FeedQueue { tx, queued });
        held.feeder = Some(Arc::clone(&feeder));
        Ok(Some(feeder))
    }

    /// The feeder's turn for `item`: into the channel, then answered (or its credit owed).
    pub(super) fn feed(&self, chan: &dyn Served, item: Feed, q: &Queued, owed: &mut Owed) {
        let r = chan.send_decoded(item.value, item.wait, Some(&item.token));
        // Before the answer: the client frees its window when the answer comes.
        q.values.fetch_sub(1, AcqRel);
        q.bytes.fetch_sub(item.len, AcqRel);
        match item.credited {
            Some(c) => owed.add(c, fail_code(&r)),
            None => {
                if item.counted {
                    self.done(item.req);
                } else {
                    self.untrack(item.req);
                }
                self.chan_result(Cmd::CHAN_SEND, item.req, r);
            }
        }
        if item.claim.is_some() {
            item.token.cancel(); // lets its watcher go
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::SendAttrs;
    use crate::proto::{Attr, Cmd, FrameBuf, Limits, split_frame};

    proptest! {
        /// One pass finds what one `get` per attribute finds: the first value of each,
        /// `None` for the absent, with repeats and other attributes around them.
        #[test]
        fn one_pass_agrees_with_a_get_each(
            attrs in proptest::collection::vec((0u16..70, proptest::collection::vec(any::<u8>(), 0..12)), 0..16),
        ) {
            let mut out = Vec::new();
            let mut f = FrameBuf::begin(&mut out, Cmd::CHAN_SEND, 0);
            for (t, v) in &attrs {
                f.bytes(Attr(*t), v);
            }
            f.finish(u32::MAX).unwrap();
            let (frame, _) = split_frame(&out, &Limits::default()).unwrap().unwrap();
            let at = SendAttrs::of(&frame);
            prop_assert_eq!(at.element, frame.get(Attr::ELEMENT));
            prop_assert_eq!(at.zdesc, frame.get(Attr::ZDESC));
            prop_assert_eq!(at.credited, frame.get(Attr::CREDITED));
            prop_assert_eq!(at.chan_id, frame.get(Attr::CHAN_ID));
            prop_assert_eq!(at.timeout, frame.get(Attr::TIMEOUT_MS));
        }
    }
}
