//! Suite `compat`: what awaiting async code from coroutines costs (`kcoro::future::wait`,
//! `kcoro::compat::tokio::wait`), beside tokio doing the same from its own tasks.
//!
//! | case             | one op                                                              |
//! |------------------|---------------------------------------------------------------------|
//! | `wait_ready`     | wait for a future that is ready at once                             |
//! | `oneshot_rtt`    | a round trip to a tokio task: request on a tokio mpsc, answer on a fresh tokio oneshot |
//! | `park_pingpong`  | reference: a kcoro rendezvous ping-pong between two workers (the hop `oneshot_rtt` is held to) |
//! | `reqwest_c<N>`   | one HTTP/1.1 GET with reqwest to a local server, N parties sending at once (see [`reqwest`]) |
//!
//! kcoro: the measuring party is a coroutine (2 workers) and waits with
//! `kcoro::future::wait` (`wait_ready`) or `compat::tokio::wait` (`oneshot_rtt`, whose
//! answering task runs on the bridge's one-thread tokio runtime). tokio: the measuring
//! party is a task of a 2-worker runtime; `wait_ready` is `Handle::block_on` from a
//! plain thread (what a coroutine-less caller pays), `oneshot_rtt` an `.await` in a task.
//! The reqwest rows load one server, in a process of its own, from one `Client`: N
//! coroutines each waiting with `compat::tokio::wait`, or N tasks each awaiting.

mod reqwest;

use std::time::Instant;

use crate::harness::{KCORO, Measurement, Skip, Suite, throughput};
use crate::runtime_suite::warmup;

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "compat",
    notes: &[
        "kcoro: a coroutine on workers(2) waiting with kcoro::future::wait / compat::tokio::wait;",
        "  oneshot_rtt's answering task runs on compat::tokio's runtime (1 thread)",
        "tokio: wait_ready is Handle::block_on from a thread; oneshot_rtt an .await in a task,",
        "  the answering task on the same 2-worker runtime",
        "park_pingpong: kcoro only, a rendezvous ping-pong across 2 workers (the reference hop)",
        "reqwest_c<N>: GETs from one reqwest Client (HTTP/1.1 keep-alive) by N coroutines / N tokio tasks at once;",
        "  the server: kcoro-bench's hello server (net suite, http, 1 worker) in its own process, unpinned",
        "  kcoro: compat::tokio's runtime (1 thread) runs hyper's connection tasks; tokio: its 2 workers do",
    ],
    cases: &[
        throughput("wait_ready", 5_000_000, 500_000),
        throughput("oneshot_rtt", 200_000, 20_000),
        throughput("park_pingpong", 500_000, 50_000),
        throughput("reqwest_c1", 20_000, 2_000),
        throughput("reqwest_c10", 100_000, 10_000),
        throughput("reqwest_c100", 100_000, 10_000),
        throughput("reqwest_c1000", 100_000, 10_000),
    ],
    impls: &[KCORO, "tokio"],
    skips: &[Skip { imp: "tokio", cases: &["park_pingpong"], why: "a kcoro reference row" }],
    prepare: None,
    go_in_child: false,
    child,
};

fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    if let Some(parties) = reqwest::parties(case) {
        crate::net_suite::sys::raise_nofile_limit()
            .map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
        return match imp {
            KCORO => reqwest::kcoro_side(parties, n),
            "tokio" => reqwest::tokio_side(parties, n),
            _ => Err(format!("compat: no impl {imp:?}")),
        };
    }
    match imp {
        KCORO => kcoro_side(case, n),
        "tokio" => tokio_side(case, n),
        _ => Err(format!("compat: no impl {imp:?}")),
    }
}

type Request = tokio::sync::oneshot::Sender<u64>;

/// A tokio task answering every request with its number: the far side of `oneshot_rtt`.
async fn answer(mut rx: tokio::sync::mpsc::Receiver<(u64, Request)>) {
    while let Some((i, reply)) = rx.recv().await {
        let _ = reply.send(i);
    }
}

fn kcoro_side(case: &str, n: u64) -> Result<Measurement, String> {
    let rt = kcoro::Runtime::builder()
        .workers(crate::runtime_suite::WORKERS)
        .build()
        .map_err(|e| e.to_string())?;
    match case {
        "wait_ready" => rt.block_on(move || {
            let mut sum = 0u64;
            for i in 0..warmup(n) {
                sum =
                    sum.wrapping_add(kcoro::future::wait(std::future::ready(i)).map_err(|e| e.to_string())?);
            }
            let start = Instant::now();
            for i in 0..n {
                sum =
                    sum.wrapping_add(kcoro::future::wait(std::future::ready(i)).map_err(|e| e.to_string())?);
            }
            let elapsed = start.elapsed();
            std::hint::black_box(sum);
            Ok(Measurement::per_op(elapsed, n))
        }),
        "oneshot_rtt" => rt.block_on(move || {
            let tokio = kcoro::compat::tokio::handle().map_err(|e| e.to_string())?;
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio.spawn(answer(rx));
            let round = |i: u64| -> Result<(), String> {
                let (reply, back) = tokio::sync::oneshot::channel();
                let sent = kcoro::compat::tokio::wait(tx.send((i, reply))).map_err(|e| e.to_string())?;
                sent.map_err(|_| "the answering task is gone".to_string())?;
                match kcoro::compat::tokio::wait(back).map_err(|e| e.to_string())? {
                    Ok(v) if v == i => Ok(()),
                    other => Err(format!("sent {i}, got {other:?}")),
                }
            };
            (0..warmup(n)).try_for_each(round)?;
            let start = Instant::now();
            (0..n).try_for_each(round)?;
            Ok(Measurement::per_op(start.elapsed(), n))
        }),
        "park_pingpong" => rt.block_on(move || crate::runtime_suite::kcoro_pair::run(n, true)),
        _ => Err(format!("compat: no case {case:?}")),
    }
}

fn tokio_side(case: &str, n: u64) -> Result<Measurement, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::runtime_suite::WORKERS)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match case {
        "wait_ready" => {
            let mut sum = 0u64;
            for i in 0..warmup(n) {
                sum = sum.wrapping_add(rt.block_on(std::future::ready(i)));
            }
            let start = Instant::now();
            for i in 0..n {
                sum = sum.wrapping_add(rt.block_on(std::future::ready(i)));
            }
            let elapsed = start.elapsed();
            std::hint::black_box(sum);
            Ok(Measurement::per_op(elapsed, n))
        }
        "oneshot_rtt" => rt.block_on(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(answer(rx));
            let driver = tokio::spawn(async move {
                let mut start = Instant::now();
                for i in 0..warmup(n) + n {
                    if i == warmup(n) {
                        start = Instant::now();
                    }
                    let (reply, back) = tokio::sync::oneshot::channel();
                    tx.send((i, reply)).await.map_err(|_| "the answering task is gone".to_string())?;
                    match back.await {
                        Ok(v) if v == i => {}
                        other => return Err(format!("sent {i}, got {other:?}")),
                    }
                }
                Ok::<_, String>(Measurement::per_op(start.elapsed(), n))
            });
            driver.await.map_err(|e| e.to_string())?
        }),
        _ => Err(format!("compat: no case {case:?}")),
    }
}
