//! The `compat` suite's `reqwest_c<N>` rows: GETs with one reqwest `Client` against a
//! local HTTP server, from kcoro coroutines through `compat::tokio::wait` and from tokio
//! tasks.
//!
//! # Setup (the same for both rows)
//! - Server: this binary's kcoro hello server (the `net` suite's `http` service, one
//!   worker), in a process of its own that the measuring child starts and stops, so the
//!   client's process holds the client only. One request costs the server a few
//!   microseconds, far less than the client: the rows compare clients.
//! - Client: `reqwest::Client::builder().no_proxy().build()`, one per run: HTTP/1.1
//!   keep-alive through reqwest's connection pool.
//! - `c<N>`: N parties (coroutines or tasks) each sending one request after the other, so
//!   at most N in flight and N pooled connections; they take requests from one shared
//!   count. Every answer's status and body are checked. A warm-up round (a tenth of the
//!   requests, at least one per party) opens the connections before the timed round.
//! - kcoro: coroutines on `workers(2)`, each request a `compat::tokio::wait` on the
//!   bridge's default tokio runtime (one thread, which also runs hyper's connection tasks).
//! - tokio: tasks on a 2-worker multi-thread runtime, which also runs the connection tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::harness::Measurement;
use crate::net_suite::{HELLO_BODY, Server, start_hello_server};
use crate::runtime_suite::{WORKERS, warmup};

/// A party's stack. `wait` polls reqwest's futures on the coroutine's own stack, and an
/// unoptimised build's send needs more than the default 64 KiB (between 96 and 128 KiB;
/// an optimised one fits in 64): room for both, in address space only until touched.
const PARTY_STACK: usize = 256 << 10;

/// The parties of a `reqwest_c<N>` case name.
pub fn parties(case: &str) -> Option<usize> {
    case.strip_prefix("reqwest_c")?.parse().ok().filter(|&n| n > 0)
}

/// Requests left to send, shared by the parties of one round.
struct Left(AtomicI64);

impl Left {
    fn new(total: u64) -> Arc<Left> {
        Arc::new(Left(AtomicI64::new(total as i64)))
    }

    /// Claims one request; false once all are claimed.
    fn take(&self) -> bool {
        // Relaxed: the count only splits the work; the round's joins order the rest.
        self.0.fetch_sub(1, Relaxed) > 0
    }
}

/// The server and the URL both rows load.
fn start() -> Result<(Server, String), String> {
    let server = start_hello_server(1)?;
    let url = format!("http://127.0.0.1:{}/", server.port);
    Ok((server, url))
}

/// The client, built the same way for both rows.
fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder().no_proxy().build().map_err(|e| format!("reqwest client: {e}"))
}

/// One GET, its status and body checked.
async fn get(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("GET {url}: body: {e}"))?;
    if status != reqwest::StatusCode::OK || body != HELLO_BODY {
        return Err(format!("GET {url}: {status} {body:?}"));
    }
    Ok(())
}

/// Coroutines: `parties` of them, each waiting for its GETs with `compat::tokio::wait`.
pub fn kcoro_side(parties: usize, n: u64) -> Result<Measurement, String> {
    let (server, url) = start()?;
    let rt = kcoro::Runtime::builder().workers(WORKERS).build().map_err(|e| e.to_string())?;
    let elapsed = rt.block_on(move || {
        let client = client()?;
        let round = |total: u64| -> Result<Duration, String> {
            let left = Left::new(total);
            let start = Instant::now();
            let mut handles = Vec::with_capacity(parties);
            for _ in 0..parties {
                let (client, url, left) = (client.clone(), url.clone(), Arc::clone(&left));
                let party = move || -> Result<(), String> {
                    while left.take() {
                        kcoro::compat::tokio::wait(get(&client, &url)).map_err(|e| e.to_string())??;
                    }
                    Ok(())
                };
                // Spread: the parties start on both workers (they stay where they start).
                handles.push(
                    kcoro::spawn_with(kcoro::SpawnOptions::new().spread().stack_size(PARTY_STACK), party)
                        .map_err(|e| format!("spawn: {e}"))?,
                );
            }
            for h in handles {
                h.join().map_err(|e| format!("party: {e}"))??;
            }
            Ok(start.elapsed())
        };
        round(warmup(n).max(parties as u64))?;
        round(n)
    })?;
    server.stop()?;
    Ok(Measurement::per_op(elapsed, n))
}

/// Tasks: `parties` of them on a 2-worker runtime, each awaiting its GETs.
pub fn tokio_side(parties: usize, n: u64) -> Result<Measurement, String> {
    let (server, url) = start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let elapsed = rt.block_on(async move {
        let client = client()?;
        round_tokio(&client, &url, parties, warmup(n).max(parties as u64)).await?;
        round_tokio(&client, &url, parties, n).await
    })?;
    server.stop()?;
    Ok(Measurement::per_op(elapsed, n))
}

/// One round of `total` GETs from `parties` tasks.
async fn round_tokio(
    client: &reqwest::Client,
    url: &str,
    parties: usize,
    total: u64,
) -> Result<Duration, String> {
    let left = Left::new(total);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(parties);
    for _ in 0..parties {
        let (client, url, left) = (client.clone(), url.to_string(), Arc::clone(&left));
        handles.push(tokio::spawn(async move {
            while left.take() {
                get(&client, &url).await?;
            }
            Ok::<_, String>(())
        }));
    }
    for h in handles {
        h.await.map_err(|e| format!("party: {e}"))??;
    }
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_give_the_parties() {
        assert_eq!(parties("reqwest_c1"), Some(1));
        assert_eq!(parties("reqwest_c100"), Some(100));
        assert_eq!(parties("reqwest_c0"), None);
        assert_eq!(parties("reqwest_100"), None);
        assert_eq!(parties("wait_ready"), None);
    }

    #[test]
    fn the_shared_count_hands_out_each_request_once() {
        let left = Left::new(3);
        assert_eq!((0..5).filter(|_| left.take()).count(), 3);
    }
}
