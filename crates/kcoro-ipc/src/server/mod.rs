//! The serving side: a listener whose accept loop starts, for each connection, a reader
//! coroutine (dispatch), a writer coroutine (the outbox), and one coroutine per request that
//! may wait — so a parked receive never holds up the other requests of its connection, and
//! no worker thread is ever blocked.
//!
//! # Shutdown
//! 1. Mark the server closed and wake the accept loop (a connection to ourselves).
//! 2. End every connection: close its outbox (what is queued still goes, nothing more is
//!    queued), cancel its requests in flight, shut its socket down: readers end, writers
//!    drain and exit. A request woken by the cancel has no reply; its client sees `Closed`
//!    when the stream ends, never a `Canceled` it did not ask for.
//! 3. Cancel the server token. A connection accepted while this runs, too late to be
//!    listed in step 2, ends itself the same way (`start_conn`).
//! 4. Remove the Unix socket file.

mod admission;
pub(crate) mod budget;
mod conn;
pub(crate) mod served;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, Weak};

use kcoro::chan::{Builder, Kind, Receiver, Sender};
use kcoro::net::{TcpListener, UnixListener};
use kcoro::sync::CancelToken;

use crate::proto::Limits;
use crate::shm::ShmConfig;
use crate::wire::{Sock, Stream};
use crate::{Addr, Element, IpcError, io_handle, on};
use conn::ConnState;
use served::{Registry, Served, Typed};

/// Configures and starts a [`Server`].
pub struct ServerBuilder {
    addr: Addr,
    channels: Vec<(String, Arc<dyn Served>)>,
    secret: Option<Vec<u8>>,
    limits: Limits,
    unix_mode: u32,
    shm: ShmConfig,
    ring_spin: std::time::Duration,
    name: String,
    monitor: Option<Option<kcoro::Handle>>,
    metrics: Option<MetricsSource>,
}

/// What [`ServerBuilder::metrics`] calls for each GET_METRICS.
pub(crate) type MetricsSource = Arc<dyn Fn() -> Vec<kcoro::monitor::Metric> + Send + Sync>;

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("addr", &self.addr)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

pub(crate) struct ServerInner {
    pub(crate) name: String,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) limits: Limits,
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) shm: ShmConfig,
    /// [`ServerBuilder::ring_spin`].
    pub(crate) ring_spin: std::time::Duration,
    /// Set by [`ServerBuilder::monitor`]: LIST adds every named channel of the process, and
    /// GET_SCHED reports this runtime (`None`: the one the server runs on).
    pub(crate) monitor: Option<Option<kcoro::Handle>>,
    /// Set by [`ServerBuilder::metrics`]: what GET_METRICS answers.
    pub(crate) metrics: Option<MetricsSource>,
    /// Cancelled at shutdown: every request in flight wakes.
    pub(crate) token: CancelToken,
    closed: AtomicBool,
    conns: Mutex<HashMap<u64, Weak<ConnState>>>,
    next_conn: AtomicU64,
    /// Channels clients made and did not destroy (`Limits::max_server_channels`).
    pub(crate) made_channels: AtomicUsize,
    /// Memory those channels may hold (`Limits::max_made_bytes`).
    pub(crate) made_budget: Arc<budget::Budget>,
    /// Memory sends may hold in front of the server's own channels
    /// (`Limits::max_server_window_bytes`).
    pub(crate) window_budget: Arc<budget::Budget>,
    /// Bytes of clients' shared regions mapped now (`Limits::max_server_region_bytes`).
    pub(crate) mapped: Arc<AtomicUsize>,
    /// Connections past `Limits::max_connections` being answered now (`admission`).
    refusing: AtomicUsize,
}

impl ServerInner {
    /// Options for the server's own coroutines: a monitor's are daemons, left out of the
    /// monitored program's deadlock detection (they only wait for connections).
    pub(crate) fn spawn_options(&self) -> kcoro::SpawnOptions {
        let opts = kcoro::SpawnOptions::new();
        if self.monitor.is_some() { opts.daemon() } else { opts }
    }

    pub(crate) fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections alive now, except `but`.
    pub(crate) fn others(&self, but: u64) -> Vec<Arc<ConnState>> {
        let c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        c.iter().filter(|(id, _)| **id != but).filter_map(|(_, w)| w.upgrade()).collect()
    }

    fn forget_conn(&self, id: u64) {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// A running server. Dropping it shuts it down (see [`Server::shutdown`]).
pub struct Server {
    inner: Arc<ServerInner>,
    addr: Addr,
    socket_file: Option<PathBuf>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).field("connections", &self.connections()).finish()
    }
}

impl Server {
    /// A server that will listen on `addr` (`unix:PATH` or `tcp:HOST:PORT`; port 0 picks
    /// one, see [`Server::addr`]).
    pub fn bind(addr: &str) -> Result<ServerBuilder, IpcError> {
        Ok(ServerBuilder {
            addr: Addr::parse(addr)?,
            channels: Vec::new(),
            secret: None,
            limits: Limits::default(),
            unix_mode: 0o600,
            shm: ShmConfig::default(),
            ring_spin: crate::ring::link::DEFAULT_SPIN,
            name: format!("kcoro-ipc/{}", env!("CARGO_PKG_VERSION")),
            monitor: None,
            metrics: None,
        })
    }

    /// Where it listens (with the port a `tcp:..:0` address got).
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.inner
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Stops accepting, fails every request in flight with `Canceled`, closes every
    /// connection and removes the socket file. Channels themselves are not closed: they
    /// belong to the program.
    pub fn shutdown(&self) {
        if self.inner.closed.swap(true, AcqRel) {
            return;
        }
        // Wake the accept loop: it sees `closed` and returns, dropping the listener.
        let addr = self.addr.to_string();
        let _ = std::thread::spawn(move || match Addr::parse(&addr) {
            Ok(Addr::Unix(p) | Addr::Shm(p)) => drop(std::os::unix::net::UnixStream::connect(p)),
            Ok(Addr::Tcp(hp)) => drop(std::net::TcpStream::connect(hp)),
            Err(_) => {}
        })
        .join();
        // Each connection's replies stop before its waits are cancelled (`Conn::shut`):
        // the server-wide token cancels every connection's, so it goes last.
        for c in self.inner.others(0) {
            c.shut();
        }
        self.inner.token.cancel();
        if let Some(p) = &self.socket_file {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl ServerBuilder {
    /// Publishes a local channel under `name` (pass clones; the server keeps them until it
    /// is dropped). Elements travel as `T` encodes them ([`Element`]).
    pub fn serve_channel<T: Element>(mut self, name: &str, tx: Sender<T>, rx: Receiver<T>) -> Self {
        self.channels.push((name.to_string(), Arc::new(Typed { tx, rx })));
        self
    }

    /// Requires the shared-secret handshake from every client (HMAC-SHA256 challenge and
    /// response, both ways). Mandatory for a TCP address that is not loopback.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Limits per connection (frame size, attributes, name length, channels, requests in
    /// flight, send credits) and for the server (connections open, the handshake's
    /// deadline, channels made, shared memory mapped).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// File mode of the Unix socket (default `0o600`: this user only).
    pub fn unix_mode(mut self, mode: u32) -> Self {
        self.unix_mode = mode;
        self
    }

    /// Elements of at least `threshold` bytes in receive replies go through a shared
    /// region of `region_len` bytes per connection (Unix sockets only).
    pub fn shared_memory(mut self, threshold: usize, region_len: usize) -> Self {
        self.shm = ShmConfig { threshold: threshold.max(1), region_len };
        self
    }

    /// For clients on shared-memory rings (`shm:`): how long a connection's reader spins
    /// on an empty ring before it sleeps (50 µs by default; zero sleeps at once). See
    /// [`ConnectOptions::ring_spin`](crate::ConnectOptions::ring_spin).
    pub fn ring_spin(mut self, spin: std::time::Duration) -> Self {
        self.ring_spin = spin;
        self
    }

    /// Makes the process monitorable (`kcoro chanmon`): LIST also reports every named
    /// channel of this process (kcoro's channel registry), served or not, and GET_SCHED
    /// reports the counters of `runtime` (`None`: the runtime the server runs on). Read
    /// only: a monitoring client can see unserved channels but not use them.
    pub fn monitor(mut self, runtime: Option<kcoro::Handle>) -> Self {
        self.monitor = Some(runtime);
        self
    }

    /// The program's own counters and gauges for GET_METRICS (`kcoro chanmon` shows them
    /// in its metrics view): `source` is called once per request, on the server's
    /// coroutine, so it should only read counters. Without it GET_METRICS is refused with
    /// `-ENOTSUP`.
    pub fn metrics(
        mut self,
        source: impl Fn() -> Vec<kcoro::monitor::Metric> + Send + Sync + 'static,
    ) -> Self {
        self.metrics = Some(Arc::new(source));
        self
    }

    /// The name GET_INFO reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Binds and starts serving (on the current kcoro runtime, or on the shared I/O
    /// runtime outside one). A non-loopback TCP address without a secret is refused.
    pub fn start(self) -> Result<Server, IpcError> {
        if !self.addr.is_loopback() && self.secret.is_none() {
            return Err(IpcError::Config(format!(
                "{} is not a loopback address: set a secret (ServerBuilder::secret) to serve it",
                self.addr
            )));
        }
        if self.secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(IpcError::Config("the secret must be at least 16 bytes".into()));
        }
        let mut registry = Registry::default();
        for (name, chan) in self.channels {
            if name.len() > self.limits.max_name {
                return Err(IpcError::Config(format!(
                    "channel name {name:?} is longer than {}",
                    self.limits.max_name
                )));
            }
            if registry.add(Some(name.clone()), chan, false).is_none() {
                return Err(IpcError::Config(format!("two channels named {name:?}")));
            }
        }
        let inner = Arc::new(ServerInner {
            name: self.name,
            registry: Mutex::new(registry),
            limits: self.limits,
            secret: self.secret,
            shm: self.shm,
            ring_spin: self.ring_spin,
            monitor: self.monitor,
            metrics: self.metrics,
            token: CancelToken::new(),
            closed: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            made_channels: AtomicUsize::new(0),
            made_budget: budget::Budget::new(self.limits.max_made_bytes),
            window_budget: budget::Budget::new(self.limits.max_server_window_bytes),
            mapped: Arc::new(AtomicUsize::new(0)),
            refusing: AtomicUsize::new(0),
        });
        let handle = io_handle()?;
        // The reaper first: a server that cannot close silent connections does not start.
        let i = Arc::clone(&inner);
        handle.spawn_with(inner.spawn_options(), move || admission::reap_silent(&i)).map_err(|e| {
            inner.token.cancel();
            not_started(e)
        })?;
        let bound = match &self.addr {
            Addr::Unix(path) | Addr::Shm(path) => bind_unix(&handle, path.clone(), self.unix_mode)
                .map(|l| (Listener::Unix(l), self.addr.clone(), Some(path.clone()))),
            Addr::Tcp(hp) => {
                let hp = hp.clone();
                on(&handle, move || TcpListener::bind(hp.as_str())).and_then(|l| {
                    let l = l?;
                    let local = l.local_addr()?;
                    Ok((Listener::Tcp(l), Addr::Tcp(local.to_string()), None))
                })
            }
        };
        let (listener, addr, socket_file) = bound.inspect_err(|_| inner.token.cancel())?;
        let i = Arc::clone(&inner);
        let accepting = match listener {
            Listener::Unix(l) => handle.spawn_with(inner.spawn_options(), move || accept_unix(i, l)),
            Listener::Tcp(l) => handle.spawn_with(inner.spawn_options(), move || accept_tcp(i, l)),
        };
        let server = Server { inner, addr, socket_file };
        // Without an accept loop: shut down at once (the reaper ends, the socket file goes).
        accepting.map_err(not_started)?;
        Ok(server)
    }
}

/// A bound listener, before its accept loop starts.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// The error of a server whose coroutines could not start (no stack left, the runtime
/// shutting down).
fn not_started(e: kcoro::Error) -> IpcError {
    IpcError::Io(std::io::Error::other(format!("cannot start the server's coroutines: {e}")))
}

/// Binds the socket file (replacing a stale one nobody listens on) with `mode`.
fn bind_unix(handle: &kcoro::Handle, path: PathBuf, mode: u32) -> Result<UnixListener, IpcError> {
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(_) => {
                return Err(IpcError::Config(format!("{} is in use by another server", path.display())));
            }
            Err(_) => {
                use std::os::unix::fs::FileTypeExt;
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    let p = path.clone();
    let listener = on(handle, move || UnixListener::bind(p))??;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

fn accept_unix(server: Arc<ServerInner>, listener: UnixListener) {
    loop {
        let accepted = listener.accept();
        if server.closed.load(Acquire) {
            return;
        }
        match accepted {
            Ok((s, _)) => start_conn(&server, Stream::new(Sock::Unix(s))),
            Err(e) => backoff(&e),
        }
    }
}

fn accept_tcp(server: Arc<ServerInner>, listener: TcpListener) {
    loop {
        let accepted = listener.accept();
        if server.closed.load(Acquire) {
            return;
        }
        match accepted {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                start_conn(&server, Stream::new(Sock::Tcp(s)))
            }
            Err(e) => backoff(&e),
        }
    }
}

/// After an accept error (out of fds, say): report it and pause, rather than spin.
fn backoff(e: &std::io::Error) {
    eprintln!("kcoro-ipc: accept failed: {e}");
    kcoro::sleep(std::time::Duration::from_millis(50));
}

fn start_conn(server: &Arc<ServerInner>, stream: Stream) {
    // Only this accept loop adds connections, so the count cannot grow before the insert.
    if server.conns.lock().unwrap_or_else(|e| e.into_inner()).len() >= server.limits.max_connections {
        return admission::refuse(server, stream);
    }
    let id = server.next_conn.fetch_add(1, Relaxed);
    let conn = ConnState::new(id, Arc::clone(server), stream);
    let shutting_down = {
        let mut conns = server.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.insert(id, Arc::downgrade(&conn));
        // `shutdown` sets `closed` before it lists the connections under this lock: a
        // connection it did not list sees `closed` here, and ends itself.
        server.closed.load(Acquire)
    };
    if shutting_down {
        conn.shut();
    }
    let s = Arc::clone(server);
    let served = kcoro::spawn_with(server.spawn_options(), move || {
        conn.run();
        s.forget_conn(id);
    });
    if served.is_err() {
        // No coroutine to serve it (no stack left, shutting down): dropped with the
        // closure, its socket closes and the client sees the end at once.
        server.forget_conn(id);
    }
}

/// A channel made by a client (CHAN_MAKE): raw byte elements.
/// A channel for a client's MAKE, or `None` if the server's budget for clients' channels
/// has no room for it.
pub(crate) fn make_channel(
    server: &ServerInner,
    kind: Kind,
    capacity: usize,
    name: Option<&str>,
) -> Option<Arc<dyn Served>> {
    let room = server.made_budget.try_charge(budget::Budget::channel_cost(kind, capacity))?;
    let mut b = Builder::<budget::Charged>::new(kind).capacity(capacity).count_payload_bytes();
    if let Some(n) = name {
        b = b.name(n);
    }
    let (tx, rx) = b.build();
    Some(Arc::new(budget::Made::new(Typed { tx, rx }, Arc::clone(&server.made_budget), room)))
}
