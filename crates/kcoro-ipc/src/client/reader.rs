//! The connection's reader coroutine: replies routed to their requests by `REQ_ID`,
//! CREDIT and NOTIFY events, and the server's own requests (REGION_SHARE, REGION_RELEASE).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, Weak};

use kcoro::chan::ChanError;
use kcoro::sync::oneshot;

use super::{ConnInner, Pending, Reply};
use crate::proto::{Attr, Cmd, FLAG_EVENT, FLAG_REPLY, FrameRef};
use crate::ring::Waited;
use crate::wire::{FrameReader, Step, Stream};

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
///
/// Over the rings it holds `frames` only while it takes what is there, and waits for more
/// without it: a request waiting for its reply may take the reader's place meanwhile
/// ([`ConnInner::read_own_reply`]), and whichever of them reads a frame routes it.
pub(super) fn run(conn: Weak<ConnInner>, stream: &Stream, frames: &Mutex<FrameReader>) {
    let dispatch =
        |f: FrameRef<'_>, fds: &mut VecDeque<OwnedFd>| conn.upgrade().map(|c| c.dispatch(f, fds)).is_some();
    let mut spin = None;
    let (mut woken, mut gone) = (false, false);
    let why = loop {
        // No strong reference while waiting for bytes: dropping the last handle closes
        // the socket (and the rings' bells), which ends this read.
        let link = stream.link().filter(|_| stream.on_rings());
        let step = {
            let mut frames = frames.lock().unwrap_or_else(|e| e.into_inner());
            match link {
                Some(_) => frames.next_ready(stream, dispatch),
                None => frames.next(stream, dispatch).map(|s| s.map_or(Step::End, Step::Frame)),
            }
        };
        match step {
            Ok(Step::Frame(true)) => {
                (spin, woken) = (None, false);
                continue;
            }
            Ok(Step::Frame(false)) => return,
            Ok(Step::End) => break "the server closed the connection".to_string(),
            Ok(Step::NotYet) if gone => break "the server closed the connection".to_string(),
            Ok(Step::NotYet) => {}
            Err(e) => break format!("{e}"),
        }
        let Some(link) = link else { continue };
        if woken {
            // Rung, and nothing there (a waiting request took it, or a peer rings for
            // nothing): others on this worker run first.
            kcoro::yield_now();
        }
        // One spin until bytes come, as a ring read has: a reader woken for nothing
        // sleeps again at once.
        let spin = spin.get_or_insert_with(|| link.read_spin());
        match link.wait_readable(spin) {
            Ok(Waited::Look) => {}
            Ok(Waited::Rung) => woken = true,
            Ok(Waited::Gone) => gone = true,
            Err(e) => break format!("{e}"),
        }
    };
    if let Some(c) = conn.upgrade() {
        c.fail(why);
    }
}

impl ConnInner {
    /// Over the rings, while the reply to a request just sent has not come: reads frames
    /// itself, in the reader's place when the reader is not reading, for as long as a ring
    /// reader spins. A reply read here reaches its request with no hand-off between
    /// coroutines. `None`: not over the rings, or no reply within the spin (then the
    /// reader delivers it, as to any request).
    pub(super) fn read_own_reply(&self, rx: &mut oneshot::Receiver<Reply>) -> Option<Reply> {
        let link = self.stream.link().filter(|_| self.stream.on_rings())?;
        let mut spin = link.read_spin();
        loop {
            match rx.try_recv() {
                Ok(reply) => return Some(reply),
                Err(ChanError::WouldBlock) => {}
                Err(_) => return None,
            }
            if let Ok(mut frames) = self.frames.try_lock() {
                // Every whole frame there is, in order, to whoever it is for. An error is
                // left for the reader, which finds it again and ends the connection.
                while let Ok(Step::Frame(())) =
                    frames.next_ready(&self.stream, |f, fds| self.dispatch(f, fds))
                {}
            }
            if let Ok(reply) = rx.try_recv() {
                return Some(reply);
            }
            if !spin.again() {
                return None;
            }
        }
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
