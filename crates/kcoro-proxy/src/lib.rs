//! `kcoro-proxy`: a TCP proxy on kcoro's coroutines and sockets.
//!
//! Listeners accept connections and forward each to a backend of their pool
//! (round-robin or least-connections), on two coroutines per connection; active health
//! checks take backends out and put them back; limits, idle and connect timeouts, PROXY
//! protocol v1/v2 towards backends; a reload swaps the configuration without touching
//! open connections; a shutdown stops accepting and waits for them. `kcoro proxy
//! --config FILE` runs one from the command line (SIGHUP reloads, SIGTERM/SIGINT shut
//! down); this crate is the same thing as a library. See docs/PROXY.md.
//!
//! ```no_run
//! use kcoro_proxy::{Config, Proxy};
//!
//! let config = Config::load("proxy.toml".as_ref()).expect("a valid file");
//! kcoro::run(move || {
//!     let proxy = Proxy::start(config).expect("listening");
//!     for (name, addr) in proxy.listeners() {
//!         println!("{name} on {addr}");
//!     }
//!     // ... later: proxy.reload(new_config), proxy.stats(), proxy.shutdown(grace)
//! });
//! ```

mod config;
mod error;
mod forward;
mod health;
mod listener;
mod metrics;
mod pool;
mod proxy_protocol;
mod registry;
mod splice;
mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

pub use config::{Balance, Config, HealthConfig, ListenerConfig, PoolConfig, ProxyProtocol};
pub use error::{ConfigError, Error};
use listener::Listener;
use pool::Pool;
use registry::Registry;
pub use stats::{BackendStats, ErrorCounts, ErrorKind, ListenerStats, PoolStats, Stats};

/// A running proxy. Cloning gives another handle to the same proxy.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    registry: Arc<Registry>,
    /// Nanoseconds between two idle sweeps ([`sweep_tick`]).
    sweep_tick: Arc<AtomicU64>,
    shut_down: AtomicBool,
    metrics: OnceLock<SocketAddr>,
}

/// What the current configuration built.
struct State {
    config: Config,
    /// In configuration order.
    listeners: Vec<Arc<Listener>>,
    pools: HashMap<String, Arc<Pool>>,
    /// Health checkers of this generation are the wanted ones.
    generation: u64,
    /// Listeners a reload removed while connections of theirs were open: their counters
    /// stay in the export until a reload finds them drained.
    retired: Vec<(ListenerConfig, Arc<Listener>)>,
}

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Listeners bound by this reload.
    pub added: Vec<String>,
    /// Listeners closed by this reload (their open connections go on).
    pub removed: Vec<String>,
    /// Listeners kept (same address) with their new settings.
    pub kept: Vec<String>,
    /// Settings that need a restart to change, left as they were.
    pub ignored: Vec<String>,
}

/// How a shutdown ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when the shutdown began.
    pub open_at_start: u64,
    /// Connections closed by force when the grace period ran out.
    pub forced: usize,
}

impl Proxy {
    /// Binds every listener, starts health checks and, if configured, the metrics
    /// endpoint. Must be called inside a kcoro runtime (in a coroutine). On an error
    /// nothing is left bound.
    pub fn start(config: Config) -> Result<Proxy, Error> {
        let _ = prepare_descriptors(&config); // the CLI reports a failure; a library user may call it first
        let registry = Arc::new(Registry::default());
        let pools: HashMap<String, Arc<Pool>> =
            config.pools.iter().map(|p| (p.name.clone(), Arc::new(Pool::new(p.clone(), None)))).collect();
        let mut bound = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            bound.push(bind(l, &pools)?);
        }
        let mut listeners = Vec::with_capacity(bound.len());
        for (listener, socket) in bound {
            listener.start(socket, Arc::clone(&registry)).map_err(runtime)?;
            listeners.push(listener);
        }
        for pool in pools.values() {
            health::start(pool, 1).map_err(runtime)?;
        }
        let sweep_tick = Arc::new(AtomicU64::new(sweep_tick(&config)));
        start_sweeper(Arc::downgrade(&registry), Arc::clone(&sweep_tick)).map_err(runtime)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                config: config.clone(),
                listeners,
                pools,
                generation: 1,
                retired: Vec::new(),
            }),
            registry,
            sweep_tick,
            shut_down: AtomicBool::new(false),
            metrics: OnceLock::new(),
        });
        let proxy = Proxy { shared };
        if let Some(addr) = config.metrics {
            // Weak: the endpoint's coroutine lives on; it must not keep the proxy alive.
            let me = Arc::downgrade(&proxy.shared);
            let render = move || {
                Weak::upgrade(&me).map(|shared| Proxy { shared }.render_metrics()).unwrap_or_default()
            };
            match kcoro::monitor::serve_with(&addr.to_string(), render) {
                Ok(bound) => {
                    let _ = proxy.shared.metrics.set(bound);
                }
                Err(source) => {
                    proxy.shutdown(Duration::ZERO);
                    return Err(Error::Metrics { addr, source });
                }
            }
        }
        Ok(proxy)
    }

    /// Moves to `config`: listeners are matched by address (kept sockets take the new
    /// settings; new ones are bound; the rest stop accepting, their connections go on),
    /// pools are rebuilt keeping the health and counts of backends that stay, and health
    /// checks restart. If anything fails (a bind), nothing changed. Inside a runtime.
    pub fn reload(&self, config: Config) -> Result<ReloadReport, Error> {
        if self.shared.shut_down.load(Relaxed) {
            return Err(Error::ShutDown);
        }
        let _ = prepare_descriptors(&config);
        let mut state = self.state();
        let pools: HashMap<String, Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| (p.name.clone(), Arc::new(Pool::new(p.clone(), state.pools.get(&p.name).map(|o| &**o)))))
            .collect();
        let mut report = ReloadReport::default();
        if config.metrics != state.config.metrics
            || config.workers != state.config.workers
            || config.idle_spin != state.config.idle_spin
        {
            report.ignored.push("metrics, workers and idle_spin change only with a restart".to_string());
        }
        // Bind what is new first: a failure leaves the running configuration untouched.
        let mut fresh = Vec::new();
        for l in config
            .listeners
            .iter()
            .filter(|l| !state.config.listeners.iter().any(|o| Config::same_socket(o, l)))
        {
            fresh.push(bind(l, &pools)?);
        }
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let pool = Arc::clone(&pools[&l.pool]);
            match state.config.listeners.iter().position(|o| Config::same_socket(o, l)) {
                Some(i) => {
                    let kept = Arc::clone(&state.listeners[i]);
                    kept.update(l.clone(), pool);
                    report.kept.push(l.name.clone());
                    listeners.push(kept);
                }
                None => {
                    let at = fresh
                        .iter()
                        .position(|(f, _): &(Arc<Listener>, _)| f.settings().config.name == l.name);
                    let Some((listener, socket)) = at.map(|i| fresh.swap_remove(i)) else {
                        unreachable!("every new listener was bound above");
                    };
                    listener.start(socket, Arc::clone(&self.shared.registry)).map_err(runtime)?;
                    report.added.push(l.name.clone());
                    listeners.push(listener);
                }
            }
        }
        // Stopped after the lock is let go (below): stopping waits for the accept loop,
        // and a coroutine reading the counters meanwhile (`/metrics`) would block on the
        // lock the worker that loop runs on.
        let mut to_stop = Vec::new();
        let mut retired: Vec<_> = std::mem::take(&mut state.retired);
        retired.retain(|(_, l)| l.open_connections() > 0);
        for (old, listener) in state.config.listeners.iter().zip(&state.listeners) {
            if !config.listeners.iter().any(|l| Config::same_socket(old, l)) {
                to_stop.push(Arc::clone(listener));
                retired.push((old.clone(), Arc::clone(listener)));
                report.removed.push(old.name.clone());
            }
        }
        let generation = state.generation + 1;
        // Old pools' backends that left: their checkers see a newer mark and stop.
        for pool in state.pools.values() {
            for b in &pool.backends {
                b.checker.store(generation, Relaxed);
            }
        }
        for pool in pools.values() {
            health::start(pool, generation).map_err(runtime)?;
        }
        self.shared.sweep_tick.store(sweep_tick(&config), Relaxed);
        *state = State { config, listeners, pools, generation, retired };
        drop(state);
        for listener in to_stop {
            listener.stop();
        }
        Ok(report)
    }

    /// Stops accepting on every listener and health checking, waits up to `grace` for
    /// open connections to end, then closes the ones left. Inside a runtime.
    pub fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.shared.shut_down.store(true, Relaxed);
        let listeners = {
            let mut state = self.state();
            state.generation += 1;
            for pool in state.pools.values() {
                for b in &pool.backends {
                    b.checker.store(state.generation, Relaxed);
                }
            }
            state.listeners.clone()
        };
        // Outside the lock, as in `reload`: stopping waits for each accept loop.
        for l in &listeners {
            l.stop();
        }
        let open_at_start = self.shared.registry.open();
        let deadline =
            kcoro::now().checked_add(grace).unwrap_or_else(|| kcoro::now() + Duration::from_secs(86_400));
        let forced = if self.shared.registry.drain(deadline) { 0 } else { self.shared.registry.close_all() };
        ShutdownReport { open_at_start, forced }
    }

    /// Each listener's name and the address it is bound to (a port 0 filled in).
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        let state = self.state();
        state.config.listeners.iter().zip(&state.listeners).map(|(c, l)| (c.name.clone(), l.bound)).collect()
    }

    /// The address of the listener named `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners().into_iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.shared.metrics.get().copied()
    }

    /// Connections accepted and not yet ended, over every listener.
    pub fn open_connections(&self) -> u64 {
        self.shared.registry.open()
    }

    /// Every counter now. A listener a reload removed while it had connections open counts
    /// on (under its name, added to the configured listener of that name if there is one)
    /// until a reload finds it drained.
    pub fn stats(&self) -> Stats {
        let state = self.state();
        let mut listeners: Vec<ListenerStats> =
            state.config.listeners.iter().zip(&state.listeners).map(|(c, l)| listener_stats(c, l)).collect();
        for (c, l) in &state.retired {
            let row = listener_stats(c, l);
            match listeners.iter_mut().find(|r| r.name == row.name) {
                Some(r) => r.absorb(&row),
                None => listeners.push(row),
            }
        }
        let pools = state
            .config
            .pools
            .iter()
            .map(|c| {
                let p = &state.pools[&c.name];
                PoolStats {
                    name: c.name.clone(),
                    pending: p.pending.load(Relaxed) as u64,
                    no_backend: p.no_backend.load(Relaxed),
                    backends: p
                        .backends
                        .iter()
                        .map(|b| BackendStats {
                            addr: b.addr,
                            up: b.is_up(),
                            active: b.active.load(Relaxed) as u64,
                            connections: b.connections.load(Relaxed),
                            connect_errors: b.connect_errors.load(Relaxed),
                            checks_failed: b.checks_failed.load(Relaxed),
                            downs: b.downs.load(Relaxed),
                        })
                        .collect(),
                }
            })
            .collect();
        Stats { listeners, pools }
    }

    /// The proxy's counters as metric samples (per listener, pool and backend): what
    /// `kcoro chanmon` shows when attached to a monitor serving them
    /// (`kcoro_ipc::ServerBuilder::metrics`).
    pub fn metrics(&self) -> Vec<kcoro::monitor::Metric> {
        metrics::collect(&self.stats())
    }

    /// The proxy's counters and the runtime's (channels, scheduler) in the Prometheus
    /// text format: what the `metrics` endpoint serves.
    pub fn render_metrics(&self) -> String {
        let mut out = metrics::render(&self.stats());
        out.push_str(&kcoro::monitor::render_current());
        out
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Raises the descriptor limit to what `config` may hold (at most the hard limit) and
/// grows the descriptor table to it now, so that a burst of connections never waits for
/// the kernel to grow it (`kcoro::net::reserve_descriptors`); returns what is needed and
/// the soft limit in force, or why the limit could not be read or raised. Best called
/// before the runtime's threads start (then the growth is free); again by `start` and
/// `reload` for a library user who did not.
pub fn prepare_descriptors(config: &Config) -> std::io::Result<(u64, u64)> {
    let needed = config.descriptors_needed();
    let limit = kcoro::net::raise_descriptor_limit(needed)?;
    kcoro::net::reserve_descriptors(usize::try_from(needed.min(limit)).unwrap_or(usize::MAX))?;
    Ok((needed, limit))
}

fn bind(
    l: &ListenerConfig,
    pools: &HashMap<String, Arc<Pool>>,
) -> Result<(Arc<Listener>, kcoro::net::TcpListener), Error> {
    // The configuration was checked: every listener names a pool that exists.
    let pool =
        pools.get(&l.pool).map(Arc::clone).ok_or_else(|| Error::Runtime(format!("no pool {:?}", l.pool)))?;
    Listener::bind(l.clone(), pool).map_err(|source| Error::Bind {
        name: l.name.clone(),
        addr: l.bind,
        source,
    })
}

/// One listener's row of [`Stats`].
fn listener_stats(c: &ListenerConfig, l: &Listener) -> ListenerStats {
    let k = &l.counters;
    let (accepted, closed) = (k.accepted.load(Relaxed), k.closed.load(Relaxed));
    ListenerStats {
        name: c.name.clone(),
        addr: l.bound,
        pool: c.pool.clone(),
        accepted,
        active: accepted.saturating_sub(closed),
        closed,
        bytes_in: k.bytes_in.load(Relaxed),
        bytes_out: k.bytes_out.load(Relaxed),
        errors: k.errors(),
    }
}

/// A quarter of the shortest idle timeout (so a connection is closed between one and
/// one and a quarter of its timeout), within 5 ms and 1 s.
fn sweep_tick(config: &Config) -> u64 {
    let shortest = config.listeners.iter().map(|l| l.idle_timeout).min().unwrap_or(Duration::from_secs(4));
    (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1)).as_nanos() as u64
}

/// The idle sweeper: runs while anything holds the registry (a proxy handle, a listener,
/// an open connection).
fn start_sweeper(registry: Weak<Registry>, tick: Arc<AtomicU64>) -> Result<(), kcoro::Error> {
    let opts = kcoro::SpawnOptions::new().daemon().name("proxy idle sweeper");
    kcoro::spawn_with(opts, move || {
        loop {
            kcoro::sleep(Duration::from_nanos(tick.load(Relaxed)));
            let Some(registry) = registry.upgrade() else { return };
            registry.sweep(kcoro::now());
        }
    })?;
    Ok(())
}

fn runtime(e: kcoro::Error) -> Error {
    Error::Runtime(e.to_string())
}
