//! The workload `kcoro chanmon --demo` monitors: a small pipeline on its own runtime with
//! one channel of each kind, paced so the screen shows steady rates, one stage that falls
//! behind (a buffer that fills and parked senders), and a conflated channel that drops.
//! Every coroutine is named, and a few wait visibly for the coroutine view: a job worker
//! parked on a receive most of the time, a housekeeper in a long sleep, and a supervisor
//! waiting on a control channel that carries one message at the start (the stuck lint
//! flags it after `--stuck-after`: that is what a wait for a shutdown signal looks like).
//!
//! ```text
//!   2 producers ─▶ demo.ingress (buffered 256) ─▶ router ─▶ demo.work (rendezvous)
//!       ─▶ 3 workers ─▶ demo.results (buffered 64) ─▶ slow sink
//!   ticker ─▶ demo.ticks (conflated) ─▶ tick-reader every 50 ms
//!   workers ─▶ demo.audit (unlimited) ─▶ auditor in bursts
//!   dispatcher every 1.5 s ─▶ demo.jobs (buffered 4) ─▶ jobs-worker
//!   start() once ─▶ demo.control (buffered 1) ─▶ supervisor
//!   housekeeper: sleeps 10 s at a time
//! ```
//!
//! It also counts what the sink and the jobs worker finished, as the program's own
//! metrics ([`Demo::metrics`]): what the metrics view (`m`) shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use kcoro::SpawnOptions;
use kcoro::chan::{Builder, Kind, Receiver, Sender};
use kcoro::sync::CancelToken;

/// The running demo; dropping it stops the pipeline and the runtime.
pub struct Demo {
    pub runtime: kcoro::Runtime,
    token: CancelToken,
    /// Kept open, so the supervisor waits on it (its one message was sent at the start).
    _control: Sender<Vec<u8>>,
    done: Arc<Done>,
}

/// What the demo's last stages finished.
#[derive(Debug, Default)]
struct Done {
    sunk: AtomicU64,
    jobs: AtomicU64,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn channel(name: &str, kind: Kind, capacity: usize) -> (Sender<Vec<u8>>, Receiver<Vec<u8>>) {
    Builder::new(kind).capacity(capacity).name(name).count_payload_bytes().build()
}

/// Spawns `f` on `rt` as a coroutine named `name` (its spawn site is the caller's).
#[track_caller]
fn spawn(rt: &kcoro::Runtime, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    rt.handle().spawn_with(SpawnOptions::new().name(name), f).map(drop).map_err(|e| format!("{name}: {e}"))
}

/// The demo's channels, for [`Demo::wait_until_flowing`].
const CHANNELS: usize = 7;

/// Starts the pipeline on a runtime of its own.
pub fn start() -> Result<Demo, String> {
    let runtime = kcoro::Runtime::builder().workers(2).build().map_err(|e| e.to_string())?;
    let token = CancelToken::new();
    let (ingress_tx, ingress_rx) = channel("demo.ingress", Kind::Buffered, 256);
    let (work_tx, work_rx) = channel("demo.work", Kind::Rendezvous, 0);
    let (results_tx, results_rx) = channel("demo.results", Kind::Buffered, 64);
    let (ticks_tx, ticks_rx) = channel("demo.ticks", Kind::Conflated, 1);
    let (audit_tx, audit_rx) = channel("demo.audit", Kind::Unlimited, 0);
    let done = Arc::new(Done::default());

    for p in 0..2u8 {
        let (tx, t) = (ingress_tx.clone(), token.clone());
        spawn(&runtime, &format!("producer-{p}"), move || {
            let mut i = 0usize;
            while !t.is_cancelled() {
                // 64..=1087 bytes, varying, so byte rates differ from message rates.
                let len = 64 + (i * 37 + usize::from(p) * 101) % 1024;
                if tx.send_cancellable(vec![p; len], &t).is_err() {
                    break;
                }
                i += 1;
                if i % 20 == 0 {
                    kcoro::sleep(Duration::from_millis(2));
                }
            }
        })?;
    }
    drop(ingress_tx);
    {
        let (rx, tx, t) = (ingress_rx, work_tx, token.clone());
        spawn(&runtime, "router", move || {
            while let Ok(m) = rx.recv_cancellable(&t) {
                if tx.send_cancellable(m, &t).is_err() {
                    break;
                }
            }
        })?;
    }
    for w in 0..3 {
        let (rx, tx, audit, t) = (work_rx.clone(), results_tx.clone(), audit_tx.clone(), token.clone());
        spawn(&runtime, &format!("worker-{w}"), move || {
            while let Ok(m) = rx.recv_cancellable(&t) {
                let _ = audit.try_send(m[..8.min(m.len())].to_vec());
                if tx.send_cancellable(m, &t).is_err() {
                    break;
                }
            }
        })?;
    }
    drop((work_rx, results_tx, audit_tx));
    {
        // Slower than the workers: demo.results stays near full with parked senders.
        let (rx, t, done) = (results_rx, token.clone(), Arc::clone(&done));
        spawn(&runtime, "sink", move || {
            let mut n = 0u64;
            while rx.recv_cancellable(&t).is_ok() {
                n += 1;
                done.sunk.fetch_add(1, Relaxed);
                if n % 8 == 0 {
                    kcoro::sleep(Duration::from_millis(1));
                }
            }
        })?;
    }
    {
        let (tx, rx, t) = (ticks_tx, ticks_rx, token.clone());
        let t2 = t.clone();
        spawn(&runtime, "ticker", move || {
            let mut tick = 0u64;
            while !t.is_cancelled() {
                let _ = tx.try_send(tick.to_be_bytes().to_vec());
                tick += 1;
                kcoro::sleep(Duration::from_millis(5));
            }
        })?;
        spawn(&runtime, "tick-reader", move || {
            while !t2.is_cancelled() {
                kcoro::sleep(Duration::from_millis(50));
                let _ = rx.try_recv();
            }
        })?;
    }
    {
        let (rx, t) = (audit_rx, token.clone());
        spawn(&runtime, "auditor", move || {
            while !t.is_cancelled() {
                kcoro::sleep(Duration::from_millis(200));
                while rx.try_recv().is_ok() {}
            }
        })?;
    }
    {
        // A job now and then: the worker is parked on its receive most of the time.
        let (tx, rx) = channel("demo.jobs", Kind::Buffered, 4);
        let (t, t2, done) = (token.clone(), token.clone(), Arc::clone(&done));
        spawn(&runtime, "dispatcher", move || {
            while tx.send_cancellable(b"job".to_vec(), &t).is_ok() {
                kcoro::sleep(Duration::from_millis(1500));
            }
        })?;
        spawn(&runtime, "jobs-worker", move || {
            while rx.recv_cancellable(&t2).is_ok() {
                done.jobs.fetch_add(1, Relaxed);
            }
        })?;
    }
    let t = token.clone();
    spawn(&runtime, "housekeeper", move || {
        while !t.is_cancelled() {
            kcoro::sleep(Duration::from_secs(10));
        }
    })?;
    let (control, control_rx) = channel("demo.control", Kind::Buffered, 1);
    let t = token.clone();
    spawn(&runtime, "supervisor", move || while control_rx.recv_cancellable(&t).is_ok() {})?;
    control.try_send(b"start".to_vec()).map_err(|e| format!("demo.control: {e}"))?;
    let demo = Demo { runtime, token, _control: control, done };
    demo.wait_until_flowing(Duration::from_secs(5));
    Ok(demo)
}

impl Demo {
    /// The demo's own counters, read by the metrics view.
    pub fn metrics(&self) -> impl Fn() -> Vec<kcoro::monitor::Metric> + Send + 'static {
        use kcoro::monitor::Metric;
        let done = Arc::clone(&self.done);
        move || {
            vec![
                Metric::counter(
                    "demo_items_total",
                    "Items the pipeline finished, by stage.",
                    done.sunk.load(Relaxed) as f64,
                )
                .label("stage", "sink"),
                Metric::counter(
                    "demo_items_total",
                    "Items the pipeline finished, by stage.",
                    done.jobs.load(Relaxed) as f64,
                )
                .label("stage", "jobs-worker"),
            ]
        }
    }

    /// Waits (at most `limit`) until every demo channel has carried a value and been
    /// read from, so a first sample (`--once`) shows the pipeline running, not zeros.
    fn wait_until_flowing(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            let demo: Vec<_> = kcoro::chan::registry::list()
                .into_iter()
                .filter(|s| s.name.as_deref().is_some_and(|n| n.starts_with("demo.")))
                .collect();
            if demo.len() == CHANNELS && demo.iter().all(|s| s.sends > 0 && s.recvs > 0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
