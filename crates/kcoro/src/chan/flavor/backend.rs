//! Backend: a zero-copy channel whose descriptors wait in a registered [`ZBackend`]
//! instead of a buffer of ours. Behaves as a buffered channel whose capacity is the
//! backend's; values turn into descriptors on the way in and back on the way out
//! ([`ZeroCopy`]).
//!
//! # Invariants
//! - `len` counts the descriptors this channel stored and has not taken back (the backend
//!   is only reached through this buffer, under the channel lock).
//! - `full` ⇔ the last offer was refused and nothing was taken since: the backend cannot
//!   be asked whether it has room (a C ops table has no such call), but since only this
//!   buffer changes it, a refusal stays true until a take.
//! - `len() > 0` ⇒ no live parked receivers; a full backend ⇒ parked senders keep their
//!   values (the same as `buffered` under `Suspend`).

use std::sync::Arc;

use super::Offer;
use crate::zcopy::{ChanKey, ZBackend, ZDesc, ZeroCopy};

pub(crate) struct Buffer<T> {
    backend: Arc<dyn ZBackend>,
    key: ChanKey,
    into_desc: fn(T) -> ZDesc,
    from_desc: unsafe fn(ZDesc) -> T,
    len: usize,
    full: bool,
}

impl<T: ZeroCopy> Buffer<T> {
    /// The channel `key` is attached to `backend` already.
    pub(crate) fn new(backend: Arc<dyn ZBackend>, key: ChanKey) -> Self {
        Buffer { backend, key, into_desc: T::into_desc, from_desc: T::from_desc, len: 0, full: false }
    }
}

impl<T> Buffer<T> {
    #[inline]
    pub(crate) fn offer(&mut self, v: T) -> Offer<T> {
        let d = (self.into_desc)(v);
        if self.backend.try_send(self.key, &d) {
            self.len += 1;
            return Offer::Stored;
        }
        self.full = true;
        // SAFETY: `d` came from `into_desc` just now and was not stored: taken back once.
        Offer::Full(unsafe { (self.from_desc)(d) })
    }

    #[inline]
    pub(crate) fn take(&mut self) -> Option<T> {
        let d = self.backend.try_recv(self.key)?;
        self.len = self.len.saturating_sub(1);
        self.full = false;
        // SAFETY: the backend hands back descriptors this buffer stored, each once (the
        // backend contract); each came from `into_desc`.
        Some(unsafe { (self.from_desc)(d) })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        self.backend.capacity(self.key)
    }

    /// Whether an offer would be stored (see the `full` invariant).
    pub(crate) fn has_room(&self) -> bool {
        !self.full && self.capacity().is_none_or(|cap| self.len < cap)
    }

    pub(crate) fn drain(&mut self) -> Vec<T> {
        std::iter::from_fn(|| self.take()).collect()
    }
}

impl<T> Drop for Buffer<T> {
    /// Descriptors still stored go back to their owners (a lease returns to its region),
    /// then the backend lets go of the channel.
    fn drop(&mut self) {
        drop(self.drain());
        self.backend.detach(self.key);
    }
}
