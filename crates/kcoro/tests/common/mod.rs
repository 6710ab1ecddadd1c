//! Shared by the channel tests: run one test body with coroutines and with plain threads,
//! under a watchdog, so a lost wake-up fails the test instead of hanging it.
//!
//! A body receives a [`Mode`] and starts every party of the test with [`Mode::go`]; the
//! body itself runs as a party of the same kind (a coroutine on a two-worker runtime, or a
//! thread), so its own blocking operations park the same way as everyone else's.
//! Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use kcoro::{JoinError, Runtime};

/// How long any single party may take before the test fails instead of hanging.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// A short wait given as an *input*: time for other parties to reach a blocking call. No
/// test's verdict depends on it being long enough; a slow machine only makes some runs
/// exercise a different (still checked) interleaving.
pub const SETTLE: Duration = Duration::from_millis(10);

/// Where the parties of a test run.
#[derive(Clone)]
pub enum Mode {
    /// Coroutines on this runtime.
    Coro(kcoro::Handle),
    /// Plain OS threads.
    Thread,
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Coro(_) => "coroutines",
            Mode::Thread => "threads",
        }
    }

    pub fn is_coro(&self) -> bool {
        matches!(self, Mode::Coro(_))
    }

    /// Starts `f` as a new party of this mode (Go's `go` statement, but joinable).
    pub fn go<T, F>(&self, f: F) -> Joiner<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self {
            Mode::Coro(h) => Joiner::Coro(h.spawn(f)),
            Mode::Thread => go_thread(Box::new(f)),
        }
    }
}

/// [`Mode::go`] on a thread. The closure comes boxed, so std's thread spawn compiles once
/// per result type rather than once per closure: a third of this binary's code otherwise,
/// which every build of the tests (debug, release, aarch64) paid for.
fn go_thread<T: Send + 'static>(f: Box<dyn FnOnce() -> T + Send>) -> Joiner<T> {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        // Dropped on return and on unwind alike: the joiner wakes either way.
        let _done = done_tx;
        f()
    });
    Joiner::Thread(handle, done_rx)
}

/// Waits for a party started by [`Mode::go`].
pub enum Joiner<T> {
    Coro(kcoro::JoinHandle<T>),
    Thread(std::thread::JoinHandle<T>, mpsc::Receiver<()>),
}

impl<T> Joiner<T> {
    /// The party's value. Re-raises its panic; fails if it runs past [`WATCHDOG`].
    pub fn join(self) -> T {
        match self {
            Joiner::Coro(h) => match h.join_timeout(WATCHDOG) {
                Ok(Ok(v)) => v,
                Ok(Err(JoinError::Panicked(p))) => resume_unwind(p),
                Ok(Err(e)) => panic!("coroutine did not finish: {e}"),
                Err(_) => panic!("watchdog: a coroutine did not finish within {WATCHDOG:?}"),
            },
            Joiner::Thread(h, done) => {
                // `Disconnected` is the normal wake (the party dropped its end).
                if let Err(mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(WATCHDOG) {
                    panic!("watchdog: a thread did not finish within {WATCHDOG:?}");
                }
                match h.join() {
                    Ok(v) => v,
                    Err(p) => resume_unwind(p),
                }
            }
        }
    }
}

/// Joins every party, in order.
pub fn join_all<T>(joiners: impl IntoIterator<Item = Joiner<T>>) -> Vec<T> {
    joiners.into_iter().map(Joiner::join).collect()
}

/// Runs `body` as a coroutine of a fresh two-worker runtime, then as a plain thread.
pub fn both<F>(body: F)
where
    F: Fn(Mode) + Send + Sync + 'static,
{
    let body = Arc::new(body);
    let b = Arc::clone(&body);
    coro(move |m| b(m));
    thread(move |m| body(m));
}

/// Runs `body` as a coroutine of a fresh two-worker runtime, under the watchdog.
pub fn coro<F>(body: F)
where
    F: FnOnce(Mode) + Send + 'static,
{
    let rt = Runtime::builder().workers(2).build().expect("runtime starts");
    let mode = Mode::Coro(rt.handle());
    let m = mode.clone();
    let outcome = catch_unwind(AssertUnwindSafe(|| mode.go(move || body(m)).join()));
    if let Err(p) = outcome {
        eprintln!("(the failure above happened with coroutines)");
        // Do not wait forever for a party that is stuck: that is what failed.
        rt.shutdown_timeout(Duration::from_secs(5));
        resume_unwind(p);
    }
}

/// Runs `body` on a plain thread, under the watchdog.
pub fn thread<F>(body: F)
where
    F: FnOnce(Mode) + Send + 'static,
{
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| Mode::Thread.go(move || body(Mode::Thread)).join())) {
        eprintln!("(the failure above happened with threads)");
        resume_unwind(p);
    }
}

/// Calls `attempt` until it returns `Some`, yielding (then briefly sleeping) between
/// tries; fails after [`WATCHDOG`]. For waiting on an event another party causes when
/// the only way to observe it is to poll (e.g. "a receiver is parked now").
pub fn eventually<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WATCHDOG;
    let mut tries = 0u32;
    loop {
        if let Some(v) = attempt() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "watchdog: {what} did not happen within {WATCHDOG:?}");
        tries += 1;
        if tries < 64 {
            kcoro::yield_now();
        } else {
            kcoro::sleep(Duration::from_micros(200));
        }
    }
}

/// Values that record their own drops, to check that each is dropped exactly once.
pub struct DropLog {
    counts: Arc<Vec<std::sync::atomic::AtomicUsize>>,
}

/// A value of a [`DropLog`].
#[derive(Debug)]
pub struct Tracked {
    pub id: usize,
    counts: Arc<Vec<std::sync::atomic::AtomicUsize>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.counts[self.id].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl DropLog {
    /// A log for values `0..n`.
    pub fn new(n: usize) -> Self {
        DropLog { counts: Arc::new((0..n).map(|_| std::sync::atomic::AtomicUsize::new(0)).collect()) }
    }

    /// Value `id` (make each id once).
    pub fn value(&self, id: usize) -> Tracked {
        Tracked { id, counts: Arc::clone(&self.counts) }
    }

    /// How many times value `id` was dropped.
    pub fn drops(&self, id: usize) -> usize {
        self.counts[id].load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every value was dropped exactly once.
    pub fn assert_each_dropped_once(&self) {
        let counts: Vec<usize> = (0..self.counts.len()).map(|i| self.drops(i)).collect();
        assert!(counts.iter().all(|&c| c == 1), "drops per value: {counts:?}");
    }
}

/// A channel whose undelivered values are recorded, in the order reported.
pub fn recording<T: Send + 'static>(
    builder: kcoro::chan::Builder<T>,
) -> (kcoro::chan::Sender<T>, kcoro::chan::Receiver<T>, Arc<std::sync::Mutex<Vec<T>>>) {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    let (tx, rx) = builder.on_undelivered(move |v| l.lock().unwrap().push(v)).build();
    (tx, rx, log)
}

/// `producers` parties each send `per` distinct values (`p * per + i`), `consumers`
/// parties receive until the channel closes (when the last producer's sender drops).
/// Returns every value received, sorted.
pub fn mpmc_exchange(
    m: &Mode,
    tx: kcoro::chan::Sender<u64>,
    rx: kcoro::chan::Receiver<u64>,
    producers: u64,
    consumers: usize,
    per: u64,
) -> Vec<u64> {
    let senders: Vec<Joiner<Vec<u64>>> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            m.go(move || {
                for i in 0..per {
                    tx.send(p * per + i).expect("send on an open channel");
                }
                Vec::new()
            })
        })
        .collect();
    drop(tx);
    let receivers: Vec<Joiner<Vec<u64>>> = (0..consumers)
        .map(|_| {
            let rx = rx.clone();
            m.go(move || rx.iter().collect())
        })
        .collect();
    join_all(senders);
    let mut all: Vec<u64> = join_all(receivers).into_iter().flatten().collect();
    all.sort_unstable();
    all
}

/// Waits until at least `n` coroutines of the mode's runtime are parked, so the next step
/// is known to find them parked. Only coroutines can be observed this way.
pub fn wait_parked(m: &Mode, n: u64) {
    let Mode::Coro(h) = m else { panic!("wait_parked: only coroutines can be observed parking") };
    eventually("parties park", || (h.stats().parked >= n).then_some(()));
}

/// A channel constructor, for the bodies the flavour files share.
pub type MakeChan = fn() -> (kcoro::chan::Sender<i32>, kcoro::chan::Receiver<i32>);

/// Close wakes every parked receiver — plain, timed and selecting — with `Closed`, and
/// counts each failure once.
pub fn close_wakes_receivers(make: MakeChan) {
    both(move |m| {
        let (tx, rx) = make();
        let mut parties = Vec::new();
        for _ in 0..3 {
            let r = rx.clone();
            parties.push(m.go(move || r.recv()));
        }
        let r = rx.clone();
        parties.push(m.go(move || r.recv_timeout(WATCHDOG)));
        let r = rx.clone();
        parties.push(m.go(move || kcoro::select! { recv(r) -> v => v }));
        kcoro::sleep(SETTLE);
        assert!(tx.close());
        for result in join_all(parties) {
            assert_eq!(result, Err(kcoro::chan::ChanError::Closed));
        }
        assert_eq!(rx.snapshot().recv_failures.closed, 5);
    });
}

/// For kinds whose sends never wait: a receive times out on an empty channel, gets a value
/// sent later, drains after close, then reports `Closed`; the failures are counted.
pub fn recv_timeout_then_closed(make: MakeChan) {
    use kcoro::chan::ChanError;
    both(move |m| {
        let (tx, rx) = make();
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Err(ChanError::Timeout));
        let t = tx.clone();
        let sender = m.go(move || {
            kcoro::sleep(SETTLE);
            t.send(1).unwrap();
        });
        assert_eq!(rx.recv_timeout(WATCHDOG), Ok(1));
        sender.join();
        tx.send(2).unwrap();
        tx.close();
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Ok(2));
        assert_eq!(rx.recv_timeout(WATCHDOG), Err(ChanError::Closed));
        let s = rx.snapshot();
        assert_eq!((s.recv_failures.timeout, s.recv_failures.closed), (1, 1));
    });
}

/// A command that runs this test binary again (for child-process tests), through the
/// runner cargo put in front of it (`CARGO_TARGET_<TRIPLE>_RUNNER`, e.g.
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu` under emulation): without binfmt_misc the
/// kernel cannot execute a foreign binary itself. The runner is matched by this binary's
/// architecture, the start of its target triple.
pub fn this_binary() -> std::process::Command {
    let exe = std::env::current_exe().expect("current_exe");
    match runner() {
        Some((program, args)) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args).arg(exe);
            cmd
        }
        None => std::process::Command::new(exe),
    }
}

/// A command that runs the one test `test` of the module `module` (its `module_path!()`) in
/// a child process of this test binary, alone (`--exact`, one test thread) and with its
/// output uncaptured. Tests are named by their path below the crate root, so in the suite
/// `rt_stack`'s `overflow_child` is `rt_stack::overflow_child`.
pub fn this_test_alone(module: &str, test: &str) -> std::process::Command {
    let name = match module.split_once("::") {
        Some((_crate_root, path)) => format!("{path}::{test}"),
        None => test.to_string(),
    };
    let mut cmd = this_binary();
    cmd.args(["--exact", &name, "--nocapture", "--test-threads=1"]);
    cmd
}

/// The runner of this test binary, if cargo used one.
pub fn runner() -> Option<(String, Vec<String>)> {
    let prefix = format!("CARGO_TARGET_{}", std::env::consts::ARCH.to_ascii_uppercase());
    let (_, value) = std::env::vars().find(|(k, _)| k.starts_with(&prefix) && k.ends_with("_RUNNER"))?;
    let mut words = value.split_whitespace().map(String::from);
    Some((words.next()?, words.collect()))
}
