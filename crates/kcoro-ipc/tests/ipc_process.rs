//! Distributed channels across processes: the server runs in a child process (this binary
//! re-executed), clients here. Every kind, timeouts, cancellation, close, requests
//! completing out of order, many connections exactly once, peer death on either side,
//! credit windows bounding the server's memory, and large elements through shared memory.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{KINDS, SECRET, ServerProc, WATCHDOG, sock};
use kcoro::chan::{ChanError, Kind};
use kcoro::sync::CancelToken;
use kcoro_ipc::{ConnectOptions, Connection, IpcError};

/// A pause given as an input: time for another party to reach a blocking call. No verdict
/// depends on it being long enough.
const SETTLE: Duration = Duration::from_millis(100);

/// Only meaningful as a child: serves, or acts as a client to be killed.
#[test]
fn child() {
    if common::child_main() {
        return;
    }
    if let Ok(addr) = std::env::var("KCORO_IPC_CLIENT") {
        let conn = kcoro_ipc::connect(&addr).unwrap();
        let rx = conn.receiver::<Vec<u8>>("buf").unwrap();
        assert_eq!(rx.recv().unwrap(), b"first");
        println!("parking");
        let _ = rx.recv(); // killed here
        unreachable!("the parent kills this process while it waits");
    }
}

fn server(name: &str, opts: &str) -> ServerProc {
    ServerProc::start("child", &sock(name), opts)
}

fn conn(s: &ServerProc) -> Connection {
    kcoro_ipc::connect(&s.addr).unwrap()
}

/// Calls `f` until it returns `Some`, sleeping between tries; fails after the watchdog.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + WATCHDOG;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not after {WATCHDOG:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_kind_across_processes() {
    let s = server("kinds.sock", "");
    let c = conn(&s);
    for (name, kind) in KINDS {
        let tx = c.sender::<Vec<u8>>(name).unwrap();
        let rx = c.receiver::<Vec<u8>>(name).unwrap();
        assert_eq!((tx.kind(), rx.kind()), (kind, kind), "{name}");
        match kind {
            Kind::Rendezvous => {
                assert_eq!(tx.credits(), None, "rendezvous sends wait for their receiver");
                assert_eq!(tx.try_send(b"x".to_vec()).unwrap_err().kind(), ChanError::WouldBlock);
                let r = rx.clone();
                let taker = std::thread::spawn(move || r.recv());
                tx.send(b"met".to_vec()).unwrap(); // returns once the receiver took it
                assert_eq!(taker.join().unwrap().unwrap(), b"met");
            }
            Kind::Buffered => {
                assert_eq!(tx.capacity(), Some(8));
                for i in 0..8u8 {
                    tx.send(vec![i]).unwrap();
                }
                for i in 0..8u8 {
                    assert_eq!(rx.recv().unwrap(), vec![i], "FIFO");
                }
            }
            Kind::Conflated => {
                for i in 0..5u8 {
                    tx.send(vec![i]).unwrap();
                }
                // Sends land in order; the last one stays.
                eventually("the last conflated value", || rx.try_recv().ok().filter(|v| v == &vec![4]));
                assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
            }
            Kind::Unlimited => {
                assert_eq!(tx.capacity(), None);
                for i in 0..1000u32 {
                    tx.send(i.to_le_bytes().to_vec()).unwrap();
                }
                for i in 0..1000u32 {
                    assert_eq!(rx.recv().unwrap(), i.to_le_bytes());
                }
            }
        }
        let snap = rx.snapshot().unwrap();
        assert_eq!(snap.kind, kind);
        assert!(snap.sends >= 1 && snap.recvs >= 1, "{name}: {snap:?}");
    }
}

#[test]
fn timeouts_zero_negative_and_positive() {
    let s = server("timeouts.sock", "");
    let c = conn(&s);
    let rx = c.receiver::<Vec<u8>>("buf").unwrap();
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    assert_eq!(rx.recv_timeout(Duration::ZERO), Err(ChanError::Timeout));
    assert_eq!(rx.recv_timeout(Duration::from_millis(30)), Err(ChanError::Timeout));
    let tx = c.sender::<Vec<u8>>("buf").unwrap();
    let t = tx.clone();
    let late = std::thread::spawn(move || {
        std::thread::sleep(SETTLE);
        t.send(b"late".to_vec())
    });
    assert_eq!(rx.recv().unwrap(), b"late", "a negative timeout waits as long as it takes");
    late.join().unwrap().unwrap();
    let rv = c.sender::<Vec<u8>>("rv").unwrap();
    let e = rv.send_timeout(b"nobody".to_vec(), Duration::from_millis(30)).unwrap_err();
    assert_eq!((e.kind(), e.into_inner()), (ChanError::Timeout, b"nobody".to_vec()), "the value comes back");
    // On the wire a zero timeout is a try (TIMEOUT_MS = 0, as in the C API): the server
    // counts it as would-block, the client reports the deadline it was given.
    let s = rx.snapshot().unwrap();
    assert!(s.recv_failures.timeout >= 1 && s.recv_failures.would_block >= 2, "{s:?}");
}

#[test]
fn cancellation_wakes_a_parked_remote_receive() {
    let s = server("cancel.sock", "");
    let c = conn(&s);
    let rx = c.receiver::<Vec<u8>>("buf").unwrap();
    let token = CancelToken::new();
    let t = token.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(SETTLE);
        t.cancel();
    });
    let started = Instant::now();
    assert_eq!(rx.recv_with(Some(started + WATCHDOG), Some(&token)), Err(ChanError::Canceled));
    canceller.join().unwrap();
    // The cancelled receive holds nothing on the server: a value goes to the next receive.
    c.sender::<Vec<u8>>("buf").unwrap().send(b"after".to_vec()).unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), b"after");
    // A rendezvous send cancelled while parked hands its value back.
    let token = CancelToken::new();
    let t = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(SETTLE);
        t.cancel();
    });
    let rv = c.sender::<Vec<u8>>("rv").unwrap();
    let e = rv.send_cancellable(b"mine".to_vec(), &token).unwrap_err();
    assert_eq!((e.kind(), e.into_inner()), (ChanError::Canceled, b"mine".to_vec()));
}

#[test]
fn close_wakes_parked_remote_waiters() {
    let s = server("close.sock", "");
    let c = conn(&s);
    let parked: Vec<_> = (0..3)
        .map(|_| {
            let rx = c.receiver::<Vec<u8>>("unl").unwrap();
            std::thread::spawn(move || rx.recv())
        })
        .collect();
    let rv = c.sender::<Vec<u8>>("rv").unwrap();
    let sender = std::thread::spawn(move || rv.send(b"stuck".to_vec()).map_err(|e| e.kind()));
    std::thread::sleep(SETTLE);
    let other = conn(&s);
    assert!(other.sender::<Vec<u8>>("unl").unwrap().close());
    assert!(other.receiver::<Vec<u8>>("rv").unwrap().close());
    for p in parked {
        assert_eq!(p.join().unwrap(), Err(ChanError::Closed));
    }
    assert_eq!(sender.join().unwrap(), Err(ChanError::Closed));
    // The close reached this connection too: sends fail at once.
    let tx = c.sender::<Vec<u8>>("unl").unwrap();
    assert!(tx.is_closed());
    assert_eq!(tx.send(b"no".to_vec()).unwrap_err().kind(), ChanError::Closed);
}

/// Twenty receives parked on one connection, satisfied in reverse order: each gets its own
/// value (replies are routed by REQ_ID, not by order).
#[test]
fn requests_complete_out_of_order() {
    let s = server("order.sock", "");
    let c = conn(&s);
    let receivers: Vec<_> = (0..20)
        .map(|i| {
            let (_, rx) = c.make::<Vec<u8>>(&format!("o{i}"), Kind::Rendezvous, 0).unwrap();
            std::thread::spawn(move || rx.recv().unwrap())
        })
        .collect();
    std::thread::sleep(SETTLE);
    let other = conn(&s);
    for i in (0..20).rev() {
        other.sender::<Vec<u8>>(&format!("o{i}")).unwrap().send(vec![i as u8]).unwrap();
    }
    for (i, r) in receivers.into_iter().enumerate() {
        assert_eq!(r.join().unwrap(), vec![i as u8]);
    }
}

fn exactly_once(total: u64) {
    let s = server("many.sock", "");
    // 100 connections open at once; 4 produce, 4 consume, the rest poll the server.
    let conns: Vec<Connection> = (0..100).map(|_| conn(&s)).collect();
    let per = total / 4;
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let tx = conns[p as usize].sender::<Vec<u8>>("jobs").unwrap();
            std::thread::spawn(move || {
                for i in 0..per {
                    tx.send((p * per + i).to_le_bytes().to_vec()).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..4)
        .map(|k| {
            let rx = conns[4 + k].receiver::<Vec<u8>>("jobs").unwrap();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(v) = rx.recv() {
                    got.push(u64::from_le_bytes(v.try_into().unwrap()));
                }
                got
            })
        })
        .collect();
    for c in &conns[8..] {
        assert!(c.info().unwrap().connections >= 100);
    }
    for p in producers {
        p.join().unwrap();
    }
    // Everything sent is in the channel or taken: close, and receivers drain the rest.
    eventually("every send applied", || {
        let s = conns[0].receiver::<Vec<u8>>("jobs").unwrap().snapshot().unwrap();
        (s.sends == total).then_some(())
    });
    conns[9].sender::<Vec<u8>>("jobs").unwrap().close();
    let mut all: Vec<u64> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all.len() as u64, total);
    assert!(all.iter().enumerate().all(|(i, v)| *v == i as u64), "a value was lost or duplicated");
}

#[test]
fn hundred_connections_exactly_once() {
    exactly_once(100_000);
}

/// The full-size run: `cargo test -p kcoro-ipc --release -- --ignored`.
#[test]
#[ignore]
fn hundred_connections_exactly_once_1e6() {
    exactly_once(1_000_000);
}

#[test]
fn client_killed_mid_operation() {
    let s = server("killc.sock", "");
    let mut client = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("KCORO_IPC_CLIENT", &s.addr)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let c = conn(&s);
    let tx = c.sender::<Vec<u8>>("buf").unwrap();
    tx.send(b"first".to_vec()).unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("parking") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the client child died early");
    }
    std::thread::sleep(SETTLE); // input: time for its receive to park on the server
    client.kill().unwrap();
    client.wait().unwrap();
    eventually("the dead client's connection is gone", || (c.info().ok()?.connections == 1).then_some(()));
    // Its parked receive is gone with it: the next value is not swallowed.
    tx.send(b"second".to_vec()).unwrap();
    assert_eq!(c.receiver::<Vec<u8>>("buf").unwrap().recv_timeout(WATCHDOG).unwrap(), b"second");
}

#[test]
fn server_killed_mid_operation() {
    let mut s = server("kills.sock", "");
    let c = conn(&s);
    let rx = c.receiver::<Vec<u8>>("buf").unwrap();
    let waiter = std::thread::spawn(move || rx.recv());
    let tx = c.sender::<Vec<u8>>("slow").unwrap();
    std::thread::sleep(SETTLE);
    s.kill();
    assert_eq!(waiter.join().unwrap(), Err(ChanError::Closed), "a pending receive fails at once");
    eventually("the connection notices", || c.is_closed().then_some(()));
    assert!(c.close_reason().is_some());
    assert_eq!(tx.send(b"x".to_vec()).unwrap_err().kind(), ChanError::Closed);
    assert!(matches!(c.info(), Err(IpcError::Closed(_))));
}

/// A channel nobody drains: each connection runs one window ahead, then waits; the
/// server's memory stays bounded however hard the clients push.
#[test]
fn credit_windows_bound_the_server() {
    let s = server("credits.sock", "credits=16");
    let elem = vec![7u8; 32 << 10]; // inline (below the shared-memory threshold)
    let c = conn(&s);
    let tx = c.sender::<Vec<u8>>("slow").unwrap();
    assert_eq!(tx.credits(), Some(16));
    // 4 fit in the channel and 16 in this connection's window; the sends past the first 16
    // wait for the credits the server returns as it moves values into the channel.
    for _ in 0..4 + 16 {
        tx.send_timeout(elem.clone(), WATCHDOG).unwrap();
    }
    assert_eq!(tx.credits(), Some(0));
    // Nobody drains the channel: no credit comes back, the next send times out.
    let e = tx.send_timeout(elem.clone(), Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), ChanError::Timeout);
    let before = s.rss_kib();
    let conns: Vec<_> = (0..8).map(|_| conn(&s)).collect();
    let pushers: Vec<_> = conns
        .iter()
        .map(|c| {
            let tx = c.sender::<Vec<u8>>("slow").unwrap();
            let e = elem.clone();
            std::thread::spawn(move || {
                let mut accepted = 0;
                for _ in 0..200 {
                    if tx.send_timeout(e.clone(), Duration::from_millis(2)).is_ok() {
                        accepted += 1;
                    }
                }
                accepted
            })
        })
        .collect();
    let accepted: usize = pushers.into_iter().map(|p| p.join().unwrap()).sum();
    assert!(accepted <= 8 * 16, "{accepted} sends accepted past their windows");
    let grown = s.rss_kib().saturating_sub(before);
    // 8 windows of 16 × 32 KiB = 4 MiB of values; allow for buffers and allocator slack.
    assert!(grown < 32 << 10, "server grew by {grown} KiB for 1600 attempted sends");
}

/// Sends waiting in a credit window are bounded by the window, not by the requests-in-flight
/// limit: a connection may have more of them queued than `max_in_flight`, and none is
/// refused, none lost, and the channel stays open.
#[test]
fn credited_sends_are_not_requests_in_flight() {
    let s = server("inflight.sock", "in_flight=2 credits=8");
    let c = conn(&s);
    let tx = c.sender::<Vec<u8>>("slow").unwrap();
    // 4 fill the channel, 8 wait in the window on the server: more than 2 in flight.
    for i in 0..12u8 {
        tx.send_timeout(vec![i], WATCHDOG).unwrap();
    }
    let rx = c.receiver::<Vec<u8>>("slow").unwrap();
    for i in 0..12u8 {
        assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), [i]);
    }
    assert!(!tx.is_closed(), "a queued send was refused and closed the channel");
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
}

/// The window counts bytes too: with room for 128 values but only 64 KiB, a sender of
/// 32 KiB elements runs two ahead, then waits; what it sent all arrives, in order.
#[test]
fn credit_window_counts_bytes() {
    let s = server("credit-bytes.sock", "credits=128 credit_bytes=65536");
    let c = Connection::connect(&s.addr, ConnectOptions::new().no_shared_memory()).unwrap();
    let tx = c.sender::<Vec<u8>>("slow").unwrap();
    let elem = |i: u8| vec![i; 32 << 10];
    // 4 fill the channel (each fed in, its window given back), 2 wait in 64 KiB.
    for i in 0..6u8 {
        tx.send_timeout(elem(i), WATCHDOG).unwrap();
    }
    let e = tx.send_timeout(elem(6), Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), ChanError::Timeout, "a third 32 KiB send fitted a 64 KiB window");
    assert!(tx.credits().unwrap() > 100, "values were not what ran out");
    // A small send still fits? No: 64 KiB are in flight, 1 byte more is over.
    assert_eq!(tx.try_send(vec![0]).unwrap_err().kind(), ChanError::WouldBlock);
    let rx = c.receiver::<Vec<u8>>("slow").unwrap();
    for i in 0..6u8 {
        assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), elem(i));
    }
    // Drained: the window is free again, and a send larger than all of it goes alone.
    tx.send_timeout(vec![9; 100 << 10], WATCHDOG).unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap().len(), 100 << 10);
    assert!(!tx.is_closed());
}

/// Shared-memory elements a channel keeps as views of the sender's region count against
/// the client's own bound (`shared_window`), not the server's inline window: with 64 KiB of
/// each, a sender of 32 KiB shared elements runs two ahead of a full channel, then waits,
/// while small inline sends still go; everything arrives, in order, and no send is refused.
#[test]
fn shared_elements_have_a_window_of_their_own() {
    let s = server("credit-split.sock", "credits=100 credit_bytes=65536");
    let opts = ConnectOptions::new().shared_memory(16 << 10, 1 << 20).shared_window(64 << 10);
    let c = Connection::connect(&s.addr, opts).unwrap();
    let tx = c.sender::<Bytes>("slow_views").unwrap();
    let big = |i: u8| Bytes::from(vec![i; 32 << 10]);
    // 4 fill the channel, 2 wait in the shared window.
    for i in 0..6u8 {
        tx.send_timeout(big(i), WATCHDOG).unwrap();
    }
    let e = tx.send_timeout(big(6), Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), ChanError::Timeout, "a third 32 KiB shared element fitted 64 KiB");
    // The inline window is the server's, untouched by shared elements: 60 KiB of small ones go.
    for i in 0..60u8 {
        tx.send_timeout(Bytes::from(vec![i; 1 << 10]), WATCHDOG).unwrap();
    }
    let e = tx.try_send(Bytes::from(vec![0; 8 << 10])).unwrap_err();
    assert_eq!(e.kind(), ChanError::WouldBlock, "inline full");
    let rx = c.receiver::<Bytes>("slow_views").unwrap();
    for i in 0..6u8 {
        assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), big(i));
    }
    for i in 0..60u8 {
        assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), vec![i; 1 << 10]);
    }
    assert!(!tx.is_closed(), "a send was refused");
}

/// A channel whose type copies shared elements into the server's memory (`Vec<u8>`) has
/// them count in the server's window like inline ones (`COPIES_SHARED`): with a 64 KiB
/// window, two 32 KiB shared elements wait behind a full channel and fill it, so even a
/// small inline send waits; the server never holds more than its window of copies, and
/// nothing is refused or lost.
#[test]
fn shared_elements_a_channel_copies_count_in_the_servers_window() {
    let s = server("credit-copies.sock", "credits=100 credit_bytes=65536");
    let opts = ConnectOptions::new().shared_memory(16 << 10, 1 << 20).shared_window(1 << 20);
    let c = Connection::connect(&s.addr, opts).unwrap();
    let tx = c.sender::<Vec<u8>>("slow").unwrap();
    let big = |i: u8| vec![i; 32 << 10];
    for i in 0..6u8 {
        tx.send_timeout(big(i), WATCHDOG).unwrap();
    }
    let e = tx.send_timeout(big(6), Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), ChanError::Timeout, "a third 32 KiB copy fitted a 64 KiB window");
    let e = tx.try_send(vec![0; 1 << 10]).unwrap_err();
    assert_eq!(e.kind(), ChanError::WouldBlock, "the copies fill the window inline sends use");
    let rx = c.receiver::<Vec<u8>>("slow").unwrap();
    for i in 0..6u8 {
        assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), big(i));
    }
    tx.send_timeout(vec![7; 1 << 10], WATCHDOG).unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), vec![7; 1 << 10]);
    assert!(!tx.is_closed(), "a send was refused");
}

/// Two senders opened separately on one connection share that connection's window (the
/// server keeps one per channel and connection): together they never run past it, so the
/// server never refuses one of their sends and nothing is lost.
#[test]
fn senders_of_one_connection_share_its_window() {
    let s = server("credit-shared.sock", "credits=4");
    let c = conn(&s);
    let (a, b) = (c.sender::<Vec<u8>>("slow").unwrap(), c.sender::<Vec<u8>>("slow").unwrap());
    for i in 0..8u8 {
        a.send_timeout(vec![i], WATCHDOG).unwrap(); // 4 in the channel, 4 in the window
    }
    let e = b.send_timeout(vec![8], Duration::from_millis(100)).unwrap_err();
    assert_eq!(e.kind(), ChanError::Timeout, "the second sender had a window of its own");
    let rx = c.receiver::<Vec<u8>>("slow").unwrap();
    for i in 0..8u8 {
        assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), [i]);
    }
    b.send_timeout(vec![8], WATCHDOG).unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), [8]);
    assert!(!a.is_closed() && !b.is_closed(), "a refused send closed the channel");
}

/// Mappings of memfds in this process.
fn memfd_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().filter(|l| l.contains("/memfd:")).count())
        .unwrap_or(0)
}

/// 1 MiB elements go through shared memory both ways and arrive intact.
#[test]
fn large_elements_through_shared_memory() {
    let s = server("shm.sock", "");
    let c = conn(&s);
    let regions_before = kcoro::zcopy::regions();
    let maps_before = memfd_maps();
    let tx = c.sender::<Vec<u8>>("jobs").unwrap();
    let rx = conn(&s).receiver::<Vec<u8>>("jobs").unwrap();
    for i in 0..20u8 {
        let v: Vec<u8> = (0..1 << 20).map(|j: u32| (j as u8).wrapping_mul(i | 1)).collect();
        tx.send(v.clone()).unwrap();
        assert_eq!(rx.recv().unwrap(), v, "element {i}");
    }
    // This process made a region to send from (in the process's table) and mapped the
    // server's to receive (privately: only that connection resolves descriptors in it).
    assert!(kcoro::zcopy::regions() > regions_before);
    assert!(memfd_maps() >= maps_before + 2, "{} memfd mappings, {maps_before} before", memfd_maps());
    let snap = rx.snapshot().unwrap();
    assert_eq!((snap.sends, snap.bytes_recv), (20, 20 << 20));
}

#[test]
fn tcp_requires_the_secret() {
    let s = ServerProc::start("child", "tcp:127.0.0.1:0", "secret=1");
    let addr = s.addr.clone();
    let none = Connection::connect(&addr, ConnectOptions::new()).unwrap_err();
    assert!(matches!(&none, IpcError::Auth(m) if m.contains("requires a secret")), "{none}");
    let wrong =
        Connection::connect(&addr, ConnectOptions::new().secret("not the secret at all")).unwrap_err();
    assert!(matches!(wrong, IpcError::Auth(_)), "{wrong}");
    let c = Connection::connect(&addr, ConnectOptions::new().secret(SECRET)).unwrap();
    let tx = c.sender::<Vec<u8>>("buf").unwrap();
    tx.send(b"over tcp".to_vec()).unwrap();
    assert_eq!(c.receiver::<Vec<u8>>("buf").unwrap().recv().unwrap(), b"over tcp");
    let big = vec![3u8; 3 << 20]; // no shared memory over TCP: inline, long form
    tx.send(big.clone()).unwrap();
    assert_eq!(c.receiver::<Vec<u8>>("buf").unwrap().recv().unwrap(), big);
}

#[test]
fn serving_beyond_loopback_needs_a_secret() {
    let e = kcoro_ipc::Server::bind("tcp:0.0.0.0:0").unwrap().start().unwrap_err();
    assert!(matches!(&e, IpcError::Config(m) if m.contains("secret")), "{e}");
    let e = kcoro_ipc::Server::bind("tcp:0.0.0.0:0").unwrap().secret("short").start().unwrap_err();
    assert!(matches!(&e, IpcError::Config(m) if m.contains("16 bytes")), "{e}");
}

#[test]
fn unix_socket_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = server("mode.sock", "");
    let path = s.addr.strip_prefix("unix:").unwrap();
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(Arc::new(s));
}

#[test]
fn local_proxies_join_select() {
    let s = server("select.sock", "");
    let c = conn(&s);
    let remote = c.receiver::<Vec<u8>>("unl").unwrap().local(4);
    let (ltx, lrx) = kcoro::chan::buffered::<Vec<u8>>(1);
    let tx = c.sender::<Vec<u8>>("unl").unwrap();
    tx.send(b"remote".to_vec()).unwrap();
    ltx.send(b"local".to_vec()).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        kcoro::select! {
            recv(remote) -> v => got.push(v.unwrap()),
            recv(lrx) -> v => got.push(v.unwrap()),
            timeout(WATCHDOG) => panic!("select stalled"),
        }
    }
    got.sort();
    assert_eq!(got, [b"local".to_vec(), b"remote".to_vec()]);
    let local_tx = c.sender::<Vec<u8>>("buf").unwrap().local(4);
    local_tx.send(b"via proxy".to_vec()).unwrap();
    assert_eq!(c.receiver::<Vec<u8>>("buf").unwrap().recv_timeout(WATCHDOG).unwrap(), b"via proxy");
    let _ = std::io::stdout().flush();
}
