//! `holders::Holders`: leases end and the last handle drops while a deregistration drains;
//! a lease starts while the last holder leaves. Claims: the drain learns of the last lease
//! exactly once (no lost wake-up, no second one), and the holders' strong count is taken
//! and given back in pairs, never given back twice.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

use crate::zcopy::holders::Holders;

/// Gives back one holders' count, checking one was held.
fn give_back(group: &AtomicUsize) {
    assert!(group.fetch_sub(1, SeqCst) >= 1, "the holders' count was given back twice");
}

#[test]
fn loom_holders_the_drain_hears_of_the_last_lease_once() {
    loom::model(|| {
        let h = Arc::new(Holders::with_one_handle());
        let group = Arc::new(AtomicUsize::new(1));
        let told = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let s = h.start();
            assert!(!s.first_holder && !s.refused);
        }
        let enders: Vec<_> = (0..2)
            .map(|_| {
                let (h, group, told) = (h.clone(), group.clone(), told.clone());
                thread::spawn(move || {
                    let e = h.end().unwrap_or_else(|| h.end_draining());
                    if e.drained {
                        told.fetch_add(1, SeqCst);
                    }
                    if e.last_holder {
                        give_back(&group);
                    }
                })
            })
            .collect();
        let handle = {
            let (h, group) = (h.clone(), group.clone());
            thread::spawn(move || {
                if h.drop_handle().last_holder {
                    give_back(&group);
                }
            })
        };
        let alive = h.drain().expect("the only deregistration");
        for t in enders {
            t.join().unwrap();
        }
        handle.join().unwrap();
        assert_eq!(told.load(SeqCst), usize::from(alive > 0), "drain saw {alive} leases");
        assert_eq!(h.leases(), 0);
        assert_eq!(group.load(SeqCst), 0, "no holder left, the count is back");
        h.close();
        assert!(h.start().refused, "no lease after deregistration");
    });
}

#[test]
fn loom_holders_a_lease_starting_as_the_last_holder_leaves() {
    static REACHED: crate::loom::Reached = crate::loom::Reached::new();
    loom::model(|| {
        let h = Arc::new(Holders::with_one_handle());
        let group = Arc::new(AtomicUsize::new(1));
        assert!(!h.start().first_holder);
        assert!(!h.drop_handle().last_holder, "the lease still holds");
        // The last holder leaves on one thread while another (holding a strong count of
        // its own, as a table lookup does) starts and ends a lease.
        let leaver = {
            let (h, group) = (h.clone(), group.clone());
            thread::spawn(move || {
                if h.end().expect("no drain").last_holder {
                    give_back(&group);
                }
            })
        };
        let s = h.start();
        assert!(!s.refused);
        if s.first_holder {
            group.fetch_add(1, SeqCst);
        }
        REACHED.note(if s.first_holder { "started as the first holder" } else { "joined a holder" });
        if h.end().expect("no drain").last_holder {
            give_back(&group);
        }
        leaver.join().unwrap();
        assert_eq!(group.load(SeqCst), 0);
        assert_eq!(h.leases(), 0);
    });
    REACHED.assert_all(&["started as the first holder", "joined a holder"]);
}
