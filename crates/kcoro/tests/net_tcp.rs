//! `kcoro::net` over TCP: many concurrent connections, timeouts that park rather than
//! block, connection errors, bulk full-duplex transfer and half-close.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use kcoro::Runtime;
use kcoro::net::{TcpListener, TcpStream};

/// Concurrent client connections in the echo test (each also holds a server-side fd).
const CONNS: usize = 1000;
/// Request/response rounds per connection.
const ROUNDS: usize = 3;
/// Bytes per message.
const MSG: usize = 1024;

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().expect("runtime")
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid out-pointer for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let want = libc::rlimit { rlim_cur: lim.rlim_max.min(1 << 20), rlim_max: lim.rlim_max };
    // SAFETY: `want` is a valid in-pointer; a refused raise leaves the limit unchanged.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0;
    if raised { want.rlim_cur } else { lim.rlim_cur }
}

/// Message `round` of connection `id`: its id, then a pattern that differs per round.
fn message(id: usize, round: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..MSG).map(|i| (i * 7 + id * 13 + round * 101) as u8).collect();
    m[..8].copy_from_slice(&(id as u64).to_le_bytes());
    m
}

/// Echoes everything until the peer shuts its write half, then closes.
fn echo(conn: TcpStream) -> io::Result<u64> {
    io::copy(&mut &conn, &mut &conn)
}

/// A connected pair: (client, server side).
fn connected() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server_side, _) = listener.accept().expect("accept");
    (client, server_side)
}

fn echo_client(addr: SocketAddr, id: usize) -> io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    let mut back = vec![0u8; MSG];
    for round in 0..ROUNDS {
        let sent = message(id, round);
        s.write_all(&sent)?;
        s.read_exact(&mut back)?;
        assert!(back == sent, "connection {id} round {round}: echo differs");
    }
    s.shutdown(Shutdown::Write)?;
    assert_eq!(s.read(&mut back)?, 0, "connection {id}: expected EOF after the echo");
    Ok(())
}

#[test]
fn echo_1000_concurrent_connections() {
    let limit = raise_fd_limit();
    if limit < 2 * CONNS as u64 + 200 {
        eprintln!("skipping echo_1000_concurrent_connections: RLIMIT_NOFILE is {limit}");
        return;
    }
    runtime(2).block_on(echo_many);
}

/// [`CONNS`] clients, each served by its own coroutine from one accept loop, all echoed
/// exactly.
fn echo_many() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let server = kcoro::spawn(move || {
        let echoes: Vec<_> = (0..CONNS)
            .map(|_| {
                let (conn, _) = listener.accept().expect("accept");
                kcoro::spawn(move || echo(conn))
            })
            .collect();
        echoes.into_iter().map(|e| e.join().expect("echo coroutine").expect("echo")).sum::<u64>()
    });
    let clients: Vec<_> = (0..CONNS).map(|id| kcoro::spawn(move || echo_client(addr, id))).collect();
    for (id, c) in clients.into_iter().enumerate() {
        c.join().expect("client coroutine").unwrap_or_else(|e| panic!("client {id}: {e}"));
    }
    let echoed = server.join().expect("server coroutine");
    assert_eq!(echoed, (CONNS * ROUNDS * MSG) as u64);
}

#[test]
fn an_accept_loop_with_spread_shares_its_connections_between_workers() {
    assert_connections_alternate(|serve| {
        kcoro::spawn_with(kcoro::SpawnOptions::new().spread(), serve).expect("spawn")
    });
}

/// The obvious server (`accept`, then a plain `kcoro::spawn`) is balanced too: the spawn
/// right after an accept starts on the workers in turn.
#[test]
fn a_plain_spawn_after_accept_shares_the_connections_between_workers() {
    assert_connections_alternate(kcoro::spawn);
}

type Serve = Box<dyn FnOnce() -> io::Result<Option<usize>> + Send>;

/// Serves 16 connections on two workers, each on a coroutine `spawn` starts right after
/// its accept, and checks that they alternate between the workers.
fn assert_connections_alternate(
    spawn: impl Fn(Serve) -> kcoro::JoinHandle<io::Result<Option<usize>>> + Send + 'static,
) {
    const CONNS: usize = 16;
    runtime(2).block_on(move || {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let server = kcoro::spawn(move || {
            let conns: Vec<_> = (0..CONNS)
                .map(|_| {
                    let (conn, _) = listener.accept().expect("accept");
                    let serve: Serve = Box::new(move || {
                        let worker = kcoro::worker_index();
                        echo(conn).map(|_| worker)
                    });
                    spawn(serve)
                })
                .collect();
            conns.into_iter().map(|c| c.join().expect("echo coroutine").expect("echo")).collect::<Vec<_>>()
        });
        let clients: Vec<_> = (0..CONNS).map(|id| kcoro::spawn(move || echo_client(addr, id))).collect();
        for (id, c) in clients.into_iter().enumerate() {
            c.join().expect("client coroutine").unwrap_or_else(|e| panic!("client {id}: {e}"));
        }
        let workers = server.join().expect("server coroutine");
        let on_first = workers.iter().filter(|w| **w == Some(0)).count();
        assert_eq!(on_first, CONNS / 2, "connections per worker: {workers:?}");
    });
}

/// Runs `f` on a thread and fails the test if it has not finished within `limit` (a hang
/// detector, far above any expected duration; the assertions are inside `f`).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("hung: not done within {limit:?}"))
}

/// Coroutines that do nothing but yield until `stop`: they keep every worker busy.
fn spinners(n: usize, stop: &Arc<AtomicBool>) -> Vec<kcoro::JoinHandle<u64>> {
    (0..n)
        .map(|_| {
            let stop = Arc::clone(stop);
            kcoro::spawn(move || {
                let mut spins = 0;
                while !stop.load(Relaxed) {
                    kcoro::yield_now();
                    spins += 1;
                }
                spins
            })
        })
        .collect()
}

#[test]
fn a_busy_worker_still_serves_sockets_and_timers() {
    within(Duration::from_secs(60), || {
        runtime(1).block_on(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let busy = spinners(2, &stop);
            let (mut client, server_side) = connected();
            let reader = kcoro::spawn(move || {
                let mut got = [0u8; 5];
                (&server_side).read_exact(&mut got).map(|_| got)
            });
            let sleeper = kcoro::spawn(|| kcoro::sleep(Duration::from_millis(5)));
            client.write_all(b"hello").expect("write");
            assert_eq!(&reader.join().expect("reader").expect("read"), b"hello");
            sleeper.join().expect("sleeper");
            stop.store(true, Relaxed);
            for b in busy {
                assert!(b.join().expect("spinner") > 0);
            }
        });
    });
}

#[test]
fn a_thousand_connections_progress_on_one_busy_worker() {
    let limit = raise_fd_limit();
    if limit < 2 * CONNS as u64 + 200 {
        eprintln!("skipping a_thousand_connections_progress_on_one_busy_worker: RLIMIT_NOFILE is {limit}");
        return;
    }
    within(Duration::from_secs(120), || {
        runtime(1).block_on(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let busy = spinners(4, &stop);
            echo_many();
            stop.store(true, Relaxed);
            for b in busy {
                assert!(b.join().expect("spinner") > 0);
            }
        });
    });
}

#[test]
fn read_timeout_fires() {
    // One worker: if the read blocked its thread, the ticker could never run.
    runtime(1).block_on(|| {
        let (mut client, mut server_side) = connected();
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (ticks, stop) = (Arc::clone(&ticks), Arc::clone(&stop));
            kcoro::spawn(move || {
                while !stop.load(Relaxed) {
                    ticks.fetch_add(1, Relaxed);
                    kcoro::sleep(Duration::from_millis(1));
                }
            })
        };
        client.set_read_timeout(Some(Duration::from_millis(100))).expect("set_read_timeout");
        assert_eq!(client.read_timeout().expect("read_timeout"), Some(Duration::from_millis(100)));
        let mut buf = [0u8; 16];
        let err = client.read(&mut buf).expect_err("nobody wrote, yet the read succeeded");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(ticks.load(Relaxed) > 0, "another coroutine made no progress while the read waited");
        stop.store(true, Relaxed);
        ticker.join().expect("ticker");

        // The stream still works after a timeout.
        server_side.write_all(b"late").expect("write");
        client.read_exact(&mut buf[..4]).expect("read after timeout");
        assert_eq!(&buf[..4], b"late");
    });
}

#[test]
fn zero_read_timeout_is_a_try() {
    runtime(1).block_on(|| {
        let (mut client, _server_side) = connected();
        client.set_read_timeout(Some(Duration::ZERO)).expect("set_read_timeout");
        let err = client.read(&mut [0u8; 4]).expect_err("nothing to read");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    });
}

#[test]
fn accept_timeout_fires() {
    runtime(1).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let err = listener.accept_timeout(Duration::from_millis(50)).expect_err("nobody connected");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let err = listener.accept_timeout(Duration::ZERO).expect_err("nobody connected");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        listener.set_accept_timeout(Some(Duration::from_millis(50))).expect("set_accept_timeout");
        assert_eq!(listener.get_accept_timeout().expect("get"), Some(Duration::from_millis(50)));
        let err = listener.accept().expect_err("nobody connected");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        // A connection that arrives in time is accepted (a generous limit: the test
        // asserts behaviour, not speed).
        listener.set_accept_timeout(Some(Duration::from_secs(30))).expect("set_accept_timeout");
        let addr = listener.local_addr().expect("addr");
        let client = kcoro::spawn(move || TcpStream::connect(addr).map(|s| s.local_addr()));
        let (_conn, peer) = listener.accept().expect("accept");
        assert_eq!(client.join().expect("client").expect("connect").expect("local_addr"), peer);
    });
}

/// A loopback port nothing listens on, held for as long as the descriptor lives: a socket
/// bound there and never listening, so connecting is refused. (A listener bound and
/// dropped frees its port for the next ephemeral bind, another test's listener included.)
fn refusing_port() -> (std::os::fd::OwnedFd, SocketAddr) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2) call; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let mut sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be() },
        sin_zero: [0; 8],
    };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sin` is a valid sockaddr_in of `len` bytes for both calls; getsockname
    // writes at most `len` bytes into it.
    let bound = unsafe {
        libc::bind(raw, (&raw const sin).cast(), len) == 0
            && libc::getsockname(raw, (&raw mut sin).cast(), &mut len) == 0
    };
    assert!(bound, "bind: {}", io::Error::last_os_error());
    (fd, SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, u16::from_be(sin.sin_port))))
}

#[test]
fn connect_refused_is_an_error() {
    runtime(1).block_on(|| {
        let (_held, addr) = refusing_port();
        let err = TcpStream::connect(addr).expect_err("connected to a closed port");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        let err = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .expect_err("connected to a closed port");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    });
}

#[test]
fn connect_by_host_name_and_connect_timeout() {
    runtime(2).block_on(|| {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // `localhost` is looked up on the blocking pool; if it also names ::1, that
        // address is refused and the next one is tried.
        let by_name = TcpStream::connect(("localhost", port)).expect("connect localhost");
        assert_eq!(by_name.peer_addr().expect("peer").port(), port);
        let timed = TcpStream::connect_timeout(&listener.local_addr().expect("addr"), Duration::from_secs(5))
            .expect("connect_timeout");
        timed.set_nodelay(true).expect("set_nodelay");
        assert!(timed.nodelay().expect("nodelay"));
        let shown = format!("{timed:?}");
        assert!(shown.starts_with("TcpStream") && shown.contains("peer"), "{shown}");
    });
}

fn pattern_byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// FNV-1a, continued from `h`.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

#[test]
fn large_transfer() {
    const TOTAL: usize = 8 << 20;
    const CHUNK: usize = 64 << 10;
    runtime(2).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = kcoro::spawn(move || echo(listener.accept().expect("accept").0));
        let client = Arc::new(TcpStream::connect(addr).expect("connect"));

        // Full duplex through one connection: one coroutine writes while another reads
        // the echo back, both through `&TcpStream`.
        let writer = {
            let client = Arc::clone(&client);
            kcoro::spawn(move || -> io::Result<u64> {
                let mut sum = FNV_START;
                let mut chunk = vec![0u8; CHUNK];
                for start in (0..TOTAL).step_by(CHUNK) {
                    chunk.iter_mut().enumerate().for_each(|(i, b)| *b = pattern_byte(start + i));
                    (&*client).write_all(&chunk)?;
                    sum = fnv1a(sum, &chunk);
                }
                client.shutdown(Shutdown::Write)?;
                Ok(sum)
            })
        };
        let reader = kcoro::spawn(move || -> io::Result<(usize, u64)> {
            let (mut len, mut sum) = (0, FNV_START);
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match (&*client).read(&mut buf)? {
                    0 => return Ok((len, sum)),
                    n => {
                        len += n;
                        sum = fnv1a(sum, &buf[..n]);
                    }
                }
            }
        });
        let sent = writer.join().expect("writer").expect("write");
        let (len, received) = reader.join().expect("reader").expect("read");
        assert_eq!(len, TOTAL);
        assert_eq!(received, sent, "checksum of the echoed bytes differs");
        assert_eq!(server.join().expect("server").expect("echo"), TOTAL as u64);
    });
}

#[test]
fn shutdown_write_gives_eof() {
    runtime(2).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = kcoro::spawn(move || -> io::Result<Vec<u8>> {
            let (mut conn, _) = listener.accept()?;
            let mut got = Vec::new();
            conn.read_to_end(&mut got)?; // returns only at EOF
            conn.write_all(b"ok")?;
            Ok(got)
        });
        let mut client = TcpStream::connect(addr).expect("connect");
        client.write_all(b"bye").expect("write");
        client.shutdown(Shutdown::Write).expect("shutdown");
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).expect("read reply");
        assert_eq!(reply, b"ok");
        assert_eq!(server.join().expect("server").expect("server io"), b"bye");
    });
}

#[test]
fn incoming_yields_connections() {
    runtime(2).block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let clients: Vec<_> =
            (0..3).map(|_| kcoro::spawn(move || TcpStream::connect(addr).map(drop))).collect();
        let accepted = listener.incoming().take(3).filter(|c| c.is_ok()).count();
        assert_eq!(accepted, 3);
        for c in clients {
            c.join().expect("client").expect("connect");
        }
    });
}

#[test]
fn a_read_after_a_short_one_sees_a_local_read_shutdown() {
    runtime(1).block_on(|| {
        let (client, server_side) = connected();
        // Written while the reader is parked, so the readiness edge is seen before the read.
        let writer = kcoro::spawn(move || (&client).write_all(b"hi").map(|()| client));
        let mut buf = [0u8; 64];
        assert_eq!((&server_side).read(&mut buf).expect("read"), 2, "a short read");
        // The kernel reports the shutdown as a readiness edge: the next read does not wait.
        server_side.shutdown(Shutdown::Read).expect("shutdown");
        server_side.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        assert_eq!((&server_side).read(&mut buf).expect("read after shutdown"), 0);
        drop(writer.join().expect("writer").expect("write"));
    });
}

#[test]
fn readable_waits_only_after_a_short_read_and_wakes_for_data_and_end_of_file() {
    runtime(1).block_on(|| {
        let (client, server_side) = connected();
        let client = Arc::new(client);
        // Nothing read yet: no claim that the socket is empty, so no wait.
        server_side.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
        server_side.readable().expect("readable before any read");
        (&*client).write_all(b"ab").expect("write");
        let mut buf = [0u8; 64];
        assert_eq!((&server_side).read(&mut buf).expect("read"), 2, "a short read");
        // Emptied: now it waits, and times out as a read would.
        let e = server_side.readable().expect_err("nothing arrived");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);

        server_side.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let writer = {
            let client = Arc::clone(&client);
            kcoro::spawn(move || (&*client).write_all(b"cd"))
        };
        server_side.readable().expect("data arrived");
        assert_eq!((&server_side).read(&mut buf).expect("read"), 2);
        assert_eq!(&buf[..2], b"cd");
        writer.join().expect("writer").expect("write");

        client.shutdown(Shutdown::Write).expect("shutdown");
        server_side.readable().expect("end of file is readable");
        assert_eq!((&server_side).read(&mut buf).expect("read at end"), 0);
    });
}

#[test]
fn read_with_parks_a_callers_own_syscall_until_the_socket_is_readable() {
    use std::os::fd::AsRawFd;
    runtime(1).block_on(|| {
        let (client, server_side) = connected();
        let fd = server_side.as_raw_fd();
        let mut calls = 0;
        let writer = kcoro::spawn(move || (&client).write_all(b"xyz").map(|()| client));
        let mut buf = [0u8; 8];
        let n = server_side
            .read_with(|| {
                calls += 1;
                // SAFETY: `fd` is the open socket `server_side` owns; `buf` is writable.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
            })
            .expect("recv");
        assert_eq!(&buf[..n], b"xyz");
        assert!(calls >= 2, "the first try found nothing and parked; called {calls} times");
        drop(writer.join().expect("writer").expect("write"));

        server_side.set_read_timeout(Some(Duration::from_millis(10))).expect("timeout");
        let e = server_side
            .read_with(|| Err::<(), _>(io::ErrorKind::WouldBlock.into()))
            .expect_err("never ready");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    });
}
