//! The connection's reader coroutine: replies routed to their requests by `REQ_ID`,
//! CREDIT and NOTIFY events, and the server's own requests (REGION_SHARE, REGION_RELEASE).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Weak;

use super::{ConnInner, Pending, Reply};
use crate::proto::{Attr, Cmd, FLAG_EVENT, FLAG_REPLY, FrameRef, Limits};
use crate::wire::{FrameReader, Stream};

impl ConnInner {
    /// CREDIT: the window credited sends took comes back; a failure among them closes the
    /// channel here, as the reply of an uncredited one does.
    fn credit(&self, f: &FrameRef<'_>) {
        let (Ok(Some(id)), Ok(Some(values))) = (f.u64(Attr::CHAN_ID), f.u32(Attr::CREDITS)) else { return };
        let bytes = f.u64(Attr::CREDIT_BYTES).ok().flatten().unwrap_or(0);
        let shared = f.u64(Attr::SHARED_BYTES).ok().flatten().unwrap_or(0);
        let chan = self.chans.lock().unwrap_or_else(|e| e.into_inner()).get(&id).and_then(Weak::upgrade);
        let Some(chan) = chan else { return };
        if f.result().unwrap_or(0) != 0 {
            chan.mark_closed();
        }
        if let Some(w) = &chan.credits {
            w.give_many(values, bytes, shared);
        }
    }
}

/// The reader coroutine: routes replies and events until the stream ends or breaks.
pub(super) fn run(conn: Weak<ConnInner>, stream: &Stream, limits: Limits) {
    // A LIST reply carries a `STATS` per channel: far more than a request may.
    let max_attrs = limits.max_attrs.max(crate::proto::MAX_REPLY_ATTRS);
    let mut frames = FrameReader::new(Limits { max_attrs, ..limits });
    let why = loop {
        // No strong reference while waiting for bytes: dropping the last handle closes
        // the socket, which ends this read.
        let step = frames.next(stream, |f, fds| conn.upgrade().map(|c| c.dispatch(f, fds)).is_some());
        match step {
            Ok(Some(true)) => {}
            Ok(Some(false)) => return,
            Ok(None) => break "the server closed the connection".to_string(),
            Err(e) => break format!("{e}"),
        }
    };
    if let Some(c) = conn.upgrade() {
        c.fail(why);
    }
}

impl ConnInner {
    fn dispatch(&self, f: FrameRef<'_>, fds: &mut VecDeque<OwnedFd>) {
        if f.flags & FLAG_EVENT != 0 && f.cmd == Cmd::CREDIT {
            return self.credit(&f);
        }
        if f.flags & FLAG_EVENT != 0 {
            if f.cmd == Cmd::NOTIFY
                && f.u32(Attr::EVENT).ok().flatten() == Some(crate::proto::EVENT_CLOSED)
                && let Ok(Some(id)) = f.u64(Attr::CHAN_ID)
            {
                let chan =
                    self.chans.lock().unwrap_or_else(|e| e.into_inner()).get(&id).and_then(Weak::upgrade);
                if let Some(c) = chan {
                    c.mark_closed();
                }
            }
            return;
        }
        if f.flags & FLAG_REPLY == 0 {
            // A request from the server: REGION_SHARE (its element region), or
            // REGION_RELEASE (it is done with an element we sent through ours).
            if f.cmd == Cmd::REGION_SHARE
                && let (Ok(Some(id)), Some(fd)) = (f.u64(Attr::REGION_ID), fds.pop_front())
            {
                let _ = self.shm_rx.import(fd, id);
            }
            if f.cmd == Cmd::REGION_RELEASE
                && let Some(z) = f.get(Attr::ZDESC)
                && let Ok(d) = crate::proto::zdesc::decode(z)
            {
                let lease = self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&d.offset);
                drop(lease);
            }
            return;
        }
        let Ok(req) = f.req_id() else { return };
        if f.cmd == Cmd::HELLO
            && f.u64(Attr::RING_BYTES).ok().flatten().is_some()
            && self.stream.link().is_some()
        {
            // The server took our rings: everything after this reply comes through them,
            // and the reader's next read must look there. We write nothing until the
            // handshake returns, so writes move now too.
            self.stream.start_ring_reads();
            self.stream.start_ring_writes();
        }
        let entry = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&req);
        match entry {
            Some(Pending::Wait(tx)) => {
                let _ = tx.send(Reply::of(&f));
            }
            Some(Pending::Credit(chan, lease, share)) => {
                drop(lease);
                if f.result().unwrap_or(-1) != 0 {
                    chan.mark_closed();
                } else if let Some(w) = &chan.credits {
                    w.give(share);
                }
            }
            Some(Pending::Abandoned(give_back)) => {
                give_back(Reply::of(&f));
            }
            Some(Pending::Ignore) | None => {}
        }
    }
}
