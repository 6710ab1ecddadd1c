//! A program that deadlocks, for `kcoro chanmon` to find: coroutine "a" receives on
//! `left`, which only "b" sends on, and only after "b" has received on `right`, which only
//! "a" sends on (after its own receive). Neither ever moves.
//!
//! ```text
//! cargo run --release -p kcoro-cli --example deadlock -- unix:/tmp/deadlock.sock
//! kcoro chanmon unix:/tmp/deadlock.sock --check deadlock
//! ```
//!
//! It serves the monitor at the address given, prints `serving the monitor on ADDR`, and
//! reports the deadlock itself on stderr too (`Builder::on_deadlock`), then stays
//! deadlocked until it is killed.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use kcoro::SpawnOptions;
use kcoro::chan::Builder;
use kcoro::inspect::OnDeadlock;

fn main() -> ExitCode {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "unix:/tmp/deadlock.sock".to_string());
    match run(&addr) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("deadlock: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the monitor at `addr`, deadlocks two coroutines and waits for ever; returns only
/// when something cannot be set up.
pub fn run(addr: &str) -> Result<std::convert::Infallible, String> {
    let rt = kcoro::Runtime::builder()
        .workers(2)
        // The runtime's own watchdog: once the same deadlock has held for half a second,
        // it prints the report to stderr.
        .on_deadlock(OnDeadlock::Report, Duration::from_millis(500))
        .build()
        .map_err(|e| e.to_string())?;
    let at = addr.to_string();
    let monitor = rt
        .try_block_on(move || kcoro_ipc::monitor::serve(&at))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{addr}: {e}"))?;
    let (left_tx, left_rx) = Builder::<u32>::buffered(1).name("left").build();
    let (right_tx, right_rx) = Builder::<u32>::buffered(1).name("right").build();
    let named = |name: &str| SpawnOptions::new().name(name);
    let h = rt.handle();
    let _a = h
        .spawn_with(named("a"), move || {
            if let Ok(v) = left_rx.recv() {
                let _ = right_tx.send(v + 1);
            }
        })
        .map_err(|e| e.to_string())?;
    let _b = h
        .spawn_with(named("b"), move || {
            if let Ok(v) = right_rx.recv() {
                let _ = left_tx.send(v + 1);
            }
        })
        .map_err(|e| e.to_string())?;
    println!("serving the monitor on {}", monitor.addr());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
