//! Channels a connection holds: OPEN and MAKE (within the limits), the lookups every
//! channel request goes through, CLOSE, DESTROY and the NOTIFY other holders get.

use std::sync::Arc;
use std::sync::atomic::Ordering::*;

use kcoro::chan::Kind;

use super::{ConnState, Found, Held, lock};
use crate::proto::{Attr, Cmd, EVENT_CLOSED, FLAG_EVENT, FrameBuf, FrameRef, ProtoError};
use crate::server::budget::{Budget, Charge};
use crate::server::served::Served;

impl ConnState {
    /// Whether OPEN or MAKE gave channel `id` to this connection.
    pub(super) fn holds(&self, id: u64) -> bool {
        lock(&self.opened).contains_key(&id)
    }

    /// The send window this connection gets on a channel of `kind`: values and bytes.
    fn window(&self, kind: Kind) -> (u32, u64) {
        match kind {
            Kind::Rendezvous => (0, 0),
            _ => (self.server.limits.credits, self.server.limits.credit_bytes),
        }
    }

    /// The budget a window on `chan` takes: sends queued in it are server memory. A
    /// channel a client made charges its own budget (`max_made_bytes`), the server's own
    /// channels the budget of windows (`max_server_window_bytes`). `None`: refused, spent.
    fn reserve_window(&self, chan: &dyn Served) -> Option<Charge> {
        let budget = chan.budget().unwrap_or(&self.server.window_budget);
        let (values, bytes) = self.window(chan.kind());
        budget.try_charge(Budget::window_cost(values, bytes))
    }

    /// Why an OPEN of one of the server's own channels, or a rendezvous send, is refused
    /// for want of budget.
    pub(super) fn windows_spent(&self) -> String {
        format!(
            "the server's memory for send windows is spent ({} bytes, max_server_window_bytes)",
            self.server.limits.max_server_window_bytes
        )
    }

    /// Refuses a MAKE or OPEN for want of budget.
    pub(in crate::server) fn refuse_spent(&self, cmd: Cmd, req: u64) {
        let msg = format!(
            "the server's memory for clients' channels is spent ({} bytes, max_made_bytes)",
            self.server.limits.max_made_bytes
        );
        self.refuse(cmd, req, -libc::ENOMEM, &msg);
    }

    /// Replies with what a client needs to use channel `id`, and counts it as opened.
    /// `window`: the budget a MAKE already reserved for this connection's window.
    pub(super) fn describe(
        &self,
        cmd: Cmd,
        req: u64,
        id: u64,
        chan: Arc<dyn Served>,
        window: Option<Charge>,
    ) {
        {
            let mut o = lock(&self.opened);
            if !o.contains_key(&id) {
                if o.len() >= self.server.limits.max_channels {
                    drop(o);
                    let msg = format!(
                        "this connection has {} channels open, the limit",
                        self.server.limits.max_channels
                    );
                    return self.refuse(cmd, req, -libc::EMFILE, &msg);
                }
                let window = match window.or_else(|| self.reserve_window(&*chan)) {
                    Some(w) => w,
                    None if chan.budget().is_some() => {
                        drop(o);
                        return self.refuse_spent(cmd, req);
                    }
                    None => {
                        drop(o);
                        return self.refuse(cmd, req, -libc::ENOMEM, &self.windows_spent());
                    }
                };
                o.insert(id, Held { chan: Arc::clone(&chan), feeder: None, _window: window });
            }
        }
        let (credits, credit_bytes) = self.window(chan.kind());
        let (kind, cap, closed) =
            (chan.kind().code(), chan.capacity().map_or(u64::MAX, |c| c as u64), chan.is_closed());
        let copies = credits > 0 && !chan.keeps_shared_views();
        self.reply(cmd, req, 0, |r| {
            r.u64(Attr::CHAN_ID, id)
                .i32(Attr::KIND, kind)
                .u64(Attr::CAPACITY, cap)
                .u32(Attr::CREDITS, credits)
                .u32(Attr::CLOSED, u32::from(closed));
            if credit_bytes > 0 {
                r.u64(Attr::CREDIT_BYTES, credit_bytes);
            }
            if copies {
                r.u32(Attr::COPIES_SHARED, 1);
            }
        });
    }

    /// The request's `NAME`; a name that is too long or not UTF-8 is refused here (`Err`:
    /// answered, nothing more to do).
    pub(super) fn name<'a>(
        &self,
        cmd: Cmd,
        req: u64,
        f: &FrameRef<'a>,
    ) -> Result<Option<&'a str>, ProtoError> {
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

    pub(super) fn open(&self, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
        let Ok(name) = self.name(Cmd::CHAN_OPEN, req, f) else { return Ok(()) };
        let name = name.ok_or(ProtoError::Missing(Attr::NAME.0))?;
        let found = self.server.registry().by_name(name);
        match found {
            Some((id, chan)) => self.describe(Cmd::CHAN_OPEN, req, id, chan, None),
            None => self.refuse(Cmd::CHAN_OPEN, req, -libc::ENOENT, &format!("no channel named {name:?}")),
        }
        Ok(())
    }

    pub(super) fn make(&self, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
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
        // The channel's room and the maker's window, both or neither.
        let (values, bytes) = self.window(kind);
        let budget = &self.server.made_budget;
        let made = budget
            .try_charge(Budget::window_cost(values, bytes))
            .and_then(|window| Some((crate::server::make_channel(&self.server, kind, cap, name)?, window)));
        let Some((chan, window)) = made else {
            self.server.made_channels.fetch_sub(1, AcqRel);
            self.refuse_spent(Cmd::CHAN_MAKE, req);
            return Ok(());
        };
        let added = self.server.registry().add(name.map(str::to_string), Arc::clone(&chan), true);
        match added {
            Some(id) => {
                if name.is_none() {
                    lock(&self.made).insert(id);
                }
                self.describe(Cmd::CHAN_MAKE, req, id, chan, Some(window))
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
    pub(super) fn channel(&self, cmd: Cmd, req: u64, f: &FrameRef<'_>) -> Result<Found, ProtoError> {
        let found = self.held_channel(f)?;
        if found.is_none() {
            let id = f.u64(Attr::CHAN_ID)?.unwrap_or(0);
            self.refuse(cmd, req, -libc::ENOENT, &format!("no channel {id}"));
        }
        Ok(found)
    }

    /// [`channel`](Self::channel), without answering when there is none.
    pub(super) fn held_channel(&self, f: &FrameRef<'_>) -> Result<Found, ProtoError> {
        let id = f.u64(Attr::CHAN_ID)?.ok_or(ProtoError::Missing(Attr::CHAN_ID.0))?;
        Ok(lock(&self.opened).get(&id).map(|h| (id, Arc::clone(&h.chan))))
    }

    pub(super) fn close(&self, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
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

    pub(super) fn destroy(&self, f: &FrameRef<'_>, req: u64) -> Result<(), ProtoError> {
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
    pub(super) fn notify_closed(&self, id: u64) {
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
