//! The `chan` cases written once for every implementation with a blocking channel API —
//! kcoro and may (coroutines), kanal, crossbeam and flume (OS threads) — so all of them
//! run literally the same protocol and differ only in the channel and spawn calls
//! ([`Chan`]). The `select` suite builds on the same trait.
//!
//! Every case returns the time it measured and the operations that covers; [`run`]
//! adds the warm-up. A party that fails panics with the reason (see [`spawn`]), which its
//! join reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use super::{PRODCONS_BATCH, PRODCONS_PARTIES, Timed, measure, share, unknown};
use crate::harness::{Measurement, panic_text};
use crate::runtime_suite::stackful::Stackful;

/// One implementation's channel of `u64` and how it runs concurrent parties.
pub trait Chan {
    /// Runs the parties: a coroutine runtime's [`Stackful`] or [`Threads`].
    type Exec: Stackful;
    /// The sending end; clones send into the same channel.
    type Tx: Clone + Send + 'static;
    /// The receiving end; clones receive from the same channel (MPMC).
    type Rx: Clone + Send + 'static;

    /// A channel of `cap` slots; `cap == 0` is a rendezvous channel. An implementation
    /// without one of those uses its nearest and says so in the suite notes.
    fn channel(cap: usize) -> (Self::Tx, Self::Rx);
    /// Sends `v`, blocking while the channel is full.
    fn send(tx: &Self::Tx, v: u64) -> Result<(), String>;
    /// Receives, blocking while the channel is empty; `Ok(None)` once it is closed (all
    /// senders dropped) and drained.
    fn recv(rx: &Self::Rx) -> Result<Option<u64>, String>;
    /// Receives without blocking; `None` if nothing is ready.
    fn try_recv(rx: &Self::Rx) -> Option<u64>;
}

/// Runs `case` with `n` operations, after its warm-up, on the calling coroutine or thread.
pub fn run<C: Chan>(case: &str, n: u64) -> Result<Measurement, String> {
    match case {
        "pingpong_rendezvous" => measure(pingpong::<C>, n),
        "prodcons_0" => measure(|n| prodcons::<C>(0, n), n),
        "prodcons_10" => measure(|n| prodcons::<C>(10, n), n),
        "prodcons_100" => measure(|n| prodcons::<C>(100, n), n),
        "spsc_1024" => measure(|n| pipes::<C>(1, 1, 1024, n), n),
        "mpmc_4x4_1024" => measure(|n| pipes::<C>(4, 4, 1024, n), n),
        "mpmc_4x4_0" => measure(|n| pipes::<C>(4, 4, 0, n), n),
        "nonblocking_try" => measure(nonblocking::<C>, n),
        _ => Err(unknown(case)),
    }
}

/// `n` round trips over two rendezvous channels: the caller sends on ping and waits on
/// pong; the partner it spawns (as Go's `go func` does) echoes each value back.
pub fn pingpong<C: Chan>(n: u64) -> Timed {
    let (ping_tx, ping_rx) = C::channel(0);
    let (pong_tx, pong_rx) = C::channel(0);
    let echo = spawn::<C>(move || {
        for _ in 0..n {
            C::send(&pong_tx, recv_open::<C>(&ping_rx)?)?;
        }
        Ok(())
    });
    let start = Instant::now();
    for i in 0..n {
        C::send(&ping_tx, i)?;
        let back = recv_open::<C>(&pong_rx)?;
        if back != i {
            return Err(format!("pingpong: sent {i}, got {back} back"));
        }
    }
    let elapsed = start.elapsed();
    join_all::<C>(vec![echo])?;
    Ok((elapsed, n))
}

/// Go's `BenchmarkChanProdCons{cap}` with `localWork = 0`: [`PRODCONS_PARTIES`]
/// producers claim batches of [`PRODCONS_BATCH`] sends from a shared counter until it
/// runs out, then send one `0` sentinel each; as many consumers receive until they get a
/// sentinel. `n` is rounded down to whole batches (at least one); one op is one message.
pub fn prodcons<C: Chan>(cap: usize, n: u64) -> Timed {
    let batches = (n / PRODCONS_BATCH).max(1);
    let left = Arc::new(AtomicI64::new(batches as i64));
    let (tx, rx) = C::channel(cap);
    let start = Instant::now();
    let mut parties = Vec::with_capacity(2 * PRODCONS_PARTIES);
    for _ in 0..PRODCONS_PARTIES {
        let (tx, left) = (tx.clone(), left.clone());
        parties.push(spawn::<C>(move || {
            // Relaxed: the counter only hands out batches; it publishes no data.
            while left.fetch_sub(1, Ordering::Relaxed) > 0 {
                for _ in 0..PRODCONS_BATCH {
                    C::send(&tx, 1)?;
                }
            }
            C::send(&tx, 0)
        }));
        let rx = rx.clone();
        parties.push(spawn::<C>(move || {
            while recv_open::<C>(&rx)? != 0 {}
            Ok(())
        }));
    }
    join_all::<C>(parties)?;
    Ok((start.elapsed(), batches * PRODCONS_BATCH))
}

/// `producers` send `n` messages in total (split by [`share`]) into one channel of `cap`
/// slots; `consumers` receive until it is closed, which happens when the last producer
/// drops the last sender. One op is one message.
pub fn pipes<C: Chan>(producers: usize, consumers: usize, cap: usize, n: u64) -> Timed {
    let (tx, rx) = C::channel(cap);
    let received = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut parties = Vec::with_capacity(producers + consumers);
    for p in 0..producers {
        let (tx, count) = (tx.clone(), share(n, producers, p));
        parties.push(spawn::<C>(move || {
            for i in 0..count {
                C::send(&tx, i)?;
            }
            Ok(())
        }));
    }
    // From here on only the producers hold senders, so the channel closes when they end.
    drop(tx);
    for _ in 0..consumers {
        let (rx, received) = (rx.clone(), received.clone());
        parties.push(spawn::<C>(move || {
            let mut got = 0;
            while C::recv(&rx)?.is_some() {
                got += 1;
            }
            // Relaxed: read after every party is joined, and join orders it.
            received.fetch_add(got, Ordering::Relaxed);
            Ok(())
        }));
    }
    drop(rx);
    join_all::<C>(parties)?;
    let elapsed = start.elapsed();
    match received.load(Ordering::Relaxed) {
        got if got == n => Ok((elapsed, n)),
        got => Err(format!("received {got} of {n} messages")),
    }
}

/// Go's `BenchmarkChanNonblocking` for one caller: `n` try-receives on an empty
/// rendezvous channel whose sender stays alive (so every try sees "empty", not "closed").
pub fn nonblocking<C: Chan>(n: u64) -> Timed {
    let (tx, rx) = C::channel(0);
    let start = Instant::now();
    let mut hits = 0u64;
    for _ in 0..n {
        hits += u64::from(C::try_recv(&rx).is_some());
    }
    let elapsed = start.elapsed();
    drop(tx);
    match hits {
        0 => Ok((elapsed, n)),
        _ => Err(format!("received {hits} messages from an empty channel")),
    }
}

/// [`Chan::recv`] where a closed channel is an error: the protocol never closes it early.
pub fn recv_open<C: Chan>(rx: &C::Rx) -> Result<u64, String> {
    C::recv(rx)?.ok_or_else(|| "channel closed under a receiver".to_string())
}

/// A party's join handle under `C`'s executor.
pub type Join<C> = <<C as Chan>::Exec as Stackful>::Join;

/// Spawns one party with `C`'s executor. An error of `f` becomes a panic carrying it, so
/// [`join_all`] reports it whichever executor ran the party.
pub fn spawn<C: Chan>(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Join<C> {
    C::Exec::spawn(move || {
        if let Err(e) = f() {
            panic!("{e}");
        }
    })
}

/// Joins every party; the first failure is the error.
pub fn join_all<C: Chan>(parties: Vec<Join<C>>) -> Result<(), String> {
    let mut first_err = None;
    for party in parties {
        if let Err(e) = C::Exec::join(party) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// OS threads as an executor, for the peers without a runtime (kanal, crossbeam, flume).
pub struct Threads;

impl Stackful for Threads {
    type Handle = Thread;
    type Join = JoinHandle<()>;

    fn current() -> Thread {
        thread::current()
    }
    fn park() {
        thread::park();
    }
    fn unpark(h: &Thread) {
        h.unpark();
    }
    fn yield_now() {
        thread::yield_now();
    }
    fn sleep(d: Duration) {
        thread::sleep(d);
    }
    fn spawn(f: impl FnOnce() + Send + 'static) -> Self::Join {
        thread::spawn(f)
    }
    fn join(j: Self::Join) -> Result<(), String> {
        j.join().map_err(|p| format!("party panicked: {}", panic_text(&*p)))
    }
}
