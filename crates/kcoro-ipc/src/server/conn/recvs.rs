//! Receives: answered on the reader when a value is ready, else on a coroutine of their
//! own; elements inline or, when large, through this connection's shared region.

use std::sync::Arc;
use std::sync::atomic::Ordering::*;

use kcoro::chan::ChanError;

use super::{ConnState, lock};
use crate::IpcError;
use crate::proto::{Attr, Cmd, FLAG_REPLY, FrameBuf, FrameRef, ProtoError, zdesc};
use crate::server::served::{Encode, Served, Wait};
use crate::wire::Hold;

impl ConnState {
    pub(super) fn recv(self: &Arc<Self>, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
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
            me.done(req);
            me.element_reply(cmd, req, &chan, r);
        });
        Ok(())
    }

    /// Replies with a received element: inline, or through our shared region (sharing its
    /// fd first, once) for a large one on a Unix socket whose client takes shared memory.
    /// The value goes back into `chan` ([`Served::put_back`]), never lost, when its reply
    /// cannot be queued (it does not fit the client's `MAX_FRAME`, or the connection is
    /// closing) or the client never gets it whole (the connection broke first: see
    /// [`Hold`]).
    pub(super) fn element_reply(
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
}
