//! The same-host transport (`shm:`): the channel API through shared-memory rings, the
//! fallback to the socket when a server takes no rings, and peers that lie about the
//! rings or die behind them.

mod common;

use std::time::Duration;

use kcoro::chan::{self, ChanError, Kind};
use kcoro_ipc::proto::Limits;
use kcoro_ipc::{ConnectOptions, Connection, Server, Transport};

use common::sock;

fn shm(addr: &str) -> String {
    addr.replacen("unix:", "shm:", 1)
}

/// Every kind, both directions, made channels, counters and listing, through the rings;
/// 20,000 values in order through a ring of 4 KiB (it wraps and fills many times).
#[test]
fn the_channel_api_runs_through_the_rings() {
    let addr = sock("shm-basic.sock");
    let (tx, rx) = chan::buffered::<Vec<u8>>(64);
    let (rtx, rrx) = chan::rendezvous::<Vec<u8>>();
    let server = Server::bind(&addr)
        .unwrap()
        .serve_channel("jobs", tx.clone(), rx.clone())
        .serve_channel("rv", rtx, rrx.clone())
        .start()
        .unwrap();
    let conn = Connection::connect(&shm(&addr), ConnectOptions::new().ring_bytes(4096)).unwrap();
    assert_eq!(conn.transport(), Transport::Shm, "refused: {:?}", conn.ring_refused());
    assert_eq!(conn.ring_refused(), None);

    let jobs = conn.sender::<Vec<u8>>("jobs").unwrap();
    let consumer = std::thread::spawn(move || {
        (0..20_000u32).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect::<Vec<_>>()
    });
    for i in 0..20_000u32 {
        jobs.send(i.to_le_bytes().repeat(1 + i as usize % 40)).unwrap();
    }
    let got = consumer.join().unwrap();
    for (i, v) in got.iter().enumerate() {
        assert_eq!(*v, (i as u32).to_le_bytes().repeat(1 + i % 40), "value {i}");
    }

    let back = conn.receiver::<Vec<u8>>("jobs").unwrap();
    tx.send(b"back".to_vec()).unwrap();
    assert_eq!(back.recv().unwrap(), b"back");
    assert_eq!(back.try_recv(), Err(ChanError::WouldBlock));
    assert_eq!(back.recv_timeout(Duration::from_millis(20)), Err(ChanError::Timeout));

    let rv = conn.sender::<Vec<u8>>("rv").unwrap();
    let taker = std::thread::spawn(move || rrx.recv_timeout(Duration::from_secs(10)));
    rv.send(b"hand over".to_vec()).unwrap();
    assert_eq!(taker.join().unwrap().unwrap(), b"hand over");

    let (mtx, mrx) = conn.make::<String>("made", Kind::Unlimited, 0).unwrap();
    mtx.send("made here".into()).unwrap();
    assert_eq!(mrx.recv().unwrap(), "made here");
    let names: Vec<_> = conn.list().unwrap().into_iter().filter_map(|s| s.name).collect();
    assert_eq!(names, ["jobs", "made", "rv"]);
    let snap = back.snapshot().unwrap();
    assert_eq!((snap.sends, snap.recvs), (20_001, 20_001));
    drop(server);
}

/// Several threads send on one ring connection at once, small `Bytes` (which the server
/// copies into blocks shared between small elements) among large ones (whose regions'
/// descriptors ride the socket beside the rings): every value arrives once, in its
/// sender's order, and the small ones the consumer keeps still hold their own bytes after
/// thousands more went through the same blocks.
#[test]
fn concurrent_senders_through_the_rings_lose_duplicate_and_overwrite_nothing() {
    use bytes::Bytes;
    const SENDERS: u32 = 3;
    const EACH: u32 = 4_000;
    let addr = sock("shm-concurrent.sock");
    let (tx, rx) = chan::buffered::<Bytes>(256);
    let server = Server::bind(&addr).unwrap().serve_channel("mixed", tx, rx.clone()).start().unwrap();
    let conn = Connection::connect(&shm(&addr), ConnectOptions::new().ring_bytes(8192)).unwrap();
    assert_eq!(conn.transport(), Transport::Shm, "refused: {:?}", conn.ring_refused());
    // Value `i` of sender `s`: its header (sender, index), then a pattern of both, of a
    // length from 8 bytes to 511, or 128 KiB for every 500th (shared memory).
    let value = |s: u32, i: u32| {
        let len = if i % 500 == 499 { 128 << 10 } else { 8 + (i as usize * 37 + s as usize) % 504 };
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&s.to_le_bytes());
        v.extend_from_slice(&i.to_le_bytes());
        v.extend((8..len).map(|j| (j as u32 ^ s.wrapping_mul(31) ^ i) as u8));
        Bytes::from(v)
    };
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let out = conn.sender::<Bytes>("mixed").unwrap();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    out.send(value(s, i)).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u32; SENDERS as usize];
    let mut kept = Vec::new();
    for n in 0..SENDERS * EACH {
        let v = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let s = u32::from_le_bytes(v[..4].try_into().unwrap());
        let i = u32::from_le_bytes(v[4..8].try_into().unwrap());
        assert!(s < SENDERS, "value {n}: sender {s}");
        assert_eq!(i, next[s as usize], "sender {s}: lost, duplicated or reordered");
        next[s as usize] += 1;
        assert_eq!(v, value(s, i), "sender {s}, value {i}");
        if n % 5 == 0 {
            kept.push((s, i, v));
        }
    }
    for h in senders {
        h.join().unwrap();
    }
    assert_eq!(next, [EACH; SENDERS as usize]);
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock), "nothing more than was sent");
    for (s, i, v) in &kept {
        assert_eq!(*v, value(*s, *i), "kept value {i} of sender {s}, checked again at the end");
    }
    drop(server);
}

/// Many receives waiting at once on one ring connection, on a one-worker runtime: a waiting
/// request reads frames in the reader's place, replies to the others among them, so each
/// must still reach its own request. Every receiver gets exactly its channel's values, in
/// order, none lost or given to another.
#[test]
fn replies_read_by_a_waiting_request_reach_their_own_requests() {
    const CHANS: usize = 8;
    const EACH: u32 = 300;
    let addr = sock("shm-own-replies.sock");
    let chans: Vec<_> = (0..CHANS).map(|_| chan::buffered::<Vec<u8>>(4)).collect();
    let mut server = Server::bind(&addr).unwrap();
    for (i, (tx, rx)) in chans.iter().enumerate() {
        server = server.serve_channel(&format!("q{i}"), tx.clone(), rx.clone());
    }
    let server = server.start().unwrap();
    let value = |c: usize, n: u32| [c as u32, n].map(u32::to_le_bytes).concat();
    // Values go in from a thread of this process, round-robin over the channels, while
    // the receives wait (each channel holds 4: its receiver must keep up).
    let senders: Vec<_> = chans.iter().map(|(tx, _)| tx.clone()).collect();
    let feeder = std::thread::spawn(move || {
        for n in 0..EACH {
            for (c, tx) in senders.iter().enumerate() {
                tx.send_timeout(value(c, n), Duration::from_secs(20)).unwrap();
            }
        }
    });
    let rt = kcoro::Runtime::builder().workers(1).build().unwrap();
    let got = rt.block_on(move || {
        // A reply that never reaches its request fails it (`Stalled`) rather than hang.
        let opts = ConnectOptions::new().request_timeout(Duration::from_secs(20));
        let conn = Connection::connect(&shm(&addr), opts).unwrap();
        assert_eq!(conn.transport(), Transport::Shm, "refused: {:?}", conn.ring_refused());
        let receivers: Vec<_> = (0..CHANS)
            .map(|c| {
                let rx = conn.receiver::<Vec<u8>>(&format!("q{c}")).unwrap();
                kcoro::spawn(move || (0..EACH).map(|_| rx.recv().unwrap()).collect::<Vec<_>>())
            })
            .collect();
        receivers.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    feeder.join().unwrap();
    for (c, values) in got.iter().enumerate() {
        let want: Vec<_> = (0..EACH).map(|n| value(c, n)).collect();
        assert_eq!(values, &want, "channel {c}: lost, reordered or another's values");
    }
    for (c, (_, rx)) in chans.iter().enumerate() {
        assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock), "channel {c}: a value left behind");
    }
    drop(server);
}

/// Elements large enough for shared regions still go through them on a ring connection:
/// the region's descriptor travels over the socket beside the ring, both ways, and every
/// byte arrives.
#[test]
fn large_elements_take_shared_regions_beside_the_rings() {
    use bytes::Bytes;
    let addr = sock("shm-large.sock");
    let (tx, rx) = chan::buffered::<Bytes>(8);
    let server = Server::bind(&addr).unwrap().serve_channel("big", tx.clone(), rx.clone()).start().unwrap();
    let conn = Connection::connect(&shm(&addr), ConnectOptions::new()).unwrap();
    assert_eq!(conn.transport(), Transport::Shm);
    let elem =
        |i: usize| Bytes::from((0..(1 << 20) + i).map(|j| (i * 7 + j % 251) as u8).collect::<Vec<u8>>());
    let big = conn.sender::<Bytes>("big").unwrap();
    for i in 0..6 {
        big.send(elem(i)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), elem(i), "to the server, {i}");
    }
    let back = conn.receiver::<Bytes>("big").unwrap();
    for i in 0..6 {
        tx.send(elem(i)).unwrap();
        assert_eq!(back.recv().unwrap(), elem(i), "to the client, {i}");
    }
    drop(server);
}

/// A frame many times the ring's size goes through it in pieces, both ways: 200 KiB
/// elements inline (no shared regions) through rings of 4 KiB.
#[test]
fn frames_larger_than_the_ring_go_through_in_pieces() {
    let addr = sock("shm-pieces.sock");
    let (tx, rx) = chan::buffered::<Vec<u8>>(4);
    let server = Server::bind(&addr).unwrap().serve_channel("big", tx.clone(), rx.clone()).start().unwrap();
    let opts = ConnectOptions::new().ring_bytes(4096).no_shared_memory();
    let conn = Connection::connect(&shm(&addr), opts).unwrap();
    assert_eq!(conn.transport(), Transport::Shm);
    let elem = |i: usize| (0..200 << 10).map(|j| (i + j % 253) as u8).collect::<Vec<u8>>();
    let (big, back) = (conn.sender::<Vec<u8>>("big").unwrap(), conn.receiver::<Vec<u8>>("big").unwrap());
    for i in 0..4 {
        big.send(elem(i)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), elem(i), "to the server, {i}");
        tx.send(elem(i + 10)).unwrap();
        assert_eq!(back.recv().unwrap(), elem(i + 10), "to the client, {i}");
    }
    drop(server);
}

/// A server that takes no rings (its limit is 0) keeps a `shm:` client on the socket,
/// says why, and serves it as usual; so does one asked for a ring over its limit.
#[test]
fn a_server_without_rings_keeps_the_client_on_its_socket() {
    for (limit, ring, why) in
        [(0, 4096, "max_ring_bytes 0"), (8192, 1 << 20, "power of two from 4096 to 8192")]
    {
        let addr = sock(&format!("shm-refused-{limit}.sock"));
        let (tx, rx) = chan::buffered::<Vec<u8>>(8);
        let server = Server::bind(&addr)
            .unwrap()
            .limits(Limits { max_ring_bytes: limit, ..Limits::default() })
            .serve_channel("jobs", tx, rx.clone())
            .start()
            .unwrap();
        let conn = Connection::connect(&shm(&addr), ConnectOptions::new().ring_bytes(ring)).unwrap();
        assert_eq!(conn.transport(), Transport::Unix);
        let refused = conn.ring_refused().unwrap();
        assert!(refused.contains(why), "{refused}");
        conn.sender::<Vec<u8>>("jobs").unwrap().send(b"still served".to_vec()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"still served");
        drop(server);
    }
}

/// Closing either side ends the other's waits: the client's pending receive when the
/// server shuts down, and the server's connection (its made channel goes) when the
/// client closes.
#[test]
fn either_side_closing_ends_the_others_waits() {
    let addr = sock("shm-close.sock");
    let (tx, rx) = chan::buffered::<Vec<u8>>(8);
    let server = Server::bind(&addr).unwrap().serve_channel("jobs", tx, rx).start().unwrap();
    let conn = Connection::connect(&shm(&addr), ConnectOptions::new()).unwrap();
    assert_eq!(conn.transport(), Transport::Shm);
    let (_made_tx, _made_rx) = conn.make::<Vec<u8>>("", Kind::Buffered, 4).unwrap();
    assert_eq!(server.connections(), 1);
    conn.close();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.connections() != 0 {
        assert!(std::time::Instant::now() < deadline, "the server kept the closed connection");
        std::thread::sleep(Duration::from_millis(5));
    }

    let conn = Connection::connect(&shm(&addr), ConnectOptions::new()).unwrap();
    let waiting = conn.receiver::<Vec<u8>>("jobs").unwrap();
    let waiter = std::thread::spawn(move || waiting.recv());
    std::thread::sleep(Duration::from_millis(50));
    server.shutdown();
    assert_eq!(waiter.join().unwrap(), Err(ChanError::Closed));
    assert!(conn.is_closed());
}

// ---- Peers that lie about the rings, against a server in a child process ----

use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering::*;

use common::ServerProc;
use common::raw::Raw;
use common::rings::Rings;
use kcoro_ipc::proto::{Attr, Cmd, FLAG_REPLY, FrameBuf, Header, VERSION_MAJOR};

#[test]
fn child() {
    common::child_main();
}

/// A client of hand-made rings (docs/IPC_PROTOCOL.md, "Shared-memory rings") that offers
/// them in its HELLO on a `Raw` connection and is honest with them until a test says not.
struct RawRings {
    rings: Rings,
}

impl RawRings {
    fn new(cap: u64, seal: bool) -> RawRings {
        RawRings { rings: Rings::new(cap, seal) }
    }

    /// HELLO offering these rings (`fds`: what to attach instead of the honest three).
    fn hello(
        &mut self,
        raw: &mut Raw,
        fds: Option<Vec<std::os::fd::BorrowedFd<'_>>>,
    ) -> kcoro_ipc::proto::FrameRef<'static> {
        let cap = self.rings.cap;
        let fds = fds.unwrap_or_else(|| self.rings.offered());
        let req = raw.send_with_fds(Cmd::HELLO, &fds, |f| {
            f.u32(Attr::ABI_MAJOR, VERSION_MAJOR).u32(Attr::ABI_MINOR, 6).u64(Attr::RING_BYTES, cap);
        });
        let got = raw.reply_to(req);
        self.rings.handed_over();
        Box::leak(Box::new(got)).frame()
    }

    /// Writes a frame into ring 0 (it fits) and rings the server's bell.
    fn send(&mut self, bytes: &[u8]) {
        assert!(bytes.len() as u64 <= self.rings.room());
        self.rings.write(bytes);
        self.rings.ring();
    }

    /// The next frame from ring 1, waiting up to 10 s; `None` if the server ended the
    /// connection (its bell's end closed) first.
    fn recv(&mut self) -> Option<(Header, Vec<u8>)> {
        self.rings.read_frame(|r| {
            r.bells[1].set_nonblocking(true).unwrap();
            matches!((&r.bells[1]).read(&mut [0u8; 64]), Ok(0))
        })
    }

    /// Sends a request through ring 0 and returns the reply's RESULT.
    fn call(&mut self, raw: &mut Raw, cmd: Cmd, build: impl FnOnce(&mut FrameBuf<'_>)) -> (i32, Vec<u8>) {
        let (req, bytes) = raw.frame(cmd, 0, build);
        self.send(&bytes);
        loop {
            let (h, payload) = self.recv().expect("a reply through the ring");
            let f = kcoro_ipc::proto::FrameRef::parse(h, &payload, 1000).unwrap();
            if h.flags & FLAG_REPLY != 0 && f.req_id().unwrap() == req {
                return (f.result().unwrap(), payload.clone());
            }
        }
    }

    /// Whether the server ended this connection: ring 1's bell reads end of file.
    fn ended(&self) -> bool {
        let mut bell = &self.rings.bells[1];
        bell.set_nonblocking(false).unwrap();
        bell.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        loop {
            match bell.read(&mut [0u8; 64]) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn ring_server(name: &str) -> ServerProc {
    ServerProc::start("child", &sock(name), "")
}

/// A client written from the protocol document alone speaks through the rings: HELLO
/// with the memfd and bells over the socket, then OPEN and SEND through ring 0, replies
/// through ring 1; an honest kcoro client on the same server receives what it sent.
#[test]
fn a_client_written_from_the_document_speaks_through_the_rings() {
    let server = ring_server("shm-doc.sock");
    let mut raw = Raw::connect(&server);
    let mut peer = RawRings::new(4096, true);
    let hello = peer.hello(&mut raw, None);
    assert_eq!(hello.result().unwrap(), 0);
    assert_eq!(hello.u64(Attr::RING_BYTES).unwrap(), Some(4096), "{:?}", hello.str(Attr::RING_REFUSED));
    let (r, reply) = peer.call(&mut raw, Cmd::CHAN_OPEN, |f| {
        f.str(Attr::NAME, "jobs");
    });
    assert_eq!(r, 0);
    let h = kcoro_ipc::proto::Header { cmd: Cmd::CHAN_OPEN, flags: FLAG_REPLY, len: reply.len() as u32 };
    let id = kcoro_ipc::proto::FrameRef::parse(h, &reply, 100).unwrap().u64(Attr::CHAN_ID).unwrap().unwrap();
    for i in 0..200u32 {
        let (r, _) = peer.call(&mut raw, Cmd::CHAN_SEND, |f| {
            f.u64(Attr::CHAN_ID, id).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, &i.to_be_bytes());
        });
        assert_eq!(r, 0, "send {i}");
    }
    let honest = Connection::connect(&shm(&server.addr), ConnectOptions::new()).unwrap();
    assert_eq!(honest.transport(), Transport::Shm);
    let rx = honest.receiver::<Vec<u8>>("jobs").unwrap();
    for i in 0..200u32 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), i.to_be_bytes());
    }
}

/// Memory or bells a server must not use are refused in the HELLO reply, with the reason,
/// and the connection goes on over its socket: memory that can shrink, a ring size the
/// memfd does not have, memory without the rings' magic, too few descriptors, bells that
/// are pipes.
#[test]
fn rings_a_server_must_not_use_are_refused_and_the_socket_serves() {
    let server = ring_server("shm-refuse.sock");
    let pipe = || {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors.
        unsafe { [OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])] }
    };
    type Lie = fn(&mut RawRings);
    let cases: [(&str, Lie, &str); 3] = [
        ("unsealed", |_| {}, "sealed"),
        ("wrong size", |r| r.rings.cap = 8192, "bytes"),
        ("no magic", |r| r.rings.word(0).store(0, Relaxed), "does not hold"),
    ];
    for (what, lie, why) in cases {
        let mut raw = Raw::connect(&server);
        let mut peer = RawRings::new(4096, what != "unsealed");
        lie(&mut peer);
        let hello = peer.hello(&mut raw, None);
        assert_eq!(hello.u64(Attr::RING_BYTES).unwrap(), None, "{what}");
        let refused = hello.str(Attr::RING_REFUSED).unwrap().unwrap_or("");
        assert!(refused.contains(why), "{what}: {refused}");
        assert_eq!(raw.call(Cmd::GET_INFO, |_| {}).result(), 0, "{what}: the socket still serves");
    }
    // Too few descriptors; bells that are not sockets.
    let mut raw = Raw::connect(&server);
    let mut peer = RawRings::new(4096, true);
    let memfd = peer.rings.memfd.try_clone().unwrap();
    let hello = peer.hello(&mut raw, Some(vec![memfd.as_fd()]));
    assert!(hello.str(Attr::RING_REFUSED).unwrap().unwrap_or("").contains("three descriptors"));
    assert_eq!(raw.call(Cmd::GET_INFO, |_| {}).result(), 0);
    let mut raw = Raw::connect(&server);
    let mut peer = RawRings::new(4096, true);
    let (p0, p1) = (pipe(), pipe());
    let memfd = peer.rings.memfd.try_clone().unwrap();
    let hello = peer.hello(&mut raw, Some(vec![memfd.as_fd(), p0[0].as_fd(), p1[0].as_fd()]));
    assert!(hello.str(Attr::RING_REFUSED).unwrap().unwrap_or("").contains("not a Unix stream socket"));
    assert_eq!(raw.call(Cmd::GET_INFO, |_| {}).result(), 0);
}

/// A peer that breaks the rings after the handshake (a head past what the ring holds,
/// garbage where a frame should be, or dying with everything open) loses its own
/// connection and nothing else: an honest client on the same server goes on, and the
/// server's connection count comes back down.
#[test]
fn a_peer_that_breaks_its_rings_loses_only_its_connection() {
    let server = ring_server("shm-break.sock");
    let honest = Connection::connect(&shm(&server.addr), ConnectOptions::new()).unwrap();
    assert_eq!(honest.transport(), Transport::Shm);
    let tx = honest.sender::<Vec<u8>>("unl").unwrap();
    let rx = honest.receiver::<Vec<u8>>("unl").unwrap();
    let mut round = 0u32;
    let only_the_honest_one_left = |what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while honest.info().unwrap().connections != 1 {
            assert!(std::time::Instant::now() < deadline, "{what}: the broken connection stayed");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let mut check_honest = |what: &str| {
        round += 1;
        tx.send(round.to_be_bytes().to_vec()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), round.to_be_bytes(), "after {what}");
        only_the_honest_one_left(what);
    };
    type Break = fn(&mut RawRings);
    let breaks: [(&str, Break); 3] = [
        ("head past the ring", |r| {
            r.rings.word(Rings::header(0) + Rings::HEAD).store(r.rings.cap + 1, Release)
        }),
        ("garbage frame", |r| r.send(&[0xff; 64])),
        ("head moved back", |r| {
            r.send(&[0; 4]); // part of a header: the server waits for the rest
            std::thread::sleep(Duration::from_millis(50));
            r.rings.word(Rings::header(0) + Rings::HEAD).store(1, Release);
        }),
    ];
    for (what, lie) in breaks {
        let mut raw = Raw::connect(&server);
        let mut peer = RawRings::new(4096, true);
        assert_eq!(peer.hello(&mut raw, None).u64(Attr::RING_BYTES).unwrap(), Some(4096), "{what}");
        assert_eq!(peer.call(&mut raw, Cmd::GET_INFO, |_| {}).0, 0, "{what}: served through the rings");
        lie(&mut peer);
        peer.rings.ring(); // wake the server's reader to look
        assert!(peer.ended(), "{what}: the server kept a connection whose ring is broken");
        drop((peer, raw));
        check_honest(what);
    }
    // Dying with everything open: the kernel closes it all at once.
    let mut raw = Raw::connect(&server);
    let mut peer = RawRings::new(4096, true);
    peer.hello(&mut raw, None);
    assert_eq!(peer.call(&mut raw, Cmd::GET_INFO, |_| {}).0, 0);
    drop((peer, raw));
    check_honest("a peer that died");
}

/// A server killed (SIGKILL) under a client waiting on the rings: the wait ends with
/// `Closed` at once, not when some timeout runs out.
#[test]
fn a_killed_server_ends_the_clients_waits() {
    let mut server = ring_server("shm-kill.sock");
    let conn = Connection::connect(&shm(&server.addr), ConnectOptions::new()).unwrap();
    assert_eq!(conn.transport(), Transport::Shm);
    let rx = conn.receiver::<Vec<u8>>("buf").unwrap();
    let waiter = std::thread::spawn(move || rx.recv());
    std::thread::sleep(Duration::from_millis(100));
    server.kill();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(waiter.join().unwrap()));
    assert_eq!(done_rx.recv_timeout(common::WATCHDOG).unwrap(), Err(ChanError::Closed));
    assert!(conn.is_closed());
}
