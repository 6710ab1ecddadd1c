//! Zero copy: the backend testing checklist (ownership on failure, exactly-once receipt,
//! timeouts, cancellation, close and aborts) on every kind, with coroutines and threads,
//! through zref and through a registered backend; regions, leases, deregistration, and
//! descriptors that must be rejected.

use crate::common;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{SETTLE, WATCHDOG, both, join_all};
use kcoro::chan::{Builder, ChanError, Kind, Receiver, Sender};
use kcoro::sync::CancelToken;
use kcoro::zcopy::{self, AttachOpts, BackendId, ChanKey, Region, ZBackend, ZBuf, ZDesc, ZError};

const SHORT: Duration = Duration::from_millis(2);

/// A bounded FIFO of descriptors per channel, counting attaches and detaches.
struct Ring {
    cap: usize,
    queues: Mutex<HashMap<ChanKey, VecDeque<ZDesc>>>,
    attached: Mutex<u64>,
    detached: Mutex<u64>,
}

impl ZBackend for Ring {
    fn attach(&self, chan: ChanKey, _opts: AttachOpts) -> Result<(), ZError> {
        self.queues.lock().unwrap().entry(chan).or_default();
        *self.attached.lock().unwrap() += 1;
        Ok(())
    }
    fn detach(&self, chan: ChanKey) {
        assert!(
            self.queues.lock().unwrap().remove(&chan).is_some_and(|q| q.is_empty()),
            "detached while holding"
        );
        *self.detached.lock().unwrap() += 1;
    }
    fn try_send(&self, chan: ChanKey, desc: &ZDesc) -> bool {
        let mut q = self.queues.lock().unwrap();
        let q = q.get_mut(&chan).expect("send on an attached channel");
        (q.len() < self.cap).then(|| q.push_back(*desc)).is_some()
    }
    fn try_recv(&self, chan: ChanKey) -> Option<ZDesc> {
        self.queues.lock().unwrap().get_mut(&chan)?.pop_front()
    }
    fn capacity(&self, _chan: ChanKey) -> Option<usize> {
        Some(self.cap)
    }
}

const RING_CAP: usize = 4;

fn ring() -> (BackendId, &'static Ring) {
    static RING: OnceLock<(BackendId, &'static Ring)> = OnceLock::new();
    *RING.get_or_init(|| {
        let r: &'static Ring = Box::leak(Box::new(Ring {
            cap: RING_CAP,
            queues: Mutex::default(),
            attached: Mutex::new(0),
            detached: Mutex::new(0),
        }));
        struct Shared(&'static Ring);
        impl ZBackend for Shared {
            fn attach(&self, c: ChanKey, o: AttachOpts) -> Result<(), ZError> {
                self.0.attach(c, o)
            }
            fn detach(&self, c: ChanKey) {
                self.0.detach(c)
            }
            fn try_send(&self, c: ChanKey, d: &ZDesc) -> bool {
                self.0.try_send(c, d)
            }
            fn try_recv(&self, c: ChanKey) -> Option<ZDesc> {
                self.0.try_recv(c)
            }
            fn capacity(&self, c: ChanKey) -> Option<usize> {
                self.0.capacity(c)
            }
        }
        (zcopy::register("test-ring", Arc::new(Shared(r)), 0).unwrap(), r)
    })
}

/// The channels every checklist test runs on: each kind through zref, and the ring.
#[derive(Debug, Clone, Copy)]
enum Via {
    Zref(Kind),
    Ring,
}

const ALL: [Via; 5] = [
    Via::Zref(Kind::Rendezvous),
    Via::Zref(Kind::Buffered),
    Via::Zref(Kind::Conflated),
    Via::Zref(Kind::Unlimited),
    Via::Ring,
];

impl Via {
    fn make(self) -> (Sender<ZBuf>, Receiver<ZBuf>) {
        match self {
            Via::Zref(kind) => Builder::new(kind).capacity(RING_CAP).zero_copy(zcopy::ZREF).build(),
            Via::Ring => Builder::new(Kind::Buffered).zero_copy(ring().0).try_build().unwrap(),
        }
    }

    /// Whether a send can find no room (and then waits or fails).
    fn bounded(self) -> bool {
        matches!(self, Via::Zref(Kind::Rendezvous | Kind::Buffered) | Via::Ring)
    }

    /// Fills the channel so that the next send finds no room.
    fn fill(self, tx: &Sender<ZBuf>, region: &Region) {
        if matches!(self, Via::Zref(Kind::Buffered) | Via::Ring) {
            for i in 0..RING_CAP {
                tx.try_send(lease(region, i as u64)).unwrap();
            }
        }
    }
}

/// A lease holding `seq` in its first 8 bytes.
fn lease(region: &Region, seq: u64) -> ZBuf {
    let mut b = region.alloc(64 + (seq as usize % 3) * 1000).unwrap();
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b
}

fn seq(b: &ZBuf) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

fn region() -> Region {
    Region::anonymous(4 << 20).unwrap()
}

#[test]
fn smoke() {
    let region = region();
    let (tx, rx) = kcoro::chan::buffered::<ZBuf>(4);
    let mut buf = region.alloc(1000).unwrap();
    buf.copy_from_slice(&[9; 1000]);
    let sent = buf.desc();
    tx.send(buf).unwrap();
    let got = rx.recv().unwrap();
    assert_eq!(got.desc(), sent, "the same span arrived: nothing was copied");
    assert_eq!((sent.region_id, sent.len), (region.export_id(), 1000));
    assert!(got.iter().all(|&b| b == 9));
    assert_eq!(region.leases(), 1);
    drop(got);
    assert_eq!(region.leases(), 0);
    region.deregister(Duration::ZERO).unwrap();
}

/// Ownership: a send that fails hands the very lease back, on every path that can fail.
#[test]
fn ownership_stays_with_the_producer_on_failure() {
    for via in ALL {
        both(move |_m| {
            let region = region();
            let (tx, rx) = via.make();
            via.fill(&tx, &region);
            if via.bounded() {
                let b = lease(&region, 100);
                let d = b.desc();
                let e = tx.try_send(b).unwrap_err();
                assert_eq!((e.kind(), e.value().desc()), (ChanError::WouldBlock, d), "{via:?}");
                let e = tx.send_timeout(e.into_inner(), SHORT).unwrap_err();
                assert_eq!((e.kind(), e.value().desc()), (ChanError::Timeout, d), "{via:?}");
                let token = CancelToken::new();
                token.cancel();
                let e = tx.send_cancellable(e.into_inner(), &token).unwrap_err();
                assert_eq!((e.kind(), e.value().desc()), (ChanError::Canceled, d), "{via:?}");
            }
            tx.close();
            let b = lease(&region, 200);
            let d = b.desc();
            let e = tx.send(b).unwrap_err();
            assert_eq!((e.kind(), e.value().desc()), (ChanError::Closed, d), "{via:?}");
            drop(e);
            drop((tx, rx));
            assert_eq!(region.leases(), 0, "{via:?}: every lease came back");
        });
    }
}

/// Exactly once: every lease sent arrives once, in order, with its bytes; none is lost or
/// duplicated. Conflated keeps only the latest, so it checks "at most once, in order".
#[test]
fn exactly_once_receipt() {
    const N: u64 = 300;
    for via in ALL {
        both(move |m| {
            let region = region();
            let (tx, rx) = via.make();
            let r = region.clone();
            let producer = m.go(move || (0..N).for_each(|i| tx.send(lease(&r, i)).unwrap()));
            let got: Vec<u64> = rx.iter().map(|b| seq(&b)).collect();
            producer.join();
            if matches!(via, Via::Zref(Kind::Conflated)) {
                assert!(got.windows(2).all(|w| w[0] < w[1]), "{via:?}: out of order or repeated");
                assert_eq!(got.last(), Some(&(N - 1)), "{via:?}: the latest value arrives");
            } else {
                assert_eq!(got, (0..N).collect::<Vec<_>>(), "{via:?}");
            }
            let z = rx.snapshot().zero_copy.expect("a zero-copy channel reports zero-copy counters");
            assert_eq!((z.sent, z.received), (N, got.len() as u64), "{via:?}");
            assert_eq!(region.leases(), 0, "{via:?}: dropped leases returned, overwritten ones too");
        });
    }
}

/// Timeouts: under contention (other parties waiting on the same side) a bounded wait
/// ends with `Timeout`, the lease back in hand.
#[test]
fn timeouts_under_contention() {
    for via in ALL {
        both(move |m| {
            let region = region();
            let (tx, rx) = via.make();
            // Receivers competing on an empty channel.
            let rivals: Vec<_> = (0..2)
                .map(|_| {
                    let r = rx.clone();
                    m.go(move || r.recv_timeout(SETTLE).map(|b| seq(&b)))
                })
                .collect();
            assert_eq!(rx.recv_timeout(SHORT).map(|b| seq(&b)), Err(ChanError::Timeout), "{via:?}");
            for r in join_all(rivals) {
                assert_eq!(r, Err(ChanError::Timeout), "{via:?}");
            }
            if via.bounded() {
                via.fill(&tx, &region);
                let t = tx.clone();
                let r = region.clone();
                let rival = m.go(move || t.send_timeout(lease(&r, 7), SETTLE).map_err(|e| e.kind()));
                let e = tx.send_timeout(lease(&region, 8), SHORT).unwrap_err();
                assert_eq!((e.kind(), seq(e.value())), (ChanError::Timeout, 8), "{via:?}");
                assert_eq!(rival.join(), Err(ChanError::Timeout), "{via:?}");
            }
            drop((tx, rx));
            assert_eq!(region.leases(), 0);
        });
    }
}

/// Cancellation: a parked operation returns `Canceled` as soon as its token fires (well
/// before its own deadline), and a sender keeps its lease.
#[test]
fn cancellation_is_prompt() {
    for via in ALL {
        both(move |m| {
            let region = region();
            let (tx, rx) = via.make();
            // A receiver parked on the empty channel.
            let token = CancelToken::new();
            let (t, r) = (token.clone(), rx.clone());
            let deadline = std::time::Instant::now() + WATCHDOG;
            let receiver = m.go(move || r.recv_with(Some(deadline), Some(&t)).map(|b| seq(&b)));
            kcoro::sleep(SETTLE);
            token.cancel();
            assert_eq!(receiver.join(), Err(ChanError::Canceled), "{via:?}");
            // A sender parked on a channel with no room.
            if via.bounded() {
                via.fill(&tx, &region);
                let token = CancelToken::new();
                let (t, tx2, r2) = (token.clone(), tx.clone(), region.clone());
                let sender = m.go(move || {
                    tx2.send_with(lease(&r2, 42), Some(deadline), Some(&t))
                        .map_err(|e| (e.kind(), seq(e.value())))
                });
                kcoro::sleep(SETTLE);
                token.cancel();
                assert_eq!(sender.join(), Err((ChanError::Canceled, 42)), "{via:?}");
            }
            let z = rx.snapshot().zero_copy.unwrap();
            assert_eq!(z.canceled, if via.bounded() { 2 } else { 1 }, "{via:?}: {z:?}");
            drop((tx, rx));
            assert_eq!(region.leases(), 0);
        });
    }
}

/// Close: sends fail with `Closed` (counted as aborted), receivers drain then see
/// `Closed`; cancel discards what is buffered (counted as aborted, leases returned).
#[test]
fn close_and_cancel_count_aborts() {
    for via in [Via::Zref(Kind::Buffered), Via::Zref(Kind::Unlimited), Via::Ring] {
        let region = region();
        let (tx, rx) = via.make();
        for i in 0..3 {
            tx.send(lease(&region, i)).unwrap();
        }
        tx.close();
        assert_eq!(tx.send(lease(&region, 9)).unwrap_err().kind(), ChanError::Closed);
        assert_eq!(seq(&rx.recv().unwrap()), 0, "{via:?}: close lets receivers drain");
        assert_eq!(region.leases(), 2);
        rx.cancel();
        assert_eq!(region.leases(), 0, "{via:?}: cancel returned the buffered leases");
        assert_eq!(rx.recv().unwrap_err(), ChanError::Closed);
        let s = rx.snapshot();
        let z = s.zero_copy.unwrap();
        assert_eq!((z.sent, z.received, z.aborted_close), (3, 1, 1 + 2), "{via:?}: {z:?}");
        assert_eq!(s.cancel_discards, 2);
    }
}

#[test]
fn capabilities_and_span_bytes() {
    let region = region();
    let (tx, rx) = Builder::<ZBuf>::new(Kind::Buffered).zero_copy(zcopy::ZREF).build();
    assert_eq!(tx.capabilities(), zcopy::CAP_ZERO_COPY);
    tx.send(region.alloc(5000).unwrap()).unwrap();
    drop(rx.recv().unwrap());
    let s = rx.snapshot();
    assert_eq!((s.bytes_sent, s.bytes_recv, s.capabilities), (5000, 5000, zcopy::CAP_ZERO_COPY));
    let (ptx, _prx) = Builder::<ZDesc>::new(Kind::Unlimited).zero_copy(zcopy::ZREF).build();
    assert_eq!(ptx.capabilities(), zcopy::CAP_ZERO_COPY | zcopy::CAP_PTR);
    let (plain, _r) = kcoro::chan::buffered::<ZBuf>(1);
    assert_eq!((plain.capabilities(), plain.snapshot().zero_copy), (0, None));
    let (rtx, _rrx) = Via::Ring.make();
    assert_eq!(rtx.capacity(), Some(RING_CAP));
}

#[test]
fn unknown_backend_fails_the_build() {
    let missing = zcopy::resolve_backend("no-such-backend");
    assert!(missing.is_none());
    let bogus = BackendId::from_raw(ring().0.as_raw() + 1000); // ids are handed out in order
    let err = Builder::<ZBuf>::buffered(4).zero_copy(bogus).try_build().unwrap_err();
    assert_eq!(err.code(), -libc::ENOENT);
}

/// The ring attaches once per channel and detaches once, after its descriptors were taken
/// back (so their leases returned).
#[test]
fn backend_detaches_after_draining() {
    let (_, r) = ring();
    let region = region();
    let before = (*r.attached.lock().unwrap(), *r.detached.lock().unwrap());
    let (tx, rx) = Via::Ring.make();
    tx.send(lease(&region, 1)).unwrap();
    tx.send(lease(&region, 2)).unwrap();
    assert_eq!(region.leases(), 2);
    drop((tx, rx));
    assert_eq!(region.leases(), 0, "descriptors left in the backend came back at drop");
    let after = (*r.attached.lock().unwrap(), *r.detached.lock().unwrap());
    assert!(after.0 > before.0 && after.1 > before.1);
}

#[test]
fn deregistration_waits_for_leases_in_flight() {
    both(|m| {
        let region = region();
        let held = region.alloc(100).unwrap();
        let r = region.clone();
        // Busy with a lease out, and the region reopens.
        assert_eq!(region.deregister(SHORT), Err(ZError::Busy { leases: 1 }));
        let again = r.alloc(10).expect("a busy deregistration reopens the region");
        drop(again);
        // A lease in flight in a channel, released later by another party: waited for.
        let (tx, rx) = kcoro::chan::buffered::<ZBuf>(1);
        tx.send(held).unwrap();
        let consumer = m.go(move || {
            kcoro::sleep(SETTLE);
            drop(rx.recv().unwrap());
        });
        region.deregister(WATCHDOG).unwrap();
        consumer.join();
        assert_eq!(region.leases(), 0);
        assert!(matches!(region.alloc(10), Err(ZError::Deregistered)));
        let d = ZDesc::in_region(region.export_id(), 0, 64);
        assert!(matches!(zcopy::resolve(&d), Err(ZError::UnknownRegion(_))));
        region.deregister(SHORT).unwrap(); // idempotent
    });
}

#[test]
fn out_of_bounds_and_forged_descriptors_are_rejected() {
    let region = region();
    let id = region.export_id();
    let len = region.len();
    let ok = zcopy::resolve(&ZDesc::in_region(id, 0, len)).unwrap();
    assert_eq!(ok.len(), len);
    drop(ok);
    for (d, what) in [
        (ZDesc::in_region(id, len as u64, 1), "starts at the end"),
        (ZDesc::in_region(id, 1, len), "ends one past"),
        (ZDesc::in_region(id, u64::MAX, 2), "offset overflows"),
        (ZDesc::in_region(id, 8, usize::MAX), "length overflows"),
    ] {
        assert!(matches!(zcopy::resolve(&d), Err(ZError::OutOfBounds { .. })), "{what}");
    }
    assert_eq!(zcopy::resolve(&ZDesc::in_region(id, 0, 0)).unwrap_err(), ZError::ZeroLength);
    assert!(matches!(zcopy::resolve(&ZDesc::in_region(id ^ 0x5555, 0, 8)), Err(ZError::UnknownRegion(_))));
    let mut byte = 0u8;
    let bare = ZDesc::from_ptr((&raw mut byte).cast(), 1);
    assert_eq!(zcopy::resolve(&bare).unwrap_err(), ZError::NotARegion);
    assert_eq!(region.leases(), 0, "refused resolutions hold nothing");
    // Regions refuse what they cannot map or allocate.
    assert!(matches!(Region::anonymous(0), Err(ZError::BadLength(0))));
    assert!(matches!(region.alloc(0), Err(ZError::ZeroLength)));
    assert!(matches!(region.alloc(len + 1), Err(ZError::Exhausted { .. })));
    let mut buf = region.alloc(100).unwrap();
    assert_eq!(buf.capacity(), 128);
    assert!(matches!(buf.set_len(129), Err(ZError::BadLength(129))));
    buf.set_len(128).unwrap();
    assert_eq!(buf.len(), 128);
}

/// Caller memory adopted exactly (no rounding, no allocator): descriptors resolve to it,
/// bounds are its own length, and deregistration forgets it.
#[test]
fn register_span_adopts_exact_caller_memory() {
    let mut mem = vec![0u8; 100];
    mem[10] = 42;
    let base = mem.as_mut_ptr();
    // SAFETY: `mem` outlives the region, which is deregistered before `mem` is dropped.
    let region = unsafe { Region::register_span(base, mem.len()) }.unwrap();
    assert_eq!(region.len(), 100);
    let id = region.export_id();
    let view = zcopy::resolve(&ZDesc::in_region(id, 10, 90)).unwrap();
    assert_eq!((view.as_ptr(), view[0]), (base.wrapping_add(10).cast_const(), 42));
    assert_eq!(region.leases(), 1);
    drop(view);
    assert!(matches!(zcopy::resolve(&ZDesc::in_region(id, 10, 91)), Err(ZError::OutOfBounds { .. })));
    assert!(matches!(region.alloc(1), Err(ZError::NotOwner)));
    // SAFETY: nothing is adopted (null, zero length).
    unsafe {
        assert_eq!(Region::register_span(std::ptr::null_mut(), 8).unwrap_err(), ZError::NullPointer);
        assert_eq!(Region::register_span(base, 0).unwrap_err(), ZError::BadLength(0));
    }
    region.deregister(SHORT).unwrap();
    assert!(matches!(zcopy::resolve(&ZDesc::in_region(id, 0, 1)), Err(ZError::UnknownRegion(_))));
    drop(mem);
}

/// A file that is not a sealed memfd could be truncated under us: refused.
#[test]
fn unsealed_fds_are_refused() {
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let err = Region::from_fd(file.into(), zcopy::Access::ReadOnly).unwrap_err();
    assert_eq!(err, ZError::Unsealed);
}

/// Four threads allocate, fill, check and free leases of one region at once: no span is
/// ever shared.
#[test]
fn region_allocator_under_four_threads() {
    let region = Region::anonymous(8 << 20).unwrap();
    let threads: Vec<_> = (1..=4u8)
        .map(|t| {
            let region = region.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for i in 0..5000usize {
                    let mut b = region.alloc(1 + (i * 37 + t as usize * 11) % 5000).unwrap();
                    b.fill(t);
                    held.push(b);
                    if held.len() > 16 {
                        let b = held.swap_remove(i % held.len());
                        assert!(b.iter().all(|&x| x == t), "thread {t}: another thread wrote into my lease");
                    }
                }
                for b in held {
                    assert!(b.iter().all(|&x| x == t));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(region.leases(), 0);
}

/// A privately imported region is reachable only through its handle: no descriptor
/// resolves to it through the process-wide table, whatever id it names; its own views are
/// bounds checked and count as leases; an fd larger than the limit is not mapped at all.
#[test]
fn private_imports_resolve_only_through_their_handle() {
    // The table's size is the whole process's: counted in a child process of its own
    // (this test again), where no other test makes or drops a region meanwhile.
    const CHILD_ENV: &str = "KCORO_TEST_PRIVATE_IMPORT_CHILD";
    const CHECKED: &str = "private import checked";
    if std::env::var_os(CHILD_ENV).is_none() {
        let out =
            common::this_test_alone(module_path!(), "private_imports_resolve_only_through_their_handle")
                .env(CHILD_ENV, "1")
                .output()
                .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the check failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains(CHECKED), "the child did not check:\n{stdout}\n{stderr}");
        return;
    }
    let exporter = Region::anonymous(64 << 10).unwrap();
    let mut buf = exporter.alloc(5).unwrap();
    buf[..5].copy_from_slice(b"hello");
    let offset = buf.desc().offset;
    let fd = || exporter.fd().unwrap().try_clone_to_owned().unwrap();
    let listed = zcopy::regions();
    let private = Region::import_private(fd(), zcopy::Access::ReadOnly, 0xfeed_0001, 1 << 20).unwrap();
    assert_eq!(zcopy::regions(), listed, "a private import entered the table");
    assert_eq!(private.export_id(), 0xfeed_0001);
    assert!(matches!(
        zcopy::resolve(&ZDesc::in_region(0xfeed_0001, offset, 5)),
        Err(ZError::UnknownRegion(_))
    ));
    let view = private.view(offset, 5).unwrap();
    assert_eq!(&view[..], b"hello");
    assert_eq!(private.leases(), 1, "a view is a lease");
    drop(view);
    assert_eq!(private.leases(), 0);
    assert!(matches!(private.view(private.len() as u64 - 2, 5), Err(ZError::OutOfBounds { .. })));
    assert!(matches!(private.view(u64::MAX, 1), Err(ZError::OutOfBounds { .. })));
    // Past `max_len`: refused before mapping.
    assert!(matches!(
        Region::import_private(fd(), zcopy::Access::ReadOnly, 2, 4096),
        Err(ZError::BadLength(n)) if n == 64 << 10
    ));
    println!("{CHECKED}");
}
