//! The reactor (mio) and the timer wheel, so no coroutine ever blocks in a syscall that can
//! wait, and no timer needs a thread or a polling loop.
//!
//! There is no reactor thread: the workers poll it themselves. A worker with nothing to run
//! takes the poller (one at a time) and sleeps in `epoll_wait` instead of on its futex; it
//! wakes for socket readiness, for the `timerfd` armed at the wheel's next expiration, or
//! for the mio `Waker` when it is wanted for other work. What it wakes lands on its own
//! queue when the coroutine lives there, with no thread in between. A busy worker polls
//! without waiting every `GLOBAL_INTERVAL` ticks, so I/O and timers are served while every
//! worker is busy too. Whoever inserts a timer earlier than the armed expiry re-arms the
//! timerfd itself, under the wheel lock, so inserting never costs a hand-off.
//!
//! # Time
//! Wheel ticks are `TICK_NS` long, counted from the driver's start. A deadline becomes the
//! tick that *ends* at or after it (rounded up), and a tick fires only once the clock has
//! passed it (rounded down), so a timer never fires early.
//!
//! # Invariants
//! - `armed` holds the tick the timerfd is set for (`u64::MAX` = disarmed); it is changed
//!   only under the wheel lock, together with the timerfd.
//! - An `IoSource` is in `sources` from registration until deregistration.
//! - The poller is used by one thread at a time (its lock), and only on a real clock.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::park::Unparker;
use crate::runtime::timer::{TimerKey, Wheel};

/// Wheel resolution. 10 µs: a deadline rounds up by at most one tick, so this bounds the
/// wheel's share of sleep overshoot (measured mean overshoot of a 1 ms sleep: 100 µs with
/// 100 µs ticks, 35 µs with these); a 6-level wheel still spans 2^36 ticks (about 8 days;
/// longer timers re-arm at the horizon).
const TICK_NS: u64 = 10_000;
const WAKER: Token = Token(0);
const TIMER: Token = Token(1);
/// Tokens below this are the driver's own.
const FIRST_IO: usize = 2;

/// Readiness bits of an I/O source.
pub(crate) const READABLE: u8 = 0b01;
pub(crate) const WRITABLE: u8 = 0b10;
/// With `READABLE` in an edge: the peer closed its end or the socket failed. Final: no later
/// edge will announce it, so it is remembered (`IoState::read_closed`).
const READ_CLOSED: u8 = 0b100;

/// One registered socket: its readiness and the parked coroutines waiting on it.
#[derive(Default)]
pub(crate) struct IoSource {
    state: Mutex<IoState>,
    /// Read edges reported so far. Bumped under the state lock, so `poll_ready_since` sees
    /// every edge up to its own lock; read without it by `read_edges`.
    read_edges: AtomicU64,
}

#[derive(Default)]
struct IoState {
    ready: u8,
    /// An edge reported end-of-file or an error: a read returns at once from now on.
    read_closed: bool,
    readers: Vec<Unparker>,
    writers: Vec<Unparker>,
}

impl IoSource {
    fn lock(&self) -> MutexGuard<'_, IoState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called after an operation returned `WouldBlock`. Consumes a readiness edge that
    /// arrived since (returns `true`: retry now) or registers `me` to be woken by the next.
    pub(crate) fn poll_ready(&self, dir: u8, me: &Unparker) -> bool {
        Self::consume_or_register(&mut self.lock(), dir, me)
    }

    /// The read edges reported so far. Acquire: the read syscall that follows cannot be
    /// performed before this load, so an edge for data that syscall missed counts after it.
    pub(crate) fn read_edges(&self) -> u64 {
        self.read_edges.load(Acquire)
    }

    /// `poll_ready(READABLE)` for a reader that found the socket empty after `read_edges`
    /// returned `seen` (a short read): with no read edge since, nothing has arrived, so it
    /// registers without trying a syscall first; with one, it says retry.
    pub(crate) fn poll_ready_since(&self, seen: u64, me: &Unparker) -> bool {
        let mut st = self.lock();
        // Edges are counted under this lock: any edge not counted yet finds `me` registered.
        // End-of-file is final and brings no further edge, so it always means retry (the
        // short read may have stopped just before it).
        if self.read_edges.load(Relaxed) != seen || st.read_closed {
            return true;
        }
        Self::consume_or_register(&mut st, READABLE, me)
    }

    fn consume_or_register(st: &mut IoState, dir: u8, me: &Unparker) -> bool {
        if st.ready & dir != 0 {
            st.ready &= !dir;
            return true;
        }
        let list = if dir == READABLE { &mut st.readers } else { &mut st.writers };
        if !list.iter().any(|u| u.same(me)) {
            list.push(me.clone());
        }
        false
    }

    /// Forgets `me` (after a timeout).
    pub(crate) fn unregister(&self, dir: u8, me: &Unparker) {
        let mut st = self.lock();
        let list = if dir == READABLE { &mut st.readers } else { &mut st.writers };
        list.retain(|u| !u.same(me));
    }

    /// A readiness edge for `dirs`. The parked waiters of a direction are woken, and they
    /// retry their operation anyway, so the edge is theirs: it is recorded in `ready` only
    /// for a direction nobody waits on (for an operation about to call `poll_ready`).
    /// Recording it for the woken too left a stale bit that cost one wasted `recvfrom`
    /// ending in `EAGAIN` per read. An edge handed to a waiter that then gives up (its
    /// timeout) is not lost: every operation tries its syscall before it looks at `ready`,
    /// except a read after a short one, which the edge count (bumped here) sends to its
    /// syscall.
    fn wake(&self, dirs: u8) {
        let mut woken = Vec::new();
        self.take_waiters(dirs, &mut woken);
        for u in woken {
            u.unpark();
        }
    }

    /// `wake` without the unparking: the waiters to wake go to `woken`, so a reactor turn
    /// collects a whole batch in one reused vector and unparks them outside every lock.
    fn take_waiters(&self, dirs: u8, woken: &mut Vec<Unparker>) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if dirs & READABLE != 0 {
            self.read_edges.fetch_add(1, Relaxed);
        }
        if dirs & READ_CLOSED != 0 {
            st.read_closed = true;
        }
        for (dir, list) in [(READABLE, &mut st.readers), (WRITABLE, &mut st.writers)] {
            if dirs & dir == 0 {
                continue;
            }
            if list.is_empty() {
                st.ready |= dir;
            } else {
                woken.append(list);
            }
        }
    }
}

struct Timers {
    wheel: Wheel<Unparker>,
    armed: u64,
}

/// What one thread at a time polls with.
pub(crate) struct Poller {
    poll: Poll,
    events: Events,
    /// What a turn wakes, collected under the locks and unparked outside them (reused).
    fired: Vec<Unparker>,
}

pub(crate) struct Driver {
    poller: Mutex<Poller>,
    registry: mio::Registry,
    waker: mio::Waker,
    timerfd: OwnedFd,
    start: Instant,
    /// CLOCK_MONOTONIC at `start`, in ns (Instant uses the same clock on Linux).
    start_mono_ns: u64,
    timers: Mutex<Timers>,
    sources: Mutex<Slab>,
    /// Registered sockets plus one while the timerfd is armed: with none, a busy worker's
    /// look at the reactor would find nothing, so it skips the syscall.
    interest: AtomicUsize,
    shutdown: AtomicBool,
    pub(crate) timer_fires: AtomicU64,
    /// Turns begun (`turn`): a worker that left the reactor to others checks that someone
    /// still polls it.
    turns: AtomicU64,
    /// Deterministic mode: the virtual clock, in ns since `start`. Only the single worker
    /// moves it (`advance_virtual`); the driver thread then leaves timers alone.
    virtual_ns: Option<AtomicU64>,
}

/// Tokens for I/O sources: a vector with a free list.
#[derive(Default)]
struct Slab {
    entries: Vec<Option<Arc<IoSource>>>,
    free: Vec<usize>,
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Driver {
    /// Creates the driver. With `virtual_clock`, time stands still until `advance_virtual`
    /// moves it, and nobody polls.
    /// The instant the clock counts from (deadlines in `coro::wait` are ns since it).
    pub(crate) fn epoch(&self) -> Instant {
        self.start
    }

    pub(crate) fn start(virtual_clock: bool) -> io::Result<Arc<Driver>> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        // SAFETY: plain syscall; the result is checked before use.
        let fd =
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let timerfd = unsafe { OwnedFd::from_raw_fd(fd) };
        registry.register(&mut SourceFd(&timerfd.as_raw_fd()), TIMER, Interest::READABLE)?;
        Ok(Arc::new(Driver {
            poller: Mutex::new(Poller { poll, events: Events::with_capacity(1024), fired: Vec::new() }),
            registry,
            waker,
            timerfd,
            start: Instant::now(),
            start_mono_ns: monotonic_ns(),
            timers: Mutex::new(Timers { wheel: Wheel::new(), armed: u64::MAX }),
            sources: Mutex::new(Slab::default()),
            interest: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            timer_fires: AtomicU64::new(0),
            turns: AtomicU64::new(0),
            virtual_ns: virtual_clock.then(|| AtomicU64::new(0)),
        }))
    }

    fn now_tick(&self) -> u64 {
        (self.now().saturating_duration_since(self.start).as_nanos() / u128::from(TICK_NS)) as u64
    }

    /// The runtime's clock: the real one, or the virtual one in deterministic mode.
    pub(crate) fn now(&self) -> Instant {
        match &self.virtual_ns {
            Some(v) => self.start + Duration::from_nanos(v.load(Acquire)),
            None => Instant::now(),
        }
    }

    /// Nanoseconds on the runtime's clock since the driver started.
    pub(crate) fn elapsed_ns(&self) -> u64 {
        self.now().saturating_duration_since(self.start).as_nanos().min(u128::from(u64::MAX)) as u64
    }

    pub(crate) fn is_virtual(&self) -> bool {
        self.virtual_ns.is_some()
    }

    /// Deterministic mode, with nothing runnable: jumps the virtual clock to the wheel's
    /// next expiration and fires what is due, in wheel order. Returns `false` if no timer
    /// is armed. Called only by the single worker, so firing order is reproducible.
    pub(crate) fn advance_virtual(&self) -> bool {
        let Some(clock) = &self.virtual_ns else { return false };
        let mut fired = Vec::new();
        {
            let mut t = self.lock_timers();
            let Some(next) = t.wheel.next_expiration() else { return false };
            let at = next.saturating_mul(TICK_NS).max(clock.load(Acquire));
            clock.store(at, Release);
            t.wheel.advance(next, |u| fired.push(u));
        }
        self.timer_fires.fetch_add(fired.len() as u64, Relaxed);
        for u in fired {
            u.unpark();
        }
        true
    }

    fn deadline_tick(&self, deadline: Instant) -> u64 {
        let ns = deadline.saturating_duration_since(self.start).as_nanos();
        ns.div_ceil(u128::from(TICK_NS)).min(u128::from(u64::MAX / 2)) as u64
    }

    fn lock_timers(&self) -> MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Caller holds the timer lock. Points the timerfd at `tick` (absolute).
    fn arm(&self, timers: &mut Timers, tick: Option<u64>) {
        let tick = tick.unwrap_or(u64::MAX);
        if tick == timers.armed {
            return;
        }
        match (timers.armed == u64::MAX, tick == u64::MAX) {
            (true, false) => _ = self.interest.fetch_add(1, Relaxed),
            (false, true) => _ = self.interest.fetch_sub(1, Relaxed),
            _ => {}
        }
        timers.armed = tick;
        let spec = if tick == u64::MAX {
            libc::itimerspec {
                it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            }
        } else {
            // A zero it_value would disarm: keep at least 1 ns.
            let abs = self.start_mono_ns.saturating_add(tick.saturating_mul(TICK_NS)).max(1);
            libc::itimerspec {
                it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: libc::timespec {
                    tv_sec: (abs / 1_000_000_000) as libc::time_t,
                    tv_nsec: (abs % 1_000_000_000) as libc::c_long,
                },
            }
        };
        // SAFETY: valid timerfd and itimerspec; TFD_TIMER_ABSTIME with CLOCK_MONOTONIC.
        unsafe {
            libc::timerfd_settime(
                self.timerfd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
    }

    /// Arms a timer that unparks `who` at `deadline` (never before).
    pub(crate) fn timer_insert(&self, deadline: Instant, who: Unparker) -> TimerKey {
        let tick = self.deadline_tick(deadline);
        let mut t = self.lock_timers();
        let key = t.wheel.insert(tick, who);
        if tick < t.armed && !self.is_virtual() {
            // The slot may expire before `tick` (cascade point): arm for the wheel's view.
            let next = t.wheel.next_expiration();
            self.arm(&mut t, next);
        }
        key
    }

    /// Disarms a timer; a no-op if it already fired. Returns `true` if it was armed.
    pub(crate) fn timer_cancel(&self, key: TimerKey) -> bool {
        let removed = self.lock_timers().wheel.cancel(key);
        removed.is_some() // the unparker is dropped here, outside the lock
    }

    pub(crate) fn timers_armed(&self) -> usize {
        self.lock_timers().wheel.len()
    }

    /// Registers a socket with the reactor.
    pub(crate) fn register(&self, src: &mut impl mio::event::Source) -> io::Result<(Arc<IoSource>, Token)> {
        if self.is_virtual() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "socket I/O is unavailable on a deterministic runtime (no simulated network is supplied)",
            ));
        }
        let io = Arc::new(IoSource::default());
        let key = {
            let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
            match s.free.pop() {
                Some(k) => {
                    s.entries[k] = Some(Arc::clone(&io));
                    k
                }
                None => {
                    s.entries.push(Some(Arc::clone(&io)));
                    s.entries.len() - 1
                }
            }
        };
        self.interest.fetch_add(1, Relaxed);
        let token = Token(key + FIRST_IO);
        if let Err(e) = self.registry.register(src, token, Interest::READABLE | Interest::WRITABLE) {
            self.release_token(token);
            return Err(e);
        }
        Ok((io, token))
    }

    pub(crate) fn deregister(&self, src: &mut impl mio::event::Source, token: Token) {
        let _ = self.registry.deregister(src);
        self.release_token(token);
    }

    fn release_token(&self, token: Token) {
        let mut s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let k = token.0 - FIRST_IO;
        if let Some(e) = s.entries.get_mut(k)
            && e.take().is_some()
        {
            s.free.push(k);
            self.interest.fetch_sub(1, Relaxed);
        }
    }

    /// Stops the driver thread; timers still armed are dropped (their coroutines are
    /// unwound by the runtime's shutdown).
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, SeqCst);
        let _ = self.waker.wake();
        // Nobody will report readiness any more: wake every socket waiter so it can see
        // the shutdown (`is_shut_down`) instead of waiting forever.
        let sources: Vec<Arc<IoSource>> = {
            let s = self.sources.lock().unwrap_or_else(|p| p.into_inner());
            s.entries.iter().flatten().cloned().collect()
        };
        for src in sources {
            src.wake(READABLE | WRITABLE);
        }
    }

    /// True once the runtime shut the driver down. SeqCst: pairs with the store in
    /// `shutdown`, so a waiter that registered and then saw `false` will be woken.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(SeqCst)
    }

    /// Drops every armed timer (after the thread stopped).
    pub(crate) fn clear_timers(&self) {
        let mut t = self.lock_timers();
        let old = std::mem::replace(&mut t.wheel, Wheel::new());
        drop(t);
        drop(old);
    }

    /// Turns begun so far.
    pub(crate) fn turns(&self) -> u64 {
        self.turns.load(Relaxed)
    }

    /// Whether a look at the reactor could find anything: a socket or an armed timer.
    pub(crate) fn has_interest(&self) -> bool {
        self.interest.load(Relaxed) != 0
    }

    /// The poller, if no other thread has it and the clock is real.
    pub(crate) fn try_poller(&self) -> Option<MutexGuard<'_, Poller>> {
        if self.is_virtual() || self.shutdown.load(Acquire) {
            return None;
        }
        self.poller.try_lock().ok()
    }

    /// Interrupts a poller waiting in `turn` (it returns at once if it is not yet waiting).
    pub(crate) fn wake_poller(&self) {
        let _ = self.waker.wake();
    }

    /// One turn of the reactor: fires due timers, waits up to `timeout` (`None`: until
    /// something happens) for readiness, a timer or `wake_poller`, then wakes whoever that
    /// concerns and fires the timers now due.
    pub(crate) fn turn(&self, p: &mut Poller, timeout: Option<Duration>) {
        // Only the poller's holder writes it (under the poller lock).
        self.turns.store(self.turns.load(Relaxed) + 1, Relaxed);
        // Whatever this fires is runnable now: then only look, do not wait.
        let timeout = if self.fire_due_timers(p, false) { Some(Duration::ZERO) } else { timeout };
        if self.shutdown.load(Acquire) {
            return;
        }
        let Poller { poll, events, fired } = p;
        if let Err(e) = poll.poll(events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("kcoro: reactor poll failed: {e}");
            }
            return;
        }
        let mut timer_due = false;
        {
            // One look at the sources for the whole batch. Lock order: sources, then a
            // source's state (nothing takes them the other way round).
            let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    TIMER => timer_due = true,
                    Token(t) => {
                        let Some(Some(src)) = sources.entries.get(t - FIRST_IO) else {
                            continue;
                        };
                        let mut dirs = 0;
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            dirs |= READABLE;
                        }
                        if ev.is_read_closed() || ev.is_error() {
                            dirs |= READ_CLOSED;
                        }
                        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                            dirs |= WRITABLE;
                        }
                        src.take_waiters(dirs, fired);
                    }
                }
            }
        }
        for u in fired.drain(..) {
            u.unpark();
        }
        if timer_due {
            let mut buf = [0u8; 8];
            // SAFETY: reading 8 bytes into an 8-byte buffer from our timerfd.
            unsafe { libc::read(self.timerfd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
            self.fire_due_timers(p, true);
        }
    }

    /// Fires what the wheel says is due and points the timerfd at the next expiration;
    /// returns whether it fired anything. The timerfd is re-armed only once it fired or its
    /// time has passed, so a turn with nothing due costs no syscall for it.
    fn fire_due_timers(&self, p: &mut Poller, fd_fired: bool) -> bool {
        let now = self.now_tick();
        {
            let mut t = self.lock_timers();
            t.wheel.advance(now, |u| p.fired.push(u));
            if fd_fired || t.armed <= now {
                // The fd has fired or is stale: forget it and arm afresh.
                if t.armed != u64::MAX {
                    t.armed = u64::MAX;
                    self.interest.fetch_sub(1, Relaxed);
                }
                let next = t.wheel.next_expiration();
                self.arm(&mut t, next);
            }
        }
        if p.fired.is_empty() {
            return false;
        }
        self.timer_fires.fetch_add(p.fired.len() as u64, Relaxed);
        for u in p.fired.drain(..) {
            u.unpark();
        }
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_edge_goes_to_the_waiters_or_to_ready_never_both() {
        let src = IoSource::default();
        let me = crate::park::current();
        // Nobody waits: the edge is kept for the next operation to find.
        src.wake(READABLE);
        assert!(src.poll_ready(READABLE, &me), "the kept edge means: retry now");
        assert!(!src.poll_ready(READABLE, &me), "consumed once; now registered");
        // A waiter: the edge wakes it and leaves no stale readiness behind.
        src.wake(READABLE | WRITABLE);
        assert!(!src.poll_ready(READABLE, &me), "no stale readable bit after waking the reader");
        assert!(src.poll_ready(WRITABLE, &me), "nobody waited to write: that edge was kept");
    }

    #[test]
    fn a_reader_that_emptied_the_socket_registers_unless_a_read_edge_came_since() {
        let src = IoSource::default();
        let me = crate::park::current();
        let seen = src.read_edges();
        assert!(!src.poll_ready_since(seen, &me), "no edge since: register, no syscall");
        src.wake(WRITABLE);
        assert!(!src.poll_ready_since(seen, &me), "a write edge says nothing about reading");
        src.wake(READABLE);
        assert!(src.poll_ready_since(seen, &me), "a read edge since: retry the syscall");
        let seen = src.read_edges();
        src.wake(READABLE); // nobody waits now: the edge is kept in `ready` as well
        assert!(src.poll_ready_since(seen, &me));
        assert!(src.poll_ready_since(seen - 1, &me), "an older count never registers");
    }
}
