//! The coroutine view against real waits, and the deadlock check against a real deadlock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::time::{Duration, Instant};

use super::*;
use crate::chan::{self, Builder as ChanBuilder};
use crate::{Handle, Runtime};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap_or_else(|e| panic!("{e}"))
}

/// Looks until coroutine `id` satisfies `pred`; fails (rather than hangs) after 20 s.
fn until(h: &Handle, id: u64, pred: impl Fn(&Coroutine) -> bool) -> Coroutine {
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let all = h.coroutines();
        if let Some(c) = all.iter().find(|c| c.id == id && pred(c)) {
            return c.clone();
        }
        assert!(Instant::now() < give_up, "coroutine {id} never got there; last seen: {all:#?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn parked(c: &Coroutine) -> bool {
    c.state == State::Parked && c.wait.is_some()
}

#[test]
fn each_wait_is_named_with_its_channel_and_spawn_site() {
    let rt = runtime(2);
    let h = rt.handle();
    let (tx, rx) = ChanBuilder::<u32>::buffered(1).name("jobs").build();
    let (rtx, rrx) = chan::rendezvous::<u32>();
    let (atx, arx) = ChanBuilder::<u32>::buffered(1).name("a").build();
    let (btx, brx) = ChanBuilder::<u32>::buffered(1).name("b").build();
    let line = line!() + 1;
    let receiver = rt.spawn(move || rx.recv());
    let sender = rt.spawn(move || rtx.send(1));
    let selector = rt.spawn(move || {
        crate::select! {
            recv(arx) -> v => v.map(|_| ()),
            recv(brx) -> v => v.map(|_| ()),
        }
    });
    let sleeper = rt.spawn(|| crate::sleep(Duration::from_secs(600)));
    let lock = Arc::new(crate::sync::Mutex::new(()));
    let held = lock.lock().unwrap_or_else(|e| panic!("{e}"));
    let lock2 = Arc::clone(&lock);
    let locker = rt.spawn(move || drop(lock2.lock()));
    let target = receiver.id();
    let joiner = rt.spawn(move || {
        // Joins the receiver's twin: a coroutine that waits on `jobs` too.
        let (_keep, rx2) = ChanBuilder::<u32>::buffered(1).name("never").build();
        let inner = crate::spawn(move || rx2.recv());
        let id = inner.id();
        (id, inner.join().is_ok())
    });

    let r = until(&h, target, parked);
    assert_eq!(r.wait.as_ref().map(ToString::to_string).as_deref(), Some("recv on jobs"));
    assert_eq!((r.spawned_at.file(), r.spawned_at.line()), (file!(), line), "the spawn site is the caller's");
    assert!(r.worker.is_some_and(|w| w < 2), "{r:?}");
    assert_eq!(r.deadline_in, None);

    let s = until(&h, sender.id(), parked);
    match &s.wait {
        Some(WaitOn::Send(c)) => assert_eq!(c.name, None, "an unnamed channel is named by id"),
        other => panic!("sender waits on {other:?}"),
    }
    assert!(s.wait.as_ref().is_some_and(|w| w.to_string().starts_with("send on channel #")));

    let sel = until(&h, selector.id(), parked);
    assert_eq!(sel.wait.as_ref().map(ToString::to_string).as_deref(), Some("select over 2: recv a, recv b"));

    let sl = until(&h, sleeper.id(), parked);
    assert_eq!(sl.wait, Some(WaitOn::Sleep));
    assert!(
        sl.deadline_in.is_some_and(|d| d <= Duration::from_secs(600) && d > Duration::from_secs(500)),
        "{sl:?}"
    );

    let lk = until(&h, locker.id(), parked);
    assert_eq!(lk.wait, Some(WaitOn::Sync("lock")));

    let jn = until(&h, joiner.id(), |c| parked(c) && matches!(c.wait, Some(WaitOn::Join(_))));
    let Some(WaitOn::Join(inner)) = jn.wait else { unreachable!() };
    let inner_seen = until(&h, inner, parked);
    assert_eq!(inner_seen.wait.as_ref().map(ToString::to_string).as_deref(), Some("recv on never"));

    // Let everything go.
    tx.send(1).unwrap_or_else(|e| panic!("{e}"));
    assert!(receiver.join().is_ok());
    assert!(rrx.recv().is_ok());
    assert!(sender.join().is_ok());
    atx.send(1).unwrap_or_else(|e| panic!("{e}"));
    assert!(selector.join().is_ok());
    drop((btx, held));
    assert!(locker.join().is_ok());
    drop(sleeper); // left parked; shutdown unwinds it
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(joiner);
}

#[test]
fn parked_for_grows_within_one_park_and_restarts_with_the_next() {
    let rt = runtime(1);
    let h = rt.handle();
    let (tx, rx) = chan::buffered::<u32>(1);
    let c = rt.spawn(move || {
        let a = rx.recv();
        let b = rx.recv();
        (a, b)
    });
    let first = until(&h, c.id(), parked);
    assert_eq!(first.parked_for, Some(Duration::ZERO), "the first look starts the count");
    std::thread::sleep(Duration::from_millis(30));
    let later = until(&h, c.id(), parked);
    assert_eq!(later.park_seq, first.park_seq);
    assert!(later.parked_for.is_some_and(|d| d >= Duration::from_millis(30)), "{later:?}");
    tx.send(1).unwrap_or_else(|e| panic!("{e}"));
    let next = until(&h, c.id(), |x| parked(x) && x.park_seq != first.park_seq);
    assert_eq!(next.parked_for, Some(Duration::ZERO), "a new park counts from zero: {next:?}");
    tx.send(2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.join().ok(), Some((Ok(1), Ok(2))));
}

#[test]
fn a_spinning_coroutine_is_running_and_a_queued_one_runnable() {
    let rt = runtime(1);
    let h = rt.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let spinner = rt.spawn(move || {
        while !s2.load(Acquire) {
            std::hint::spin_loop();
        }
    });
    let running = until(&h, spinner.id(), |c| c.state == State::Running);
    assert_eq!(running.wait, None);
    // One worker, busy: a new coroutine waits in its queue.
    let queued = rt.spawn(|| ());
    let q = until(&h, queued.id(), |_| true);
    assert_eq!(q.state, State::Runnable);
    assert_eq!(q.worker, None, "not started yet");
    stop.store(true, Release);
    assert!(spinner.join().is_ok() && queued.join().is_ok());
}

/// Two coroutines, each receiving from the channel only the other sends on.
/// Two coroutines that wait on each other. Both are spawned by a third, which runs until
/// both exist: spawned one by one from this thread, "one" could sit parked alone long
/// enough (on a busy machine) to be seen as a deadlock of one coroutine.
fn crossed(rt: &Runtime) -> (crate::JoinHandle<()>, crate::JoinHandle<()>) {
    let (a_tx, a_rx) = ChanBuilder::<u32>::buffered(1).name("left").build();
    let (b_tx, b_rx) = ChanBuilder::<u32>::buffered(1).name("right").build();
    let h = rt.handle();
    let both = rt.spawn(move || {
        let one = h.spawn_with_name("one", move || {
            let _ = b_rx.recv();
            let _ = a_tx.send(1);
        });
        let two = h.spawn_with_name("two", move || {
            let _ = a_rx.recv();
            let _ = b_tx.send(1);
        });
        (one, two)
    });
    both.join().unwrap_or_else(|e| panic!("{e}"))
}

impl Handle {
    fn spawn_with_name(&self, name: &str, f: impl FnOnce() + Send + 'static) -> crate::JoinHandle<()> {
        self.spawn_with(crate::SpawnOptions::new().name(name), f).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn deadlocked(h: &Handle) -> Deadlock {
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(d) = h.deadlock() {
            return d;
        }
        assert!(Instant::now() < give_up, "no deadlock seen; coroutines: {:#?}", h.coroutines());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_crossed_wait_is_a_deadlock_naming_both_coroutines_and_channels() {
    let rt = runtime(2);
    let h = rt.handle();
    let (one, two) = crossed(&rt);
    let d = deadlocked(&h);
    let text = d.to_string();
    assert_eq!(d.coroutines.len(), 2, "{text}");
    assert!(text.contains("\"one\" waits on recv on right"), "{text}");
    assert!(text.contains("\"two\" waits on recv on left"), "{text}");
    assert_eq!(d.key(), deadlocked(&h).key(), "nothing moves in a deadlock");
    // A coroutine that sleeps, or waits with a deadline, can still move things.
    let sleeper = rt.spawn(|| crate::sleep(Duration::from_millis(300)));
    until(&h, sleeper.id(), parked);
    assert_eq!(h.deadlock(), None, "a sleeping coroutine will wake");
    assert!(sleeper.join().is_ok());
    // Looked for until seen: a thread of another test of this process waiting in kcoro
    // with a deadline makes a single look find none, by design.
    assert_eq!(deadlocked(&h).key(), d.key(), "the same deadlock once the sleeper is gone");
    drop((one, two));
}

#[test]
fn no_deadlock_while_a_coroutine_runs_or_without_detail() {
    let rt = Runtime::builder().workers(1).coroutine_detail(false).build().unwrap_or_else(|e| panic!("{e}"));
    let h = rt.handle();
    let (one, _two) = crossed(&rt);
    let seen = until(&h, one.id(), |c| c.state == State::Parked);
    assert_eq!(seen.wait, None, "no detail kept");
    assert_eq!(h.deadlock(), None, "without detail nothing is claimed");
}

#[test]
fn on_deadlock_fail_makes_try_block_on_return_the_report() {
    let rt = Runtime::builder()
        .workers(2)
        .on_deadlock(OnDeadlock::Fail, Duration::from_millis(100))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = rt
        .try_block_on(|| {
            let (_l_tx, l_rx) = ChanBuilder::<u32>::buffered(1).name("left").build();
            let (r_tx, r_rx) = ChanBuilder::<u32>::buffered(1).name("right").build();
            let other = crate::spawn(move || {
                let _ = l_rx.recv();
                let _ = r_tx.send(1);
            });
            let _ = r_rx.recv();
            drop(other);
        })
        .err();
    let Some(crate::Error::Deadlock(report)) = err else { panic!("no deadlock error: {err:?}") };
    let text = report.to_string();
    assert!(text.contains("waits on recv on left") && text.contains("waits on recv on right"), "{text}");
    assert!(
        report.threads.iter().any(|t| matches!(t.wait, WaitOn::Join(_))),
        "block_on's thread waits too: {text}"
    );
}

#[test]
fn on_deadlock_call_reports_once_per_deadlock() {
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let rt = Runtime::builder()
        .workers(1)
        .on_deadlock(
            OnDeadlock::Call(Arc::new(move |d: &Deadlock| {
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(d.key())
            })),
            Duration::from_millis(20),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let _pair = crossed(&rt);
    let give_up = Instant::now() + Duration::from_secs(20);
    while calls.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
        assert!(Instant::now() < give_up, "never called");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    {
        let calls = calls.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(calls.len(), 1, "one deadlock, one call: {calls:?}");
        assert_eq!(calls[0].len(), 2, "both coroutines in it: {calls:?}");
    }
    // A thread parked in kcoro with a deadline (here, or in any other test of this
    // process) makes the check find no deadlock while it waits; once it is gone, the
    // same parks are the same deadlock, not a new one to report.
    let (_keep, idle) = chan::buffered::<u32>(1);
    assert_eq!(idle.recv_timeout(Duration::from_millis(150)), Err(chan::ChanError::Timeout));
    std::thread::sleep(Duration::from_millis(200));
    let calls = calls.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(calls.len(), 1, "the same deadlock again, no second call: {calls:?}");
}

#[test]
fn a_thread_receiving_is_listed_as_a_waiter() {
    let (tx, rx) = ChanBuilder::<u32>::buffered(1).name("to-thread").build();
    let t = std::thread::Builder::new()
        .name("listener".into())
        .spawn(move || rx.recv())
        .unwrap_or_else(|e| panic!("{e}"));
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = threads_waiting();
        if let Some(w) = waiting.iter().find(|w| w.thread == "listener") {
            assert_eq!(w.wait.to_string(), "recv on to-thread");
            assert!(!w.deadline);
            break;
        }
        assert!(Instant::now() < give_up, "the thread never showed: {waiting:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    tx.send(3).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.join().ok(), Some(Ok(3)));
    assert!(!threads_waiting().iter().any(|w| w.thread == "listener"), "gone once it returned");
}
