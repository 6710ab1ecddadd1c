//! Exclusive per-thread indices: each of the first [`EXCLUSIVE`] threads that call into
//! the host owns an index until it exits. State kept per index (counter stripes, free-sid
//! caches) has a single writer, so it needs no atomic read-modify-write and no lock.
//! Threads beyond that share one fallback that does.

use std::sync::atomic::{AtomicU64, Ordering};

/// Threads that get an index of their own.
pub(crate) const EXCLUSIVE: usize = 64;

static CLAIMED: AtomicU64 = AtomicU64::new(0);

struct Claim(Option<usize>);

impl Claim {
    fn new() -> Claim {
        let mut bits = CLAIMED.load(Ordering::Relaxed);
        loop {
            if bits == u64::MAX {
                return Claim(None);
            }
            let i = (!bits).trailing_zeros() as usize;
            // AcqRel: a new owner sees everything the previous owner of `i` wrote.
            match CLAIMED.compare_exchange_weak(bits, bits | (1 << i), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Claim(Some(i)),
                Err(now) => bits = now,
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            CLAIMED.fetch_and(!(1 << i), Ordering::AcqRel);
        }
    }
}

thread_local!(static CLAIM: Claim = Claim::new());

/// This thread's exclusive index, or `None` for the shared fallback (too many threads, or
/// the thread is exiting).
#[inline]
pub(crate) fn index() -> Option<usize> {
    CLAIM.try_with(|c| c.0).ok().flatten()
}
