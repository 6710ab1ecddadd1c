//! Backends that refuse, reset or stall, clients that say nothing, and the limit: each
//! ends the right connections, counted under the right kind, and nothing else.

use std::time::Duration;

use kcoro_proxy::ErrorKind;

use crate::common::{Backend, Client, Mode, Running, closed_port, config};

#[test]
fn a_refusing_backend_is_skipped_and_with_none_left_the_client_is_closed() {
    let live = Backend::start(1, Mode::Echo);
    let (_held, dead) = closed_port();
    let p = Running::start(&config(&[dead, live.addr], "", ""));
    for _ in 0..4 {
        let mut c = Client::connect(p.addr());
        assert_eq!(c.greeting(), "B1");
        c.echo(b"x");
    }
    let s = p.wait_for("four closed", |s| s.listener("l").unwrap().closed == 4);
    let l = s.listener("l").unwrap();
    // Round-robin tried the dead one first for every other connection.
    assert_eq!(l.errors.get(ErrorKind::ConnectRefused), 2, "{l:?}");
    assert_eq!(l.errors.get(ErrorKind::NoBackend), 0);
    assert_eq!(s.pool("p").unwrap().backends[0].connect_errors, 2);
    assert_eq!(s.pool("p").unwrap().backends[1].connections, 4);

    let only_dead = Running::start(&config(&[dead], "", ""));
    let mut c = Client::connect(only_dead.addr());
    assert_eq!(c.read_to_end(), 0, "closed without a byte");
    let s = only_dead.wait_for("one closed", |s| s.listener("l").unwrap().closed == 1);
    let l = s.listener("l").unwrap();
    assert_eq!((l.errors.get(ErrorKind::NoBackend), l.errors.get(ErrorKind::ConnectRefused)), (1, 1));
    assert_eq!(s.pool("p").unwrap().no_backend, 1);
}

#[test]
fn a_backend_reset_mid_stream_closes_its_client_and_no_other() {
    let bad = Backend::start(0, Mode::ResetAfterRead);
    let good = Backend::start(1, Mode::Echo);
    let p = Running::start(&config(&[bad.addr, good.addr], "", ""));
    let mut doomed = Client::connect(p.addr());
    assert_eq!(doomed.greeting(), "B0");
    let mut fine = Client::connect(p.addr());
    assert_eq!(fine.greeting(), "B1");
    use std::io::Write;
    doomed.reader.get_mut().write_all(b"boom").unwrap();
    assert_eq!(doomed.read_to_end(), 0, "the reset ends the client's connection");
    fine.echo(b"unaffected");
    let s = p.wait_for("the reset counted", |s| s.listener("l").unwrap().closed == 1);
    let l = s.listener("l").unwrap();
    assert_eq!(l.errors.get(ErrorKind::BackendReset), 1, "{l:?}");
    assert_eq!(l.errors.total(), 1, "{l:?}");
    assert_eq!(l.active, 1);
}

#[test]
fn a_silent_client_and_a_stalled_backend_are_closed_by_the_idle_timeout() {
    let stalled = Backend::start(0, Mode::Stall);
    let p = Running::start(&config(&[stalled.addr], "idle_timeout = \"300ms\"", ""));
    let mut c = Client::connect(p.addr());
    assert_eq!(c.read_to_end(), 0, "closed by the proxy, not by the test's timeout");
    let s = p.wait_for("closed", |s| s.listener("l").unwrap().closed == 1);
    let l = s.listener("l").unwrap();
    assert_eq!(l.errors.get(ErrorKind::IdleTimeout), 1, "one connection, one count: {l:?}");
    assert_eq!(l.errors.total(), 1, "{l:?}");
    // The backend's side was closed too.
    let deadline = std::time::Instant::now() + crate::common::PATIENCE;
    while stalled.ended.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the backend's connection was left open");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn traffic_one_way_keeps_a_connection_from_idling_out() {
    // Chunks every 100 ms for 3 s against an idle timeout of 1.5 s: the client never
    // sends, yet the connection stays, because the other direction moves.
    let trickle = Backend::start(0, Mode::Trickle(30));
    let p = Running::start(&config(&[trickle.addr], "idle_timeout = \"1500ms\"", ""));
    let mut c = Client::connect(p.addr());
    assert_eq!(c.greeting(), "B0");
    assert_eq!(c.read_to_end(), 30 * 1024, "every chunk, then the backend's end");
    drop(c);
    let s = p.wait_for("closed", |s| s.listener("l").unwrap().closed == 1);
    assert_eq!(s.listener("l").unwrap().errors.total(), 0, "{s:?}");
}

#[test]
fn over_the_limit_a_connection_is_closed_at_once_and_counted() {
    let b = Backend::start(0, Mode::Echo);
    let p = Running::start(&config(&[b.addr], "max_connections = 2", ""));
    let mut one = Client::connect(p.addr());
    let mut two = Client::connect(p.addr());
    assert_eq!((one.greeting(), two.greeting()), ("B0".into(), "B0".into()));
    let mut three = Client::connect(p.addr());
    assert_eq!(three.read_to_end(), 0, "refused: closed without a byte");
    let s = p.wait_for("refusal counted", |s| s.listener("l").unwrap().errors.get(ErrorKind::Limit) == 1);
    assert_eq!(s.pool("p").unwrap().backends[0].connections, 2, "the refused one never reached a backend");
    assert_eq!(b.accepted.load(std::sync::atomic::Ordering::Relaxed), 2, "as the backend counts them");
    drop(one);
    p.wait_for("one closed", |s| s.listener("l").unwrap().active == 1);
    let mut four = Client::connect(p.addr());
    assert_eq!(four.greeting(), "B0");
    four.echo(b"room again");
    two.echo(b"still fine");
}

/// A listener whose accept queue is full and never drained: the kernel drops further
/// SYNs, so a connect to it neither succeeds nor fails until its timeout. Returns the
/// listener and the connections that fill its queue (both must stay alive).
fn blackhole() -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) again on the open listening socket `l` owns, with a backlog of 0.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().unwrap();
    // Backlog 0 takes one completed handshake (or two); the next connect times out.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    assert!(fillers.len() < 4, "the accept queue never filled");
    (l, fillers)
}

#[test]
fn a_backend_that_never_answers_the_handshake_times_out_and_the_next_one_serves() {
    let (hole, _fillers) = blackhole();
    let live = Backend::start(1, Mode::Echo);
    let toml = config(&[hole.local_addr().unwrap(), live.addr], "", "")
        .replace("connect_timeout = \"2s\"", "connect_timeout = \"300ms\"");
    let p = Running::start(&toml);
    let mut c = Client::connect(p.addr());
    assert_eq!(c.greeting(), "B1", "served by the next backend");
    let s = p.stats();
    let l = s.listener("l").unwrap();
    assert_eq!(l.errors.get(ErrorKind::ConnectTimeout), 1, "{l:?}");
    assert_eq!(s.pool("p").unwrap().backends[0].connect_errors, 1);
}
