//! Bad input on the wire, from a raw socket client: every limit answers with a clear
//! protocol error and leaves the connection usable, or (when the framing itself is broken)
//! closes that connection — never the server, which goes on serving others.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use common::raw::Raw;
use common::{SECRET, ServerProc, sock};
use kcoro_ipc::proto::{Attr, Cmd, FLAG_REPLY, FrameBuf, HEADER_LEN, Limits, VERSION_MAJOR, decode_header};

#[test]
fn child() {
    common::child_main();
}

fn open(raw: &mut Raw, name: &str) -> u64 {
    let g = raw.call(Cmd::CHAN_OPEN, |f| {
        f.str(Attr::NAME, name);
    });
    assert_eq!(g.result(), 0, "{}", g.error());
    g.frame().u64(Attr::CHAN_ID).unwrap().unwrap()
}

/// A credited CHAN_SEND of `element` (an `ELEMENT` or a `ZDESC`) into channel `chan`, not
/// yet written: to go out with others in one burst.
fn credited_send(raw: &mut Raw, chan: u64, element: (Attr, &[u8])) -> Vec<u8> {
    raw.frame(Cmd::CHAN_SEND, 0, |f| {
        f.u64(Attr::CHAN_ID, chan).i64(Attr::TIMEOUT_MS, -1).u32(Attr::CREDITED, 1);
        f.bytes(element.0, element.1);
    })
    .1
}

/// Fills the test server's "slow" channel (4 slots, nobody receiving) through `chan`.
fn fill(raw: &mut Raw, chan: u64) {
    for _ in 0..4 {
        let g = raw.call(Cmd::CHAN_TRY_SEND, |f| {
            f.u64(Attr::CHAN_ID, chan).bytes(Attr::ELEMENT, b"fill");
        });
        assert_eq!(g.result(), 0, "{}", g.error());
    }
}

/// Reads request `req`'s answer: refused with `code`, its message naming `limit`.
fn refused_naming(raw: &mut Raw, req: u64, code: i32, limit: &str) {
    let g = raw.reply_to(req);
    assert_eq!(g.result(), code, "{}", g.error());
    assert!(g.error().contains(limit), "{}", g.error());
}

/// A CHAN_SEND of `element` into `chan` that may wait forever; its REQ_ID.
fn send_waiting(raw: &mut Raw, chan: u64, element: &[u8]) -> u64 {
    raw.send(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, chan).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, element);
    })
}

/// CANCELs waiting request `req`: the CANCEL answered 0, the request `-ECANCELED`.
fn cancel_waiting(raw: &mut Raw, req: u64) {
    let c = raw.send(Cmd::CANCEL, |f| {
        f.u64(Attr::TARGET_REQ_ID, req);
    });
    assert_eq!(raw.reply_to(c).result(), 0);
    assert_eq!(raw.reply_to(req).result(), -libc::ECANCELED);
}

fn server(name: &str, opts: &str) -> ServerProc {
    ServerProc::start("child", &sock(name), opts)
}

/// The server is alive and serving after whatever the last connection did.
fn still_serving(s: &ServerProc) {
    let c = kcoro_ipc::connect(&s.addr).unwrap();
    assert!(c.info().unwrap().connections >= 1);
}

#[test]
fn framing_errors_close_the_connection_not_the_server() {
    let s = server("framing.sock", "frame=4096 attrs=8");
    let defaults = Limits::default();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a frame past max_frame", {
            let mut b = vec![0, 11, 0, 0];
            b.extend_from_slice(&100_000u32.to_be_bytes());
            b
        }),
        ("an attribute past its frame", vec![0, 11, 0, 0, 0, 0, 0, 6, 0, 21, 0, 40, 1, 2]),
        ("too many attributes", {
            let mut out = Vec::new();
            let mut f = FrameBuf::begin(&mut out, Cmd::GET_INFO, 0);
            for _ in 0..9 {
                f.u32(Attr::ABI_MINOR, 0);
            }
            f.finish(u32::MAX).unwrap();
            out
        }),
        ("a long form for a short value", vec![0, 2, 0, 0, 0, 0, 0, 7, 0x80, 26, 0, 0, 0, 1, 9]),
        ("a frame without REQ_ID", vec![0, 2, 0, 0, 0, 0, 0, 0]),
    ];
    for (what, bytes) in cases {
        let mut raw = Raw::connect(&s);
        assert_eq!(raw.hello().result(), 0);
        raw.bytes(&bytes);
        assert!(raw.closed(), "{what}: the connection should close");
        still_serving(&s);
    }
    assert!(defaults.max_frame > 4096);
}

#[test]
fn limits_answer_with_protocol_errors() {
    let s = server("limits.sock", "name=16 channels=2 in_flight=2 credits=3");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    // Name too long.
    let g = raw.call(Cmd::CHAN_OPEN, |f| {
        f.str(Attr::NAME, "a-name-longer-than-sixteen");
    });
    assert_eq!(g.result(), -libc::ENAMETOOLONG, "{}", g.error());
    // Unknown name, unknown command, unsupported command.
    let g = raw.call(Cmd::CHAN_OPEN, |f| {
        f.str(Attr::NAME, "nope");
    });
    assert_eq!(g.result(), -libc::ENOENT);
    let g = raw.call(Cmd(999), |_| {});
    assert_eq!((g.result(), g.cmd), (-libc::ENOTSUP, Cmd(999)), "unknown commands get a reply");
    assert!(g.error().contains("999"));
    assert_eq!(raw.call(Cmd::SELECT_REGISTER, |_| {}).result(), -libc::ENOTSUP);
    // Missing attributes and wrong widths: a clear error, connection stays.
    let g = raw.call(Cmd::CHAN_RECV, |_| {});
    assert_eq!(g.result(), -libc::EINVAL);
    assert!(g.error().contains("missing attribute"), "{}", g.error());
    let g = raw.call(Cmd::CHAN_RECV, |f| {
        f.u32(Attr::CHAN_ID, 1);
    });
    assert_eq!(g.result(), -libc::EINVAL);
    // Channels per connection.
    let rv = open(&mut raw, "rv");
    let _ = open(&mut raw, "slow");
    let g = raw.call(Cmd::CHAN_OPEN, |f| {
        f.str(Attr::NAME, "buf");
    });
    assert_eq!(g.result(), -libc::EMFILE, "{}", g.error());
    // Requests in flight: two parked receives, the third is refused at once.
    for _ in 0..2 {
        raw.send(Cmd::CHAN_RECV, |f| {
            f.u64(Attr::CHAN_ID, rv).i64(Attr::TIMEOUT_MS, -1);
        });
    }
    let g = raw.call(Cmd::CHAN_RECV, |f| {
        f.u64(Attr::CHAN_ID, rv).i64(Attr::TIMEOUT_MS, -1);
    });
    assert_eq!(g.result(), -libc::EBUSY, "{}", g.error());
    still_serving(&s);
    // The send window: a full channel, three queued sends, the fourth refused.
    let s = server("window.sock", "credits=3");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    let slow = open(&mut raw, "slow");
    fill(&mut raw, slow);
    let queued: Vec<u64> = (0..3)
        .map(|_| {
            raw.send(Cmd::CHAN_SEND, |f| {
                f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, b"q");
            })
        })
        .collect();
    let g = raw.call(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, b"one too many");
    });
    assert_eq!(g.result(), -libc::ENOBUFS, "{}", g.error());
    // The window's bytes: a full channel, one queued 6-byte send, then 6 more bytes would
    // pass 10; a send of no bytes still fits.
    let s2 = server("window-bytes.sock", "credits=100 credit_bytes=10");
    let mut raw2 = Raw::connect(&s2);
    assert_eq!(raw2.hello().result(), 0);
    let slow2 = open(&mut raw2, "slow");
    fill(&mut raw2, slow2);
    raw2.send(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, slow2).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, b"queued");
    });
    raw2.send(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, slow2).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, b"");
    });
    let g = raw2.call(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, slow2).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, b"passes");
    });
    assert_eq!(g.result(), -libc::ENOBUFS, "{}", g.error());
    assert!(g.error().contains("10 bytes"), "{}", g.error());
    // CANCEL of a send queued behind a blocked one ends it at once with -ECANCELED, and
    // CANCEL itself is answered; the ones ahead get in when the channel drains, answered
    // once each, and the cancelled one is neither delivered nor answered again.
    let target = queued[2];
    let g = raw.call(Cmd::CANCEL, |f| {
        f.u64(Attr::TARGET_REQ_ID, target);
    });
    assert_eq!(g.result(), 0);
    let g = raw.reply_to(target);
    assert_eq!(g.result(), -libc::ECANCELED, "{}", g.error());
    let recvs: Vec<u64> = (0..6)
        .map(|_| {
            raw.send(Cmd::CHAN_RECV, |f| {
                f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, 5_000);
            })
        })
        .collect();
    // A send's answer is written after its element got in, so it may come after the
    // receive that took it, and after the probe: read until both are in.
    let (mut drained, mut answered) = (Vec::new(), Vec::new());
    let (mut probe, mut probed) = (None, false);
    while !probed || answered.len() < 2 {
        let g = raw.read().expect("replies");
        let req = g.frame().req_id().unwrap();
        if recvs.contains(&req) {
            assert_eq!(g.result(), 0, "{}", g.error());
            drained.push(g.frame().get(Attr::ELEMENT).expect("an inline element").to_vec());
            if drained.len() == recvs.len() {
                // Everything sent is in; a last look finds nothing more.
                probe = Some(raw.send(Cmd::CHAN_TRY_RECV, |f| {
                    f.u64(Attr::CHAN_ID, slow);
                }));
            }
        } else if Some(req) == probe {
            assert_eq!(g.result(), -libc::EAGAIN, "the cancelled send never got in");
            probed = true;
        } else {
            answered.push((req, g.result()));
        }
    }
    // A last round trip: anything answered twice would be in before its reply.
    let last = raw.send(Cmd::CANCEL, |f| {
        f.u64(Attr::TARGET_REQ_ID, 123_456);
    });
    loop {
        let g = raw.read().expect("replies");
        let req = g.frame().req_id().unwrap();
        if req == last {
            assert_eq!(g.result(), -libc::ENOENT);
            break;
        }
        answered.push((req, g.result()));
    }
    assert_eq!(drained[4..], [b"q".to_vec(), b"q".to_vec()]);
    answered.sort();
    assert_eq!(answered, [(queued[0], 0), (queued[1], 0)]);
}

/// Timed sends queued behind a send that waits forever each end at their own deadline
/// with `-ETIME`; while they wait they count as requests in flight (a watcher each), so
/// one past `in_flight` is refused with `-EBUSY`, and once they end a new one is taken.
#[test]
fn queued_timed_sends_end_at_their_deadlines_and_count_in_flight() {
    let s = server("queued-timed.sock", "in_flight=2 credits=10");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    let slow = open(&mut raw, "slow");
    let send = |raw: &mut Raw, ms: i64| {
        raw.send(Cmd::CHAN_SEND, |f| {
            f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, ms).bytes(Attr::ELEMENT, b"t");
        })
    };
    fill(&mut raw, slow);
    let head = send(&mut raw, -1);
    let timed: Vec<u64> = (0..2).map(|_| send(&mut raw, 300)).collect();
    let over = send(&mut raw, 300);
    let g = raw.reply_to(over);
    assert_eq!(g.result(), -libc::EBUSY, "{}", g.error());
    for t in timed {
        let g = raw.reply_to(t);
        assert_eq!(g.result(), -libc::ETIME, "{}", g.error());
    }
    // Their watchers are gone: a new timed send is taken, and ends the same way.
    let again = send(&mut raw, 50);
    let g = raw.reply_to(again);
    assert_eq!(g.result(), -libc::ETIME, "{}", g.error());
    let cancel = raw.call(Cmd::CANCEL, |f| {
        f.u64(Attr::TARGET_REQ_ID, head);
    });
    assert_eq!(cancel.result(), 0);
    assert_eq!(raw.reply_to(head).result(), -libc::ECANCELED);
    still_serving(&s);
}

/// CANCELs racing the feeder: 400 sends queued behind a full channel that another
/// connection drains meanwhile, every other one cancelled as it goes. Each send is
/// answered exactly once (0 or -ECANCELED), and the values delivered are exactly the
/// sends answered 0, in the order sent.
#[test]
fn cancels_racing_the_feeder_answer_each_send_once() {
    const SENDS: u32 = 400;
    let s = server("cancel-race.sock", "credits=1000 credit_bytes=1000000");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    let slow = open(&mut raw, "slow");
    fill(&mut raw, slow);
    let expected = Arc::new(AtomicUsize::new(usize::MAX));
    let mut drain = Raw::connect(&s);
    assert_eq!(drain.hello().result(), 0);
    let chan = open(&mut drain, "slow");
    let want = Arc::clone(&expected);
    let drainer = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() != want.load(SeqCst) {
            let g = drain.call(Cmd::CHAN_RECV, |f| {
                f.u64(Attr::CHAN_ID, chan).i64(Attr::TIMEOUT_MS, 20);
            });
            match g.result() {
                0 => got.push(g.frame().get(Attr::ELEMENT).expect("an inline element").to_vec()),
                r => assert_eq!(r, -libc::ETIME, "{}", g.error()),
            }
        }
        let g = drain.call(Cmd::CHAN_TRY_RECV, |f| {
            f.u64(Attr::CHAN_ID, chan);
        });
        assert_eq!(g.result(), -libc::EAGAIN, "nothing more than the sends answered 0");
        got
    });
    // All sends first, then the cancels, so that they meet the feeder anywhere in the
    // queue: before a send's turn, in it, or after it.
    let sends: HashMap<u64, u32> = (0..SENDS)
        .map(|i| {
            let req = raw.send(Cmd::CHAN_SEND, |f| {
                f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, &i.to_le_bytes());
            });
            (req, i)
        })
        .collect();
    let mut cancels = HashMap::new();
    for (&req, _) in sends.iter().filter(|(_, i)| *i % 2 == 1) {
        let cancel = raw.send(Cmd::CANCEL, |f| {
            f.u64(Attr::TARGET_REQ_ID, req);
        });
        cancels.insert(cancel, req);
    }
    let mut answers: HashMap<u64, Vec<i32>> = HashMap::new();
    let mut cancel_results = HashMap::new();
    while answers.values().map(Vec::len).sum::<usize>() < sends.len() || cancel_results.len() < cancels.len()
    {
        let g = raw.read().expect("replies");
        let req = g.frame().req_id().unwrap();
        if let Some(target) = cancels.get(&req) {
            cancel_results.insert(*target, g.result());
        } else {
            assert!(sends.contains_key(&req), "a reply to {req}, which was never sent");
            answers.entry(req).or_default().push(g.result());
        }
    }
    let mut delivered_ok = Vec::new();
    for (req, results) in &answers {
        assert_eq!(results.len(), 1, "send {req} answered {results:?}");
        let cancel = cancel_results.get(req).copied();
        match (results[0], cancel) {
            (0, _) => delivered_ok.push(sends[req]),
            (r, Some(0)) => assert_eq!(r, -libc::ECANCELED, "send {req}"),
            (r, c) => panic!("send {req} answered {r} (its CANCEL: {c:?})"),
        }
        // A CANCEL that found nothing came after its send's answer, which was 0.
        if cancel == Some(-libc::ENOENT) {
            assert_eq!(results[0], 0, "send {req}");
        }
    }
    delivered_ok.sort();
    expected.store(delivered_ok.len() + 4, SeqCst);
    let got = drainer.join().expect("drainer");
    let values: Vec<u32> = got[4..].iter().map(|b| u32::from_le_bytes(b[..4].try_into().unwrap())).collect();
    assert_eq!(values, delivered_ok, "delivered = answered 0, in order");
    let cancelled = SENDS as usize - delivered_ok.len();
    assert!(cancelled <= SENDS as usize / 2, "only the cancelled ones end cancelled");
    eprintln!("{} delivered, {cancelled} cancelled before their turn or in it", delivered_ok.len());
}

/// Receives that wait, sent until the server has no coroutine stack left for another,
/// then all cancelled; returns how many were refused for want of one and how many waited.
/// Every receive is answered exactly once, refused at once with -EBUSY or cancelled.
fn receives_until_no_stack_is_left(raw: &mut Raw, rv: u64, n: usize) -> (usize, usize) {
    let reqs: Vec<u64> = (0..n)
        .map(|_| {
            raw.send(Cmd::CHAN_RECV, |f| {
                f.u64(Attr::CHAN_ID, rv).i64(Attr::TIMEOUT_MS, -1);
            })
        })
        .collect();
    let cancels: Vec<u64> = reqs
        .iter()
        .map(|&r| {
            raw.send(Cmd::CANCEL, |f| {
                f.u64(Attr::TARGET_REQ_ID, r);
            })
        })
        .collect();
    let (mut refused, mut waited, mut cancel_replies) = (0, 0, 0);
    let mut answered = HashMap::new();
    while answered.len() < reqs.len() || cancel_replies < cancels.len() {
        let g = raw.read().expect("every request answered");
        let req = g.frame().req_id().unwrap();
        if cancels.contains(&req) {
            cancel_replies += 1;
            continue;
        }
        assert!(reqs.contains(&req), "a reply to {req}, never sent");
        assert!(answered.insert(req, g.result()).is_none(), "receive {req} answered twice");
        match g.result() {
            r if r == -libc::EBUSY => {
                assert!(g.error().contains("cannot wait"), "{}", g.error());
                refused += 1;
            }
            r => {
                assert_eq!(r, -libc::ECANCELED, "{}", g.error());
                waited += 1;
            }
        }
    }
    (refused, waited)
}

/// Waits until the server can start a coroutine for a waiting receive again (the
/// cancelled ones' coroutines end just after their replies): a timed receive times out
/// instead of being refused.
fn until_a_receive_can_wait(raw: &mut Raw, rv: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let g = raw.call(Cmd::CHAN_RECV, |f| {
            f.u64(Attr::CHAN_ID, rv).i64(Attr::TIMEOUT_MS, 5);
        });
        if g.result() == -libc::ETIME {
            return;
        }
        assert_eq!(g.result(), -libc::EBUSY, "{}", g.error());
        assert!(g.error().contains("cannot wait"), "{}", g.error());
        assert!(std::time::Instant::now() < deadline, "the server's coroutines never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A server whose runtime has no coroutine stack left for a waiting receive refuses it
/// at once (-EBUSY, "cannot wait") instead of never answering it, and counts nothing in
/// flight for it: with 40 receives a round and `in_flight` 48, a second round would meet
/// the in-flight limit if the first round's refusals had stayed counted.
#[test]
fn a_request_that_cannot_get_a_coroutine_is_refused_not_lost() {
    let s = server("stacks.sock", "stacks=16 in_flight=48");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    let rv = open(&mut raw, "rv");
    for round in 0..2 {
        let (refused, waited) = receives_until_no_stack_is_left(&mut raw, rv, 40);
        assert!(refused > 0 && waited > 0, "round {round}: refused {refused}, waited {waited}");
        until_a_receive_can_wait(&mut raw, rv);
    }
    still_serving(&s);
}

/// A connection the server has no coroutine for (its runtime's stacks all in use) ends
/// at once: the client reads the end of the stream, not silence. Once the others close,
/// the server serves new connections again.
#[test]
fn a_connection_without_a_coroutine_ends_at_once() {
    let s = server("no-stack-conn.sock", "stacks=8");
    let mut open_ones = Vec::new();
    let refused = loop {
        assert!(open_ones.len() < 16, "8 stacks served {} connections", open_ones.len());
        let mut raw = Raw::connect(&s);
        raw.send_hello();
        match raw.next_or_end() {
            Ok(Some(g)) => {
                assert_eq!(g.result(), 0, "{}", g.error());
                open_ones.push(raw);
            }
            Ok(None) => break raw,
            Err(e) => panic!("connection {}: neither an answer nor the end: {e}", open_ones.len()),
        }
    };
    assert!(!open_ones.is_empty());
    drop((refused, open_ones));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut raw = Raw::connect(&s);
        raw.send_hello();
        if raw.read().is_some_and(|g| g.result() == 0) {
            break;
        }
        // The closed connections' coroutines end just after their sockets do.
        assert!(std::time::Instant::now() < deadline, "no connection served again");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn wrong_version_is_refused() {
    let s = server("version.sock", "");
    let mut raw = Raw::connect(&s);
    let g = raw.call(Cmd::HELLO, |f| {
        f.u32(Attr::ABI_MAJOR, VERSION_MAJOR + 1).u32(Attr::ABI_MINOR, 0);
    });
    assert_eq!(g.result(), -libc::EPROTO);
    assert_eq!(g.frame().u32(Attr::ABI_MAJOR).unwrap(), Some(VERSION_MAJOR), "the reply says what it speaks");
    assert!(g.error().contains("not supported"), "{}", g.error());
    assert!(raw.closed());
    still_serving(&s);
}

/// The client side of a version mismatch: a fake server answering HELLO with major 2.
#[test]
fn client_refuses_another_major_version() {
    let path = sock("fake.sock");
    let p = path.strip_prefix("unix:").unwrap().to_string();
    let listener = std::os::unix::net::UnixListener::bind(&p).unwrap();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut h = [0u8; HEADER_LEN];
        s.read_exact(&mut h).unwrap();
        let mut body = vec![0; decode_header(&h).len as usize];
        s.read_exact(&mut body).unwrap();
        let mut out = Vec::new();
        let mut f = FrameBuf::begin(&mut out, Cmd::HELLO, FLAG_REPLY);
        f.u64(Attr::REQ_ID, 1).i32(Attr::RESULT, 0).u32(Attr::ABI_MAJOR, 2);
        f.finish(u32::MAX).unwrap();
        s.write_all(&out).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let e = kcoro_ipc::connect(&path).unwrap_err();
    assert!(matches!(e, kcoro_ipc::IpcError::Version { ours: 1, theirs: 2 }), "{e}");
    fake.join().unwrap();
}

#[test]
fn nothing_before_authentication() {
    let s = server("auth.sock", "secret=1");
    let mut raw = Raw::connect(&s);
    let g = raw.call(Cmd::LIST, |_| {});
    assert_eq!(g.result(), -libc::EACCES);
    assert!(raw.closed());
    // HELLO then a wrong MAC: refused and closed.
    let mut raw = Raw::connect(&s);
    let g = raw.hello();
    assert_eq!(g.frame().u32(Attr::AUTH_REQUIRED).unwrap(), Some(1));
    let g = raw.call(Cmd::AUTH, |f| {
        f.bytes(Attr::NONCE, &[1; 32]).bytes(Attr::MAC, &[2; 32]);
    });
    assert_eq!(g.result(), -libc::EACCES);
    assert!(raw.closed());
    let ok =
        kcoro_ipc::Connection::connect(&s.addr, kcoro_ipc::ConnectOptions::new().secret(SECRET)).unwrap();
    assert!(ok.list().unwrap().iter().any(|c| c.name.as_deref() == Some("jobs")));
}

/// A CREDIT event (minor 8) says how many of its bytes were elements in the client's
/// shared memory: the client counts those against a bound of its own, the server's window
/// counts only inline bytes. A burst of inline and shared credited sends comes back with
/// every byte in `CREDIT_BYTES` and exactly the shared ones in `SHARED_BYTES`; shared
/// elements past the server's inline window (100 bytes here) are taken, not refused.
#[test]
fn credit_events_tell_shared_bytes_apart() {
    use kcoro::zcopy::Region;
    use kcoro_ipc::proto::FLAG_EVENT;
    use std::os::fd::AsFd;
    let s = server("credit-shared-bytes.sock", "credit_bytes=100");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    let unl = open(&mut raw, "unl");
    let region = Region::anonymous(1 << 20).unwrap();
    let fd = region.fd().unwrap();
    let req = raw.send_with_fds(Cmd::REGION_SHARE, &[fd.as_fd()], |f| {
        f.u64(Attr::REGION_ID, region.export_id());
    });
    assert_eq!(raw.reply_to(req).result(), 0);
    let leases: Vec<_> = (1..=4).map(|i| region.alloc(1000 * i).unwrap()).collect();
    let mut burst = Vec::new();
    for (i, lease) in leases.iter().enumerate() {
        let d = lease.desc();
        burst.extend(credited_send(&mut raw, unl, (Attr::ELEMENT, &[i as u8; 10])));
        let z = common::raw::zdesc(d.region_id, d.offset, d.len as u64);
        burst.extend(credited_send(&mut raw, unl, (Attr::ZDESC, &z)));
    }
    raw.bytes(&burst);
    let (mut values, mut bytes, mut shared) = (0, 0, 0);
    while values < 8 {
        let g = raw.read().expect("the connection stays open");
        if g.flags & FLAG_REPLY == 0 && g.cmd == Cmd::REGION_RELEASE {
            continue; // the server is done with a shared element
        }
        assert_eq!((g.cmd, g.flags), (Cmd::CREDIT, FLAG_EVENT));
        let f = g.frame();
        assert_eq!((f.u64(Attr::CHAN_ID).unwrap(), f.result().unwrap()), (Some(unl), 0));
        values += f.u32(Attr::CREDITS).unwrap().unwrap();
        bytes += f.u64(Attr::CREDIT_BYTES).unwrap().unwrap();
        shared += f.u64(Attr::SHARED_BYTES).unwrap().expect("SHARED_BYTES in every CREDIT");
    }
    assert_eq!((values, bytes, shared), (8, 40 + 10_000, 10_000));
    still_serving(&s);
}

/// Credited sends (minor 7) get no replies: their window comes back in CREDIT events that
/// count exactly the values and bytes sent, one event for a small burst; a credited send that
/// fails (a channel this connection does not hold, a closed one) is reported in a CREDIT
/// event for that channel id with the failure's code, and its window comes back too.
#[test]
fn credited_sends_come_back_as_exact_credit_events() {
    use kcoro_ipc::proto::{FLAG_EVENT, FrameRef, Header};
    let s = server("credited.sock", "");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    let unl = open(&mut raw, "unl");
    let mut burst = Vec::new();
    for i in 0..10u8 {
        burst.extend(credited_send(&mut raw, unl, (Attr::ELEMENT, &vec![i; 1 + i as usize])));
    }
    raw.bytes(&burst); // one write: the server reads the burst at once
    // A request after the burst: its reply and CREDIT events come back, nothing else.
    let probe = raw.send(Cmd::GET_INFO, |_| {});
    let (mut values, mut bytes, mut probed) = (0, 0, false);
    while !probed || values < 10 {
        let g = raw.read().expect("the connection stays open");
        if g.flags & FLAG_REPLY != 0 {
            assert_eq!(g.frame().req_id().unwrap(), probe, "a credited send was answered");
            probed = true;
            continue;
        }
        assert_eq!((g.cmd, g.flags), (Cmd::CREDIT, FLAG_EVENT));
        let f = g.frame();
        assert_eq!((f.u64(Attr::CHAN_ID).unwrap(), f.result().unwrap()), (Some(unl), 0));
        values += f.u32(Attr::CREDITS).unwrap().unwrap();
        bytes += f.u64(Attr::CREDIT_BYTES).unwrap().unwrap();
    }
    assert_eq!((values, bytes), (10, 55), "the window of ten sends of 1..=10 bytes");

    // Failures, each reported for the channel id the send named, with its window.
    let credit_of = |raw: &mut Raw, id: u64| -> (u64, u32, u64, i32) {
        raw.send(Cmd::CHAN_SEND, |f| {
            f.u64(Attr::CHAN_ID, id)
                .i64(Attr::TIMEOUT_MS, -1)
                .u32(Attr::CREDITED, 1)
                .bytes(Attr::ELEMENT, b"xyz");
        });
        let g = raw.read().expect("a CREDIT event");
        assert_eq!(g.cmd, Cmd::CREDIT);
        let h = Header { cmd: g.cmd, flags: g.flags, len: g.payload.len() as u32 };
        let f = FrameRef::parse(h, &g.payload, 100).unwrap();
        let field = |a| f.u64(a).unwrap().unwrap_or(0);
        (
            field(Attr::CHAN_ID),
            f.u32(Attr::CREDITS).unwrap().unwrap(),
            field(Attr::CREDIT_BYTES),
            f.result().unwrap(),
        )
    };
    assert_eq!(credit_of(&mut raw, 999_999), (999_999, 1, 3, -libc::ENOENT));
    assert_eq!(
        raw.call(Cmd::CHAN_CLOSE, |f| {
            f.u64(Attr::CHAN_ID, unl);
        })
        .result(),
        0
    );
    assert_eq!(credit_of(&mut raw, unl), (unl, 1, 3, -libc::EPIPE));
    still_serving(&s);
}

/// A burst of a whole window's credited sends, read by the server at once, comes back a
/// quarter of the window at a time while the server still has the rest to serve: the
/// client sends again before its window runs out instead of waiting for all of it.
#[test]
fn credit_comes_back_a_quarter_of_the_window_at_a_time() {
    use kcoro_ipc::proto::FLAG_EVENT;
    let s = server("credit-quarters.sock", "credits=8");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    let unl = open(&mut raw, "unl");
    let burst: Vec<u8> = (0..8u8).flat_map(|i| credited_send(&mut raw, unl, (Attr::ELEMENT, &[i]))).collect();
    raw.bytes(&burst); // one write: the server reads the burst at once
    let mut events = Vec::new();
    while events.iter().sum::<u32>() < 8 {
        let g = raw.read().expect("the connection stays open");
        assert_eq!((g.cmd, g.flags), (Cmd::CREDIT, FLAG_EVENT));
        assert_eq!(g.frame().result().unwrap(), 0);
        events.push(g.frame().u32(Attr::CREDITS).unwrap().unwrap());
    }
    assert_eq!(events, [2, 2, 2, 2], "credit events for 8 sends in a window of 8");
    still_serving(&s);
}

/// Reads until the server ends the connection; fails if it answers anything or the read
/// times out instead.
fn ends_unanswered(raw: &mut Raw, what: &str) {
    match raw.next_or_end() {
        Ok(None) => {}
        Ok(Some(g)) => panic!("{what}: answered {:?} ({}) instead of closed", g.cmd, g.error()),
        Err(e) => panic!("{what}: neither closed nor answered: {e}"),
    }
}

/// A connection past `max_connections` gets its first request refused with `-EBUSY` and
/// a reason (and this server's `ABI_MAJOR`, which a client checks first), then the end of
/// the stream; the real client's `connect` says why. The connections already open go on
/// being served, and once one closes a new one gets in.
#[test]
fn connections_past_the_limit_are_refused_with_a_reason() {
    let s = server("conn-limit.sock", "connections=3");
    let mut open_ones: Vec<Raw> = (0..3).map(|_| Raw::connect(&s)).collect();
    for raw in &mut open_ones {
        assert_eq!(raw.hello().result(), 0);
    }
    let mut past = Raw::connect(&s);
    let g = past.hello();
    assert_eq!(g.result(), -libc::EBUSY, "{}", g.error());
    assert!(g.error().contains("3 connections"), "{}", g.error());
    assert_eq!(g.frame().u32(Attr::ABI_MAJOR).unwrap(), Some(VERSION_MAJOR));
    ends_unanswered(&mut past, "the connection past the limit");

    let e = kcoro_ipc::connect(&s.addr).expect_err("a fourth connection");
    assert!(
        matches!(&e, kcoro_ipc::IpcError::Refused { code, message, .. } if *code == -libc::EBUSY && message.contains("max_connections")),
        "{e}"
    );
    // The three still work.
    for raw in &mut open_ones {
        assert_eq!(raw.call(Cmd::GET_INFO, |_| {}).result(), 0);
    }
    // One goes: a new one gets in (as soon as the server has forgotten the old one).
    drop(open_ones.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while kcoro_ipc::connect(&s.addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "no connection served again");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A connection that says nothing, one that sends a HELLO a byte at a time too slowly to
/// finish in time, and one that says HELLO but never AUTH to a server with a secret, are
/// closed at the handshake deadline; a connection that finished its handshake is not,
/// however long it then stays quiet.
#[test]
fn connections_that_do_not_finish_the_handshake_are_closed_at_its_deadline() {
    let s = server("handshake.sock", "handshake_ms=1000");
    let mut greeted = Raw::connect(&s);
    assert_eq!(greeted.hello().result(), 0);
    let mut silent = Raw::connect(&s);
    let mut trickle = Raw::connect(&s);
    let (_, hello) = trickle.frame(Cmd::HELLO, 0, |f| {
        f.u32(Attr::ABI_MAJOR, VERSION_MAJOR).u32(Attr::ABI_MINOR, 0);
    });
    // A byte every 100 ms: never a second without one, never the whole HELLO in time (it
    // would take 2 s or more). A write fails once the server has closed the connection.
    assert!(hello.len() > 20, "a HELLO of {} bytes", hello.len());
    for b in &hello[..hello.len() - 1] {
        if trickle.try_bytes(std::slice::from_ref(b)).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ends_unanswered(&mut silent, "the silent connection");
    ends_unanswered(&mut trickle, "the trickling connection");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(greeted.call(Cmd::GET_INFO, |_| {}).result(), 0, "the greeted connection was closed");

    let s = server("handshake-auth.sock", "handshake_ms=1000 secret=1");
    let mut no_auth = Raw::connect(&s);
    let g = no_auth.hello();
    assert_eq!(g.result(), 0);
    assert_eq!(g.frame().u32(Attr::AUTH_REQUIRED).unwrap(), Some(1));
    ends_unanswered(&mut no_auth, "the connection that never authenticated");
    let c = kcoro_ipc::Connection::connect(&s.addr, kcoro_ipc::ConnectOptions::new().secret(SECRET)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.info().is_ok(), "the authenticated connection was closed");
}

/// Before its handshake is done a connection may send only small frames (HELLO and AUTH
/// are): one announcing a megabyte is refused on its header and the connection closed,
/// with no megabyte set aside for a peer nobody let in. After HELLO the server's
/// `max_frame` holds again.
#[test]
fn a_large_frame_before_the_handshake_closes_the_connection() {
    // A handshake deadline past the test's read timeout: the close must come from the
    // header's refusal, not from the deadline.
    let s = server("early-frame.sock", "handshake_ms=120000");
    let mut early = Raw::connect(&s);
    let mut header = Vec::new();
    header.extend_from_slice(&Cmd::HELLO.0.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(1u32 << 20).to_be_bytes());
    early.bytes(&header);
    let _ = early.try_bytes(&[0; 4096]);
    ends_unanswered(&mut early, "a megabyte frame before HELLO");

    let mut greeted = Raw::connect(&s);
    assert_eq!(greeted.hello().result(), 0);
    let buf = open(&mut greeted, "buf");
    let big = vec![7u8; 1 << 20];
    let g = greeted.call(Cmd::CHAN_TRY_SEND, |f| {
        f.u64(Attr::CHAN_ID, buf).bytes(Attr::ELEMENT, &big);
    });
    assert_eq!(g.result(), 0, "a megabyte element after HELLO: {}", g.error());
    still_serving(&s);
}

/// A channel whose type copies shared elements into the server's memory says so in its
/// OPEN reply (`COPIES_SHARED`, minor 9), and its window counts them as inline bytes: a
/// peer that ignores this and runs shared elements past the window behind a full channel
/// is refused (`-ENOBUFS` in CREDIT), so the server holds at most a window of copies.
#[test]
fn copies_of_shared_elements_count_in_the_window() {
    use kcoro::zcopy::Region;
    use kcoro_ipc::proto::{FLAG_EVENT, VERSION_MINOR};
    use std::os::fd::AsFd;
    let s = server("credit-copies-raw.sock", "credit_bytes=65536");
    let mut raw = Raw::connect(&s);
    let g = raw.call(Cmd::HELLO, |f| {
        f.u32(Attr::ABI_MAJOR, VERSION_MAJOR).u32(Attr::ABI_MINOR, VERSION_MINOR);
    });
    assert_eq!(g.result(), 0, "{}", g.error());
    let copies_shared = |raw: &mut Raw, name: &str| {
        let g = raw.call(Cmd::CHAN_OPEN, |f| {
            f.str(Attr::NAME, name);
        });
        let f = g.frame();
        (f.u64(Attr::CHAN_ID).unwrap().unwrap(), f.u32(Attr::COPIES_SHARED).unwrap())
    };
    assert_eq!(copies_shared(&mut raw, "slow_views").1, None, "Bytes keeps views");
    let (slow, copies) = copies_shared(&mut raw, "slow");
    assert_eq!(copies, Some(1), "Vec<u8> copies");
    let region = Region::anonymous(1 << 20).unwrap();
    let fd = region.fd().unwrap();
    let req = raw.send_with_fds(Cmd::REGION_SHARE, &[fd.as_fd()], |f| {
        f.u64(Attr::REGION_ID, region.export_id());
    });
    assert_eq!(raw.reply_to(req).result(), 0);
    let lease = region.alloc(32 << 10).unwrap();
    let d = lease.desc();
    let z = common::raw::zdesc(d.region_id, d.offset, d.len as u64);
    fill(&mut raw, slow);
    // Two 32 KiB copies fill the 64 KiB window; two more are past it.
    let burst: Vec<u8> = (0..4).flat_map(|_| credited_send(&mut raw, slow, (Attr::ZDESC, &z))).collect();
    raw.bytes(&burst);
    // The two refusals come back in one CREDIT event or in two (a quarter of the window
    // owed is returned at once): counted together, both refused, none shared.
    let (mut credits, mut bytes) = (0, 0);
    while credits < 2 {
        let g = raw.read().expect("the connection stays open");
        if g.cmd != Cmd::CREDIT || g.flags != FLAG_EVENT {
            continue;
        }
        let f = g.frame();
        assert_eq!(f.result().unwrap(), -libc::ENOBUFS);
        credits += f.u32(Attr::CREDITS).unwrap().unwrap_or(0);
        bytes += f.u64(Attr::CREDIT_BYTES).unwrap().unwrap_or(0);
        assert_eq!(
            f.u64(Attr::SHARED_BYTES).unwrap().unwrap_or(0),
            0,
            "copies are not the client's shared bytes"
        );
    }
    assert_eq!((credits, bytes), (2, 64 << 10));
    // The two within the window go in as the channel drains, after the four ahead of them.
    for _ in 0..4 {
        let g = raw.call(Cmd::CHAN_RECV, |f| {
            f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, 10_000);
        });
        assert_eq!(g.frame().get(Attr::ELEMENT), Some(&b"fill"[..]));
    }
    for _ in 0..2 {
        let g = raw.call(Cmd::CHAN_RECV, |f| {
            f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, 10_000);
        });
        assert_eq!(g.frame().get(Attr::ELEMENT).map(<[u8]>::len), Some(32 << 10), "{}", g.error());
    }
    still_serving(&s);
}

/// A rendezvous send waits holding its value (it has no window): what one connection's
/// waiting rendezvous sends hold is bounded (`max_waiting_bytes`), one send always going
/// when none waits; past it a send is refused with `-ENOBUFS`, and the room comes back when
/// a waiting send ends.
#[test]
fn waiting_rendezvous_sends_hold_a_bounded_number_of_bytes() {
    let s = server("waiting-bytes.sock", "waiting_bytes=10000");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    let rv = open(&mut raw, "rv");
    let send = |raw: &mut Raw, n: usize| send_waiting(raw, rv, &vec![1; n]);
    // One send larger than the bound goes alone.
    let alone = send(&mut raw, 20_000);
    let over = send(&mut raw, 1);
    refused_naming(&mut raw, over, -libc::ENOBUFS, "max_waiting_bytes");
    cancel_waiting(&mut raw, alone);
    // 6000 and 3000 wait together; 6000 more is past 10 000.
    let first = send(&mut raw, 6000);
    let _second = send(&mut raw, 3000);
    let over = send(&mut raw, 6000);
    let g = raw.reply_to(over);
    assert_eq!(g.result(), -libc::ENOBUFS, "{}", g.error());
    cancel_waiting(&mut raw, first);
    let third = send(&mut raw, 6000);
    // A receiver takes the waiting values: both sends complete.
    let mut rx = Raw::connect(&s);
    assert_eq!(rx.hello().result(), 0);
    let rx_rv = open(&mut rx, "rv");
    let mut lens = Vec::new();
    for _ in 0..2 {
        let g = rx.call(Cmd::CHAN_RECV, |f| {
            f.u64(Attr::CHAN_ID, rx_rv).i64(Attr::TIMEOUT_MS, 10_000);
        });
        lens.push(g.frame().get(Attr::ELEMENT).map(<[u8]>::len).unwrap_or(0));
    }
    lens.sort_unstable();
    assert_eq!(lens, [3000, 6000]);
    assert_eq!(raw.reply_to(third).result(), 0);
    still_serving(&s);
}

/// What sends may hold in front of the server's own channels is bounded for all
/// connections together (`max_server_window_bytes`): each OPEN of a buffered channel takes
/// its window (here 1000 bytes + 4 x 64), each waiting rendezvous send its value (+ 64).
/// Past it an OPEN is refused `-ENOMEM` and a rendezvous send `-ENOBUFS`, on any
/// connection; what a send or a connection held comes back when it ends.
#[test]
fn send_windows_are_bounded_for_all_connections_together() {
    let s = server("server-windows.sock", "window_bytes=3000 credits=4 credit_bytes=1000");
    let greeted = || {
        let mut raw = Raw::connect(&s);
        assert_eq!(raw.hello().result(), 0);
        raw
    };
    let open_result = |raw: &mut Raw, name: &str| {
        let g = raw.call(Cmd::CHAN_OPEN, |f| {
            f.str(Attr::NAME, name);
        });
        (g.result(), g.error())
    };
    // Two windows of 1256 bytes fit in 3000, a third does not, whoever asks.
    let (mut a, mut b, mut c) = (greeted(), greeted(), greeted());
    open(&mut a, "slow");
    open(&mut b, "slow");
    let (code, why) = open_result(&mut c, "buf");
    assert_eq!(code, -libc::ENOMEM, "{why}");
    assert!(why.contains("max_server_window_bytes"), "{why}");
    assert_eq!(open_result(&mut a, "buf").0, -libc::ENOMEM, "nor on a connection that has one");
    // A rendezvous channel has no window: it opens.
    let rv = open(&mut c, "rv");
    // 488 bytes left: a waiting 400-byte send takes 464 of them; one more byte does not fit.
    let send = |raw: &mut Raw, n: usize| send_waiting(raw, rv, &vec![7; n]);
    let big = send(&mut c, 400);
    let small = send(&mut c, 1);
    refused_naming(&mut c, small, -libc::ENOBUFS, "max_server_window_bytes");
    // The waiting send ends (cancelled): its bytes are back before its answer, so the
    // next send waits, and a receiver takes exactly it.
    cancel_waiting(&mut c, big);
    let small = send(&mut c, 1);
    let rx_rv = open(&mut a, "rv");
    let g = a.call(Cmd::CHAN_RECV, |f| {
        f.u64(Attr::CHAN_ID, rx_rv).i64(Attr::TIMEOUT_MS, 10_000);
    });
    assert_eq!(g.result(), 0, "{}", g.error());
    assert_eq!(g.frame().get(Attr::ELEMENT), Some(&[7u8][..]));
    assert_eq!(c.reply_to(small).result(), 0);
    // A connection that ends gives its window back: the third OPEN goes in once the
    // server has let go of `b` (it notices the end on its own time).
    drop(b);
    let deadline = std::time::Instant::now() + common::WATCHDOG;
    loop {
        match open_result(&mut c, "buf") {
            (0, _) => break,
            (code, why) => assert_eq!(code, -libc::ENOMEM, "{why}"),
        }
        assert!(std::time::Instant::now() < deadline, "b's window never came back");
        std::thread::sleep(Duration::from_millis(5));
    }
    still_serving(&s);
}

/// A timed send queued behind others holds a slot in flight; whoever answers it (its turn
/// in the feeder, a CANCEL) lets go of the slot before the answer, so with `in_flight=1` a
/// client that sends the next timed send as soon as it has the answer is never refused
/// `-EBUSY`. Many rounds, so that an answer racing its slot's release would show.
#[test]
fn an_answered_queued_send_frees_its_slot_before_its_answer() {
    let s = server("slot-before-answer.sock", "in_flight=1 credits=64");
    let mut raw = Raw::connect(&s);
    assert_eq!(raw.hello().result(), 0);
    let slow = open(&mut raw, "slow");
    let mut drain = Raw::connect(&s);
    assert_eq!(drain.hello().result(), 0);
    let drain_slow = open(&mut drain, "slow");
    let timed = |raw: &mut Raw| {
        raw.send(Cmd::CHAN_SEND, |f| {
            f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, 60_000).bytes(Attr::ELEMENT, b"t");
        })
    };
    fill(&mut raw, slow);
    // Waits forever behind the full channel: queued, tracked, not in flight.
    let head = raw.send(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, b"h");
    });
    let mut t = timed(&mut raw);
    for round in 0..100 {
        if round % 2 == 0 {
            // Answered by a CANCEL.
            let c = raw.send(Cmd::CANCEL, |f| {
                f.u64(Attr::TARGET_REQ_ID, t);
            });
            assert_eq!(raw.reply_to(c).result(), 0);
            assert_eq!(raw.reply_to(t).result(), -libc::ECANCELED, "round {round}");
        } else {
            // Answered by its turn: one receive makes room for head, the next for t.
            for _ in 0..2 {
                let g = drain.call(Cmd::CHAN_RECV, |f| {
                    f.u64(Attr::CHAN_ID, drain_slow).i64(Attr::TIMEOUT_MS, 10_000);
                });
                assert_eq!(g.result(), 0, "{}", g.error());
            }
            if round == 1 {
                assert_eq!(raw.reply_to(head).result(), 0);
            }
            assert_eq!(raw.reply_to(t).result(), 0, "round {round}");
            // Full again (head and t went in); a send waiting forever goes ahead of the next.
            raw.send(Cmd::CHAN_SEND, |f| {
                f.u64(Attr::CHAN_ID, slow).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, b"h");
            });
        }
        t = timed(&mut raw);
    }
    let c = raw.send(Cmd::CANCEL, |f| {
        f.u64(Attr::TARGET_REQ_ID, t);
    });
    assert_eq!(raw.reply_to(c).result(), 0);
    still_serving(&s);
}
