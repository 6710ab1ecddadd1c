//! `runtime` suite, kcoro rows: a fresh `Runtime` with two workers per run, the driver
//! running as the `block_on` coroutine, and the runtime dropped (shut down) at the end.
//! The `chan` and `select` suites' kcoro rows run through [`drive`] and [`Kcoro`] too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kcoro::actor::{self, Actor, ActorOpts, ActorRef, Flow, Reply};
use kcoro::park::{self, Unparker};

use super::stackful::{self, Stackful};
use super::{MAILBOX, SCOPE_CHILDREN, SLEEP, WORKERS, unknown, warmup};
use crate::harness::Measurement;

/// Runs `case` with `n` operations on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    match case {
        "yield" => drive(move || {
            yields(warmup(n));
            let start = Instant::now();
            yields(n);
            Ok(Measurement::per_op(start.elapsed(), n))
        }),
        "spawn_join" => drive(move || {
            spawn_join(warmup(n))?;
            let start = Instant::now();
            spawn_join(n)?;
            Ok(Measurement::per_op(start.elapsed(), n))
        }),
        "pingpong_park" => drive(move || {
            stackful::pingpong::<Kcoro>(warmup(n))?;
            Ok(Measurement::per_op(stackful::pingpong::<Kcoro>(n)?, n))
        }),
        "sleep_1ms_accuracy" => drive(move || {
            let mut over = Duration::ZERO;
            for _ in 0..n {
                let start = Instant::now();
                kcoro::sleep(SLEEP);
                over += start.elapsed().saturating_sub(SLEEP);
            }
            Ok(Measurement::per_op(over, n))
        }),
        "spawn_1m_parked" => drive(move || stackful::spawn_parked::<Kcoro>(n)),
        "scope_spawn_join_100" => drive(move || {
            // Borrowed by every child straight from this stack frame.
            let sum = AtomicU64::new(0);
            scopes(warmup(n), &sum)?;
            let start = Instant::now();
            scopes(n, &sum)?;
            let elapsed = start.elapsed();
            let want = (warmup(n) + n) * (0..SCOPE_CHILDREN).sum::<u64>();
            match sum.load(Ordering::Relaxed) {
                got if got == want => Ok(Measurement::per_op(elapsed, n)),
                got => Err(format!("children added {got}, expected {want}")),
            }
        }),
        "actor_tell" => drive(move || {
            let counter = actor::spawn(Counter(0), ActorOpts::mailbox(MAILBOX));
            tells(&counter, warmup(n))?;
            expect(&counter, warmup(n))?;
            let start = Instant::now();
            tells(&counter, n)?;
            let count = ask(&counter)?;
            let elapsed = start.elapsed();
            if count != warmup(n) + n {
                return Err(format!("actor counted {count}, expected {}", warmup(n) + n));
            }
            finish(counter)?;
            Ok(Measurement::per_op(elapsed, n))
        }),
        "actor_ask" => drive(move || {
            let counter = actor::spawn(Counter(0), ActorOpts::mailbox(MAILBOX));
            asks(&counter, warmup(n))?;
            let start = Instant::now();
            asks(&counter, n)?;
            let elapsed = start.elapsed();
            finish(counter)?;
            Ok(Measurement::per_op(elapsed, n))
        }),
        "pair_one_worker" => drive(move || super::kcoro_pair::run(n, false)),
        "pair_two_workers" => drive(move || super::kcoro_pair::run(n, true)),
        _ => Err(unknown(case)),
    }
}

/// Builds a two-worker runtime, runs `body` as its `block_on` coroutine and drops (shuts
/// down) the runtime.
pub fn drive(
    body: impl FnOnce() -> Result<Measurement, String> + Send + 'static,
) -> Result<Measurement, String> {
    drive_with(WORKERS, body)
}

/// [`drive`] on a runtime of `workers` workers.
pub fn drive_with(
    workers: usize,
    body: impl FnOnce() -> Result<Measurement, String> + Send + 'static,
) -> Result<Measurement, String> {
    let rt = kcoro::Runtime::builder()
        .workers(workers)
        .build()
        .map_err(|e| format!("kcoro: cannot build runtime: {e}"))?;
    let out = rt.block_on(body);
    drop(rt);
    out
}

/// `n` scopes of [`SCOPE_CHILDREN`] children adding their index to `sum`.
fn scopes(n: u64, sum: &AtomicU64) -> Result<(), String> {
    for _ in 0..n {
        kcoro::scope(|s| {
            for i in 0..SCOPE_CHILDREN {
                s.spawn(move || {
                    sum.fetch_add(i, Ordering::Relaxed);
                });
            }
        })
        .map_err(|e| format!("scope failed: {e}"))?;
    }
    Ok(())
}

/// The actor of `actor_tell` and `actor_ask`: a `u64` counter.
struct Counter(u64);

enum Msg {
    Add(u64),
    Get(Reply<u64>),
}

impl Actor for Counter {
    type Msg = Msg;
    fn handle(&mut self, msg: Msg) -> Flow {
        match msg {
            Msg::Add(k) => self.0 += k,
            Msg::Get(reply) => reply.send(self.0),
        }
        Flow::Continue
    }
}

fn tells(a: &ActorRef<Msg>, n: u64) -> Result<(), String> {
    for _ in 0..n {
        a.tell(Msg::Add(1)).map_err(|_| "actor mailbox closed".to_string())?;
    }
    Ok(())
}

fn ask(a: &ActorRef<Msg>) -> Result<u64, String> {
    a.ask(Msg::Get).map_err(|e| format!("ask failed: {e}"))
}

/// `n` asks of an actor that is told nothing, so every reply must be 0.
fn asks(a: &ActorRef<Msg>, n: u64) -> Result<(), String> {
    for _ in 0..n {
        match ask(a)? {
            0 => {}
            got => return Err(format!("actor replied {got}, expected 0")),
        }
    }
    Ok(())
}

fn expect(a: &ActorRef<Msg>, want: u64) -> Result<(), String> {
    match ask(a)? {
        got if got == want => Ok(()),
        got => Err(format!("actor counted {got}, expected {want}")),
    }
}

fn finish(a: ActorRef<Msg>) -> Result<(), String> {
    a.stop();
    a.join().map_err(|e| format!("actor failed: {e}"))
}

fn yields(n: u64) {
    for _ in 0..n {
        kcoro::yield_now();
    }
}

fn spawn_join(n: u64) -> Result<(), String> {
    for _ in 0..n {
        kcoro::spawn(|| ()).join().map_err(|e| format!("join failed: {e}"))?;
    }
    Ok(())
}

/// kcoro's side of the shared park-based cases.
pub struct Kcoro;

impl Stackful for Kcoro {
    type Handle = Unparker;
    type Join = kcoro::JoinHandle<()>;

    fn current() -> Unparker {
        park::current()
    }
    fn park() {
        park::park();
    }
    fn unpark(h: &Unparker) {
        h.unpark();
    }
    fn yield_now() {
        kcoro::yield_now();
    }
    fn sleep(d: Duration) {
        kcoro::sleep(d);
    }
    fn spawn(f: impl FnOnce() + Send + 'static) -> Self::Join {
        kcoro::spawn(f)
    }
    fn join(j: Self::Join) -> Result<(), String> {
        j.join().map_err(|e| e.to_string())
    }
}
