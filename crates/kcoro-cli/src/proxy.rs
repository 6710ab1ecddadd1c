//! `kcoro proxy --config FILE`: runs a [`kcoro_proxy::Proxy`] until SIGTERM or SIGINT,
//! reloading the file on SIGHUP.
//!
//! Signals are blocked before the runtime's threads start and taken synchronously on the
//! main thread ([`Interrupts`]); the proxy is driven from there through `block_on`.
//!
//! Exit codes: 0 after a clean shutdown (or a valid `--check`), 2 for a bad file or
//! usage, 1 when the proxy cannot start (a port in use, say).

use std::process::ExitCode;

use kcoro_proxy::{Config, Proxy};

use crate::args::ProxyArgs;
use crate::signals::Interrupts;

pub fn run(args: &ProxyArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kcoro proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!(
            "{}: ok ({} listeners, {} pools)",
            args.config.display(),
            config.listeners.len(),
            config.pools.len()
        );
        return ExitCode::SUCCESS;
    }
    let signals = match Interrupts::block_with_hangup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kcoro proxy: cannot block signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before the runtime's threads exist: growing the descriptor table is free now.
    match kcoro_proxy::prepare_descriptors(&config) {
        Ok((needed, limit)) if limit < needed => eprintln!(
            "kcoro proxy: the descriptor limit is {limit}, below the {needed} that max_connections may need (raise the hard RLIMIT_NOFILE)"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("kcoro proxy: cannot size the descriptor table: {e}"),
    }
    let mut builder = kcoro::Runtime::builder().name("proxy").idle_spin(config.idle_spin);
    if let Some(w) = config.workers {
        builder = builder.workers(w);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kcoro proxy: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let grace = config.shutdown_grace;
    let monitor = args.monitor.clone();
    let started = rt.block_on(move || {
        let proxy = Proxy::start(config).map_err(|e| e.to_string())?;
        let monitor = match monitor {
            Some(addr) => {
                // chanmon's metrics view (`m`) shows the proxy's counters.
                let counted = proxy.clone();
                let served = kcoro_ipc::monitor::serve_with_metrics(&addr, move || counted.metrics());
                Some(served.map_err(|e| format!("monitor on {addr}: {e}"))?)
            }
            None => None,
        };
        Ok::<_, String>((proxy, monitor))
    });
    let (proxy, _monitor) = match started {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kcoro proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, addr) in proxy.listeners() {
        println!("listening: {name} on {addr}");
    }
    if let Some(addr) = proxy.metrics_addr() {
        println!("metrics: http://{addr}/metrics");
    }
    loop {
        match signals.wait(None) {
            Some("SIGHUP") => reload(&rt, &proxy, args),
            Some(sig) => {
                println!(
                    "{sig}: stopping: {} connections open, waiting up to {grace:?}",
                    proxy.open_connections()
                );
                break;
            }
            None => {}
        }
    }
    let report = {
        let proxy = proxy.clone();
        rt.block_on(move || proxy.shutdown(grace))
    };
    println!(
        "stopped: {} connections were open, {} closed at the end of the grace",
        report.open_at_start, report.forced
    );
    ExitCode::SUCCESS
}

/// Reads the file again and moves to it; a bad file leaves the running configuration.
fn reload(rt: &kcoro::Runtime, proxy: &Proxy, args: &ProxyArgs) {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reload refused, the running configuration stays: {e}");
            return;
        }
    };
    let proxy = proxy.clone();
    match rt.block_on(move || proxy.reload(config)) {
        Ok(r) => {
            println!("reloaded: added {:?}, removed {:?}, kept {:?}", r.added, r.removed, r.kept);
            for why in r.ignored {
                println!("reload: {why}");
            }
        }
        Err(e) => eprintln!("reload refused, the running configuration stays: {e}"),
    }
}
