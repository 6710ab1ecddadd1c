//! Active health checks: one coroutine per backend of a pool with `[pool.health]`,
//! checking at once and then every `interval`: connect, write `send`, read until
//! `expect` appears, all within `timeout`. `fall` failures in a row take a backend out,
//! `rise` passes in a row put it back.
//!
//! A checker stops when its backend's `checker` mark is no longer its generation (a
//! reload or a shutdown started others, or none).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use kcoro::net::TcpStream;

use crate::config::{EXPECT_LIMIT, HealthConfig};
use crate::pool::{Backend, Pool};

/// Starts `pool`'s checkers as `generation`; a pool without checks has every backend up.
pub(crate) fn start(pool: &Pool, generation: u64) -> Result<(), kcoro::Error> {
    for backend in &pool.backends {
        backend.checker.store(generation, Relaxed);
        let Some(health) = pool.config.health.clone() else {
            backend.set_up(true); // nothing would ever put it back
            continue;
        };
        let backend = Arc::clone(backend);
        let name = format!("health {}", backend.addr);
        kcoro::spawn_with(kcoro::SpawnOptions::new().daemon().name(name), move || {
            watch(&backend, &health, generation)
        })?;
    }
    Ok(())
}

fn watch(backend: &Backend, health: &HealthConfig, generation: u64) {
    let (mut passes, mut fails) = (0u32, 0u32);
    while backend.checker.load(Relaxed) == generation {
        if check(backend.addr, health) {
            (passes, fails) = (passes.saturating_add(1), 0);
            if !backend.is_up() && passes >= health.rise {
                backend.set_up(true);
            }
        } else {
            (passes, fails) = (0, fails.saturating_add(1));
            backend.checks_failed.fetch_add(1, Relaxed);
            if backend.is_up() && fails >= health.fall {
                backend.set_up(false);
            }
        }
        kcoro::sleep(health.interval);
    }
}

/// One check: whether `addr` connects, takes `send` and answers with `expect`, all
/// within `health.timeout`.
pub(crate) fn check(addr: SocketAddr, health: &HealthConfig) -> bool {
    // A timeout past the clock's range (a config may say "1000000y") has no deadline: each
    // step then waits the timeout itself.
    let deadline = kcoro::now().checked_add(health.timeout);
    let left = || {
        deadline.map_or(health.timeout, |d| {
            d.saturating_duration_since(kcoro::now()).max(std::time::Duration::from_nanos(1))
        })
    };
    let Ok(conn) = TcpStream::connect_timeout(&addr, health.timeout) else { return false };
    if let Some(send) = &health.send {
        let _ = conn.set_write_timeout(Some(left()));
        if (&conn).write_all(send).is_err() {
            return false;
        }
    }
    let Some(expect) = &health.expect else { return true };
    let mut got = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while got.len() < EXPECT_LIMIT {
        let _ = conn.set_read_timeout(Some(left()));
        match (&conn).read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
        if got.windows(expect.len()).any(|w| w == expect.as_slice()) {
            return true;
        }
    }
    false
}
