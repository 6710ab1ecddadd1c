//! Small, fast pseudo-random numbers for scheduling choices: never for anything that
//! must be unpredictable. Deterministic mode reseeds the worker thread's generator, so
//! every choice made on it (select's clause order included) replays from the seed.

use std::cell::Cell;

/// SplitMix64: one state word, full period, good enough to pick among runnable tasks.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for `n` far below 2^64 (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

thread_local! {
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

/// Seeds this thread's generator (deterministic mode, on its worker).
pub(crate) fn reseed_thread(seed: u64) {
    THREAD.with(|s| s.set(seed | 1));
}

/// A number in `0..n` from this thread's xorshift generator (`n > 0`). Seeded from the
/// thread's slot address on first use, unless `reseed_thread` set it.
pub(crate) fn below(n: usize) -> usize {
    THREAD.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = (std::ptr::from_ref(s) as u64) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % n as u64) as usize
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn splitmix_replays_and_spreads() {
        let a: Vec<u64> = (0..8).scan(SplitMix::new(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..8).scan(SplitMix::new(7), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        let mut r = SplitMix::new(1);
        let mut hits = [0u32; 4];
        for _ in 0..4000 {
            hits[r.below(4)] += 1;
        }
        assert!(hits.iter().all(|&h| h > 800), "{hits:?}");
    }

    #[test]
    fn reseeded_thread_generator_replays() {
        reseed_thread(42);
        let a: Vec<usize> = (0..16).map(|_| below(1000)).collect();
        reseed_thread(42);
        let b: Vec<usize> = (0..16).map(|_| below(1000)).collect();
        assert_eq!(a, b);
    }
}
