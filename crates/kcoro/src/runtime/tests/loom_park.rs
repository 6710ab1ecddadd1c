//! `coro::state::ParkState`: a parker and two unparkers in every interleaving.
//! Claims: the coroutine is scheduled exactly once if it parked, never if it did not
//! (it then saw the token), and a wake is never lost.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

use crate::coro::state::{ParkOutcome, ParkState, UnparkOutcome};

#[test]
fn loom_park_exactly_once() {
    loom::model(|| {
        let state = Arc::new(ParkState::new());
        let schedules = Arc::new(AtomicUsize::new(0));
        let unparkers: Vec<_> = (0..2)
            .map(|_| {
                let (state, schedules) = (state.clone(), schedules.clone());
                thread::spawn(move || {
                    if state.unpark() == UnparkOutcome::Schedule {
                        schedules.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        // The coroutine: park() on itself, then the worker's transition after switch-out.
        let parked = if state.take_notification() {
            false
        } else {
            state.transition_to_parked() == ParkOutcome::Parked
        };
        for u in unparkers {
            u.join().unwrap();
        }
        let n = schedules.load(SeqCst);
        if parked {
            assert_eq!(n, 1, "a parked coroutine is scheduled exactly once");
        } else {
            assert_eq!(n, 0, "a coroutine that never parked is never scheduled");
        }
    });
}

#[test]
fn loom_unpark_before_park_is_not_lost() {
    static REACHED: crate::loom::Reached = crate::loom::Reached::new();
    loom::model(|| {
        let state = Arc::new(ParkState::new());
        let s2 = state.clone();
        // The parker, which looks before it moves, on a spawned thread (see
        // `crate::loom::Reached`): on the main one loom never ran the unpark before the look.
        let parker =
            thread::spawn(
                move || {
                    if s2.take_notification() { None } else { Some(s2.transition_to_parked()) }
                },
            );
        let u = state.unpark();
        let outcome = parker.join().unwrap();
        match outcome {
            // Saw the token before switching: fine.
            None => assert_eq!(u, UnparkOutcome::Noted),
            // Token arrived during the switch: the worker re-runs it.
            Some(ParkOutcome::Notified) => assert_eq!(u, UnparkOutcome::Noted),
            // Parked first: the unparker must have scheduled it.
            Some(ParkOutcome::Parked) => assert_eq!(u, UnparkOutcome::Schedule),
        }
        REACHED.note(match outcome {
            None => "token before the switch",
            Some(ParkOutcome::Notified) => "token during the switch",
            Some(ParkOutcome::Parked) => "parked first",
        });
    });
    REACHED.assert_all(&["token before the switch", "token during the switch", "parked first"]);
}

/// Regression (found by a channel select stress): with a token already pending, a second
/// unparker used to return after a plain load, so the coroutine could consume the older
/// token, re-check its condition without seeing the second unparker's write, and park
/// with no wake-up coming. Each unparker publishes a flag (Relaxed: only the park state
/// may order it); the coroutine parks only while it cannot see both.
#[test]
fn loom_every_unparkers_write_is_seen_or_scheduled() {
    use loom::sync::atomic::AtomicBool;
    use loom::sync::atomic::Ordering::Relaxed;
    loom::model(|| {
        let state = Arc::new(ParkState::new());
        let flags = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let unparkers: Vec<_> = (0..2)
            .map(|i| {
                let (state, flags) = (state.clone(), flags.clone());
                thread::spawn(move || {
                    flags[i].store(true, Relaxed);
                    state.unpark() == UnparkOutcome::Schedule
                })
            })
            .collect();
        let mut parked = false;
        for _ in 0..3 {
            if flags.iter().all(|f| f.load(Relaxed)) {
                break;
            }
            if state.take_notification() {
                continue;
            }
            if state.transition_to_parked() == ParkOutcome::Parked {
                parked = true;
                break;
            }
        }
        let scheduled = unparkers.into_iter().map(|u| u.join().unwrap()).filter(|&s| s).count();
        if parked {
            assert_eq!(scheduled, 1, "parked without both flags: someone must schedule it");
        }
    });
}
