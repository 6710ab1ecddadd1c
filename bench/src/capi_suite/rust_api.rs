//! `capi` suite, `kcoro-rs` rows: the C program's shapes on `kcoro::chan`, parties as
//! coroutines on a two-worker runtime, the driver as its `block_on` coroutine.

use std::time::Instant;

use kcoro::chan::{self, ChanError};

use crate::harness::Measurement;
use crate::runtime_suite::{kcoro_rt, warmup};

/// A `(ptr, len)` pair, as the C API's pointer mode moves it.
type PtrMsg = (usize, usize);

/// Runs `case` with `n` operations (after a warm-up) on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    let case = case.to_owned();
    kcoro_rt::drive(move || {
        let once = |n| match case.as_str() {
            "pingpong_rendezvous" => pingpong(n),
            "spsc_1024_4b" => pipes(1, 1, n, |i| i as u32),
            "spsc_1024_64b" => pipes(1, 1, n, |i| [i as u8; 64]),
            "mpmc_4x4_1024_4b" => pipes(4, 4, n, |i| i as u32),
            "mpmc_4x4_1024_64b" => pipes(4, 4, n, |i| [i as u8; 64]),
            "ptr_spsc_64k" => {
                let buf = Box::leak(vec![0u8; super::PTR_BYTES as usize].into_boxed_slice());
                let msg: PtrMsg = (buf.as_ptr() as usize, buf.len());
                pipes(1, 1, n, move |_| msg)
            }
            other => Err(format!("capi: no case {other:?}")),
        };
        once(warmup(n))?;
        let ns = once(n)?;
        Ok(Measurement::per_op(std::time::Duration::from_nanos(ns), n))
    })
}

fn pingpong(n: u64) -> Result<u64, String> {
    let (ping_tx, ping_rx) = chan::rendezvous::<u32>();
    let (pong_tx, pong_rx) = chan::rendezvous::<u32>();
    let echo = kcoro::spawn(move || {
        for _ in 0..n {
            let v = ping_rx.recv().map_err(|e| format!("echo recv: {e}"))?;
            pong_tx.send(v).map_err(|e| format!("echo send: {e}"))?;
        }
        Ok::<(), String>(())
    });
    let t0 = Instant::now();
    for i in 0..n {
        ping_tx.send(i as u32).map_err(|e| format!("ping: {e}"))?;
        let back = pong_rx.recv().map_err(|e| format!("pong: {e}"))?;
        if back != i as u32 {
            return Err(format!("pingpong: sent {i}, got {back}"));
        }
    }
    let ns = t0.elapsed().as_nanos() as u64;
    echo.join().map_err(|e| format!("echo: {e}"))??;
    Ok(ns)
}

/// Producers send `n` messages in total into a buffered(1024) channel; consumers receive
/// until it closes (when the last producer's sender drops).
fn pipes<T: Send + 'static>(
    producers: u64,
    consumers: u64,
    n: u64,
    make: impl Fn(u64) -> T + Send + Copy + 'static,
) -> Result<u64, String> {
    let (tx, rx) = chan::buffered::<T>(1024);
    let t0 = Instant::now();
    let mut sends = Vec::new();
    for p in 0..producers {
        let (tx, count) = (tx.clone(), n / producers + u64::from(p < n % producers));
        sends.push(kcoro::spawn(move || {
            for i in 0..count {
                tx.send(make(i)).map_err(|e| format!("send: {}", e.kind()))?;
            }
            Ok::<(), String>(())
        }));
    }
    drop(tx);
    let mut recvs = Vec::new();
    for _ in 0..consumers {
        let rx = rx.clone();
        recvs.push(kcoro::spawn(move || {
            let mut got = 0u64;
            loop {
                match rx.recv() {
                    Ok(v) => {
                        std::hint::black_box(v);
                        got += 1;
                    }
                    Err(ChanError::Closed) => return Ok(got),
                    Err(e) => return Err(format!("recv: {e}")),
                }
            }
        }));
    }
    drop(rx);
    for s in sends {
        s.join().map_err(|e| format!("producer: {e}"))??;
    }
    let mut got = 0;
    for r in recvs {
        got += r.join().map_err(|e| format!("consumer: {e}"))??;
    }
    let ns = t0.elapsed().as_nanos() as u64;
    if got != n {
        return Err(format!("received {got} of {n}"));
    }
    Ok(ns)
}
