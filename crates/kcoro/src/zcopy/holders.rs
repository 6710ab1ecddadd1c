//! The holders word of a region: its leases, its `Region` handles and its deregistration
//! state in one atomic, so that starting or ending a lease is one atomic operation.
//!
//! Why one word: a lease used to hold an `Arc` of its region besides being counted, two
//! read-modify-writes to start and two to end, on two counters. Here the holders together
//! own one strong count of the region ("the holders' count"), taken when the first holder
//! comes and given back when the last goes; a lease only moves the word. With a `Region`
//! handle alive (the usual case) the word never passes through zero, so leases never touch
//! the `Arc`. The region ([`super::region`]) applies what these methods report.
//!
//! ```text
//!   bits  0..32  leases   (ZBuf, descriptors of them in flight, ZView)
//!   bits 32..62  handles  (Region values)
//!   bit  62      DRAINING (a deregistration waits for the leases)
//!   bit  63      CLOSED   (deregistered: no lease starts again)
//! ```
//!
//! # Protocol (lease vs. deregistration)
//! A lease is added and the state read in the same operation; deregistration sets
//! `DRAINING` and reads the leases in the same operation: one of the two sees the other,
//! so no lease starts after deregistration saw zero. A lease that ends while `DRAINING` is
//! set takes the slow path ([`Holders::end_draining`]), whose caller pins the region and
//! tells the waiting deregistration when it was the last.

use crate::loom::atomic::{AtomicU64, Ordering::*};

const LEASE: u64 = 1;
const LEASES: u64 = (1 << 32) - 1;
const HANDLE: u64 = 1 << 32;
const HANDLES: u64 = ((1 << 30) - 1) << 32;
const HOLDERS: u64 = LEASES | HANDLES;
const DRAINING: u64 = 1 << 62;
const CLOSED: u64 = 1 << 63;

/// What starting a lease did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct Started {
    /// The lease is the first holder: the caller takes the holders' strong count.
    pub(crate) first_holder: bool,
    /// The region is being or was deregistered: the lease was counted anyway (see the
    /// protocol) and the caller must end it again and fail.
    pub(crate) refused: bool,
}

/// What ending a lease or dropping a handle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct Ended {
    /// No holder is left: the caller gives back the holders' strong count (and must not
    /// touch the region afterwards unless it holds a count of its own).
    pub(crate) last_holder: bool,
    /// This was the last lease while a deregistration waits: the caller tells it.
    pub(crate) drained: bool,
}

/// Why [`Holders::drain`] did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotDrained {
    /// Deregistered already.
    Closed,
    /// Another deregistration is waiting.
    Busy,
}

pub(crate) struct Holders(AtomicU64);

impl Holders {
    /// The word of a new region with its first handle.
    pub(crate) fn with_one_handle() -> Holders {
        Holders(AtomicU64::new(HANDLE))
    }

    pub(crate) fn leases(&self) -> usize {
        (self.0.load(SeqCst) & LEASES) as usize
    }

    /// Counts a new lease (protocol step 1).
    #[inline]
    pub(crate) fn start(&self) -> Started {
        let prev = self.0.fetch_add(LEASE, SeqCst);
        if prev & LEASES == LEASES {
            // Four billion leases alive means leaked views; the count would carry into the
            // handles. As `Arc` does on overflow, stop.
            std::process::abort();
        }
        Started { first_holder: prev & HOLDERS == 0, refused: prev & (DRAINING | CLOSED) != 0 }
    }

    /// Ends a lease while no deregistration waits, in one compare-exchange; `None` when one
    /// does: the caller pins the region and calls [`end_draining`](Self::end_draining).
    #[inline]
    pub(crate) fn end(&self) -> Option<Ended> {
        let mut w = self.0.load(Relaxed);
        while w & DRAINING == 0 {
            debug_assert!(w & LEASES != 0, "a lease ended that was never started");
            match self.0.compare_exchange_weak(w, w - LEASE, SeqCst, Relaxed) {
                Ok(_) => return Some(Ended { last_holder: (w - LEASE) & HOLDERS == 0, drained: false }),
                Err(now) => w = now,
            }
        }
        None
    }

    /// Ends a lease whatever the state; reports whether it was the last one a
    /// deregistration waits for.
    pub(crate) fn end_draining(&self) -> Ended {
        let prev = self.0.fetch_sub(LEASE, SeqCst);
        Ended {
            last_holder: (prev - LEASE) & HOLDERS == 0,
            drained: prev & DRAINING != 0 && prev & LEASES == LEASE,
        }
    }

    /// Counts one more handle (the caller has one, so the word is not zero).
    pub(crate) fn add_handle(&self) {
        let prev = self.0.fetch_add(HANDLE, Relaxed);
        if prev & HANDLES == HANDLES {
            std::process::abort();
        }
    }

    /// A handle is dropped.
    pub(crate) fn drop_handle(&self) -> Ended {
        let prev = self.0.fetch_sub(HANDLE, SeqCst);
        Ended { last_holder: (prev - HANDLE) & HOLDERS == 0, drained: false }
    }

    /// Stops new leases (protocol step 2) and returns the leases still alive.
    pub(crate) fn drain(&self) -> Result<usize, NotDrained> {
        let mut w = self.0.load(SeqCst);
        loop {
            if w & CLOSED != 0 {
                return Err(NotDrained::Closed);
            }
            if w & DRAINING != 0 {
                return Err(NotDrained::Busy);
            }
            match self.0.compare_exchange_weak(w, w | DRAINING, SeqCst, SeqCst) {
                Ok(_) => return Ok((w & LEASES) as usize),
                Err(now) => w = now,
            }
        }
    }

    /// Ends a drain that saw the last lease go: deregistered for good.
    pub(crate) fn close(&self) {
        self.0.fetch_xor(DRAINING | CLOSED, SeqCst);
    }

    /// Ends a drain that gave up: leases may start again.
    pub(crate) fn reopen(&self) {
        self.0.fetch_and(!DRAINING, SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_lease_with_a_handle_alive_is_never_the_first_or_last_holder() {
        let h = Holders::with_one_handle();
        assert_eq!(h.start(), Started { first_holder: false, refused: false });
        assert_eq!(h.leases(), 1);
        assert_eq!(h.end(), Some(Ended { last_holder: false, drained: false }));
        assert_eq!(h.drop_handle(), Ended { last_holder: true, drained: false });
        // Only leases now (a descriptor resolved through the table): the first takes the
        // holders' count and the last gives it back.
        assert!(h.start().first_holder);
        assert!(!h.start().first_holder);
        assert!(!h.end().unwrap().last_holder);
        assert!(h.end().unwrap().last_holder);
    }

    #[test]
    fn draining_refuses_new_leases_and_reports_the_last_one() {
        let h = Holders::with_one_handle();
        assert!(!h.start().refused);
        assert!(!h.start().refused);
        assert_eq!(h.drain(), Ok(2));
        assert_eq!(h.drain(), Err(NotDrained::Busy));
        assert_eq!(h.end(), None, "a deregistration waits: the slow path");
        let refused = h.start();
        assert!(refused.refused);
        assert_eq!(h.end_draining(), Ended { last_holder: false, drained: false });
        assert_eq!(h.end_draining(), Ended { last_holder: false, drained: false });
        assert_eq!(h.end_draining(), Ended { last_holder: false, drained: true });
        h.close();
        assert_eq!(h.leases(), 0);
        assert!(h.start().refused, "closed for good");
        assert!(h.end().is_some(), "closed is not draining: the fast path");
        assert_eq!(h.drain(), Err(NotDrained::Closed));
    }

    #[test]
    fn a_drain_that_gives_up_reopens() {
        let h = Holders::with_one_handle();
        assert!(!h.start().refused);
        assert_eq!(h.drain(), Ok(1));
        h.reopen();
        assert!(!h.start().refused);
        assert_eq!(h.leases(), 2);
        assert!(h.end().is_some());
    }
}
