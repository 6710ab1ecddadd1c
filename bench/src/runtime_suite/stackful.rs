//! The park-based cases written once for both stackful runtimes (kcoro and may), so the
//! two run literally the same protocol and differ only in the runtime calls.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{Stall, bytes_per};
use crate::harness::{self, Measurement};

/// What a stackful runtime offers a coroutine: park/unpark, yield, sleep, spawn and join.
/// OS threads offer the same ([`Threads`](crate::chan_suite::blocking::Threads)); the
/// `chan` and `select` suites spawn their parties through this trait.
pub trait Stackful {
    /// Wakes one parked coroutine.
    type Handle: Clone + Send + Sync + 'static;
    /// Joins one spawned coroutine.
    type Join;
    fn current() -> Self::Handle;
    fn park();
    fn unpark(h: &Self::Handle);
    fn yield_now();
    fn sleep(d: Duration);
    fn spawn(f: impl FnOnce() + Send + 'static) -> Self::Join;
    fn join(j: Self::Join) -> Result<(), String>;
}

/// `n` round trips between two coroutines over park/unpark and a turn counter: side
/// `s` owns the turns `2i + s`, waits for its turn, passes it on and unparks the other.
/// As in the Go peer, the measuring coroutine is side 0 and spawns side 1.
/// Returns the time side 0 measured from both being ready to the last turn coming back.
pub fn pingpong<R: Stackful>(n: u64) -> Result<Duration, String> {
    let turn = Arc::new(AtomicU64::new(0));
    let slots: Arc<[OnceLock<R::Handle>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
    let (t1, s1) = (turn.clone(), slots.clone());
    let b = R::spawn(move || {
        pingpong_side::<R>(1, n, &t1, &s1);
    });
    let elapsed = pingpong_side::<R>(0, n, &turn, &slots);
    R::join(b).map_err(|e| format!("side B failed: {e}"))?;
    Ok(elapsed)
}

fn pingpong_side<R: Stackful>(
    me: usize,
    n: u64,
    turn: &AtomicU64,
    slots: &[OnceLock<R::Handle>; 2],
) -> Duration {
    let _ = slots[me].set(R::current());
    let other = loop {
        if let Some(u) = slots[1 - me].get() {
            break u.clone();
        }
        R::yield_now();
    };
    let wait_for = |t: u64| {
        // Acquire: pairs with the Release store of the other side.
        while turn.load(Ordering::Acquire) != t {
            R::park();
        }
    };
    let start = Instant::now();
    for i in 0..n {
        let mine = 2 * i + me as u64;
        wait_for(mine);
        turn.store(mine + 1, Ordering::Release);
        R::unpark(&other);
    }
    if me == 0 {
        wait_for(2 * n);
    }
    start.elapsed()
}

/// Spawns `n` coroutines that each publish their handle, count themselves parked and
/// park until released; samples peak RSS once all are parked, then wakes and joins them.
pub fn spawn_parked<R: Stackful>(n: u64) -> Result<Measurement, String> {
    let base = harness::proc_status_bytes("VmRSS")?;
    let release = Arc::new(AtomicBool::new(false));
    let parked = Arc::new(AtomicU64::new(0));
    let slots: Arc<Vec<OnceLock<R::Handle>>> = Arc::new((0..n).map(|_| OnceLock::new()).collect());

    let start = Instant::now();
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let (release, parked, slots) = (release.clone(), parked.clone(), slots.clone());
        handles.push(R::spawn(move || {
            let _ = slots[i].set(R::current());
            parked.fetch_add(1, Ordering::Release);
            // Acquire: pairs with the Release store of `release` by the driver.
            while !release.load(Ordering::Acquire) {
                R::park();
            }
        }));
    }
    // Acquire: pairs with each coroutine's Release increment, so its slot is visible.
    let mut stall = Stall::new();
    while parked.load(Ordering::Acquire) < n && !stall.stuck(parked.load(Ordering::Relaxed)) {
        R::sleep(Duration::from_millis(1));
    }
    let peak = harness::proc_status_bytes("VmHWM")?;

    release.store(true, Ordering::Release);
    for slot in slots.iter() {
        if let Some(u) = slot.get() {
            R::unpark(u);
        }
    }
    let mut first_err = None;
    for h in handles {
        if let Err(e) = R::join(h) {
            first_err.get_or_insert_with(|| format!("join failed: {e}"));
        }
    }
    stall.check(parked.load(Ordering::Relaxed), n, first_err)?;
    let mut m = Measurement::per_op(start.elapsed(), n);
    m.bytes_per_op = Some(bytes_per(base, peak, n));
    Ok(m)
}
