//! HELLO and AUTH: the protocol version, the peer's limits, the challenge, and the rings
//! a Unix-socket client may move the connection onto.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::*;

use super::{ConnState, Flow, lock};
use crate::auth;
use crate::proto::{Attr, Cmd, FLAG_REPLY, FrameBuf, FrameRef, ProtoError, VERSION_MAJOR, VERSION_MINOR};

impl ConnState {
    pub(super) fn hello(
        &self,
        f: &FrameRef<'_>,
        req: u64,
        fds: &mut VecDeque<OwnedFd>,
    ) -> Result<Flow, ProtoError> {
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
    pub(super) fn take_rings(&self, cap: u64, fds: &mut VecDeque<OwnedFd>) -> Result<u64, String> {
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

    pub(super) fn auth(&self, f: &FrameRef<'_>, req: u64) -> Result<Flow, ProtoError> {
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
}
