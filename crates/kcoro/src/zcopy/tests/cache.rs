//! The thread caches (`zcopy::cache`) and the holders word seen through `Region` and
//! `ZBuf`: blocks come back to whoever needs them, and a lease alone keeps its region.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc;

use crate::zcopy::{Region, ZBuf, ZDesc, ZError, ZeroCopy, cache};

/// 4 KiB leases: a 64 KiB region holds sixteen, a thread caches up to eight.
const LEASE: usize = 4 << 10;
const BLOCKS: usize = 16;

fn one_slab() -> Region {
    Region::anonymous(64 << 10).unwrap()
}

/// Leases until the region says it is exhausted.
fn all_leases(region: &Region) -> Vec<ZBuf> {
    let mut held = Vec::new();
    loop {
        match region.alloc(LEASE) {
            Ok(b) => held.push(b),
            Err(ZError::Exhausted { .. }) => return held,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_thread_takes_back_the_blocks_it_freed() {
    let region = Region::anonymous(1 << 20).unwrap();
    let first: Vec<ZBuf> = (0..10).map(|_| region.alloc(64).unwrap()).collect();
    let offsets: HashSet<u64> = first.iter().map(|b| b.desc().offset).collect();
    // What the last refill from the shared list left in the chain.
    let refilled = cache::cached(&region.inner);
    drop(first);
    assert_eq!(cache::cached(&region.inner), refilled + 10, "freed into this thread's chain");
    let again: Vec<ZBuf> = (0..10).map(|_| region.alloc(64).unwrap()).collect();
    assert_eq!(again.iter().map(|b| b.desc().offset).collect::<HashSet<_>>(), offsets, "last in, first out");
    assert_eq!(cache::cached(&region.inner), refilled);
    assert_eq!(region.leases(), 10);
}

#[test]
fn a_chain_never_holds_more_than_its_cap() {
    let region = Region::anonymous(1 << 20).unwrap();
    let held: Vec<ZBuf> = (0..100).map(|_| region.alloc(64).unwrap()).collect();
    drop(held);
    let cached = cache::cached(&region.inner);
    assert!((1..=32).contains(&cached), "{cached} blocks of 64 B cached");
    let big: Vec<ZBuf> = (0..40).map(|_| region.alloc(LEASE).unwrap()).collect();
    drop(big);
    assert!(cache::cached(&region.inner) - cached <= 8, "4 KiB blocks: 32 KiB a chain");
}

#[test]
fn every_block_of_a_full_region_comes_back_from_a_thread_that_only_drops() {
    let region = one_slab();
    let held = all_leases(&region);
    assert_eq!(held.len(), BLOCKS);
    let (done_tx, done_rx) = mpsc::channel();
    let (end_tx, end_rx) = mpsc::channel::<()>();
    let consumer = std::thread::spawn(move || {
        drop(held);
        done_tx.send(()).unwrap();
        // Stays alive, idle: a cache here would keep the blocks from the producer.
        let _ = end_rx.recv();
    });
    done_rx.recv().unwrap();
    let again = all_leases(&region);
    assert_eq!(again.len(), BLOCKS, "the consumer kept blocks it never allocates");
    drop(end_tx);
    consumer.join().unwrap();
}

#[test]
fn an_allocation_that_finds_nothing_calls_other_threads_blocks_back() {
    let region = one_slab();
    let (cached_tx, cached_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let other = {
        let region = region.clone();
        std::thread::spawn(move || {
            // Allocates and frees here: this thread caches the region's blocks.
            let mut mine: Vec<ZBuf> = (0..6).map(|_| region.alloc(LEASE).unwrap()).collect();
            let kept = mine.pop().unwrap();
            drop(mine);
            cached_tx.send(cache::cached(&region.inner)).unwrap();
            go_rx.recv().unwrap();
            // Its next lease operation on the region gives the cache back first.
            drop(kept);
            cached_tx.send(cache::cached(&region.inner)).unwrap();
            go_rx.recv().unwrap();
        })
    };
    let cached = cached_rx.recv().unwrap() as usize;
    assert!(cached >= 5, "the other thread caches its five freed blocks ({cached})");
    let mut held = all_leases(&region);
    assert_eq!(held.len(), BLOCKS - 1 - cached, "the kept lease and the other cache are out");
    go_tx.send(()).unwrap();
    let cached_after = cached_rx.recv().unwrap() as usize;
    assert_eq!(cached_after, 1, "gave its cache back, then cached the lease it dropped");
    held.extend(all_leases(&region));
    assert_eq!(held.len(), BLOCKS - cached_after);
    go_tx.send(()).unwrap();
    other.join().unwrap();
    // The other thread ended: its last block came back with it.
    held.extend(all_leases(&region));
    assert_eq!(held.len(), BLOCKS);
}

#[test]
fn a_thread_that_ends_gives_its_blocks_back() {
    let region = one_slab();
    let r = region.clone();
    std::thread::spawn(move || drop((0..8).map(|_| r.alloc(LEASE).unwrap()).collect::<Vec<_>>()))
        .join()
        .unwrap();
    assert_eq!(all_leases(&region).len(), BLOCKS);
}

#[test]
fn leases_dropped_by_another_thread_local_as_its_thread_ends_come_back() {
    thread_local! {
        static KEPT: std::cell::RefCell<Vec<ZBuf>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // Thread-locals are torn down in the reverse order of their first use: touching KEPT
    // before the first lease drops its leases after the cache closed, touching it after
    // drops them into the cache before it closes.
    for kept_first in [true, false] {
        let region = one_slab();
        let r = region.clone();
        std::thread::spawn(move || {
            if kept_first {
                KEPT.with(|_| ());
            }
            drop(r.alloc(LEASE).unwrap());
            KEPT.with(|k| k.borrow_mut().extend((0..4).map(|_| r.alloc(LEASE).unwrap())));
        })
        .join()
        .unwrap();
        assert_eq!(all_leases(&region).len(), BLOCKS, "kept_first: {kept_first}");
    }
}

#[test]
fn a_lease_alone_keeps_its_region_mapped() {
    let region = Region::anonymous(1 << 20).unwrap();
    let weak = Arc::downgrade(&region.inner);
    let mut buf = region.alloc(100).unwrap();
    let desc = region.alloc(200).unwrap().into_desc();
    drop(region);
    buf.fill(7);
    assert!(weak.upgrade().is_some(), "two leases hold the region");
    drop(buf);
    assert!(weak.upgrade().is_some(), "the descriptor in flight holds it");
    // SAFETY: `desc` came from `into_desc` and is reclaimed once.
    let back = unsafe { ZBuf::from_desc(desc) };
    assert_eq!(back.len(), 200);
    drop(back);
    assert!(weak.upgrade().is_none(), "the last lease unmapped it");
}

#[test]
fn a_clone_of_the_handle_keeps_it_and_a_refused_lease_counts_nothing() {
    let region = one_slab();
    let weak = Arc::downgrade(&region.inner);
    let other = region.clone();
    region.deregister(std::time::Duration::ZERO).unwrap();
    assert!(matches!(other.alloc(10), Err(ZError::Deregistered)));
    assert_eq!(other.leases(), 0);
    let d = ZDesc::in_region(other.export_id(), 0, 8);
    assert!(matches!(crate::zcopy::resolve(&d), Err(ZError::UnknownRegion(_))));
    drop(region);
    assert!(weak.upgrade().is_some(), "a clone is a handle");
    drop(other);
    assert!(weak.upgrade().is_none());
}

/// Caller memory for a region (`Region::register`): Miri cannot map a memfd, so these
/// paths are checked under Miri through registered memory
/// (`cargo +nightly miri test -p kcoro --lib zcopy::tests::cache::registered`).
/// Each test declares its memory first, so it is freed last: after every handle and lease.
fn registered(mem: &mut [u8]) -> Region {
    // SAFETY: the caller keeps `mem` alive, untouched, until the region and its leases are
    // gone (or deregistered).
    unsafe { Region::register(mem.as_mut_ptr(), mem.len()) }.unwrap()
}

fn memory() -> Vec<u8> {
    vec![0u8; 64 << 10]
}

#[test]
fn registered_a_lease_outlives_its_handle_and_a_descriptor_comes_back() {
    let mut mem = memory();
    let region = registered(&mut mem);
    let mut b = region.alloc(100).unwrap();
    let d = region.alloc(100).unwrap().into_desc();
    drop(region);
    b[0] = 1;
    drop(b);
    // SAFETY: `d` came from `into_desc` and is reclaimed once.
    drop(unsafe { ZBuf::from_desc(d) });
}

#[test]
fn registered_a_lease_ends_while_a_deregistration_waits() {
    let mut mem = memory();
    let region = registered(&mut mem);
    let b = region.alloc(100).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(b);
    });
    region.deregister(std::time::Duration::from_secs(10)).unwrap();
    t.join().unwrap();
    assert_eq!(region.leases(), 0);
}

#[test]
fn registered_a_view_is_refused_while_a_deregistration_waits() {
    let mut mem = memory();
    let region = registered(&mut mem);
    let b = region.alloc(100).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| region.deregister(std::time::Duration::from_secs(10)).unwrap());
        while region.view(0, 8).is_ok() {
            std::thread::yield_now();
        }
        drop(b);
    });
    assert!(matches!(region.view(0, 8), Err(ZError::Deregistered)));
}
