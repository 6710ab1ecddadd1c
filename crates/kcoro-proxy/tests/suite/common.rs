//! Test backends, clients and a proxy on its own runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use kcoro_proxy::{Config, Proxy, Stats};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// What a backend does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Writes `B<id>\n`, then echoes until end-of-file.
    Echo,
    /// Writes `B<id>\n`, reads one chunk, then resets the connection.
    ResetAfterRead,
    /// Accepts and never reads or writes.
    Stall,
    /// Answers a health check line (`PING\r\n`) with `answer`; otherwise as `Echo`.
    Answer(&'static str),
    /// Writes `n` chunks of 1 KiB, 100 ms apart, then closes (greets first).
    Trickle(u32),
}

/// A backend server on a thread of its own; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections it accepted.
    pub accepted: Arc<AtomicU64>,
    /// Connections that ended with end-of-file or an error (as the backend saw them).
    pub ended: Arc<AtomicU64>,
}

impl Backend {
    pub fn start(id: u32, mode: Mode) -> Backend {
        Backend::on(TcpListener::bind("127.0.0.1:0").expect("bind backend"), id, mode)
    }

    /// A backend on `addr` (a port used before: restarting a backend).
    pub fn restart(addr: SocketAddr, id: u32, mode: Mode) -> Backend {
        Backend::on(TcpListener::bind(addr).expect("rebind backend"), id, mode)
    }

    fn on(listener: TcpListener, id: u32, mode: Mode) -> Backend {
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (accepted, ended) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, a, e) = (Arc::clone(&stop), Arc::clone(&accepted), Arc::clone(&ended));
        std::thread::spawn(move || {
            while !s.load(Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Relaxed);
                        let e = Arc::clone(&e);
                        std::thread::spawn(move || {
                            serve(conn, id, mode);
                            e.fetch_add(1, Relaxed);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Backend { addr, stop, accepted, ended }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        // The accept loop polls every 2 ms; wait until the port is closed for sure.
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(self.addr).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn serve(mut conn: TcpStream, id: u32, mode: Mode) {
    conn.set_nonblocking(false).expect("blocking");
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; 16 << 10];
    match mode {
        Mode::Stall => {
            let _ = conn.read(&mut buf); // returns when the proxy closes
        }
        Mode::Answer(answer) => {
            let mut first = [0u8; 6];
            if conn.read_exact(&mut first).is_ok() {
                if &first == b"PING\r\n" {
                    let _ = conn.write_all(answer.as_bytes());
                    return;
                }
                let _ = conn.write_all(format!("B{id}\n").as_bytes());
                let _ = conn.write_all(&first);
                let _ = std::io::copy(&mut conn.try_clone().expect("clone"), &mut conn);
            }
        }
        Mode::Echo | Mode::ResetAfterRead | Mode::Trickle(_) => {
            if conn.write_all(format!("B{id}\n").as_bytes()).is_err() {
                return;
            }
            if let Mode::Trickle(n) = mode {
                for _ in 0..n {
                    std::thread::sleep(Duration::from_millis(100));
                    if conn.write_all(&[b'.'; 1024]).is_err() {
                        return;
                    }
                }
                return;
            }
            loop {
                let n = match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if mode == Mode::ResetAfterRead {
                    reset(&conn);
                    return;
                }
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Makes the close of `conn` a reset (SO_LINGER 0).
pub fn reset(conn: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket option of the right size on a descriptor `conn` owns.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    // The caller drops `conn`: the close sends the reset (a shutdown first would send a
    // FIN ahead of it).
}

/// A proxy on a runtime of its own.
pub struct Running {
    pub rt: kcoro::Runtime,
    pub proxy: Proxy,
}

impl Running {
    pub fn start(toml: &str) -> Running {
        let config = Config::parse(toml, "test.toml").expect("config");
        let rt = kcoro::Runtime::builder().workers(2).build().expect("runtime");
        let proxy = rt.block_on(move || Proxy::start(config)).expect("proxy starts");
        Running { rt, proxy }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.listeners()[0].1
    }

    pub fn stats(&self) -> Stats {
        self.proxy.stats()
    }

    pub fn reload(&self, toml: &str) -> Result<kcoro_proxy::ReloadReport, kcoro_proxy::Error> {
        let config = Config::parse(toml, "test.toml").expect("config");
        let proxy = self.proxy.clone();
        self.rt.block_on(move || proxy.reload(config))
    }

    /// Waits until `ok(stats)` holds; panics with the last stats otherwise.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let s = self.stats();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "waited for {what}: {s:#?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A config with one listener `l` on port 0 in front of pool `p` of `backends`; `extra`
/// goes into the listener table, `pool_extra` into the pool table.
pub fn config(backends: &[SocketAddr], extra: &str, pool_extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\npool = \"p\"\n{extra}\n\n\
         [[pool]]\nname = \"p\"\nbackends = [{}]\nconnect_timeout = \"2s\"\n{pool_extra}\n",
        list.join(", ")
    )
}

/// A client connected through the proxy, reading lines with a timeout.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect to the proxy");
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        Client { reader: BufReader::new(s) }
    }

    /// The backend's greeting: which backend this connection reached.
    pub fn greeting(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("greeting");
        assert!(line.ends_with('\n'), "no greeting, got {line:?}");
        line.trim_end().to_string()
    }

    /// Sends `msg` and reads its echo.
    pub fn echo(&mut self, msg: &[u8]) {
        self.reader.get_mut().write_all(msg).expect("send");
        let mut back = vec![0u8; msg.len()];
        self.reader.read_exact(&mut back).expect("echo");
        assert_eq!(back, msg);
    }

    /// Reads until end-of-file or an error; the bytes read (an error counts as the end).
    pub fn read_to_end(&mut self) -> usize {
        let mut all = Vec::new();
        let _ = self.reader.read_to_end(&mut all);
        all.len()
    }
}

/// A port nothing listens on, held (bound, never listening) for as long as the returned
/// socket lives: connecting to it is refused. A port bound and let go could be taken again
/// by the next ephemeral bind, the proxy's own listener among them, which turned the
/// "dead" backend into the proxy itself.
pub fn closed_port() -> (socket2::Socket, std::net::SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}
