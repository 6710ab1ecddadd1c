//! A listening socket and its accept loop: the connection limit, and a coroutine per
//! accepted connection (started on the workers in turn: kcoro spreads a spawn that
//! follows an accept).
//!
//! A reload swaps a listener's [`Settings`] (pool, limit, timeouts) without touching its
//! socket; connections already open keep the settings they started with.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kcoro::net::{TcpListener, TcpStream};

use crate::config::ListenerConfig;
use crate::forward;
use crate::pool::Pool;
use crate::registry::Registry;
use crate::stats::{ErrorKind, ListenerCounters};

/// What a listener's new connections get.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) config: ListenerConfig,
    pub(crate) pool: Arc<Pool>,
    /// The address the socket is bound to (the configured one with its port filled in).
    pub(crate) bound: SocketAddr,
}

/// A bound listener.
pub(crate) struct Listener {
    pub(crate) bound: SocketAddr,
    settings: Mutex<Arc<Settings>>,
    pub(crate) counters: Arc<ListenerCounters>,
    stopping: AtomicBool,
    accept_loop: Mutex<Option<kcoro::JoinHandle<()>>>,
}

impl Listener {
    /// Binds `config.bind` (inside a coroutine).
    pub(crate) fn bind(
        config: ListenerConfig,
        pool: Arc<Pool>,
    ) -> std::io::Result<(Arc<Listener>, TcpListener)> {
        let socket = TcpListener::bind(config.bind)?;
        let bound = socket.local_addr()?;
        let listener = Arc::new(Listener {
            bound,
            settings: Mutex::new(Arc::new(Settings { config, pool, bound })),
            counters: Arc::default(),
            stopping: AtomicBool::new(false),
            accept_loop: Mutex::new(None),
        });
        Ok((listener, socket))
    }

    /// Starts accepting on `socket`.
    pub(crate) fn start(
        self: &Arc<Self>,
        socket: TcpListener,
        registry: Arc<Registry>,
    ) -> Result<(), kcoro::Error> {
        let me = Arc::clone(self);
        let handle =
            kcoro::spawn_with(kcoro::SpawnOptions::new().daemon().name("proxy accept"), move || {
                me.accept_loop(socket, &registry)
            })?;
        *self.accept_loop.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// New connections get `config` and `pool` from now on.
    pub(crate) fn update(&self, config: ListenerConfig, pool: Arc<Pool>) {
        let settings = Arc::new(Settings { config, pool, bound: self.bound });
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    fn accept_loop(&self, socket: TcpListener, registry: &Arc<Registry>) {
        // `stop` wakes the loop with a connection of its own; should that connect fail
        // (out of descriptors), the loop still sees the stop within this long.
        let _ = socket.set_accept_timeout(Some(STOP_CHECK));
        loop {
            let accepted = socket.accept();
            if self.stopping.load(Relaxed) {
                return; // dropping `socket` closes the port
            }
            let (client, peer) = match accepted {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => {
                    // Out of descriptors, most likely: give the open connections a moment
                    // to end instead of spinning on the same error.
                    kcoro::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            // Counted before the check, so `accepted - closed` includes this connection.
            let accepted = self.counters.accepted.fetch_add(1, Relaxed) + 1;
            let settings = self.settings();
            if accepted - self.counters.closed.load(Relaxed) > settings.config.max_connections as u64 {
                self.counters.error(ErrorKind::Limit);
                self.counters.closed.fetch_add(1, Relaxed);
                continue; // `client` drops: closed at once
            }
            let ticket = registry.enter();
            let (counters, registry2) = (Arc::clone(&self.counters), Arc::clone(registry));
            let spawned = kcoro::try_spawn(move || {
                forward::serve(client, peer, &settings, &counters, &registry2);
                counters.closed.fetch_add(1, Relaxed);
                drop(ticket);
            });
            if spawned.is_err() {
                self.counters.error(ErrorKind::Spawn);
                self.counters.closed.fetch_add(1, Relaxed);
            }
        }
    }

    /// Its connections accepted and not yet ended.
    pub(crate) fn open_connections(&self) -> u64 {
        let k = &self.counters;
        k.accepted.load(Relaxed).saturating_sub(k.closed.load(Relaxed))
    }

    /// Stops accepting and closes the socket; connections already open go on.
    pub(crate) fn stop(&self) {
        if self.stopping.swap(true, Relaxed) {
            return;
        }
        // The accept loop parks in `accept`: a connection of our own wakes it.
        let _ = TcpStream::connect_timeout(&wake_addr(self.bound), Duration::from_secs(1));
        let handle = self.accept_loop.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// The longest a stopped listener may go on accepting when its wake-up connect failed.
const STOP_CHECK: Duration = Duration::from_secs(1);

/// Where to connect to reach a socket bound to `bound` (a wildcard means loopback).
fn wake_addr(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}
