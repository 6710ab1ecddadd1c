//! Loom models of the channel's claim protocol: the select claim (one waiter, two
//! channels, and its own give-up racing), a buffered refill racing a close and a timing-out
//! sender, and an async receive racing a send and a close. Claims: exactly one party
//! claims a waiter; every value ends up in exactly one place; a registered waker is used
//! exactly once.

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use loom::sync::Arc;
use loom::thread;

use crate::chan::core::{Chan, Wait};
use crate::chan::flavor::{Flavor, Overflow, buffered, rendezvous};
use crate::chan::stats::Measure;
use crate::chan::waiter::{Entry, Waiter};
use crate::chan::{ChanError, future::RecvFuture};
use crate::loom::Reached;

fn chan(buf: Flavor<u32>) -> Chan<u32> {
    Chan::new(buf, Measure::Fixed(4), None, None, 0, None)
}

#[test]
fn loom_select_claim_has_one_winner() {
    static REACHED: Reached = Reached::new();
    loom::model(|| {
        let a = Arc::new(chan(Flavor::Rendezvous(rendezvous::Buffer)));
        let b = Arc::new(chan(Flavor::Rendezvous(rendezvous::Buffer)));
        let w = Waiter::for_future();
        let slot_a = UnsafeCell::new(None);
        let slot_b = UnsafeCell::new(None);
        for (c, clause, slot) in [(&a, 0, slot_a.get()), (&b, 1, slot_b.get())] {
            let mut g = c.lock();
            let wakes = c.park_receiver_locked(&mut g, Entry::new(&w, clause, slot, 0));
            drop(g);
            wakes.run();
        }
        let senders: Vec<_> = [(a.clone(), 10), (b.clone(), 20)]
            .into_iter()
            .map(|(c, v)| thread::spawn(move || c.send(v, Wait::TRY).is_ok()))
            .collect();
        let aborted = w.try_abort();
        let sent: Vec<bool> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = sent.iter().filter(|&&s| s).count() + usize::from(aborted);
        assert_eq!(winners, 1, "exactly one of two senders and the give-up wins");
        let (va, vb) = (slot_a.into_inner(), slot_b.into_inner());
        match (sent[0], sent[1]) {
            (true, false) => {
                REACHED.note("a won");
                assert_eq!((w.done(), va, vb), (Some(0), Some(10), None));
            }
            (false, true) => {
                REACHED.note("b won");
                assert_eq!((w.done(), va, vb), (Some(1), None, Some(20)));
            }
            _ => {
                REACHED.note("the give-up won");
                assert_eq!((va, vb), (None, None));
            }
        }
    });
    REACHED.assert_all(&["a won", "b won", "the give-up won"]);
}

#[test]
fn loom_buffered_refill_races_close_and_abort() {
    static REACHED: Reached = Reached::new();
    loom::model(|| {
        let c = Arc::new(chan(Flavor::Buffered(buffered::Buffer::new(1, Overflow::Suspend))));
        c.send(1, Wait::TRY).unwrap();
        let w = Waiter::for_future();
        let slot = UnsafeCell::new(Some(2));
        {
            let mut g = c.lock();
            let wakes = c.park_sender_locked(&mut g, Entry::new(&w, 0, slot.get(), 4));
            drop(g);
            wakes.run();
        }
        let rx = {
            let c = c.clone();
            thread::spawn(move || c.recv(Wait::TRY).ok())
        };
        let closer = {
            let c = c.clone();
            thread::spawn(move || c.close(false))
        };
        let aborted = w.try_abort();
        let got = rx.join().unwrap();
        assert!(closer.join().unwrap());
        assert_eq!(got, Some(1), "the buffered value is received");
        if aborted {
            // Nobody else may have touched a slot we aborted.
            let mut g = c.lock();
            c.unpark_locked(&mut g, &w);
        }
        let mut seen: Vec<u32> = got.into_iter().collect();
        while let Ok(v) = c.recv(Wait::TRY) {
            seen.push(v);
        }
        let kept = slot.into_inner();
        REACHED.note(match (aborted, kept.is_some()) {
            (true, _) => "the give-up won",
            (false, false) => "the refill moved the parked value in",
            (false, true) => "the close failed the parked sender",
        });
        seen.extend(kept);
        seen.sort_unstable();
        assert_eq!(seen, vec![1, 2], "each value in exactly one place");
    });
    REACHED.assert_all(&[
        "the give-up won",
        "the refill moved the parked value in",
        "the close failed the parked sender",
    ]);
}

struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn loom_async_recv_races_send_and_close() {
    static REACHED: Reached = Reached::new();
    loom::model(|| {
        let c = Arc::new(chan(Flavor::Rendezvous(rendezvous::Buffer)));
        let count = StdArc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let chan_ref: &Chan<u32> = &c;
        let mut fut = RecvFuture::from_chan(chan_ref);
        let first = Pin::new(&mut fut).poll(&mut cx);
        assert!(first.is_pending(), "nothing sent yet");
        let sender = {
            let c = c.clone();
            thread::spawn(move || c.send(5, Wait::TRY).is_ok())
        };
        let closer = {
            let c = c.clone();
            thread::spawn(move || c.close(false))
        };
        let sent = sender.join().unwrap();
        closer.join().unwrap();
        assert_eq!(count.0.load(SeqCst), 1, "the registered waker is used exactly once");
        let r = match Pin::new(&mut fut).poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("woken but not ready"),
        };
        assert_eq!(r, if sent { Ok(5) } else { Err(ChanError::Closed) });
        REACHED.note(if sent { "the send won" } else { "the close won" });
    });
    REACHED.assert_all(&["the send won", "the close won"]);
}
