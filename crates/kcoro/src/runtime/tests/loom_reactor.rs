//! `ReactorFlag`: a worker going to wait in the reactor against a waker that changes its
//! sleep state. Claim: if the worker decides to wait, the waker interrupts the reactor —
//! no wake-up is lost whichever runs first.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use loom::thread;

use crate::runtime::reactor_flag::ReactorFlag;

const SLEEPING: u8 = 1;
const WOKEN: u8 = 3;

#[test]
fn loom_a_worker_waiting_in_the_reactor_is_always_interrupted() {
    static REACHED: crate::loom::Reached = crate::loom::Reached::new();
    loom::model(|| {
        let flag = Arc::new(ReactorFlag::default());
        let state = Arc::new(AtomicU8::new(SLEEPING));
        let interrupted = Arc::new(AtomicBool::new(false));
        let waker = {
            let (flag, state, interrupted) = (flag.clone(), state.clone(), interrupted.clone());
            thread::spawn(move || {
                state.store(WOKEN, SeqCst);
                if flag.is_polling() {
                    interrupted.store(true, SeqCst);
                }
            })
        };
        let waits = flag.enter(|| state.load(SeqCst) == SLEEPING);
        // A worker that waits stays in the reactor (flag set) until something interrupts
        // it: so it must be the waker, running meanwhile.
        waker.join().unwrap();
        if waits {
            assert!(interrupted.load(SeqCst), "the worker waits in the reactor and nobody interrupts it");
        }
        REACHED.note(if waits { "waits" } else { "saw the wake first" });
        flag.leave();
    });
    REACHED.assert_all(&["waits", "saw the wake first"]);
}
