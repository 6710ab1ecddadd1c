//! Actors: ordering, ask, restart policy, stop vs cancel, escalation, counts.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcoro::actor::{self, Actor, ActorError, ActorOpts, AskError, Flow, Reply, Restart};
use kcoro::{JoinError, Runtime, ScopeError};

const WATCHDOG: Duration = Duration::from_secs(30);

fn on_runtime<T: Send + 'static>(rt: &Runtime, f: impl FnOnce() -> T + Send + 'static) -> T {
    match rt.spawn(f).join_timeout(WATCHDOG) {
        Ok(Ok(v)) => v,
        Ok(Err(JoinError::Panicked(p))) => std::panic::resume_unwind(p),
        Ok(Err(e)) => panic!("test body did not finish: {e}"),
        Err(_) => panic!("test body hung for {WATCHDOG:?}"),
    }
}

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().expect("runtime")
}

enum Msg {
    Note {
        sender: u32,
        seq: u32,
    },
    Get(Reply<Vec<(u32, u32)>>),
    Fail,
    Panic,
    /// Busy until the sender of this gate sends or drops it.
    Busy(kcoro::chan::Receiver<()>),
    Ignore(Reply<u32>),
    Stop,
}

#[derive(Default)]
struct Recorder {
    seen: Vec<(u32, u32)>,
    restarts: u32,
}

impl Actor for Recorder {
    type Msg = Msg;
    fn handle(&mut self, msg: Msg) -> Flow {
        match msg {
            Msg::Note { sender, seq } => self.seen.push((sender, seq)),
            Msg::Get(r) => r.send(self.seen.clone()),
            Msg::Fail => return Flow::fail("asked to fail"),
            Msg::Panic => panic!("asked to panic"),
            Msg::Busy(gate) => drop(gate.recv()),
            Msg::Ignore(r) => drop(r),
            Msg::Stop => return Flow::Stop,
        }
        Flow::Continue
    }

    fn on_restart(&mut self, _failure: &ActorError) {
        self.restarts += 1;
        self.seen.push((u32::MAX, self.restarts));
    }
}

#[test]
fn messages_from_one_sender_arrive_in_order() {
    let rt = runtime();
    on_runtime(&rt, || {
        let a = actor::spawn(Recorder::default(), ActorOpts::mailbox(8));
        let senders: Vec<_> = (0..4u32)
            .map(|sender| {
                let a = a.clone();
                kcoro::spawn(move || {
                    for seq in 0..500 {
                        a.tell(Msg::Note { sender, seq }).expect("tell");
                    }
                })
            })
            .collect();
        senders.into_iter().for_each(|h| h.join().expect("sender"));
        let seen = a.ask(Msg::Get).expect("ask");
        assert_eq!(seen.len(), 2000);
        for sender in 0..4 {
            let seqs: Vec<u32> = seen.iter().filter(|(s, _)| *s == sender).map(|(_, q)| *q).collect();
            assert_eq!(seqs, (0..500).collect::<Vec<_>>(), "sender {sender} out of order");
        }
        a.stop();
        a.join().expect("stopped cleanly");
    });
}

#[test]
fn ask_times_out_and_an_unanswered_reply_is_reported() {
    let rt = runtime();
    on_runtime(&rt, || {
        let a =
            actor::spawn(Recorder::default(), ActorOpts::mailbox(8).ask_timeout(Duration::from_millis(20)));
        // Busy until the ask has given up, however late this coroutine runs.
        let (open, gate) = kcoro::chan::rendezvous::<()>();
        a.tell(Msg::Busy(gate)).expect("tell");
        assert_eq!(a.ask(Msg::Get).map(|v| v.len()), Err(AskError::Timeout));
        drop(open);
        assert_eq!(a.ask_timeout(WATCHDOG, Msg::Ignore), Err(AskError::NoReply));
        // The late reply to the timed-out ask went nowhere; the actor still answers.
        assert_eq!(a.ask_timeout(WATCHDOG, Msg::Get).map(|v| v.len()), Ok(0));
        a.stop();
        a.join().expect("clean");
        assert_eq!(a.ask(Msg::Get).map(|v| v.len()), Err(AskError::Closed));
    });
}

#[test]
fn restart_policy_is_bounded() {
    let rt = runtime();
    let stats_before = rt.stats();
    on_runtime(&rt, || {
        let policy = Restart::Restart { max: 2, within: Duration::from_secs(3600) };
        let a = actor::spawn(Recorder::default(), ActorOpts::unlimited().restart(policy));
        a.tell(Msg::Fail).unwrap();
        a.tell(Msg::Note { sender: 1, seq: 1 }).unwrap();
        a.tell(Msg::Panic).unwrap();
        let seen = a.ask(Msg::Get).expect("alive after two restarts");
        assert_eq!(seen, [(u32::MAX, 1), (1, 1), (u32::MAX, 2)]);
        a.tell(Msg::Fail).unwrap(); // the third failure in the window stops it
        match a.join() {
            Err(ActorError::Failed(e)) => assert_eq!(e.to_string(), "asked to fail"),
            other => panic!("expected the failure, got {other:?}"),
        }
        assert!(a.tell(Msg::Stop).is_err(), "a stopped actor refuses messages");
    });
    let st = rt.stats();
    assert_eq!(st.actor_restarts - stats_before.actor_restarts, 2);
    assert_eq!(st.actors_spawned - stats_before.actors_spawned, 1);
    assert_eq!(st.actors_live, 0);
}

#[test]
fn factory_actors_restart_with_fresh_state_and_panics_stop_by_default() {
    let rt = runtime();
    on_runtime(&rt, || {
        let built = Arc::new(AtomicUsize::new(0));
        let b = Arc::clone(&built);
        let policy = Restart::Restart { max: 5, within: Duration::from_secs(3600) };
        let a = actor::spawn_with(
            move || {
                b.fetch_add(1, SeqCst);
                Recorder::default()
            },
            ActorOpts::mailbox(4).restart(policy),
        );
        a.tell(Msg::Note { sender: 0, seq: 0 }).unwrap();
        a.tell(Msg::Fail).unwrap();
        assert_eq!(a.ask(Msg::Get).unwrap(), [], "state rebuilt, not kept");
        assert_eq!(built.load(SeqCst), 2);
        a.stop();
        a.join().unwrap();

        let a = actor::spawn(Recorder::default(), ActorOpts::mailbox(4));
        a.tell(Msg::Panic).unwrap();
        match a.join() {
            Err(ActorError::Panicked(m)) => assert_eq!(m, "asked to panic"),
            other => panic!("expected the panic, got {other:?}"),
        }
    });
}

/// Counts messages it starts and finishes; each message is a delay (cancellable).
struct Count {
    started: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
}

impl Actor for Count {
    type Msg = Duration;
    fn handle(&mut self, d: Duration) -> Flow {
        self.started.fetch_add(1, SeqCst);
        if kcoro::delay(d).is_ok() {
            self.finished.fetch_add(1, SeqCst);
        }
        Flow::Continue
    }
}

fn counters() -> (Arc<AtomicU64>, Arc<AtomicU64>, Count) {
    let (s, f) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let c = Count { started: Arc::clone(&s), finished: Arc::clone(&f) };
    (s, f, c)
}

#[test]
fn stop_drains_everything_queued() {
    let rt = runtime();
    on_runtime(&rt, || {
        let (_, finished, c) = counters();
        let a = actor::spawn(c, ActorOpts::mailbox(100));
        for _ in 0..50 {
            a.tell(Duration::from_micros(10)).unwrap();
        }
        a.stop();
        assert!(a.tell(Duration::ZERO).is_err(), "stopped: no new messages");
        a.join().expect("clean stop");
        assert_eq!(finished.load(SeqCst), 50);
    });
}

#[test]
fn cancel_stops_now_and_reports_the_rest_undelivered() {
    let rt = runtime();
    on_runtime(&rt, || {
        let (started, finished, c) = counters();
        let undelivered = Arc::new(AtomicU64::new(0));
        let u = Arc::clone(&undelivered);
        let done_with = Arc::new(Mutex::new(None));
        let d = Arc::clone(&done_with);
        let opts = ActorOpts::mailbox(100)
            .on_undelivered(move |_| {
                u.fetch_add(1, SeqCst);
            })
            .on_done(move |exit| *d.lock().unwrap() = Some(exit.clone().map_err(|e| e.to_string())));
        let a = actor::spawn(c, opts);
        a.tell(Duration::from_secs(3600)).unwrap(); // the actor parks in this one
        for _ in 0..49 {
            a.tell(Duration::ZERO).unwrap();
        }
        a.cancel();
        assert!(matches!(a.join(), Err(ActorError::Cancelled)));
        assert_eq!(finished.load(SeqCst), 0, "nothing ran to completion after the cancel");
        // Every message was either in the handler when cancelled or reported, once.
        assert_eq!(started.load(SeqCst) + undelivered.load(SeqCst), 50);
        assert_eq!(*done_with.lock().unwrap(), Some(Err("actor was cancelled".to_string())));
    });
}

#[test]
fn dropping_every_handle_stops_the_actor() {
    let rt = runtime();
    on_runtime(&rt, || {
        let (_, finished, c) = counters();
        let done = Arc::new(kcoro::sync::CancelToken::new());
        let d = Arc::clone(&done);
        let a = actor::spawn(c, ActorOpts::mailbox(4).on_done(move |_| d.cancel()));
        a.tell(Duration::ZERO).unwrap();
        drop(a);
        done.cancelled();
        assert_eq!(finished.load(SeqCst), 1);
    });
    assert_eq!(rt.stats().actors_live, 0);
}

/// The live gauge drops before anyone hears of the end: `on_done` sees its own actor gone,
/// and so does a joiner (it was decremented after both, so a stats read right after a join
/// could still count the actor).
#[test]
fn an_ended_actor_is_no_longer_live_when_on_done_and_join_hear_of_it() {
    let rt = runtime();
    let live_in_on_done = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&live_in_on_done);
    let live_after_join = on_runtime(&rt, move || {
        let (_, _, c) = counters();
        let on_done = move |_: &Result<(), ActorError>| {
            let live = kcoro::Handle::try_current().map(|h| h.stats().actors_live);
            *seen.lock().unwrap() = live;
        };
        let a = actor::spawn(c, ActorOpts::mailbox(4).on_done(on_done));
        a.stop();
        a.join().expect("clean");
        kcoro::Handle::try_current().map(|h| h.stats().actors_live)
    });
    assert_eq!(*live_in_on_done.lock().unwrap(), Some(0), "on_done ran while its actor counted as live");
    assert_eq!(live_after_join, Some(0));
}

#[test]
fn escalate_fails_the_owning_scope_and_stop_does_not() {
    let rt = runtime();
    on_runtime(&rt, || {
        let r = kcoro::scope(|s| {
            let a = s.actor(Recorder::default(), ActorOpts::mailbox(4).restart(Restart::Escalate));
            a.tell(Msg::Fail).unwrap();
        });
        match r {
            Err(ScopeError::Failed(e)) => assert_eq!(e.to_string(), "actor failed: asked to fail"),
            other => panic!("expected the escalation, got {other:?}"),
        }
        let r = kcoro::scope(|s| {
            let a = s.actor(Recorder::default(), ActorOpts::mailbox(4));
            a.tell(Msg::Fail).unwrap();
            assert!(matches!(a.join(), Err(ActorError::Failed(_))));
        });
        r.expect("a Stop policy keeps the failure to the actor");
        // A scope's cancel reaches its actors.
        let r = kcoro::scope(|s| {
            let (_, _, c) = counters();
            let a = s.actor(c, ActorOpts::mailbox(4));
            a.tell(Duration::from_secs(3600)).unwrap();
            s.cancel();
            assert!(matches!(a.join(), Err(ActorError::Cancelled)));
        });
        r.expect("the owner's cancel");
    });
}
