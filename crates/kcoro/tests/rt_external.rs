//! External coroutines (`park::enter_external`): a coroutine kcoro does not schedule, driven
//! by hand on corosensei, waits in channel operations and is completed by its resumer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult, Yielder};
use kcoro::chan::{self, ChanError};
use kcoro::park::{self, ExternalCoroutine, Unpark, Unparker};
use kcoro::{Runtime, coro};

/// The smallest external coroutine: parking switches back to the resumer; an unpark sets
/// a flag the resumer reads before resuming again.
struct Hand {
    woken: AtomicBool,
    parks: AtomicUsize,
    /// The coroutine's `Yielder`, stored by the coroutine itself when it starts.
    yielder: AtomicUsize,
    me: Weak<Hand>,
}

impl Hand {
    fn new() -> Arc<Hand> {
        Arc::new_cyclic(|me| Hand {
            woken: AtomicBool::new(false),
            parks: AtomicUsize::new(0),
            yielder: AtomicUsize::new(0),
            me: me.clone(),
        })
    }

    /// Runs `co` until it parks or returns, with `self` as the thread's external coroutine.
    fn resume<R>(self: &Arc<Self>, co: &mut Coroutine<(), (), R>) -> CoroutineResult<(), R> {
        self.woken.store(false, SeqCst);
        let _guard = park::enter_external(Arc::clone(self) as Arc<dyn ExternalCoroutine>);
        co.resume(())
    }
}

impl Unpark for Hand {
    fn unpark(&self) {
        self.woken.store(true, SeqCst);
    }
}

impl ExternalCoroutine for Hand {
    fn park(&self, _deadline: Option<Instant>) {
        if self.woken.swap(false, SeqCst) {
            return;
        }
        self.parks.fetch_add(1, SeqCst);
        let y = self.yielder.load(SeqCst) as *const Yielder<(), ()>;
        assert!(!y.is_null(), "Hand::park before the coroutine started");
        // SAFETY: `park` runs on the coroutine's own stack (kcoro calls it from the waiting
        // operation), where the yielder stored at its start lives until it returns.
        unsafe { (*y).suspend(()) };
    }

    fn unparker(&self) -> Unparker {
        let me = self.me.upgrade().expect("Hand::unparker: the coroutine is alive while it runs");
        Unparker::from_unpark(me)
    }
}

fn start<R: 'static>(hand: &Arc<Hand>, f: impl FnOnce() -> R + 'static) -> Coroutine<(), (), R> {
    let h = Arc::clone(hand);
    Coroutine::new(move |y: &Yielder<(), ()>, ()| {
        h.yielder.store(y as *const _ as usize, SeqCst);
        f()
    })
}

#[test]
fn parked_recv_is_completed_by_the_resumers_send() {
    let hand = Hand::new();
    let (tx, rx) = chan::rendezvous::<u32>();
    let probe = Arc::clone(&hand);
    let mut co = start(&hand, move || {
        assert!(park::current().same(&probe.unparker()), "inside, current() is the external coroutine");
        rx.recv().unwrap() * 2
    });
    assert!(matches!(hand.resume(&mut co), CoroutineResult::Yield(())), "parks in recv");
    assert_eq!(hand.parks.load(SeqCst), 1);
    assert!(!hand.woken.load(SeqCst));
    // The receiver is parked: a send from the resumer's thread completes at once.
    tx.try_send(21).unwrap();
    assert!(hand.woken.load(SeqCst), "the send unparked the coroutine");
    match hand.resume(&mut co) {
        CoroutineResult::Return(v) => assert_eq!(v, 42),
        CoroutineResult::Yield(()) => panic!("parked again after its value arrived"),
    }
    assert_eq!(hand.parks.load(SeqCst), 1);
}

#[test]
fn parked_send_is_completed_by_the_resumers_recv() {
    let hand = Hand::new();
    let (tx, rx) = chan::rendezvous::<&'static str>();
    let mut co = start(&hand, move || tx.send("ping").is_ok());
    assert!(matches!(hand.resume(&mut co), CoroutineResult::Yield(())));
    assert_eq!(rx.try_recv(), Ok("ping"), "the parked sender's value is there to take");
    assert!(hand.woken.load(SeqCst));
    assert!(matches!(hand.resume(&mut co), CoroutineResult::Return(true)));
}

#[test]
fn timed_wait_ends_at_the_first_resume_after_its_deadline() {
    const LIMIT: Duration = Duration::from_millis(20);
    let hand = Hand::new();
    let (_tx, rx) = chan::rendezvous::<u32>();
    let started = std::time::Instant::now();
    let mut co = start(&hand, move || rx.recv_timeout(LIMIT));
    match hand.resume(&mut co) {
        CoroutineResult::Yield(()) => {}
        // Only a slow machine (an emulator) gets here: the first resume itself outlasted
        // the limit, and then ending the wait at once is right.
        CoroutineResult::Return(r) => {
            assert!(started.elapsed() >= LIMIT, "the wait ended before its deadline: {r:?}");
            assert_eq!(r, Err(ChanError::Timeout));
            return;
        }
    }
    std::thread::sleep(LIMIT + Duration::from_millis(5));
    match hand.resume(&mut co) {
        CoroutineResult::Return(r) => assert_eq!(r, Err(ChanError::Timeout)),
        CoroutineResult::Yield(()) => panic!("a passed deadline must end the wait"),
    }
}

#[test]
fn inside_a_kcoro_coroutine_the_external_one_waits_as_itself() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let outcome = rt.block_on(|| {
        let outer = coro::current_id();
        assert!(outer.is_some());
        let hand = Hand::new();
        let (tx, rx) = chan::rendezvous::<u32>();
        let mut co = start(&hand, move || (coro::current_id(), rx.recv()));
        // Parking inside must switch back to us, not suspend the kcoro coroutine around it.
        assert!(matches!(hand.resume(&mut co), CoroutineResult::Yield(())));
        assert_eq!(coro::current_id(), outer, "the guard restored the kcoro coroutine");
        tx.try_send(7).unwrap();
        match hand.resume(&mut co) {
            CoroutineResult::Return(r) => r,
            CoroutineResult::Yield(()) => panic!("parked again"),
        }
    });
    assert_eq!(outcome, (None, Ok(7)), "no kcoro coroutine was current inside");
}
