//! `runtime` suite, tokio rows: a multi-thread runtime with two workers per run, the
//! driver spawned as a task (so it runs on a worker, not on the `block_on` thread).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

use super::{MAILBOX, SCOPE_CHILDREN, SLEEP, Stall, WORKERS, bytes_per, unknown, warmup};
use crate::harness::{self, Measurement};

/// Runs `case` with `n` operations on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    match case {
        "yield" => drive(async move {
            yields(warmup(n)).await;
            let start = Instant::now();
            yields(n).await;
            Ok(Measurement::per_op(start.elapsed(), n))
        }),
        "spawn_join" => drive(async move {
            spawn_join(warmup(n)).await?;
            let start = Instant::now();
            spawn_join(n).await?;
            Ok(Measurement::per_op(start.elapsed(), n))
        }),
        "pingpong_park" => drive(async move {
            pingpong(warmup(n)).await?;
            Ok(Measurement::per_op(pingpong(n).await?, n))
        }),
        "sleep_1ms_accuracy" => drive(async move {
            let mut over = Duration::ZERO;
            for _ in 0..n {
                let start = Instant::now();
                tokio::time::sleep(SLEEP).await;
                over += start.elapsed().saturating_sub(SLEEP);
            }
            Ok(Measurement::per_op(over, n))
        }),
        "spawn_1m_parked" => drive(spawn_parked(n)),
        "scope_spawn_join_100" => drive(async move {
            // One counter for the whole run, shared by reference as a scope's children would
            // borrow it (leaked: one word per child process).
            let sum: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
            scopes(warmup(n), sum).await?;
            let start = Instant::now();
            scopes(n, sum).await?;
            let elapsed = start.elapsed();
            let want = (warmup(n) + n) * (0..SCOPE_CHILDREN).sum::<u64>();
            match sum.load(Ordering::Relaxed) {
                got if got == want => Ok(Measurement::per_op(elapsed, n)),
                got => Err(format!("children added {got}, expected {want}")),
            }
        }),
        "actor_tell" => drive(async move {
            let actor = Actor::spawn();
            actor.tells(warmup(n)).await?;
            actor.expect(warmup(n)).await?;
            let start = Instant::now();
            actor.tells(n).await?;
            let count = actor.ask().await?;
            let elapsed = start.elapsed();
            if count != warmup(n) + n {
                return Err(format!("actor counted {count}, expected {}", warmup(n) + n));
            }
            actor.stop(warmup(n) + n).await?;
            Ok(Measurement::per_op(elapsed, n))
        }),
        "actor_ask" => drive(async move {
            let actor = Actor::spawn();
            actor.asks(warmup(n)).await?;
            let start = Instant::now();
            actor.asks(n).await?;
            let elapsed = start.elapsed();
            actor.stop(0).await?;
            Ok(Measurement::per_op(elapsed, n))
        }),
        _ => Err(unknown(case)),
    }
}

/// Builds a two-worker runtime, runs `body` as a task on it and drops the runtime.
pub fn drive(
    body: impl Future<Output = Result<Measurement, String>> + Send + 'static,
) -> Result<Measurement, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .map_err(|e| format!("tokio: cannot build runtime: {e}"))?;
    let out = rt
        .block_on(async move { tokio::spawn(body).await })
        .map_err(|e| format!("tokio driver failed: {e}"))?;
    drop(rt);
    out
}

async fn yields(n: u64) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

async fn spawn_join(n: u64) -> Result<(), String> {
    for _ in 0..n {
        tokio::spawn(async {}).await.map_err(|e| format!("join failed: {e}"))?;
    }
    Ok(())
}

/// The same turn protocol as the kcoro rows; each side waits on its own `Notify`, whose
/// stored permit plays the role of the unpark token.
async fn pingpong(n: u64) -> Result<Duration, String> {
    let turn = Arc::new(AtomicU64::new(0));
    let wake = [Arc::new(Notify::new()), Arc::new(Notify::new())];
    // As in the Go peer, the measuring task is side 0 and spawns side 1.
    let b = tokio::spawn(pingpong_side(1, n, turn.clone(), wake[1].clone(), wake[0].clone()));
    let elapsed = pingpong_side(0, n, turn, wake[0].clone(), wake[1].clone()).await;
    b.await.map_err(|e| format!("side B failed: {e}"))?;
    Ok(elapsed)
}

async fn pingpong_side(
    me: usize,
    n: u64,
    turn: Arc<AtomicU64>,
    mine: Arc<Notify>,
    other: Arc<Notify>,
) -> Duration {
    let wait_for = async |t: u64| {
        // Acquire: pairs with the Release store of the other side.
        while turn.load(Ordering::Acquire) != t {
            mine.notified().await;
        }
    };
    let start = Instant::now();
    for i in 0..n {
        let my_turn = 2 * i + me as u64;
        wait_for(my_turn).await;
        turn.store(my_turn + 1, Ordering::Release);
        other.notify_one();
    }
    if me == 0 {
        wait_for(2 * n).await;
    }
    start.elapsed()
}

/// `n` tasks each waiting on one shared `Notify` (a `Notified` future receives
/// `notify_waiters` from the moment it is created), released together.
async fn spawn_parked(n: u64) -> Result<Measurement, String> {
    let base = harness::proc_status_bytes("VmRSS")?;
    let release = Arc::new(AtomicBool::new(false));
    let parked = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());

    let start = Instant::now();
    let mut handles = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (release, parked, notify) = (release.clone(), parked.clone(), notify.clone());
        handles.push(tokio::spawn(async move {
            let notified = notify.notified();
            parked.fetch_add(1, Ordering::Release);
            // Acquire: pairs with the Release store of `release` by the driver.
            if !release.load(Ordering::Acquire) {
                notified.await;
            }
        }));
    }
    let mut stall = Stall::new();
    while parked.load(Ordering::Acquire) < n && !stall.stuck(parked.load(Ordering::Relaxed)) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let peak = harness::proc_status_bytes("VmHWM")?;

    release.store(true, Ordering::Release);
    notify.notify_waiters();
    let mut first_err = None;
    for h in handles {
        if let Err(e) = h.await {
            first_err.get_or_insert_with(|| format!("join failed: {e}"));
        }
    }
    stall.check(parked.load(Ordering::Relaxed), n, first_err)?;
    let mut m = Measurement::per_op(start.elapsed(), n);
    m.bytes_per_op = Some(bytes_per(base, peak, n));
    Ok(m)
}

/// `n` scopes, each a `JoinSet` of [`SCOPE_CHILDREN`] tasks adding their index to `sum`,
/// drained by `join_next` before the next scope starts.
async fn scopes(n: u64, sum: &'static AtomicU64) -> Result<(), String> {
    for _ in 0..n {
        let mut set = JoinSet::new();
        for i in 0..SCOPE_CHILDREN {
            set.spawn(async move {
                sum.fetch_add(i, Ordering::Relaxed);
            });
        }
        while let Some(joined) = set.join_next().await {
            joined.map_err(|e| format!("child failed: {e}"))?;
        }
    }
    Ok(())
}

/// A message to the actor.
enum Msg {
    /// Add to the counter; no reply.
    Add(u64),
    /// Reply with the counter.
    Get(oneshot::Sender<u64>),
}

/// The driver's end of an actor: a task owning a `u64` counter and looping on a bounded
/// mailbox of [`MAILBOX`] messages until every sender is gone.
struct Actor {
    mailbox: mpsc::Sender<Msg>,
    task: tokio::task::JoinHandle<u64>,
}

impl Actor {
    fn spawn() -> Self {
        let (mailbox, mut rx) = mpsc::channel(MAILBOX);
        let task = tokio::spawn(async move {
            let mut count = 0u64;
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Add(k) => count += k,
                    // A dropped reply end is the asker's business.
                    Msg::Get(reply) => drop(reply.send(count)),
                }
            }
            count
        });
        Self { mailbox, task }
    }

    async fn send(&self, msg: Msg) -> Result<(), String> {
        self.mailbox.send(msg).await.map_err(|_| "actor mailbox closed".to_string())
    }

    /// `n` fire-and-forget `Add(1)`s.
    async fn tells(&self, n: u64) -> Result<(), String> {
        for _ in 0..n {
            self.send(Msg::Add(1)).await?;
        }
        Ok(())
    }

    /// One round trip: a `Get` with a fresh oneshot, and its reply.
    async fn ask(&self) -> Result<u64, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Msg::Get(reply)).await?;
        answer.await.map_err(|_| "actor dropped a reply".to_string())
    }

    /// `n` asks of an actor that is told nothing, so every reply must be 0.
    async fn asks(&self, n: u64) -> Result<(), String> {
        for _ in 0..n {
            match self.ask().await? {
                0 => {}
                got => return Err(format!("actor replied {got}, expected 0")),
            }
        }
        Ok(())
    }

    /// Asks once and checks the counter is `want`.
    async fn expect(&self, want: u64) -> Result<(), String> {
        match self.ask().await? {
            got if got == want => Ok(()),
            got => Err(format!("actor counted {got}, expected {want}")),
        }
    }

    /// Closes the mailbox, joins the actor and checks its final counter is `want`.
    async fn stop(self, want: u64) -> Result<(), String> {
        drop(self.mailbox);
        match self.task.await.map_err(|e| format!("actor failed: {e}"))? {
            got if got == want => Ok(()),
            got => Err(format!("actor ended with {got}, expected {want}")),
        }
    }
}
