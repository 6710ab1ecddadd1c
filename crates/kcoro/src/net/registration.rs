//! A socket's link to the runtime's reactor: retry an operation until it stops returning
//! `WouldBlock`, parking the caller (coroutine or thread) between readiness events.
//!
//! # Protocol
//! 1. Try the operation. Anything but `WouldBlock` is the answer.
//! 2. `IoSource::poll_ready`: if a readiness edge arrived since, consume it and retry;
//!    otherwise we are registered as a waiter for the next edge.
//! 3. If the runtime has shut down, fail: no readiness will ever be reported again
//!    (the driver wakes every waiter when it stops, so none is left parked).
//! 4. Park until woken or the deadline; on timeout unregister and fail with `TimedOut`.
//!
//! An edge that lands between 1 and 2 is kept in `ready`, so it is never lost.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use crate::park::{self, Unparker};
use crate::runtime::Handle;
use crate::runtime::driver::{Driver, IoSource};

pub(crate) use crate::runtime::driver::{READABLE, WRITABLE};

/// A registered mio source. Deregisters on `deregister`; the owner calls it before the
/// source is closed.
pub(crate) struct Registration {
    driver: Arc<Driver>,
    source: Arc<IoSource>,
    token: Token,
}

impl Registration {
    /// Registers `src` with the current runtime's reactor (for both directions).
    pub(crate) fn new(src: &mut impl mio::event::Source) -> io::Result<Self> {
        let handle = Handle::try_current().ok_or_else(|| {
            io::Error::other("kcoro::net sockets must be created inside a kcoro runtime (a coroutine)")
        })?;
        let driver = handle.driver();
        let (source, token) = driver.register(src)?;
        Ok(Self { driver, source, token })
    }

    /// Runs `op` until it does not return `WouldBlock`, waiting for `dir` readiness in
    /// between; fails with `TimedOut` once `deadline` passes.
    pub(crate) fn io<R>(
        &self,
        dir: u8,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        let mut me: Option<Unparker> = None;
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
            let me = me.get_or_insert_with(park::current);
            if self.source.poll_ready(dir, me) {
                continue;
            }
            if self.driver.is_shut_down() {
                self.source.unregister(dir, me);
                return Err(io::Error::other("kcoro: the runtime that owns this socket has shut down"));
            }
            match deadline {
                None => park::park(),
                Some(d) => {
                    if park::park_deadline(d) {
                        self.source.unregister(dir, me);
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "kcoro: socket operation timed out",
                        ));
                    }
                }
            }
        }
    }

    /// Leaves the reactor.
    pub(crate) fn deregister(&self, src: &mut impl mio::event::Source) {
        self.driver.deregister(src, self.token);
    }
}
