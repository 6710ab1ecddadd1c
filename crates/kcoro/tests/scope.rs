//! Scopes and `produce`: borrowing children, failure and cancellation, panics, nesting,
//! deadlines, producers closing and stopping.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcoro::chan::{self, ChanError, Kind};
use kcoro::scope::{Policy, ScopeOptions};
use kcoro::{JoinError, Runtime, ScopeError};

const WATCHDOG: Duration = Duration::from_secs(30);

/// Runs `f` as a coroutine on a two-worker runtime; a hang fails the test.
fn on_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    let h = rt.spawn(f);
    match h.join_timeout(WATCHDOG) {
        Ok(Ok(v)) => v,
        Ok(Err(JoinError::Panicked(p))) => std::panic::resume_unwind(p),
        Ok(Err(e)) => panic!("test body did not finish: {e}"),
        Err(_) => panic!("test body hung for {WATCHDOG:?}"),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("boom {0}")]
struct Boom(u32);

// Named functions returning `()`: a closure that only panics has type `!`.
fn child_explodes() {
    panic!("child exploded");
}

fn producer_explodes() {
    panic!("producer exploded");
}

#[test]
fn children_borrow_from_the_parents_stack() {
    on_runtime(|| {
        let data: Vec<u64> = (1..=100).collect();
        let mut halves = [0u64; 2];
        let (lo, hi) = halves.split_at_mut(1);
        kcoro::scope(|s| {
            s.spawn(|| lo[0] = data[..50].iter().sum());
            s.spawn(|| hi[0] = data[50..].iter().sum());
        })
        .expect("no child fails");
        assert_eq!(halves, [1275, 3775]);
    });
}

#[test]
fn handles_join_values_and_the_body_value_is_returned() {
    on_runtime(|| {
        let base = 10u64;
        let r = kcoro::scope(|s| {
            let hs: Vec<_> = (0..20u64).map(|i| s.spawn(move || Ok::<_, Boom>(base + i))).collect();
            hs.into_iter().map(|h| h.join().expect("joined")).sum::<u64>()
        });
        assert_eq!(r.expect("ok"), 20 * 10 + 190);
    });
}

#[test]
fn first_failure_cancels_siblings_and_surfaces() {
    on_runtime(|| {
        let (_tx, rx) = chan::rendezvous::<u32>();
        let sibling_saw = Arc::new(Mutex::new(None));
        let saw = Arc::clone(&sibling_saw);
        let r = kcoro::scope(|s| {
            // Parks in a receive nobody will satisfy: only the scope's cancel ends it.
            s.spawn(move || {
                *saw.lock().unwrap() = Some(rx.recv());
            });
            s.spawn(|| Err::<(), _>(Boom(7)));
        });
        match r {
            Err(ScopeError::Failed(e)) => assert_eq!(e.to_string(), "boom 7"),
            other => panic!("expected the child's error, got {other:?}"),
        }
        assert_eq!(*sibling_saw.lock().unwrap(), Some(Err(ChanError::Canceled)));
    });
}

#[test]
fn fallout_of_a_failure_is_not_reported_as_the_error() {
    on_runtime(|| {
        let r = kcoro::scope(|s| {
            for _ in 0..8 {
                // These fail only because the scope was cancelled.
                s.spawn(|| kcoro::delay(Duration::from_secs(3600)));
            }
            s.spawn(|| Err::<(), _>(Boom(1)));
        });
        match r {
            Err(ScopeError::Failed(e)) => assert_eq!(e.to_string(), "boom 1"),
            other => panic!("expected boom 1, got {other:?}"),
        }
    });
}

#[test]
fn supervise_keeps_siblings_running() {
    on_runtime(|| {
        let finished = AtomicUsize::new(0);
        let r = kcoro::scope_with(ScopeOptions::new().supervise(), |s| {
            assert_eq!(s.policy(), Policy::Supervise);
            s.spawn(|| Err::<(), _>(Boom(2)));
            for _ in 0..5 {
                s.spawn(|| {
                    // Would return Canceled under fail-fast.
                    kcoro::delay(Duration::from_millis(5))?;
                    finished.fetch_add(1, SeqCst);
                    Ok::<_, kcoro::sync::Cancelled>(())
                });
            }
        });
        assert!(matches!(r, Err(ScopeError::Failed(ref e)) if e.to_string() == "boom 2"), "{r:?}");
        assert_eq!(finished.load(SeqCst), 5);
    });
}

#[test]
fn a_child_panic_is_reraised_at_the_scope_after_siblings_finish() {
    on_runtime(|| {
        let sibling_done = AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            kcoro::scope(|s| {
                s.spawn(|| {
                    let _ = kcoro::delay(Duration::from_secs(3600)); // cancelled by the panic
                    sibling_done.store(true, SeqCst);
                });
                s.spawn(child_explodes);
            })
        }));
        let payload = r.expect_err("the panic propagates");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"child exploded"));
        assert!(sibling_done.load(SeqCst), "the scope joined the sibling before re-raising");
    });
}

#[test]
fn a_body_panic_cancels_and_joins_the_children() {
    on_runtime(|| {
        let child_done = AtomicBool::new(false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            kcoro::scope(|s| {
                s.spawn(|| {
                    let r = kcoro::delay(Duration::from_secs(3600));
                    child_done.store(r.is_err(), SeqCst);
                });
                panic!("body exploded");
            })
        }));
        assert!(r.is_err());
        assert!(child_done.load(SeqCst), "child was cancelled and joined");
    });
}

#[test]
fn nested_scopes_cancel_downward_never_upward() {
    on_runtime(|| {
        // Inner failure: the inner scope fails, the outer sibling is untouched.
        let outer_sibling = AtomicBool::new(false);
        let r = kcoro::scope(|s| {
            s.spawn(|| {
                kcoro::delay(Duration::from_millis(20)).expect("outer sibling not cancelled");
                outer_sibling.store(true, SeqCst);
            });
            let inner = kcoro::scope(|inner| {
                inner.spawn(|| Err::<(), _>(Boom(3)));
            });
            assert!(matches!(inner, Err(ScopeError::Failed(_))));
            assert!(!s.is_cancelled(), "an inner failure does not cancel the outer scope");
        });
        r.expect("outer scope succeeds");
        assert!(outer_sibling.load(SeqCst));

        // Outer cancel: reaches a grandchild parked in an inner scope.
        let grandchild = Arc::new(Mutex::new(None));
        let g = Arc::clone(&grandchild);
        let r = kcoro::scope(|s| {
            s.spawn(move || {
                let inner = kcoro::scope(|inner| {
                    inner.spawn(move || *g.lock().unwrap() = Some(kcoro::delay(Duration::from_secs(3600))));
                });
                assert!(matches!(inner, Err(ScopeError::Cancelled)), "{inner:?}");
            });
            kcoro::sleep(Duration::from_millis(5));
            s.cancel();
        });
        r.expect("an owner's cancel is not a failure");
        assert_eq!(*grandchild.lock().unwrap(), Some(Err(kcoro::sync::Cancelled)));
    });
}

#[test]
fn deadline_cancels_and_is_reported() {
    on_runtime(|| {
        let start = Instant::now();
        let r = kcoro::scope_with_deadline(start + Duration::from_millis(20), |s| {
            s.spawn(|| kcoro::delay(Duration::from_secs(3600)));
        });
        assert!(matches!(r, Err(ScopeError::DeadlineExceeded)), "{r:?}");
        assert!(start.elapsed() >= Duration::from_millis(20), "never early");
        // Children that finish in time: no error.
        let r = kcoro::scope_with(ScopeOptions::new().timeout(Duration::from_secs(3600)), |s| {
            s.spawn(|| kcoro::delay(Duration::from_millis(1)));
            7
        });
        assert_eq!(r.expect("in time"), 7);
    });
}

#[test]
fn children_see_the_scope_token_as_their_ambient_token() {
    on_runtime(|| {
        let r = kcoro::scope(|s| {
            let outer = s.token().clone();
            s.spawn(move || {
                let mine = kcoro::sync::current_token().expect("a child runs under a token");
                assert!(!mine.is_cancelled());
                outer.cancel();
                assert!(mine.is_cancelled());
            });
        });
        // Only `Scope::cancel` is the owner's own cancel; the raw token is anyone's.
        assert!(matches!(r, Err(ScopeError::Cancelled)), "{r:?}");
        let r = kcoro::scope(|s| {
            s.spawn(|| s.cancel());
        });
        r.expect("a child may cancel its scope through Scope::cancel");
    });
}

#[test]
fn outside_cancellation_is_reported_as_cancelled() {
    on_runtime(|| {
        let token = kcoro::sync::CancelToken::new();
        let t2 = token.clone();
        let r = kcoro::sync::with_token(token, || {
            kcoro::scope(|s| {
                s.spawn(|| kcoro::delay(Duration::from_secs(3600)));
                t2.cancel();
            })
        });
        assert!(matches!(r, Err(ScopeError::Cancelled)), "{r:?}");
    });
}

#[test]
fn scope_outside_a_runtime_is_an_error() {
    let r = kcoro::scope(|_| ());
    assert!(matches!(r, Err(ScopeError::Runtime(kcoro::Error::NoRuntime))), "{r:?}");
}

#[test]
fn spawn_failure_fails_the_scope() {
    let rt = Runtime::builder().workers(1).max_stacks(1).build().expect("runtime");
    let h = rt.spawn(|| {
        kcoro::scope(|s| {
            let h = s.spawn(|| ());
            matches!(h.join(), Err(JoinError::Spawn(_)))
        })
    });
    let r = h.join_timeout(WATCHDOG).expect("in time").expect("no panic");
    assert!(matches!(r, Err(ScopeError::Failed(ref e)) if e.to_string().contains("spawn")), "{r:?}");
}

#[test]
fn producer_closes_its_channel_on_return_and_on_panic() {
    on_runtime(|| {
        let rx = kcoro::produce(Kind::Buffered, |tx| {
            for i in 0..10u32 {
                tx.send(i)?;
            }
            Ok::<_, chan::SendError<u32>>(())
        });
        assert_eq!(rx.iter().collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        assert_eq!(rx.recv(), Err(ChanError::Closed));

        let rx = kcoro::produce(Kind::Unlimited, |tx| {
            tx.send(1u32).expect("send");
            producer_explodes();
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Err(ChanError::Closed), "a panic closes the channel");
    });
}

#[test]
fn cancelling_the_consumer_stops_the_producer() {
    on_runtime(|| {
        let stopped = Arc::new(Mutex::new(None));
        let s2 = Arc::clone(&stopped);
        let rx = kcoro::produce(Kind::Rendezvous, move |tx| {
            tx.send(1u32).expect("first value taken");
            // Parked in something other than the channel: only the token can wake it.
            let r = kcoro::delay(Duration::from_secs(3600));
            *s2.lock().unwrap() = Some(r);
            drop(tx);
        });
        assert_eq!(rx.recv(), Ok(1));
        drop(rx); // the last receiver: cancels the channel and the producer
        let deadline = Instant::now() + WATCHDOG;
        while stopped.lock().unwrap().is_none() {
            assert!(Instant::now() < deadline, "producer never stopped");
            kcoro::sleep(Duration::from_millis(1));
        }
        assert_eq!(*stopped.lock().unwrap(), Some(Err(kcoro::sync::Cancelled)));
    });
}

#[test]
fn scoped_producer_fails_the_scope_but_consumer_cancel_does_not() {
    on_runtime(|| {
        let r = kcoro::scope(|s| {
            let rx = s.produce(Kind::Rendezvous, |tx| {
                tx.send(1u8).map_err(|_| Boom(8))?;
                Err::<(), _>(Boom(9))
            });
            assert_eq!(rx.recv(), Ok(1));
        });
        assert!(matches!(r, Err(ScopeError::Failed(_))), "{r:?}");

        let r = kcoro::scope(|s| {
            let rx = s.produce(Kind::Rendezvous, |tx| {
                for i in 0.. {
                    tx.send(i)?; // fails once the consumer cancels
                }
                Ok::<_, chan::SendError<u64>>(())
            });
            assert_eq!(rx.recv(), Ok(0));
            rx.cancel();
        });
        r.expect("a producer stopped by its consumer is not a failure");
    });
}
