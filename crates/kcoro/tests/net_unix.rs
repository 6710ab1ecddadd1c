//! `kcoro::net` over Unix-domain sockets: many concurrent connections through a
//! listener in a temporary directory, socket pairs, and read timeouts that park.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use kcoro::Runtime;
use kcoro::net::{UnixListener, UnixStream};

/// Concurrent connections in the echo test (each also holds an accepted fd).
const CONNS: usize = 1000;
/// Request/response exchanges per connection.
const EXCHANGES: u8 = 4;
/// Bytes per request.
const REQUEST: usize = 1024;

/// A socket path unique to this process and test; removed on drop.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(test: &str) -> Self {
        let p = std::env::temp_dir().join(format!("kcoro-net-{}-{test}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        SocketPath(p)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The soft `RLIMIT_NOFILE` after trying to lift it to the hard limit.
fn fd_limit_after_raise() -> u64 {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `cur` is a valid out-pointer for the duration of the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) } == 0;
    let up = libc::rlimit { rlim_cur: cur.rlim_max.min(1 << 20), ..cur };
    // SAFETY: `up` is a valid in-pointer; on failure nothing changes.
    match ok && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &up) } == 0 {
        true => up.rlim_cur,
        false => cur.rlim_cur,
    }
}

/// Request `n` of client `id`: the id in the first bytes, then `n` in every other byte.
fn request(id: u32, n: u8) -> Vec<u8> {
    let mut r = vec![n; REQUEST];
    r[..4].copy_from_slice(&id.to_be_bytes());
    r
}

/// One client: send each request, expect it back verbatim, half-close, expect EOF.
fn talk(path: &Path, id: u32) -> io::Result<()> {
    let conn = UnixStream::connect(path)?;
    let mut reply = [0u8; REQUEST];
    for n in 0..EXCHANGES {
        (&conn).write_all(&request(id, n))?;
        (&conn).read_exact(&mut reply)?;
        if reply[..] != request(id, n)[..] {
            return Err(io::Error::other(format!("client {id}: exchange {n} came back altered")));
        }
    }
    conn.shutdown(Shutdown::Write)?;
    match (&conn).read(&mut reply)? {
        0 => Ok(()),
        extra => Err(io::Error::other(format!("client {id}: {extra} unexpected bytes before EOF"))),
    }
}

#[test]
fn echo_1000_concurrent_connections() {
    let limit = fd_limit_after_raise();
    if limit < (2 * CONNS + 200) as u64 {
        eprintln!("skipping the Unix echo test: only {limit} file descriptors allowed");
        return;
    }
    let path = SocketPath::new("echo");
    let path_for_clients = Arc::new(path.0.clone());
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    rt.block_on(move || {
        let listener = UnixListener::bind(&path.0).expect("bind");
        let server = kcoro::spawn(move || {
            let mut echoes = Vec::with_capacity(CONNS);
            for conn in listener.incoming().take(CONNS) {
                let conn = conn.expect("accept");
                echoes.push(kcoro::spawn(move || io::copy(&mut &conn, &mut &conn)));
            }
            let mut total = 0;
            for e in echoes {
                total += e.join().expect("echo coroutine").expect("echo");
            }
            total
        });
        let clients: Vec<_> = (0..CONNS as u32)
            .map(|id| {
                let path = Arc::clone(&path_for_clients);
                kcoro::spawn(move || talk(&path, id))
            })
            .collect();
        for c in clients {
            c.join().expect("client coroutine").expect("client");
        }
        assert_eq!(server.join().expect("server coroutine"), (CONNS * REQUEST) as u64 * u64::from(EXCHANGES));
    });
}

#[test]
fn pair_roundtrip() {
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    rt.block_on(|| {
        let (a, b) = UnixStream::pair().expect("pair");
        // `b` moves to another coroutine; it answers each line with its length.
        let peer = kcoro::spawn(move || -> io::Result<()> {
            let mut buf = [0u8; 64];
            loop {
                let n = (&b).read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                (&b).write_all(&[n as u8])?;
            }
        });
        for len in [1usize, 7, 64] {
            (&a).write_all(&vec![b'x'; len]).expect("write");
            let mut answer = [0u8; 1];
            (&a).read_exact(&mut answer).expect("read");
            assert_eq!(usize::from(answer[0]), len);
        }
        a.shutdown(Shutdown::Write).expect("shutdown");
        peer.join().expect("peer coroutine").expect("peer io");
        let mut rest = Vec::new();
        (&a).read_to_end(&mut rest).expect("read to EOF");
        assert!(rest.is_empty());
        assert!(format!("{a:?}").starts_with("UnixStream"));
    });
}

#[test]
fn read_timeout_fires() {
    // One worker, so a read that blocked its thread would starve the counter below.
    let rt = Runtime::builder().workers(1).build().expect("runtime");
    rt.block_on(|| {
        let (a, b) = UnixStream::pair().expect("pair");
        let progress = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let counter = kcoro::spawn({
            let (progress, done) = (Arc::clone(&progress), Arc::clone(&done));
            move || {
                while !done.load(Relaxed) {
                    progress.fetch_add(1, Relaxed);
                    kcoro::sleep(Duration::from_millis(1));
                }
            }
        });
        a.set_read_timeout(Some(Duration::from_millis(100))).expect("set_read_timeout");
        let mut buf = [0u8; 8];
        let err = (&a).read(&mut buf).expect_err("the peer never wrote");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(progress.load(Relaxed) > 0, "the worker was blocked during the read");
        done.store(true, Relaxed);
        counter.join().expect("counter");

        // Data that arrives later is still read.
        (&b).write_all(b"now").expect("write");
        (&a).read_exact(&mut buf[..3]).expect("read");
        assert_eq!(&buf[..3], b"now");
    });
}

#[test]
fn bind_over_an_existing_path_fails_and_accept_times_out() {
    let path = SocketPath::new("accept-timeout");
    let rt = Runtime::builder().workers(1).build().expect("runtime");
    rt.block_on(move || {
        let listener = UnixListener::bind(&path.0).expect("bind");
        let err = UnixListener::bind(&path.0).expect_err("bound twice");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let err = listener.accept_timeout(Duration::from_millis(30)).expect_err("nobody connected");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let client = UnixStream::connect(&path.0).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        assert!(client.peer_addr().expect("peer").as_pathname() == Some(path.0.as_path()));
        drop(server_side);
    });
}

#[test]
fn connect_waits_when_the_backlog_is_full() {
    use std::os::fd::AsRawFd;
    const CLIENTS: u8 = 6;
    let path = SocketPath::new("backlog");
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    rt.block_on(move || {
        let listener = UnixListener::bind(&path.0).expect("bind");
        // SAFETY: a plain syscall on the descriptor `listener` owns; re-listening on a
        // listening socket only shrinks its backlog (to 1: two pending connections fit).
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0);
        let path = Arc::new(path.0.clone());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let path = Arc::clone(&path);
                kcoro::spawn(move || -> io::Result<u8> {
                    // Beyond the backlog the non-blocking connect fails with EAGAIN and
                    // kcoro falls back to a blocking connect on the blocking pool.
                    let conn = UnixStream::connect(&*path)?;
                    (&conn).write_all(&[n])?;
                    let mut back = [0u8; 1];
                    (&conn).read_exact(&mut back)?;
                    Ok(back[0])
                })
            })
            .collect();
        // Give the clients a chance to fill the backlog before anything is accepted.
        kcoro::sleep(Duration::from_millis(20));
        for _ in 0..CLIENTS {
            let (conn, _) = listener.accept().expect("accept");
            let mut n = [0u8; 1];
            (&conn).read_exact(&mut n).expect("read");
            (&conn).write_all(&[n[0] + 100]).expect("write");
        }
        for (n, c) in clients.into_iter().enumerate() {
            assert_eq!(c.join().expect("client coroutine").expect("client"), n as u8 + 100);
        }
    });
}

#[test]
fn a_plain_thread_can_use_a_socket() {
    let rt = Runtime::builder().workers(1).build().expect("runtime");
    let (a, b) = rt.block_on(|| UnixStream::pair().expect("pair"));
    // This test thread is no coroutine: its read parks the thread until the reactor
    // reports the coroutine's write.
    let writer = rt.spawn(move || {
        kcoro::sleep(Duration::from_millis(10));
        (&b).write_all(b"from a coroutine")
    });
    let mut got = [0u8; 16];
    (&a).read_exact(&mut got).expect("read on a thread");
    assert_eq!(&got, b"from a coroutine");
    writer.join().expect("writer").expect("write");
}

/// Two workers, one running a coroutine that never yields, the other with no coroutine of
/// its own: the idle one leaves the reactor to the busy one at first (see
/// `Worker::leaves_reactor`), but takes it once nobody polled it for a while, so a plain
/// thread's socket wait is still served.
#[test]
fn a_plain_thread_is_served_while_the_only_other_worker_never_yields() {
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    // Made by a coroutine that ends at once: afterwards no worker has a coroutine.
    let (a, b) = rt.block_on(|| UnixStream::pair().expect("pair"));
    let served = Arc::new(AtomicBool::new(false));
    let busy = {
        let served = Arc::clone(&served);
        rt.handle()
            .spawn_with(kcoro::SpawnOptions::new().on_worker(0), move || {
                // Spins without yielding until the thread below has its data (or gives up,
                // so a failure ends the test instead of hanging it).
                let give_up = std::time::Instant::now() + Duration::from_secs(60);
                while !served.load(Relaxed) {
                    if std::time::Instant::now() > give_up {
                        return false;
                    }
                    std::hint::spin_loop();
                }
                true
            })
            .expect("spawn")
    };
    let reader = std::thread::Builder::new()
        .name("plain-reader".into())
        .spawn(move || {
            let mut got = [0u8; 5];
            (&a).read_exact(&mut got).map(|()| got)
        })
        .expect("reader thread");
    // Write only once the reader has parked on the socket: its data must come through the
    // reactor.
    while !kcoro::inspect::threads_waiting().iter().any(|w| w.thread == "plain-reader") {
        std::thread::sleep(Duration::from_millis(1));
    }
    (&b).write_all(b"hello").expect("write from a thread");
    let got = reader.join().expect("reader").expect("read");
    served.store(true, Relaxed);
    assert_eq!(&got, b"hello");
    assert!(
        busy.join().expect("busy coroutine"),
        "the read was served only after the busy coroutine gave up"
    );
}

#[test]
fn socket_outliving_its_runtime_fails_instead_of_hanging() {
    let rt = Runtime::builder().workers(1).build().expect("runtime");
    let (a, b) = rt.block_on(|| UnixStream::pair().expect("pair"));
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4];
        (&a).read(&mut buf)
    });
    // Give the reader time to park on the reactor, then shut the runtime down under it.
    std::thread::sleep(Duration::from_millis(20));
    drop(rt);
    let err = reader.join().expect("reader thread").expect_err("no data will ever come");
    assert!(err.to_string().contains("shut down"), "{err}");
    drop(b);
}

/// Descriptors ride with bytes (SCM_RIGHTS): the receiver gets working fds of the same
/// open files, in order, with the bytes they were sent with; a plain read gets bytes only.
#[test]
fn descriptors_travel_with_bytes() {
    use std::os::fd::{AsFd, OwnedFd};
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    rt.block_on(|| {
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut r1, w1) = std::io::pipe().expect("pipe");
        let (mut r2, w2) = std::io::pipe().expect("pipe");
        let sender = kcoro::spawn(move || {
            assert_eq!(a.send_with_fds(b"two", &[w1.as_fd(), w2.as_fd()]).expect("send"), 3);
            assert_eq!(a.send_with_fds(b"none", &[]).expect("send"), 4);
            let too_many: Vec<_> = (0..=kcoro::net::MAX_FDS).map(|_| w1.as_fd()).collect();
            assert!(a.send_with_fds(b"x", &too_many).is_err());
        });
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while got.len() < 7 {
            let n = b.recv_with_fds(&mut buf, &mut fds).expect("recv");
            got.extend_from_slice(&buf[..n]);
        }
        sender.join().expect("sender");
        assert_eq!(&got, b"twonone");
        assert_eq!(fds.len(), 2);
        for (fd, (reader, word)) in fds.into_iter().zip([(&mut r1, "first"), (&mut r2, "second")]) {
            let mut w = std::fs::File::from(fd);
            w.write_all(word.as_bytes()).expect("write through the received fd");
            drop(w);
            let mut s = vec![0u8; word.len()];
            reader.read_exact(&mut s).expect("read the pipe");
            assert_eq!(s, word.as_bytes());
        }
    });
}

/// Shutting down our own end wakes a coroutine parked reading it, with end of stream,
/// while the peer stays silent and open (a peer that is stopped, for example).
#[test]
fn shutting_down_our_end_wakes_our_parked_reader() {
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    let (a, b) = rt.block_on(|| UnixStream::pair().expect("pair"));
    let a = Arc::new(a);
    let reader = rt.spawn({
        let a = Arc::clone(&a);
        move || {
            let mut buf = [0u8; 8];
            (&*a).read(&mut buf)
        }
    });
    std::thread::sleep(Duration::from_millis(50)); // let it park
    a.shutdown(Shutdown::Both).expect("shutdown");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(reader.join()));
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("the parked reader never woke");
    assert_eq!(got.expect("reader").expect("read"), 0);
    drop(b);
}
