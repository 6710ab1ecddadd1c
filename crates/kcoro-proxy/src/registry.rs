//! Every open connection of a proxy: counted (so a shutdown can wait for them to end),
//! reachable (so a shutdown whose grace has passed can close them), and swept for idle
//! ones: a connection whose activity count has not moved for its idle timeout is closed
//! (one coroutine per proxy calls [`Registry::sweep`] every quarter timeout, instead of a
//! deadline on every read and write).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use kcoro::sync::WaitGroup;

use crate::forward::Conn;

#[derive(Default)]
pub(crate) struct Registry {
    open: WaitGroup,
    conns: Mutex<Conns>,
    next_id: AtomicU64,
}

/// A forwarding connection and what the sweeper last saw of it.
struct Entry {
    conn: Weak<Conn>,
    seen: u64,
    quiet_since: Instant,
    /// Bytes its sockets held unsent when it last looked quiet.
    unsent: u64,
}

#[derive(Default)]
struct Conns {
    by_id: HashMap<u64, Entry>,
    /// Set by `close_all`: a connection that starts forwarding later is closed at once
    /// (it was still connecting to its backend when the others were closed).
    closed: bool,
}

/// One accepted connection, counted until this drops.
pub(crate) struct Ticket(Arc<Registry>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.open.done();
    }
}

impl Registry {
    /// Counts a connection from acceptance until the ticket drops.
    pub(crate) fn enter(self: &Arc<Self>) -> Ticket {
        self.open.add(1);
        Ticket(Arc::clone(self))
    }

    /// Connections accepted and not yet ended.
    pub(crate) fn open(&self) -> u64 {
        self.open.count() as u64
    }

    /// Makes a forwarding connection reachable for [`close_all`](Self::close_all).
    pub(crate) fn track(&self, conn: &Arc<Conn>) -> u64 {
        let id = self.next_id.fetch_add(1, Relaxed);
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if conns.closed {
            conn.close();
        }
        conns
            .by_id
            .insert(id, Entry { conn: Arc::downgrade(conn), seen: 0, quiet_since: kcoro::now(), unsent: 0 });
        id
    }

    pub(crate) fn untrack(&self, id: u64) {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner).by_id.remove(&id);
    }

    /// Waits until every connection has ended or `deadline` passes; whether they all did.
    pub(crate) fn drain(&self, deadline: Instant) -> bool {
        self.open.wait_deadline(deadline).is_ok()
    }

    /// Closes every connection that has not moved a byte for its idle timeout as of `now`;
    /// how many it closed.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let mut idle = Vec::new();
        {
            let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
            for e in conns.by_id.values_mut() {
                let Some(conn) = e.conn.upgrade() else { continue };
                let activity = conn.activity.load(Relaxed);
                if activity != e.seen {
                    (e.seen, e.quiet_since) = (activity, now);
                } else if now.saturating_duration_since(e.quiet_since) >= conn.idle {
                    // Quiet for the proxy; but a slow receiver still taking bytes from
                    // its socket's buffer (the proxy's write waits for room) is moving.
                    let unsent = conn.unsent();
                    if unsent != e.unsent {
                        (e.unsent, e.quiet_since) = (unsent, now);
                        continue;
                    }
                    e.quiet_since = now; // closed once; its entry goes when it ends
                    idle.push(conn);
                }
            }
        }
        for conn in &idle {
            conn.idle_out();
        }
        idle.len()
    }

    /// Shuts down both sockets of every forwarding connection; how many there were.
    pub(crate) fn close_all(&self) -> usize {
        let conns: Vec<_> = {
            let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
            conns.closed = true;
            conns.by_id.values().filter_map(|e| e.conn.upgrade()).collect()
        };
        for c in &conns {
            c.close();
        }
        conns.len()
    }
}
