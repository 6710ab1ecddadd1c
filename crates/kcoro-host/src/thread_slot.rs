//! Exclusive per-thread indices: each of the first [`EXCLUSIVE`] threads that call into
//! the host owns an index until it exits. State kept per index (counter stripes, free-sid
//! caches) has a single writer, so it needs no atomic read-modify-write and no lock.
//! Threads beyond that share one fallback that does.

use std::cell::Cell;
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
        // First: whatever runs on this thread after it (other thread-locals' destructors)
        // takes the shared fallback, not an index another thread may claim next.
        CACHED.with(|c| c.set(NONE));
        if let Some(i) = self.0 {
            CLAIMED.fetch_and(!(1 << i), Ordering::AcqRel);
        }
    }
}

/// [`CACHED`] before the thread first asks.
const UNSET: usize = usize::MAX;
/// [`CACHED`] for a thread without an index of its own.
const NONE: usize = usize::MAX - 1;

thread_local! {
    static CLAIM: Claim = Claim::new();
    /// The claim's index, read on every call: a constant-initialised cell without a
    /// destructor is one load, where the claim (which has one) costs a state check and a
    /// registration test per access.
    static CACHED: Cell<usize> = const { Cell::new(UNSET) };
}

/// This thread's exclusive index, or `None` for the shared fallback (too many threads, or
/// the thread is exiting).
#[inline]
pub(crate) fn index() -> Option<usize> {
    match CACHED.with(Cell::get) {
        i if i < EXCLUSIVE => Some(i),
        NONE => None,
        _ => claim(),
    }
}

#[cold]
#[inline(never)]
fn claim() -> Option<usize> {
    // `Err` only once the claim is gone (the thread is exiting): its drop set `NONE`.
    let i = CLAIM.try_with(|c| c.0).ok().flatten();
    CACHED.with(|c| c.set(i.unwrap_or(NONE)));
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_index() {
        let (first, again) = std::thread::spawn(|| (index(), index())).join().unwrap();
        let first = first.expect("an index while fewer than EXCLUSIVE threads hold one");
        assert_eq!(again, Some(first), "the same index on every call");
    }

    #[test]
    fn a_destructor_running_after_the_claim_is_gone_gets_the_shared_fallback() {
        struct LateCaller(std::sync::mpsc::Sender<Option<usize>>);
        impl Drop for LateCaller {
            fn drop(&mut self) {
                let _ = self.0.send(index());
            }
        }
        thread_local!(static LATE: std::cell::RefCell<Option<LateCaller>> = const { std::cell::RefCell::new(None) });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Registered before the claim: thread-local destructors run in reverse order
            // of registration, so this one runs after the claim's.
            LATE.with(|l| *l.borrow_mut() = Some(LateCaller(tx)));
            assert!(index().is_some());
        })
        .join()
        .unwrap();
        assert_eq!(rx.recv().unwrap(), None, "no index once the claim was given back");
    }
}
