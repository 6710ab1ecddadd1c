//! The parking primitive from coroutines, threads and futures; no lost wake-ups.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kcoro::Runtime;
use kcoro::park::{self, Signal, Unparker};

#[test]
fn pingpong_between_coroutines_loses_no_wakeup() {
    const ROUNDS: u64 = 20_000;
    let rt = Runtime::builder().workers(2).build().unwrap();
    let rounds = rt.block_on(|| {
        let turn = Arc::new(AtomicU64::new(0));
        let b_unparker = Arc::new(OnceLock::new());
        let a = park::current();
        let (t2, bu) = (Arc::clone(&turn), Arc::clone(&b_unparker));
        let b = kcoro::spawn(move || {
            let _ = bu.set(park::current());
            for i in 0..ROUNDS {
                while t2.load(SeqCst) != 2 * i + 1 {
                    park::park();
                }
                t2.store(2 * i + 2, SeqCst);
                a.unpark();
            }
        });
        let b_u: Unparker = loop {
            match b_unparker.get() {
                Some(u) => break u.clone(),
                None => kcoro::yield_now(),
            }
        };
        for i in 0..ROUNDS {
            turn.store(2 * i + 1, SeqCst);
            b_u.unpark();
            while turn.load(SeqCst) != 2 * i + 2 {
                park::park();
            }
        }
        b.join().unwrap();
        turn.load(SeqCst) / 2
    });
    assert_eq!(rounds, ROUNDS);
}

#[test]
fn cross_thread_unpark_of_parked_coroutines() {
    // Coroutines park; plain threads unpark them; every coroutine finishes.
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let (tx, rx) = std::sync::mpsc::channel::<(Unparker, Arc<AtomicUsize>)>();
    let joins: Vec<_> = (0..500)
        .map(|_| {
            let tx = tx.clone();
            handle.spawn(move || {
                let flag = Arc::new(AtomicUsize::new(0));
                tx.send((park::current(), Arc::clone(&flag))).unwrap();
                while flag.load(SeqCst) == 0 {
                    park::park();
                }
            })
        })
        .collect();
    drop(tx);
    let wakers: Vec<_> = rx.iter().take(500).collect();
    let threads: Vec<_> = wakers
        .chunks(125)
        .map(|c| {
            let c = c.to_vec();
            std::thread::spawn(move || {
                for (u, f) in c {
                    f.store(1, SeqCst);
                    u.unpark();
                    u.unpark(); // extra wakes are tokens, never double schedules
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for j in joins {
        j.join().unwrap();
    }
    let st = rt.stats();
    assert_eq!(st.parked, 0, "{st:?}");
}

#[test]
fn signal_waits_in_coroutine_and_thread() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    // A coroutine waits; a thread notifies.
    let s = Arc::new(Signal::new());
    let s2 = Arc::clone(&s);
    let waiter = rt.spawn(move || {
        s2.wait();
        s2.is_notified()
    });
    std::thread::sleep(Duration::from_millis(1));
    assert!(s.notify());
    assert!(waiter.join().unwrap());
    // A thread waits; a coroutine notifies.
    let t = Arc::new(Signal::new());
    let t2 = Arc::clone(&t);
    let h = rt.spawn(move || {
        kcoro::sleep(Duration::from_millis(1));
        t2.notify()
    });
    t.wait();
    assert!(h.join().unwrap());
}

#[test]
fn park_deadline_in_coroutine_times_out_without_wake() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let timed_out = rt.block_on(|| {
        let deadline = Instant::now() + Duration::from_millis(3);
        let mut spurious = 0;
        while !park::park_deadline(deadline) {
            spurious += 1;
            assert!(spurious < 1000, "park_deadline kept returning early");
        }
        Instant::now() >= deadline
    });
    assert!(timed_out);
    assert_eq!(rt.stats().timers_armed, 0, "the fired timer is gone");
}

#[test]
fn early_wake_cancels_the_timer() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let armed_after = rt.block_on(|| {
        let me = park::current();
        let h = kcoro::spawn(move || me.unpark());
        park::park_deadline(Instant::now() + Duration::from_secs(3600));
        h.join().unwrap();
        kcoro::Handle::try_current().unwrap().stats().timers_armed
    });
    assert_eq!(armed_after, 0, "cancelled on early wake, not left in the wheel");
}
