//! The workload `kcoro chanmon --demo` monitors: a small pipeline on its own runtime with
//! one channel of each kind, paced so the screen shows steady rates, one stage that falls
//! behind (a buffer that fills and parked senders), and a conflated channel that drops.
//!
//! ```text
//!   2 producers ─▶ demo.ingress (buffered 256) ─▶ router ─▶ demo.work (rendezvous)
//!       ─▶ 3 workers ─▶ demo.results (buffered 64) ─▶ slow sink
//!   ticker ─▶ demo.ticks (conflated) ─▶ reader every 50 ms
//!   workers ─▶ demo.audit (unlimited) ─▶ auditor in bursts
//! ```

use std::time::Duration;

use kcoro::chan::{Builder, Kind, Receiver, Sender};
use kcoro::sync::CancelToken;

/// The running demo; dropping it stops the pipeline and the runtime.
pub struct Demo {
    pub runtime: kcoro::Runtime,
    token: CancelToken,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn channel(name: &str, kind: Kind, capacity: usize) -> (Sender<Vec<u8>>, Receiver<Vec<u8>>) {
    Builder::new(kind).capacity(capacity).name(name).count_payload_bytes().build()
}

/// Starts the pipeline on a runtime of its own.
pub fn start() -> Result<Demo, String> {
    let runtime = kcoro::Runtime::builder().workers(2).build().map_err(|e| e.to_string())?;
    let token = CancelToken::new();
    let (ingress_tx, ingress_rx) = channel("demo.ingress", Kind::Buffered, 256);
    let (work_tx, work_rx) = channel("demo.work", Kind::Rendezvous, 0);
    let (results_tx, results_rx) = channel("demo.results", Kind::Buffered, 64);
    let (ticks_tx, ticks_rx) = channel("demo.ticks", Kind::Conflated, 1);
    let (audit_tx, audit_rx) = channel("demo.audit", Kind::Unlimited, 0);

    for p in 0..2u8 {
        let (tx, t) = (ingress_tx.clone(), token.clone());
        runtime.spawn(move || {
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
        });
    }
    drop(ingress_tx);
    {
        let (rx, tx, t) = (ingress_rx, work_tx, token.clone());
        runtime.spawn(move || {
            while let Ok(m) = rx.recv_cancellable(&t) {
                if tx.send_cancellable(m, &t).is_err() {
                    break;
                }
            }
        });
    }
    for _ in 0..3 {
        let (rx, tx, audit, t) = (work_rx.clone(), results_tx.clone(), audit_tx.clone(), token.clone());
        runtime.spawn(move || {
            while let Ok(m) = rx.recv_cancellable(&t) {
                let _ = audit.try_send(m[..8.min(m.len())].to_vec());
                if tx.send_cancellable(m, &t).is_err() {
                    break;
                }
            }
        });
    }
    drop((work_rx, results_tx, audit_tx));
    {
        // Slower than the workers: demo.results stays near full with parked senders.
        let (rx, t) = (results_rx, token.clone());
        runtime.spawn(move || {
            let mut n = 0u64;
            while rx.recv_cancellable(&t).is_ok() {
                n += 1;
                if n % 8 == 0 {
                    kcoro::sleep(Duration::from_millis(1));
                }
            }
        });
    }
    {
        let (tx, rx, t) = (ticks_tx, ticks_rx, token.clone());
        let t2 = t.clone();
        runtime.spawn(move || {
            let mut tick = 0u64;
            while !t.is_cancelled() {
                let _ = tx.try_send(tick.to_be_bytes().to_vec());
                tick += 1;
                kcoro::sleep(Duration::from_millis(5));
            }
        });
        runtime.spawn(move || {
            while !t2.is_cancelled() {
                kcoro::sleep(Duration::from_millis(50));
                let _ = rx.try_recv();
            }
        });
    }
    {
        let (rx, t) = (audit_rx, token.clone());
        runtime.spawn(move || {
            while !t.is_cancelled() {
                kcoro::sleep(Duration::from_millis(200));
                while rx.try_recv().is_ok() {}
            }
        });
    }
    let demo = Demo { runtime, token };
    demo.wait_until_flowing(Duration::from_secs(5));
    Ok(demo)
}

impl Demo {
    /// Waits (at most `limit`) until every demo channel has carried a value and been
    /// read from, so a first sample (`--once`) shows the pipeline running, not zeros.
    fn wait_until_flowing(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            let demo: Vec<_> = kcoro::chan::registry::list()
                .into_iter()
                .filter(|s| s.name.as_deref().is_some_and(|n| n.starts_with("demo.")))
                .collect();
            if demo.len() == 5 && demo.iter().all(|s| s.sends > 0 && s.recvs > 0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
