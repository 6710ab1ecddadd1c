//! Connections are isolated from each other: raw-frame clients that play a hostile peer
//! against a server in a child process. Each test attempts one thing a connection must not
//! be able to do to another (read its shared memory, forge its region, use its channels,
//! pile up descriptors or mappings, leave channels behind) and checks that it is refused,
//! and that the victim's data is untouched.

mod common;

use std::os::fd::AsFd;

use common::raw::{Raw, zdesc};
use common::{ServerProc, sock};
use kcoro::zcopy::{Region, ZBuf};
use kcoro_ipc::proto::{Attr, Cmd, FLAG_EVENT, FLAG_REPLY, VERSION_MAJOR, VERSION_MINOR};

#[test]
fn child() {
    common::child_main();
}

fn server(name: &str, opts: &str) -> ServerProc {
    ServerProc::start("child", &sock(name), opts)
}

/// A connection that said HELLO.
fn greeted(s: &ServerProc) -> Raw {
    let mut raw = Raw::connect(s);
    assert_eq!(raw.hello().result(), 0);
    raw
}

/// A new unnamed buffered channel of this connection.
fn make(raw: &mut Raw) -> u64 {
    let g = raw.call(Cmd::CHAN_MAKE, |f| {
        f.i32(Attr::KIND, 1).u64(Attr::CAPACITY, 8);
    });
    assert_eq!(g.result(), 0, "{}", g.error());
    g.frame().u64(Attr::CHAN_ID).unwrap().unwrap()
}

fn open(raw: &mut Raw, name: &str) -> u64 {
    let g = raw.call(Cmd::CHAN_OPEN, |f| {
        f.str(Attr::NAME, name);
    });
    assert_eq!(g.result(), 0, "{}", g.error());
    g.frame().u64(Attr::CHAN_ID).unwrap().unwrap()
}

/// A region of this process holding `bytes` at the returned offset.
fn region_with(bytes: &[u8]) -> (Region, ZBuf) {
    let region = Region::anonymous(64 << 10).unwrap();
    let mut lease = region.alloc(bytes.len()).unwrap();
    lease[..bytes.len()].copy_from_slice(bytes);
    (region, lease)
}

fn share(raw: &mut Raw, region: &Region, id: u64) -> i32 {
    let fd = region.fd().unwrap();
    let req = raw.send_with_fds(Cmd::REGION_SHARE, &[fd.as_fd()], |f| {
        f.u64(Attr::REGION_ID, id);
    });
    raw.reply_to(req).result()
}

/// A CHAN_SEND of the span `z` into `chan`; its reply.
fn send_span(raw: &mut Raw, chan: u64, z: &[u8; 24]) -> common::raw::Got {
    raw.call(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, chan).i64(Attr::TIMEOUT_MS, 1000).bytes(Attr::ZDESC, z);
    })
}

/// The element a CHAN_TRY_RECV takes from `chan`, or the failure code.
fn try_recv(raw: &mut Raw, chan: u64) -> Result<Vec<u8>, i32> {
    let g = raw.call(Cmd::CHAN_TRY_RECV, |f| {
        f.u64(Attr::CHAN_ID, chan);
    });
    match g.result() {
        0 => Ok(g.frame().get(Attr::ELEMENT).expect("an inline element").to_vec()),
        code => Err(code),
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Item 1: B names A's region (and the server's own) in a descriptor of its own and gets
/// nothing, with an error that reads the same whether the id exists or not.
#[test]
fn a_descriptor_resolves_only_in_regions_its_connection_shared() {
    let s = server("iso-read.sock", "");
    let mut a = greeted(&s);
    let (ra, lease) = region_with(b"A's secret");
    assert_eq!(share(&mut a, &ra, ra.export_id()), 0);
    let a_span = zdesc(ra.export_id(), lease.desc().offset, 10);
    // A's own descriptor works for A.
    let a_chan = make(&mut a);
    assert_eq!(send_span(&mut a, a_chan, &a_span).result(), 0);
    assert_eq!(try_recv(&mut a, a_chan).unwrap(), b"A's secret");

    let mut b = greeted(&s);
    let b_chan = make(&mut b);
    let g = send_span(&mut b, b_chan, &a_span);
    assert!(g.result() < 0, "B resolved a span of A's region");
    let known = g.error();
    // The server's own per-connection regions: pid << 32 | n.
    let server_pid = u64::from(s.child.id());
    for n in 1..64 {
        let g = send_span(&mut b, b_chan, &zdesc(server_pid << 32 | n, 0, 8));
        assert!(g.result() < 0, "B resolved the server's region {n}");
        assert_eq!(g.error(), known, "an error that tells which ids exist");
    }
    let g = send_span(&mut b, b_chan, &zdesc(0x1234_5678_9abc, 0, 8));
    assert_eq!(g.error(), known, "an error that tells which ids exist");
    assert!(!known.contains(&format!("{:x}", ra.export_id())), "the error names the id: {known}");
    assert_eq!(try_recv(&mut b, b_chan), Err(-libc::EAGAIN), "nothing of A's reached B's channel");
}

/// Item 2: a region id is the sharing connection's own: B may use the id A uses, and then
/// its descriptors name B's memory; the same connection cannot share one id twice.
#[test]
fn a_region_id_is_per_connection_and_taken_once() {
    let s = server("iso-forge.sock", "");
    let mut a = greeted(&s);
    let (ra, _la) = region_with(b"AAAA");
    let id = ra.export_id();
    assert_eq!(share(&mut a, &ra, id), 0);
    let (again, _l) = region_with(b"XXXX");
    assert_eq!(share(&mut a, &again, id), -libc::EEXIST, "the same id twice on one connection");

    let mut b = greeted(&s);
    let (rb, lb) = region_with(b"BBBB");
    assert_eq!(share(&mut b, &rb, id), 0, "B's ids are its own");
    let b_chan = make(&mut b);
    let g = send_span(&mut b, b_chan, &zdesc(id, lb.desc().offset, 4));
    assert_eq!(g.result(), 0, "{}", g.error());
    assert_eq!(try_recv(&mut b, b_chan).unwrap(), b"BBBB", "B's descriptor named A's memory");
}

/// Item 3: a channel id works only on the connection OPEN or MAKE gave it to; anywhere
/// else it is -ENOENT, as an id that never existed.
#[test]
fn channel_ids_work_only_on_the_connection_they_were_given_to() {
    let s = server("iso-chan.sock", "");
    let mut a = greeted(&s);
    let mine = make(&mut a);
    let g = a.call(Cmd::CHAN_TRY_SEND, |f| {
        f.u64(Attr::CHAN_ID, mine).bytes(Attr::ELEMENT, b"a's value");
    });
    assert_eq!(g.result(), 0);
    let jobs = open(&mut a, "jobs");

    let mut b = greeted(&s);
    for id in [mine, jobs, mine + 1, 999_999] {
        for cmd in [Cmd::CHAN_TRY_RECV, Cmd::CHAN_CLOSE, Cmd::CHAN_DESTROY] {
            let g = b.call(cmd, |f| {
                f.u64(Attr::CHAN_ID, id);
            });
            assert_eq!(g.result(), -libc::ENOENT, "{} of channel {id} from another connection", cmd.name());
        }
        let g = b.call(Cmd::CHAN_TRY_SEND, |f| {
            f.u64(Attr::CHAN_ID, id).bytes(Attr::ELEMENT, b"forged");
        });
        assert_eq!(g.result(), -libc::ENOENT, "a send into channel {id} from another connection");
    }
    let g = b.call(Cmd::GET_STATS, |f| {
        f.u64(Attr::CHAN_ID, mine);
    });
    assert_eq!(g.result(), -libc::ENOENT, "the counters of another connection's unnamed channel");
    // A's channel is as A left it; a named channel still opens for B.
    assert_eq!(try_recv(&mut a, mine).unwrap(), b"a's value");
    assert_eq!(open(&mut b, "jobs"), jobs);
}

/// Item 4: descriptors a frame does not claim are closed at once, and none is taken before
/// HELLO; the server's descriptor count does not grow with what a client passes.
#[test]
fn descriptors_are_closed_unless_a_region_share_after_hello_claims_them() {
    let s = server("iso-fds.sock", "");
    let pid = s.child.id();
    let (region, _l) = region_with(b"x");
    let fd = region.fd().unwrap();
    let mut raw = Raw::connect(&s);
    let before = open_fds(pid);
    // Before HELLO: a REGION_SHARE is refused, and its descriptor closed.
    let req = raw.send_with_fds(Cmd::REGION_SHARE, &[fd.as_fd()], |f| {
        f.u64(Attr::REGION_ID, 7);
    });
    assert_eq!(raw.reply_to(req).result(), -libc::EPROTO);
    assert_eq!(raw.hello().result(), 0);
    // Frames that carry descriptors they do not claim.
    for _ in 0..200 {
        let req = raw.send_with_fds(Cmd::GET_INFO, &[fd.as_fd(), fd.as_fd(), fd.as_fd()], |_| {});
        assert_eq!(raw.reply_to(req).result(), 0);
    }
    let after = open_fds(pid);
    assert!(after <= before + 2, "the server holds {after} descriptors, {before} before 600 unclaimed ones");
    // A claimed one is used (and the connection goes on).
    assert_eq!(share(&mut raw, &region, region.export_id()), 0);
}

/// Item 4: how many regions a connection may share, and how large.
#[test]
fn region_imports_are_bounded_in_count_and_bytes() {
    let s = server("iso-regions.sock", "regions=3 region_bytes=1048576");
    let mut raw = greeted(&s);
    let regions: Vec<Region> = (0..4).map(|_| Region::anonymous(64 << 10).unwrap()).collect();
    for r in &regions[..3] {
        assert_eq!(share(&mut raw, r, r.export_id()), 0);
    }
    assert_eq!(share(&mut raw, &regions[3], regions[3].export_id()), -libc::EMFILE, "a fourth region");
    let mut other = greeted(&s);
    let big = Region::anonymous(2 << 20).unwrap();
    assert_eq!(share(&mut other, &big, big.export_id()), -libc::EFBIG, "2 MiB past a 1 MiB limit");
}

/// Item 4: a MAKE the limit refuses leaves no channel behind, and the unnamed channels a
/// connection made go with it.
#[test]
fn a_refused_make_registers_nothing_and_unnamed_channels_go_with_their_connection() {
    let s = server("iso-make.sock", "channels=2 server_channels=4");
    let mut a = greeted(&s);
    for name in ["one", "two"] {
        let g = a.call(Cmd::CHAN_MAKE, |f| {
            f.i32(Attr::KIND, 1).u64(Attr::CAPACITY, 4).str(Attr::NAME, name);
        });
        assert_eq!(g.result(), 0, "{}", g.error());
    }
    let g = a.call(Cmd::CHAN_MAKE, |f| {
        f.i32(Attr::KIND, 1).u64(Attr::CAPACITY, 4).str(Attr::NAME, "three");
    });
    assert_eq!(g.result(), -libc::EMFILE, "{}", g.error());
    let mut b = greeted(&s);
    let g = b.call(Cmd::CHAN_OPEN, |f| {
        f.str(Attr::NAME, "three");
    });
    assert_eq!(g.result(), -libc::ENOENT, "the refused MAKE registered its channel");
    // Server-wide: two named channels are made; B's two unnamed ones fill the four.
    let c1 = make(&mut b);
    let _c2 = make(&mut b);
    let g = b.call(Cmd::CHAN_TRY_SEND, |f| {
        f.u64(Attr::CHAN_ID, c1).bytes(Attr::ELEMENT, &[7; 1000]);
    });
    assert_eq!(g.result(), 0);
    let mut c = greeted(&s);
    let g = c.call(Cmd::CHAN_MAKE, |f| {
        f.i32(Attr::KIND, 1).u64(Attr::CAPACITY, 4);
    });
    assert_eq!(g.result(), -libc::ENFILE, "{}", g.error());
    // B goes: its unnamed channels (and the value in one) go with it, so C can make two.
    drop(b);
    let deadline = std::time::Instant::now() + common::WATCHDOG;
    let mut made = 0;
    while made < 2 {
        let g = c.call(Cmd::CHAN_MAKE, |f| {
            f.i32(Attr::KIND, 1).u64(Attr::CAPACITY, 4);
        });
        match g.result() {
            0 => made += 1,
            // B's end is noticed by its reader: until then its channels still count.
            code if code == -libc::ENFILE && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            code => panic!("MAKE after B left: {code} {}", g.error()),
        }
    }
}

/// Items 7 and 9: requests the server cannot take are answered, never dropped.
#[test]
fn malformed_requests_get_an_answer() {
    let s = server("iso-hygiene.sock", "");
    let mut raw = greeted(&s);
    // A name that is not UTF-8.
    for cmd in [Cmd::CHAN_OPEN, Cmd::CHAN_MAKE] {
        let g = raw.call(cmd, |f| {
            f.bytes(Attr::NAME, &[0xff, 0xfe, b'x']);
        });
        assert_eq!(g.result(), -libc::EINVAL, "{}: {}", cmd.name(), g.error());
    }
    // Flags a request never carries.
    for flags in [FLAG_REPLY, FLAG_EVENT, 1 << 5] {
        let (req, bytes) = raw.frame(Cmd::CHAN_OPEN, flags, |f| {
            f.str(Attr::NAME, "jobs");
        });
        raw.bytes(&bytes);
        let g = raw.reply_to(req);
        assert_eq!(g.result(), -libc::EINVAL, "flags {flags:#x}: {}", g.error());
    }
    // Kinds outside the four.
    for kind in [2, 7, 100, -3] {
        let g = raw.call(Cmd::CHAN_MAKE, |f| {
            f.i32(Attr::KIND, kind).u64(Attr::CAPACITY, 4);
        });
        assert_eq!(g.result(), -libc::EINVAL, "KIND {kind}: {}", g.error());
    }
    // Two requests in flight under one REQ_ID: the second is refused.
    let rv = open(&mut raw, "rv");
    let (req, bytes) = raw.frame(Cmd::CHAN_RECV, 0, |f| {
        f.u64(Attr::CHAN_ID, rv).i64(Attr::TIMEOUT_MS, -1);
    });
    raw.bytes(&bytes);
    raw.bytes(&bytes);
    let g = raw.reply_to(req);
    assert_eq!(g.result(), -libc::EINVAL, "{}", g.error());
    assert!(g.error().contains("in flight"), "{}", g.error());
    let g = raw.call(Cmd::CANCEL, |f| {
        f.u64(Attr::TARGET_REQ_ID, req);
    });
    assert_eq!(g.result(), 0);
    assert_eq!(raw.reply_to(req).result(), -libc::ECANCELED);
}

/// A CANCEL's reply comes before the cancelled request's `-ECANCELED`, every time (the
/// server once fired the cancel first, and the woken receive could answer first).
#[test]
fn a_cancels_reply_precedes_the_cancelled_requests_end() {
    let s = server("iso-cancel-order.sock", "");
    let mut raw = greeted(&s);
    let rv = open(&mut raw, "rv");
    for round in 0..200 {
        let recv = raw.send(Cmd::CHAN_RECV, |f| {
            f.u64(Attr::CHAN_ID, rv).i64(Attr::TIMEOUT_MS, -1);
        });
        let cancel = raw.send(Cmd::CANCEL, |f| {
            f.u64(Attr::TARGET_REQ_ID, recv);
        });
        let mut replies = Vec::new();
        while replies.len() < 2 {
            let g = raw.read().expect("a frame");
            if g.flags & FLAG_REPLY != 0 {
                replies.push((g.frame().req_id().unwrap(), g.result()));
            }
        }
        assert_eq!(replies, [(cancel, 0), (recv, -libc::ECANCELED)], "round {round}");
    }
}

/// Over TCP an element is inline: a ZDESC is refused, whatever it names.
#[test]
fn zdesc_over_tcp_is_refused() {
    let s = ServerProc::start("child", "tcp:127.0.0.1:0", "");
    let mut raw = Raw::connect(&s);
    let g = raw.call(Cmd::HELLO, |f| {
        f.u32(Attr::ABI_MAJOR, VERSION_MAJOR).u32(Attr::ABI_MINOR, 0);
    });
    assert_eq!(g.result(), 0);
    let chan = make(&mut raw);
    let g = send_span(&mut raw, chan, &zdesc(u64::from(s.child.id()) << 32 | 1, 0, 8));
    assert_eq!(g.result(), -libc::EPROTO, "{}", g.error());
    assert_eq!(try_recv(&mut raw, chan), Err(-libc::EAGAIN));
}

/// Item 5: a receive whose reply would not fit the receiver's MAX_FRAME does not take the
/// value away: another receiver gets it.
#[test]
fn an_element_too_large_for_its_receiver_stays_in_the_channel() {
    let s = server("iso-large.sock", "");
    let mut small = Raw::connect(&s);
    let g = small.call(Cmd::HELLO, |f| {
        f.u32(Attr::ABI_MAJOR, VERSION_MAJOR)
            .u32(Attr::ABI_MINOR, 3)
            .u32(Attr::MAX_FRAME, 1024)
            .u32(Attr::NO_SHM, 1);
    });
    assert_eq!(g.result(), 0);
    let mut sender = greeted(&s);
    let buf = open(&mut sender, "buf");
    let g = sender.call(Cmd::CHAN_TRY_SEND, |f| {
        f.u64(Attr::CHAN_ID, buf).bytes(Attr::ELEMENT, &[9; 4096]);
    });
    assert_eq!(g.result(), 0);
    let small_buf = open(&mut small, "buf");
    let g = small.call(Cmd::CHAN_TRY_RECV, |f| {
        f.u64(Attr::CHAN_ID, small_buf);
    });
    assert_eq!(g.result(), -libc::EMSGSIZE, "{}", g.error());
    assert!(g.error().contains("stays in the channel"), "{}", g.error());
    let mut big = greeted(&s);
    let big_buf = open(&mut big, "buf");
    let g = big.call(Cmd::CHAN_RECV, |f| {
        f.u64(Attr::CHAN_ID, big_buf).i64(Attr::TIMEOUT_MS, 10_000);
    });
    assert_eq!(g.result(), 0, "the value was lost: {}", g.error());
    assert_eq!(g.frame().get(Attr::ELEMENT).unwrap(), &[9; 4096][..]);
}

/// MAKE of a channel of `kind` and `capacity`, named `name`: its id, or the failure code.
fn make_kind(raw: &mut Raw, kind: i32, capacity: u64, name: &str) -> Result<u64, i32> {
    let g = raw.call(Cmd::CHAN_MAKE, |f| {
        f.i32(Attr::KIND, kind).u64(Attr::CAPACITY, capacity).str(Attr::NAME, name);
    });
    match g.result() {
        0 => Ok(g.frame().u64(Attr::CHAN_ID).unwrap().unwrap()),
        code => Err(code),
    }
}

/// One connection cannot fill the server's memory through channels it made: an unlimited
/// channel nobody reads takes values only until `max_made_bytes` is spent; then its sends
/// wait (as for a full channel), MAKEs are refused, and every byte comes back as values
/// are received and channels destroyed.
#[test]
fn clients_channels_hold_at_most_the_servers_budget() {
    // 64 KiB: each channel's own 4 KiB, each holder's window (4 KiB and 4 values), and
    // about fifty 1000-byte values.
    let s = server("iso-budget.sock", "made_bytes=65536 credits=4 credit_bytes=4096");
    let mut hog = greeted(&s);
    // A conflated channel holds one value: each send gives back the bytes of the one it
    // replaces, so it never runs out.
    let latest = make_kind(&mut hog, -1, 0, "latest").unwrap();
    for i in 0..200u32 {
        let g = hog.call(Cmd::CHAN_TRY_SEND, |f| {
            f.u64(Attr::CHAN_ID, latest).bytes(Attr::ELEMENT, &[i as u8; 1000]);
        });
        assert_eq!(g.result(), 0, "conflated send {i}: {}", g.error());
    }
    let g = hog.call(Cmd::CHAN_DESTROY, |f| {
        f.u64(Attr::CHAN_ID, latest);
    });
    assert_eq!(g.result(), 0, "{}", g.error());
    let unl = make_kind(&mut hog, -2, 0, "hoard").unwrap();
    let mut other = greeted(&s);
    let reader_chan = open(&mut other, "hoard");
    let value = |i: u32| -> Vec<u8> { (0..1000).map(|j| (i as usize * 7 + j) as u8).collect() };
    let mut sent = 0u32;
    loop {
        assert!(sent < 10_000, "an unlimited channel took {sent} values past any budget");
        let g = hog.call(Cmd::CHAN_TRY_SEND, |f| {
            f.u64(Attr::CHAN_ID, unl).bytes(Attr::ELEMENT, &value(sent));
        });
        match g.result() {
            0 => sent += 1,
            code => {
                assert_eq!(code, -libc::EAGAIN, "{}", g.error());
                break;
            }
        }
    }
    assert!((40..=64).contains(&sent), "{sent} values of 1000 bytes in a 64 KiB budget");
    // Spent for everyone: another connection cannot make even a small channel, nor open
    // the hoard (its window could queue sends the budget has no room for).
    let g = other.call(Cmd::CHAN_MAKE, |f| {
        f.i32(Attr::KIND, 1).u64(Attr::CAPACITY, 4);
    });
    assert_eq!(g.result(), -libc::ENOMEM, "{}", g.error());
    assert!(g.error().contains("max_made_bytes"), "{}", g.error());
    let mut third = greeted(&s);
    let g = third.call(Cmd::CHAN_OPEN, |f| {
        f.str(Attr::NAME, "hoard");
    });
    assert_eq!(g.result(), -libc::ENOMEM, "{}", g.error());
    // A send that may wait, waits, and ends at its deadline with nothing taken.
    let g = hog.call(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, unl).i64(Attr::TIMEOUT_MS, 50).bytes(Attr::ELEMENT, &value(sent));
    });
    assert_eq!(g.result(), -libc::ETIME, "{}", g.error());
    // An element larger than the whole budget can never fit: refused at once.
    let g = hog.call(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, unl).i64(Attr::TIMEOUT_MS, -1).bytes(Attr::ELEMENT, &[0; 70_000]);
    });
    assert_eq!(g.result(), -libc::EMSGSIZE, "{}", g.error());
    // A waiting send goes in when a receive makes room; every value comes out once, in order.
    let waiting = hog.send(Cmd::CHAN_SEND, |f| {
        f.u64(Attr::CHAN_ID, unl).i64(Attr::TIMEOUT_MS, 60_000).bytes(Attr::ELEMENT, &value(sent));
    });
    assert_eq!(try_recv(&mut other, reader_chan), Ok(value(0)));
    assert_eq!(hog.reply_to(waiting).result(), 0, "the send that waited for room");
    for i in 1..=sent {
        assert_eq!(try_recv(&mut other, reader_chan), Ok(value(i)), "value {i}");
    }
    assert_eq!(try_recv(&mut other, reader_chan), Err(-libc::EAGAIN));
    // Every charge came back: a channel that takes all but 48 bytes of the budget (4 KiB,
    // 713 slots of 80 bytes, its maker's window of 4 KiB and 4 × 64) can be made once both
    // holders let go of the hoard (each holder's window goes with its hold), not before;
    // one slot more never fits.
    assert_eq!(make_kind(&mut other, 1, 713, "whole"), Err(-libc::ENOMEM));
    for (raw, id) in [(&mut hog, unl), (&mut other, reader_chan)] {
        let g = raw.call(Cmd::CHAN_DESTROY, |f| {
            f.u64(Attr::CHAN_ID, id);
        });
        assert_eq!(g.result(), 0, "{}", g.error());
    }
    assert_eq!(make_kind(&mut other, 1, 714, "whole"), Err(-libc::ENOMEM), "one slot past the budget");
    assert!(make_kind(&mut other, 1, 713, "whole").is_ok(), "bytes of the hoard were never given back");
    assert_eq!(make_kind(&mut third, 0, 0, "one more"), Err(-libc::ENOMEM), "the budget is exact");
}

/// Credited sends (the client's window) into a channel whose budget is spent wait for room
/// on the server instead of being dropped: every value a sender was told is sent arrives.
#[test]
fn credited_sends_wait_for_the_budget_and_none_is_lost() {
    // 256 KiB: two windows of 64 KiB, and room for about a hundred of the 600 values.
    let s = server("iso-budget-credit.sock", "made_bytes=262144 credits=64 credit_bytes=65536");
    const N: u32 = 600;
    let c = kcoro_ipc::connect(&s.addr).unwrap();
    let rx = c.make::<Vec<u8>>("flow", kcoro::chan::Kind::Unlimited, 0).unwrap().1;
    let addr = s.addr.clone();
    let sender = std::thread::spawn(move || {
        let c = kcoro_ipc::connect(&addr).unwrap();
        let tx = c.sender::<Vec<u8>>("flow").unwrap();
        for i in 0..N {
            tx.send(vec![i as u8; 1000]).unwrap();
        }
        // Answered once the server took every earlier send into the channel.
        tx.send_acked(vec![0xEE], None).unwrap();
    });
    for i in 0..N {
        let v = rx.recv().unwrap();
        assert_eq!(v, vec![i as u8; 1000], "value {i}");
    }
    assert_eq!(rx.recv().unwrap(), vec![0xEE]);
    sender.join().unwrap();
    assert_eq!(rx.try_recv(), Err(kcoro::chan::ChanError::WouldBlock));
}

/// Shared elements into channels clients made cost the budget what the server holds: a
/// view of the sender's region (a peer that takes `REGION_RELEASE`) only its place in the
/// channel; a copy (a peer of minor 0 or 1) its bytes, charged when it is read and refused
/// once the budget is spent, so copies never wait outside the budget.
#[test]
fn shared_elements_cost_the_budget_what_the_server_holds() {
    let s = server("iso-budget-shared.sock", "made_bytes=65536 credits=4 credit_bytes=4096");
    let (region, lease) = region_with(&[5; 16 << 10]);
    let span = zdesc(region.export_id(), lease.desc().offset, 16 << 10);

    let mut viewer = Raw::connect(&s);
    let g = viewer.call(Cmd::HELLO, |f| {
        f.u32(Attr::ABI_MAJOR, VERSION_MAJOR).u32(Attr::ABI_MINOR, VERSION_MINOR);
    });
    assert_eq!(g.result(), 0, "{}", g.error());
    assert_eq!(share(&mut viewer, &region, region.export_id()), 0);
    let views = make_kind(&mut viewer, -2, 0, "views").unwrap();
    // 20 × 16 KiB = 320 KiB of views in a 64 KiB budget: each costs its 64 bytes.
    for i in 0..20 {
        assert_eq!(send_span(&mut viewer, views, &span).result(), 0, "view {i}");
    }

    let mut copier = greeted(&s);
    assert_eq!(share(&mut copier, &region, region.export_id()), 0);
    let copies = make_kind(&mut copier, -2, 0, "copies").unwrap();
    let mut taken = 0;
    let refused = loop {
        assert!(taken < 4, "{taken} copies of 16 KiB in a 64 KiB budget");
        let g = copier.call(Cmd::CHAN_TRY_SEND, |f| {
            f.u64(Attr::CHAN_ID, copies).bytes(Attr::ZDESC, &span);
        });
        match g.result() {
            0 => taken += 1,
            _ => break g,
        }
    };
    assert!(taken >= 1, "not even one copy fit: {}", refused.error());
    assert_eq!(refused.result(), -libc::ENOMEM, "{}", refused.error());
    // A receive gives a copy's bytes back: the next one fits.
    assert_eq!(try_recv(&mut copier, copies).map(|v| v.len()), Ok(16 << 10));
    let g = copier.call(Cmd::CHAN_TRY_SEND, |f| {
        f.u64(Attr::CHAN_ID, copies).bytes(Attr::ZDESC, &span);
    });
    assert_eq!(g.result(), 0, "{}", g.error());
    for i in 0..20 {
        assert_eq!(try_recv(&mut viewer, views).map(|v| v.len()), Ok(16 << 10), "view {i}");
    }
}
