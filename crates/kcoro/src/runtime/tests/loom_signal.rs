//! `park::Signal`: one waiter registering (twice, as a re-polled future does) against two
//! notifiers. Claims: one notify wins; a registered waiter is woken exactly once; a
//! waiter that lost the race to register sees the notification instead.

use std::sync::Arc as StdArc;
use std::task::{Wake, Waker};

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

use crate::park::{Signal, Unparker};

struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn loom_signal_wakes_exactly_once() {
    loom::model(|| {
        let signal = Arc::new(Signal::new());
        let count = StdArc::new(Count(AtomicUsize::new(0)));
        let notifiers: Vec<_> = (0..2)
            .map(|_| {
                let s = signal.clone();
                thread::spawn(move || s.notify())
            })
            .collect();
        let w = Waker::from(count.clone());
        let first = signal.register(Unparker::from_waker(w.clone()));
        let second = first && signal.register(Unparker::from_waker(w));
        let wins = notifiers.into_iter().map(|n| n.join().unwrap()).filter(|&w| w).count();
        assert_eq!(wins, 1);
        assert!(signal.is_notified());
        let woken = count.0.load(SeqCst);
        if second {
            assert_eq!(woken, 1, "registered waiter must be woken exactly once");
        } else {
            assert!(woken <= 1, "never woken twice");
        }
    });
}
