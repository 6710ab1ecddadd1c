//! Client and server in one process: the channel API over a real socket, for every kind.

use std::time::Duration;

use kcoro::chan::{self, ChanError, Kind};
use kcoro_ipc::{ConnectOptions, Connection, Server};

fn sock(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("kcoro-ipc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("unix:{}", dir.join(name).display())
}

/// Serves `tx`/`rx` as "big" on the socket `name`, elements of 64 KiB and more through
/// shared memory both ways; returns the server and a connector with the same setting.
fn serve_big_shared<T: kcoro_ipc::Element + Clone>(
    name: &str,
    tx: &chan::Sender<T>,
    rx: &chan::Receiver<T>,
) -> (Server, impl Fn() -> Connection) {
    let addr = sock(name);
    let server = Server::bind(&addr)
        .unwrap()
        .shared_memory(64 << 10, 16 << 20)
        .serve_channel("big", tx.clone(), rx.clone())
        .start()
        .unwrap();
    (server, move || {
        Connection::connect(&addr, ConnectOptions::new().shared_memory(64 << 10, 16 << 20)).unwrap()
    })
}

#[test]
fn send_and_recv_over_unix() {
    let (tx, rx) = chan::buffered::<Vec<u8>>(16);
    let addr = sock("basic.sock");
    let server = Server::bind(&addr).unwrap().serve_channel("jobs", tx.clone(), rx.clone()).start().unwrap();
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let jobs = conn.sender::<Vec<u8>>("jobs").unwrap();
    for i in 0..100u8 {
        jobs.send(vec![i; 10]).unwrap();
    }
    for i in 0..100u8 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), vec![i; 10]);
    }
    let rjobs = conn.receiver::<Vec<u8>>("jobs").unwrap();
    tx.send(b"back".to_vec()).unwrap();
    assert_eq!(rjobs.recv().unwrap(), b"back");
    assert_eq!(rjobs.try_recv(), Err(ChanError::WouldBlock));
    assert_eq!(rjobs.recv_timeout(Duration::from_millis(20)), Err(ChanError::Timeout));
    let (mtx, mrx) = conn.make::<String>("made", Kind::Rendezvous, 0).unwrap();
    let h = std::thread::spawn(move || mrx.recv());
    mtx.send("hello".into()).unwrap();
    assert_eq!(h.join().unwrap().unwrap(), "hello");
    let names: Vec<_> = conn.list().unwrap().into_iter().filter_map(|s| s.name).collect();
    assert_eq!(names, ["jobs", "made"]);
    drop(server);
}

/// Sends the server takes on its reader (the channel has room) and sends that wait in the
/// connection's queue (it had none) land in the order they were sent: a channel of two
/// slots, drained in bursts, while one client sends 2,000 values as fast as its window
/// lets it.
#[test]
fn sends_keep_their_order_when_the_channel_fills_and_drains() {
    let (tx, rx) = chan::buffered::<Vec<u8>>(2);
    let addr = sock("order.sock");
    let server = Server::bind(&addr).unwrap().serve_channel("seq", tx, rx.clone()).start().unwrap();
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let seq = conn.sender::<Vec<u8>>("seq").unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..2_000u32 {
            seq.send(i.to_le_bytes().to_vec()).unwrap();
        }
    });
    for want in 0..2_000u32 {
        if want % 50 == 0 {
            std::thread::sleep(Duration::from_millis(1)); // let the queue build up
        }
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(want.to_le_bytes().to_vec()));
    }
    sender.join().unwrap();
    drop(server);
}

/// The same on a server of one worker whose receiver is a coroutine beside the
/// connection's reader: a send that finds the channel full lets the receiver run and
/// tries again before it queues, and nothing overtakes or goes missing either way.
#[test]
fn sends_keep_their_order_when_the_receiver_shares_the_readers_worker() {
    const N: u32 = 5_000;
    let rt = kcoro::Runtime::builder().workers(1).build().unwrap();
    let addr = sock("order-1w.sock");
    let bound = addr.clone();
    let (server, receiver) = rt.block_on(move || {
        let (tx, rx) = chan::buffered::<Vec<u8>>(4);
        let server = Server::bind(&bound).unwrap().serve_channel("seq", tx, rx.clone()).start().unwrap();
        let receiver = kcoro::spawn(move || {
            (0..N).map(|_| rx.recv_timeout(Duration::from_secs(10))).collect::<Result<Vec<_>, _>>()
        });
        (server, receiver)
    });
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let seq = conn.sender::<Vec<u8>>("seq").unwrap();
    for i in 0..N {
        seq.send(i.to_le_bytes().to_vec()).unwrap();
    }
    let got = receiver.join().unwrap().expect("every value arrives");
    let want: Vec<Vec<u8>> = (0..N).map(|i| i.to_le_bytes().to_vec()).collect();
    assert!(got == want, "values out of order or missing");
    drop(server);
}

/// `bytes::Bytes` elements that arrive through shared memory are read in place, and the
/// sender reuses a span only after the receiver dropped its value: 48 MiB of 1 MiB
/// elements through a 16 MiB region, all held at once on the far side, each intact. Both
/// ways: client to server (the server's channel holds them), server to client (the client
/// holds them).
#[test]
fn shared_bytes_are_held_in_place_until_dropped() {
    use bytes::Bytes;
    const N: usize = 48;
    let elem = |i: usize| Bytes::from((0..1 << 20).map(|j| (i * 7 + j % 251) as u8).collect::<Vec<u8>>());
    let (tx, rx) = chan::buffered::<Bytes>(N);
    let (server, connect) = serve_big_shared("held.sock", &tx, &rx);
    let conn = connect();
    let big = conn.sender::<Bytes>("big").unwrap();
    for i in 0..N {
        big.send_timeout(elem(i), Duration::from_secs(10)).unwrap();
    }
    let held: Vec<Bytes> = (0..N).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    for (i, v) in held.iter().enumerate() {
        assert!(*v == elem(i), "element {i} changed while the server held it");
    }
    drop(held);
    // The other way: the server's values, received and kept by the client.
    let rbig = conn.receiver::<Bytes>("big").unwrap();
    for i in 0..N {
        tx.send(elem(i + 1000)).unwrap();
    }
    let got: Vec<Bytes> = (0..N).map(|_| rbig.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    for (i, v) in got.iter().enumerate() {
        assert!(*v == elem(i + 1000), "element {i} changed while the client held it");
    }
    drop(server);
}

/// Inline `bytes::Bytes` elements a client receives are views of their reply frames
/// (no copy beyond the frame's): many received at once and all held, over the socket and
/// over the rings, each keeps its own bytes, whatever the connection reads after it.
#[test]
fn received_inline_bytes_are_their_own() {
    use bytes::Bytes;
    const N: usize = 300;
    let elem =
        |i: usize| Bytes::from((0..1 + i * 37 % 4000).map(|j| (i * 13 + j % 241) as u8).collect::<Vec<u8>>());
    for scheme in ["unix", "shm"] {
        let (tx, rx) = chan::buffered::<Bytes>(N);
        let addr = sock(&format!("inline-{scheme}.sock")).replacen("unix:", &format!("{scheme}:"), 1);
        let server = Server::bind(&addr.replacen("shm:", "unix:", 1))
            .unwrap()
            .serve_channel("small", tx.clone(), rx)
            .start()
            .unwrap();
        let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
        let rings = conn.transport() == kcoro_ipc::Transport::Shm;
        assert_eq!(rings, scheme == "shm", "{scheme}: {:?}", conn.ring_refused());
        let small = conn.receiver::<Bytes>("small").unwrap();
        for i in 0..N {
            tx.send(elem(i)).unwrap();
        }
        let held: Vec<Bytes> = (0..N).map(|_| small.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        for _ in 0..N {
            tx.send(Bytes::from(vec![0xEE; 4000])).unwrap(); // more reads over the same connection
            assert_eq!(small.recv_timeout(Duration::from_secs(10)).unwrap().len(), 4000);
        }
        for (i, v) in held.iter().enumerate() {
            assert!(*v == elem(i), "{scheme}: element {i} changed while the client held it");
        }
        drop(server);
    }
}

/// The first large elements of a connection, sent by several parties at once: the
/// region's fd must reach the peer before any frame that names it. A client's element
/// used to overtake the fd (in most runs of this test within 30 rounds); the server
/// refused it as naming no region and closed the channel, after the send had returned
/// `Ok`: the value was lost. The server's replies shared their region the same way (not
/// seen to fail here, same fix). Both directions, a fresh connection each round.
#[test]
fn first_shared_elements_from_several_parties_all_arrive() {
    use std::sync::{Arc, Barrier};
    const PARTIES: usize = 4;
    let elem = |i: usize| vec![i as u8; 70_000];
    let (tx, rx) = chan::buffered::<Vec<u8>>(64);
    let (server, connect) = serve_big_shared("first-shared.sock", &tx, &rx);
    for round in 0..30 {
        // Client to server: four threads send their first element together.
        let conn = connect();
        let start = Arc::new(Barrier::new(PARTIES));
        let senders: Vec<_> = (0..PARTIES)
            .map(|i| {
                let (big, start) = (conn.sender::<Vec<u8>>("big").unwrap(), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    big.send(elem(i)).map_err(|e| e.kind())
                })
            })
            .collect();
        for s in senders {
            assert_eq!(s.join().unwrap(), Ok(()), "round {round}");
        }
        let mut got: Vec<Vec<u8>> = (0..PARTIES)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|e| panic!("round {round}: {e}"))
            })
            .collect();
        got.sort();
        assert_eq!(got, (0..PARTIES).map(elem).collect::<Vec<_>>(), "round {round}");
        // Server to client: four receives wait on the server, then are answered together.
        let conn = connect();
        let receivers: Vec<_> = (0..PARTIES)
            .map(|_| {
                let big = conn.receiver::<Vec<u8>>("big").unwrap();
                std::thread::spawn(move || big.recv_timeout(Duration::from_secs(10)))
            })
            .collect();
        while rx.snapshot().parked_receivers < PARTIES {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 0..PARTIES {
            tx.send(elem(i)).unwrap();
        }
        let mut got: Vec<Vec<u8>> = receivers
            .into_iter()
            .map(|r| r.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}")))
            .collect();
        got.sort();
        assert_eq!(got, (0..PARTIES).map(elem).collect::<Vec<_>>(), "round {round}");
    }
    drop(server);
}

/// Elements written in place in the connection's region and sent without a copy: every
/// byte arrives, on a buffered channel (credited) and a rendezvous one (answered); a lease
/// dropped unsent gives its block back; small elements and a closed channel are refused.
#[test]
fn leased_elements_arrive_as_written() {
    use bytes::Bytes;
    let pattern = |i: usize, len: usize| (0..len).map(|j| (i * 31 + j % 253) as u8).collect::<Vec<u8>>();
    let (tx, rx) = chan::buffered::<Bytes>(8);
    let (server, connect) = serve_big_shared("leased.sock", &tx, &rx);
    let conn = connect();
    let big = conn.sender::<Bytes>("big").unwrap();
    for i in 0..20 {
        let len = (64 << 10) + i * 4099;
        let mut lease = big.lease(len).expect("a large element goes through the region");
        assert_eq!(lease.len(), len);
        lease.copy_from_slice(&pattern(i, len));
        lease.send().unwrap();
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(got[..] == pattern(i, len)[..], "element {i} arrived as written");
    }
    // Dropped unsent, 64 times the region's worth of 1 MiB blocks: each goes back.
    for _ in 0..16 * 64 {
        drop(big.lease(1 << 20).expect("the block of the lease before is free again"));
    }
    assert!(big.lease(100).is_none(), "below the threshold: send a value");

    // Rendezvous: answered once a receiver took it.
    let (rtx, rrx) = chan::rendezvous::<Vec<u8>>();
    let addr = sock("leased-rv.sock");
    let rv_server =
        Server::bind(&addr).unwrap().serve_channel("rv", rtx.clone(), rrx.clone()).start().unwrap();
    let rv_conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let rv = rv_conn.sender::<Vec<u8>>("rv").unwrap();
    let taker = std::thread::spawn(move || rrx.recv_timeout(Duration::from_secs(10)));
    let mut lease = rv.lease(200_000).unwrap();
    lease.copy_from_slice(&pattern(7, 200_000));
    lease.send_timeout(Duration::from_secs(10)).unwrap();
    assert!(taker.join().unwrap().unwrap() == pattern(7, 200_000));
    let lease = rv.lease(70_000).unwrap();
    let e = lease.send_timeout(Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), ChanError::Timeout, "nobody took it");
    assert!(e.into_lease().is_none(), "the server had the element: its block stays the server's");

    // Closed: refused, and the lease handed back (it never left).
    assert!(rv.close());
    let e = rv.lease(70_000).unwrap().send().unwrap_err();
    assert_eq!(e.kind(), ChanError::Closed);
    assert_eq!(e.into_lease().map(|l| l.len()), Some(70_000));
    drop((server, rv_server));
}

/// A lease whose send found no credit before its deadline comes back in the error as it
/// was written, and sent again arrives intact: a timeout does not cost the program the
/// element it built in place.
#[test]
fn a_lease_that_timed_out_waiting_for_credit_comes_back_as_written() {
    use bytes::Bytes;
    const LEN: usize = 100_000;
    let (tx, rx) = chan::buffered::<Bytes>(2);
    let (server, connect) = serve_big_shared("leased-back.sock", &tx, &rx);
    let conn = connect();
    let big = conn.sender::<Bytes>("big").unwrap();
    let mut sent = 0u8;
    // Nobody receives: the channel and then this end's window fill up.
    let returned = loop {
        assert!(sent < 64, "64 sends into a channel of 2 never ran out of credit");
        let mut lease = big.lease(LEN).expect("a large element goes through the region");
        lease.fill(sent);
        match lease.send_timeout(Duration::from_millis(100)) {
            Ok(()) => sent += 1,
            Err(e) => {
                assert_eq!(e.kind(), ChanError::Timeout);
                break e.into_lease().expect("no credit: the element never left, the lease comes back");
            }
        }
    };
    assert_eq!(returned.len(), LEN);
    assert!(returned.iter().all(|&b| b == sent), "handed back as written");
    // Drain what went through, then send the returned lease again.
    for i in 0..sent {
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(got.len() == LEN && got.iter().all(|&b| b == i), "element {i}");
    }
    returned.send_timeout(Duration::from_secs(10)).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(got.len() == LEN && got.iter().all(|&b| b == sent), "the returned lease arrived as written");
    drop(server);
}

/// A peer that accepts and then never answers (a stopped or wedged process): without a
/// request timeout the handshake would wait for ever; with one it fails as `Stalled`, and
/// a connection that did answer fails the same way once the server stops answering.
#[test]
fn a_silent_peer_fails_requests_after_the_request_timeout() {
    let addr = sock("silent.sock");
    let path = addr.trim_start_matches("unix:").to_string();
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let opts = ConnectOptions::new().request_timeout(Duration::from_millis(200));
    let e = Connection::connect(&addr, opts).unwrap_err();
    assert!(matches!(e, kcoro_ipc::IpcError::Stalled(t) if t == Duration::from_millis(200)), "{e}");
    assert_eq!(e.code(), -libc::ETIME);
    drop(held.join().unwrap());

    // A live server answers within the timeout; the same requests succeed.
    let (tx, rx) = chan::buffered::<Vec<u8>>(4);
    let live = sock("answers.sock");
    let server = Server::bind(&live).unwrap().serve_channel("jobs", tx, rx).start().unwrap();
    let opts = ConnectOptions::new().request_timeout(Duration::from_secs(30));
    let conn = Connection::connect(&live, opts).unwrap();
    assert_eq!(conn.list().unwrap().len(), 1);
    drop(server);
}

/// GET_METRICS answers with what the program's source returns now, each time; a server
/// without a source refuses it (ENOTSUP, what chanmon takes for "none"), and a source
/// that panics fails that one request, not the connection.
#[test]
fn metrics_come_from_the_programs_source_and_a_panicking_source_fails_only_its_request() {
    use kcoro::monitor::Metric;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let served = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&served);
    let addr = sock("metrics.sock");
    let server = Server::bind(&addr)
        .unwrap()
        .metrics(move || {
            let n = seen.load(Ordering::Relaxed);
            assert!(n != 13, "a source that panics");
            vec![Metric::counter("app_jobs_total", "Jobs done.", n as f64).label("queue", "a\"b")]
        })
        .start()
        .unwrap();
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let value = |conn: &Connection| conn.metrics().map(|m| m[0].value).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value(&conn), 0.0);
    served.store(12, Ordering::Relaxed);
    assert_eq!(value(&conn), 12.0);
    assert_eq!(conn.metrics().unwrap()[0].labels, [("queue".to_string(), "a\"b".to_string())]);
    served.store(13, Ordering::Relaxed);
    match conn.metrics() {
        Err(kcoro_ipc::IpcError::Refused { code, .. }) => assert_eq!(code, -libc::EIO),
        other => panic!("a panicking source: {other:?}"),
    }
    served.store(14, Ordering::Relaxed);
    assert_eq!(value(&conn), 14.0, "the connection outlives the panic");
    drop(server);

    let plain_addr = sock("no-metrics.sock");
    let plain = Server::bind(&plain_addr).unwrap().start().unwrap();
    let conn = Connection::connect(&plain_addr, ConnectOptions::new()).unwrap();
    match conn.metrics() {
        Err(kcoro_ipc::IpcError::Refused { code, .. }) => assert_eq!(code, -libc::ENOTSUP),
        other => panic!("a server without metrics: {other:?}"),
    }
    drop(plain);
}

/// LIST of more channels than a frame may carry attributes in a request (64): one
/// `STATS` each, all read (a monitor of a big program lists hundreds), and a monitor
/// stops at `MAX_LISTED_CHANNELS`.
#[test]
fn list_reports_hundreds_of_named_channels() {
    let addr = sock("many.sock");
    let mut server = Server::bind(&addr).unwrap();
    let mut keep = Vec::new();
    for i in 0..300 {
        let (tx, rx) = chan::buffered::<Vec<u8>>(1);
        server = server.serve_channel(&format!("c{i:03}"), tx.clone(), rx.clone());
        keep.push((tx, rx));
    }
    let server = server.start().unwrap();
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let names: Vec<String> = conn.list().unwrap().into_iter().filter_map(|s| s.name).collect();
    assert_eq!(names.len(), 300);
    assert_eq!((names[0].as_str(), names[299].as_str()), ("c000", "c299"));
    assert!(!conn.is_closed(), "the connection stays up");
    drop(server);

    // A monitor lists the process's named channels too, up to the cap.
    let named: Vec<_> = (0..kcoro_ipc::proto::MAX_LISTED_CHANNELS + 10)
        .map(|i| kcoro::chan::Builder::<u8>::new(Kind::Buffered).capacity(1).name(format!("n{i}")).build())
        .collect();
    let addr = sock("many-monitor.sock");
    let monitor = Server::bind(&addr).unwrap().monitor(None).start().unwrap();
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    assert_eq!(conn.list().unwrap().len(), kcoro_ipc::proto::MAX_LISTED_CHANNELS);
    drop((monitor, named));
}

/// A server of an older protocol `minor`, played on a thread from the protocol document:
/// it answers HELLO, CHAN_OPEN (channel 7, a window of `credits` values and, if given,
/// `credit_bytes`) and REGION_SHARE (whose descriptor it drops), and hands each CHAN_SEND
/// to `on_send`, which writes the server's answer, if any, into `out`. The thread ends
/// with what `on_send` returns once it returns something.
fn old_server<R: Send + 'static>(
    name: &str,
    minor: u32,
    (credits, credit_bytes): (u32, Option<u64>),
    mut on_send: impl FnMut(&kcoro_ipc::proto::FrameRef<'_>, &mut Vec<u8>) -> Option<R> + Send + 'static,
) -> (String, std::thread::JoinHandle<R>) {
    use kcoro_ipc::proto::{Attr, Cmd, FLAG_REPLY, FrameBuf, Limits, split_frame};
    use std::io::{Read, Write};
    let path = sock(name).trim_start_matches("unix:").to_string();
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "the client went before the server had seen enough");
            buf.extend_from_slice(&chunk[..n]);
            while let Some((f, used)) = split_frame(&buf, &Limits::default()).unwrap() {
                let mut out = Vec::new();
                let done = if f.cmd == Cmd::CHAN_SEND {
                    on_send(&f, &mut out)
                } else {
                    let mut r = FrameBuf::begin(&mut out, f.cmd, FLAG_REPLY);
                    r.u64(Attr::REQ_ID, f.req_id().unwrap()).i32(Attr::RESULT, 0);
                    match f.cmd {
                        Cmd::HELLO => {
                            r.u32(Attr::ABI_MAJOR, 1)
                                .u32(Attr::ABI_MINOR, minor)
                                .u32(Attr::MAX_FRAME, 1 << 20);
                        }
                        Cmd::CHAN_OPEN => {
                            r.u64(Attr::CHAN_ID, 7)
                                .i32(Attr::KIND, 1)
                                .u64(Attr::CAPACITY, 64)
                                .u32(Attr::CREDITS, credits);
                            if let Some(b) = credit_bytes {
                                r.u64(Attr::CREDIT_BYTES, b);
                            }
                        }
                        Cmd::REGION_SHARE => {}
                        other => panic!("unexpected {other:?}"),
                    }
                    r.finish(u32::MAX).unwrap();
                    None
                };
                s.write_all(&out).unwrap();
                if let Some(r) = done {
                    return r;
                }
                buf.drain(..used);
            }
        }
    });
    (format!("unix:{path}"), server)
}

/// A server of minor 6 answers every send within the window itself (no CREDIT events): a
/// client of this version, seeing its minor in HELLO, marks no send `CREDITED` and takes
/// its window back from the replies. The server grants a window of 2, so ten sends go
/// through only if the replies do.
#[test]
fn a_server_of_minor_6_gets_a_reply_per_send() {
    use kcoro_ipc::proto::{Attr, FLAG_REPLY, FrameBuf};
    let mut got = Vec::new();
    let (addr, old_server) = old_server("minor6.sock", 6, (2, None), move |f, out| {
        assert_eq!(f.u32(Attr::CREDITED).unwrap(), None, "CREDITED sent to a server of minor 6");
        got.push(f.get(Attr::ELEMENT).unwrap().to_vec());
        let mut r = FrameBuf::begin(out, f.cmd, FLAG_REPLY);
        r.u64(Attr::REQ_ID, f.req_id().unwrap()).i32(Attr::RESULT, 0);
        r.finish(u32::MAX).unwrap();
        (got.len() == 10).then(|| std::mem::take(&mut got))
    });
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let tx = conn.sender::<Vec<u8>>("jobs").unwrap();
    for i in 0..10u8 {
        tx.send_timeout(vec![i], Duration::from_secs(10)).unwrap();
    }
    let got = old_server.join().unwrap();
    assert_eq!(got, (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
}

/// A server of minor 7 returns credit in CREDIT events that do not tell shared bytes apart:
/// a client of this version counts its shared elements in that server's byte window then
/// (not in a window of its own, whose bytes such a server would never give back). The
/// server grants 2 values and 100 bytes: 100 elements of 64 KiB through shared memory,
/// 6.25 MiB, more than the client's own shared window of 4 MiB, all go through, one at a
/// time.
#[test]
fn a_server_of_minor_7_gets_shared_bytes_counted_in_its_window() {
    use kcoro_ipc::proto::{Attr, Cmd, FLAG_EVENT, FrameBuf};
    const N: usize = 100;
    let mut lens = Vec::new();
    let (addr, old_server) = old_server("minor7.sock", 7, (2, Some(100)), move |f, out| {
        assert_eq!(f.u32(Attr::CREDITED).unwrap(), Some(1), "a send past the window");
        let z = f.get(Attr::ZDESC).expect("64 KiB go through shared memory");
        let len = u64::from_be_bytes(z[16..24].try_into().unwrap());
        lens.push(len);
        let mut e = FrameBuf::begin(out, Cmd::CREDIT, FLAG_EVENT);
        e.u64(Attr::CHAN_ID, 7).u32(Attr::CREDITS, 1).u64(Attr::CREDIT_BYTES, len).i32(Attr::RESULT, 0);
        e.finish(u32::MAX).unwrap();
        (lens.len() == N).then(|| std::mem::take(&mut lens))
    });
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let tx = conn.sender::<Vec<u8>>("jobs").unwrap();
    for i in 0..N {
        tx.send_timeout(vec![i as u8; 64 << 10], Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("send {i}: {:?}", e.kind()));
    }
    assert_eq!(old_server.join().unwrap(), vec![64 << 10; N]);
}

/// An async receive dropped after the server answered it with a value (a `select!` or a
/// timeout that gave up on it) gives the value back to the channel: the next receive gets
/// it. Also when the future is dropped before the answer came, and for many such drops
/// while values flow: every value sent is received exactly once.
#[test]
fn a_dropped_async_receive_gives_its_value_back() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let (tx, rx) = chan::buffered::<Vec<u8>>(64);
    let addr = sock("async-drop.sock");
    let server = Server::bind(&addr).unwrap().serve_channel("jobs", tx.clone(), rx.clone()).start().unwrap();
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let jobs = conn.receiver::<Vec<u8>>("jobs").unwrap();
    let mut cx = Context::from_waker(Waker::noop());

    // Answered, then dropped unread.
    {
        let mut fut = std::pin::pin!(jobs.recv_async());
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "nothing was sent yet");
        tx.send(b"first".to_vec()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tx.snapshot().recvs == 0 {
            assert!(std::time::Instant::now() < deadline, "the server never took the value");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20)); // the reply reaches the client
    }
    assert_eq!(jobs.recv_timeout(Duration::from_secs(10)).unwrap(), b"first");

    // Dropped while values flow: some drops come before the answer, some after.
    let sent: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let feeder = {
        let (tx, sent) = (tx.clone(), sent.clone());
        std::thread::spawn(move || {
            for v in sent {
                tx.send(v).unwrap();
            }
        })
    };
    let mut got = Vec::new();
    let mut i = 0u32;
    while got.len() < sent.len() {
        let mut fut = std::pin::pin!(jobs.recv_async());
        if i % 2 == 0 {
            // Polled once or twice, then dropped, answered or not.
            for _ in 0..=(i % 3) {
                if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
                    got.push(r.unwrap());
                    break;
                }
            }
        } else {
            got.push(kcoro::future::wait(fut).unwrap().unwrap());
        }
        i += 1;
        assert!(i < 100_000, "only {} of {} values came back", got.len(), sent.len());
    }
    feeder.join().unwrap();
    got.sort();
    assert_eq!(got, sent, "every value received exactly once");
    assert_eq!(jobs.try_recv(), Err(ChanError::WouldBlock));
    drop(server);
}

/// The value of a dropped async receive comes back even when the client's runtime has no
/// stack left for the coroutine that would send it back (before: the spawn failed and the
/// value was dropped).
#[test]
fn a_dropped_async_receive_gives_its_value_back_without_a_free_stack() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let (tx, rx) = chan::buffered::<Vec<u8>>(4);
    let addr = sock("async-drop-no-stack.sock");
    let server = Server::bind(&addr).unwrap().serve_channel("jobs", tx.clone(), rx.clone()).start().unwrap();
    // Three stacks: this coroutine, the connection's reader and its writer; none to spare.
    let rt = kcoro::Runtime::builder().workers(1).max_stacks(3).build().unwrap();
    let got = rt.block_on(move || {
        let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
        let jobs = conn.receiver::<Vec<u8>>("jobs").unwrap();
        assert!(kcoro::spawn_with(kcoro::SpawnOptions::default(), || ()).is_err(), "a stack is free");
        {
            let mut fut = std::pin::pin!(jobs.recv_async());
            assert!(fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
            tx.send(b"taken".to_vec()).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while tx.snapshot().recvs == 0 {
                assert!(std::time::Instant::now() < deadline, "the server never took the value");
                kcoro::sleep(Duration::from_millis(1));
            }
        }
        jobs.recv_timeout(Duration::from_secs(10))
    });
    assert_eq!(got.expect("the value came back"), b"taken");
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock), "received once");
    drop(server);
}

/// A rendezvous `send_async` dropped while it waits for a receiver is cancelled on the
/// server: the value does not stay parked there, to be delivered later to nobody's
/// knowledge.
#[test]
fn a_dropped_async_rendezvous_send_is_cancelled() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let (tx, rx) = chan::rendezvous::<Vec<u8>>();
    let addr = sock("async-drop-send.sock");
    let server = Server::bind(&addr).unwrap().serve_channel("rv", tx.clone(), rx.clone()).start().unwrap();
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let rv = conn.sender::<Vec<u8>>("rv").unwrap();
    let parked = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tx.snapshot().parked_senders != n {
            assert!(std::time::Instant::now() < deadline, "parked senders never became {n}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    {
        let mut fut = std::pin::pin!(rv.send_async(b"never".to_vec()));
        assert!(fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
        parked(1);
    }
    parked(0);
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    drop(server);
}

/// A server shut down while clients are connecting ends every connection it accepted, the
/// ones accepted during the shutdown too: each client that got in sees its parked receive
/// fail with `Closed` (not `Canceled`, which it never asked for), and its connection
/// closed. 40 shutdowns, each raced by four threads connecting in a loop.
#[test]
fn a_shutdown_ends_connections_accepted_while_it_runs() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::*};
    let mut got_in = 0;
    for round in 0..40 {
        let addr = sock(&format!("shut-race-{round}.sock"));
        let (tx, rx) = chan::buffered::<Vec<u8>>(1);
        let server = Server::bind(&addr).unwrap().serve_channel("jobs", tx, rx).start().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let (addr, stop) = (addr.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut waits = Vec::new();
                    while !stop.load(Acquire) {
                        let Ok(conn) = Connection::connect(&addr, ConnectOptions::new()) else { continue };
                        let Ok(jobs) = conn.receiver::<Vec<u8>>("jobs") else { continue };
                        waits.push((conn, std::thread::spawn(move || jobs.recv())));
                    }
                    waits
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        server.shutdown();
        stop.store(true, Release);
        for racer in racers {
            for (conn, wait) in racer.join().unwrap() {
                got_in += 1;
                assert_eq!(wait.join().unwrap(), Err(ChanError::Closed), "round {round}");
                assert!(conn.is_closed(), "round {round}: a connection outlived its server's shutdown");
            }
        }
    }
    assert!(got_in > 0, "no client got in before a shutdown: nothing was checked");
}

/// A send that waits behind this connection's earlier sends (the channel is full) still
/// gives up at its own deadline: it does not wait for the sends ahead of it to get in.
/// The one ahead is delivered once the channel drains; the ones that gave up are not.
#[test]
fn a_queued_send_gives_up_at_its_deadline_behind_a_blocked_one() {
    let (tx, rx) = chan::buffered::<Vec<u8>>(1);
    let addr = sock("queued-deadline.sock");
    let server = Server::bind(&addr).unwrap().serve_channel("q", tx.clone(), rx.clone()).start().unwrap();
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let q = conn.sender::<Vec<u8>>("q").unwrap();
    tx.send(b"fill".to_vec()).unwrap();
    q.send(b"ahead".to_vec()).unwrap(); // credited: waits in the server's queue for room
    for late in ["late", "later"] {
        let deadline = std::time::Instant::now() + Duration::from_millis(100);
        let e = q.send_acked(late.as_bytes().to_vec(), Some(deadline)).unwrap_err();
        assert_eq!((e.kind(), e.into_inner()), (ChanError::Timeout, late.as_bytes().to_vec()));
    }
    let got: Vec<Vec<u8>> = (0..2).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    assert_eq!(got, [b"fill".to_vec(), b"ahead".to_vec()]);
    q.send_acked(b"after".to_vec(), None).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"after");
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock), "nothing that gave up got in");
    drop(server);
}

/// A client whose runtime cannot start the connection's reader and writer (no stack
/// left) gets an error from `connect` at once, instead of waiting for a HELLO answer
/// nothing would read.
#[test]
fn connect_fails_at_once_when_the_runtime_cannot_start_the_connection() {
    let (tx, rx) = chan::buffered::<Vec<u8>>(1);
    let addr = sock("no-stacks-client.sock");
    let server = Server::bind(&addr).unwrap().serve_channel("q", tx, rx).start().unwrap();
    // Two stacks: the coroutine that calls connect, and the writer's (the connect's own
    // I/O coroutine has ended by then); none for the reader.
    let rt = kcoro::Runtime::builder().workers(1).max_stacks(2).build().unwrap();
    let a = addr.clone();
    let got = rt.block_on(move || Connection::connect(&a, ConnectOptions::new()).map(drop));
    let e = got.expect_err("no stack for the reader");
    assert!(e.to_string().contains("cannot start the connection's reader and writer"), "{e}");
    // The same address from a runtime with room connects.
    assert!(Connection::connect(&addr, ConnectOptions::new()).is_ok());
    drop(server);
}
