//! A local `nats-server` for tests, examples and benchmarks: spawned from the installed
//! binary with JetStream on (file storage in a directory of its own), bound to 127.0.0.1
//! on a free port, killed when dropped, and on Linux killed by the kernel when this
//! process dies without dropping it (SIGKILL, a test timeout, Ctrl-C in an example), so no
//! server outlives its program. A program killed that way leaves the store directory
//! behind under the temp dir (`kcoro-nats-<pid>-…`).
//!
//! ```no_run
//! let Some(server) = kcoro_nats::server::LocalServer::start_or_skip() else { return };
//! let nats = kcoro_nats::connect(&server.url()).unwrap();
//! # drop(nats);
//! ```

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::NatsError;

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Where to look for the binary besides `$PATH` (Debian installs it in /usr/sbin).
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"];

/// Options of a local server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The port (default: a free one).
    pub port: Option<u16>,
    /// The JetStream store directory (default: a fresh temporary one, removed on drop).
    pub store_dir: Option<PathBuf>,
    /// The server's `max_payload` in bytes (default: the server's, 1 MiB).
    pub max_payload: Option<usize>,
}

/// A running `nats-server` child process.
pub struct LocalServer {
    child: Option<Child>,
    keeper: Option<Keeper>,
    port: u16,
    store_dir: PathBuf,
    owns_store: bool,
    max_payload: Option<usize>,
    binary: PathBuf,
}

/// The `nats-server` binary: `$KCORO_NATS_SERVER`, else the first on `$PATH` or in the
/// usual system directories.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KCORO_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

impl LocalServer {
    /// Starts a server with default options; `None` (after printing a note on stderr) if
    /// no `nats-server` binary is installed.
    pub fn start_or_skip() -> Option<LocalServer> {
        match find_binary() {
            None => {
                eprintln!("note: nats-server not found; skipping");
                None
            }
            Some(_) => match LocalServer::start(ServerOptions::default()) {
                Ok(s) => Some(s),
                Err(e) => panic!("nats-server is installed but did not start: {e}"),
            },
        }
    }

    /// Starts a server.
    ///
    /// On a port of its choosing, a server that exits at start (another process took the
    /// port between the check that it was free and the server's bind) is started again on
    /// another, up to [`START_ATTEMPTS`] times.
    pub fn start(opts: ServerOptions) -> Result<LocalServer, NatsError> {
        let binary = find_binary().ok_or_else(|| NatsError::Server("nats-server not found".into()))?;
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let (store_dir, owns_store) = match opts.store_dir {
            Some(d) => (d, false),
            None => (temp_dir()?, true),
        };
        let mut server = LocalServer {
            child: None,
            keeper: None,
            port,
            store_dir,
            owns_store,
            max_payload: opts.max_payload,
            binary,
        };
        let mut attempt = 1;
        loop {
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(Start::Exited(_)) if opts.port.is_none() && attempt < START_ATTEMPTS => {
                    attempt += 1;
                    server.port = free_port()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn spawn(&mut self) -> Result<(), Start> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store_dir)
            .arg("-l")
            .arg(self.store_dir.join("server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(max) = self.max_payload {
            // No command-line flag for it: a one-line config file.
            let conf = self.store_dir.join("server.conf");
            std::fs::write(&conf, format!("max_payload: {max}\n")).map_err(|e| io("write server.conf", e))?;
            cmd.arg("-c").arg(conf);
        }
        let (child, keeper) = Keeper::spawn(cmd).map_err(|e| io("spawn nats-server", e))?;
        self.child = Some(child);
        self.keeper = Some(keeper);
        self.wait_ready()
    }

    /// Waits until this child says in its log that it listens and is ready. Not until
    /// something accepts on the port: that may be another process's server, which took
    /// the port while this one failed to bind it and exited.
    fn wait_ready(&mut self) -> Result<(), Start> {
        let deadline = Instant::now() + START_TIMEOUT;
        let Some(pid) = self.pid() else {
            return Err(Start::Failed(NatsError::Server("not started".into())));
        };
        // Lines start with the pid: a restart appends to the same log.
        let ready = format!("[{pid}] ");
        loop {
            if std::fs::read_to_string(self.log())
                .is_ok_and(|log| log.lines().any(|l| l.starts_with(&ready) && l.ends_with("Server is ready")))
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                if let Some(keeper) = self.keeper.take() {
                    keeper.release();
                }
                return Err(Start::Exited(format!(
                    "exited at start ({status}); see {}",
                    self.log().display()
                )));
            }
            if Instant::now() > deadline {
                self.kill();
                let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
                return Err(Start::Failed(NatsError::Server(format!(
                    "not ready on {addr} after {START_TIMEOUT:?}; see {}",
                    self.log().display()
                ))));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The server's log file.
    pub fn log(&self) -> PathBuf {
        self.store_dir.join("server.log")
    }

    /// Kills the server (SIGKILL: no clean shutdown, as a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // After the child is gone: the keeper's end would signal a live child.
        if let Some(keeper) = self.keeper.take() {
            keeper.release();
        }
    }

    /// Starts it again on the same port and store directory (after [`kill`](Self::kill)).
    pub fn restart(&mut self) -> Result<(), NatsError> {
        self.kill();
        Ok(self.spawn()?)
    }

    /// CPU time (user + system) the server has used so far, from `/proc` (Linux).
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid = self.pid()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) closed by ')'.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        // USER_HZ is 100 on every Linux configuration we run on.
        Some(Duration::from_millis((utime + stime) * 10))
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
        if self.owns_store {
            let _ = std::fs::remove_dir_all(&self.store_dir);
        }
    }
}

/// The thread that starts a server and lives as long as it should. Linux sends the
/// parent-death signal when the *thread* that forked the child ends, not the process, so
/// a server started straight from a test's or a helper's thread would die with that thread
/// while its `LocalServer` lives on elsewhere.
struct Keeper {
    release: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Keeper {
    /// Starts `cmd` from a new keeper thread, the child set to get SIGKILL when that
    /// thread (or the whole process) ends.
    fn spawn(mut cmd: Command) -> std::io::Result<(Child, Keeper)> {
        kill_with_parent(&mut cmd);
        let (release, released) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel();
        let thread = std::thread::Builder::new().name("nats-server keeper".into()).spawn(move || {
            let _ = started_tx.send(cmd.spawn());
            // Until `release` is sent or dropped: the server was killed, or its owner went.
            let _ = released.recv();
        })?;
        let child = started.recv().unwrap_or_else(|_| Err(std::io::Error::other("the keeper thread ended")));
        let keeper = Keeper { release, thread };
        match child {
            Ok(child) => Ok((child, keeper)),
            Err(e) => {
                keeper.release();
                Err(e)
            }
        }
    }

    /// Lets the keeper thread end (its child must be gone, or it is killed).
    fn release(self) {
        drop(self.release);
        let _ = self.thread.join();
    }
}

/// On Linux: the child gets SIGKILL when the thread that starts it ends.
#[cfg(target_os = "linux")]
fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: prctl, getppid and _exit are, and nothing here allocates.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between the fork and the prctl: no signal will come.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn kill_with_parent(_: &mut Command) {}

/// How many ports [`LocalServer::start`] tries when it chooses the port.
pub const START_ATTEMPTS: u32 = 5;

/// Why a server did not start: it exited (its port was taken, say), or anything else.
enum Start {
    Exited(String),
    Failed(NatsError),
}

impl From<NatsError> for Start {
    fn from(e: NatsError) -> Start {
        Start::Failed(e)
    }
}

impl From<Start> for NatsError {
    fn from(s: Start) -> NatsError {
        match s {
            Start::Exited(why) => NatsError::Server(why),
            Start::Failed(e) => e,
        }
    }
}

fn io(what: &str, e: std::io::Error) -> NatsError {
    NatsError::Server(format!("{what}: {e}"))
}

/// A port nobody listens on now (the kernel's pick; a tiny race with other binders).
fn free_port() -> Result<u16, NatsError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| io("find a free port", e))?;
    l.local_addr().map(|a| a.port()).map_err(|e| io("find a free port", e))
}

/// A fresh directory under the system temp dir.
fn temp_dir() -> Result<PathBuf, NatsError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("kcoro-nats-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| io("create the store directory", e))?;
    Ok(dir)
}
