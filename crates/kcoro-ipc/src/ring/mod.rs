//! The same-host transport (`shm:` addresses): a connection's bytes through two
//! single-producer single-consumer rings in shared memory, with a wake-up only when the
//! other side sleeps.
//!
//! The frames are the same as on a socket ([`crate::wire`] reads and writes them through a
//! [`link::Link`] instead); only where the bytes travel changes. The Unix socket the
//! connection began on stays: it carried the handshake that handed over the memory, it
//! carries the descriptors of shared regions, and its peer is the fallback when a server
//! takes no rings.
//!
//! # Layout (one sealed memfd per connection, made by the client: [`mem`])
//! ```text
//! [0, 4096)                    control page: magic and capacity; ring 0's header at 512,
//!                              ring 1's at 1024
//! [4096, 4096 + cap)           ring 0's bytes: client → server
//! [4096 + cap, 4096 + 2·cap)   ring 1's bytes: server → client
//! ```
//! A header holds four words, each on a line of its own: `head` (bytes ever written: the
//! producer's), `tail` (bytes ever read: the consumer's), and `reader_asleep` and
//! `writer_asleep` (raised by a side about to sleep, taken down by the side that wakes it).
//! Byte `p` of the stream lives at `p % cap`; `cap` is a power of two.
//!
//! # Protocol of a ring
//! - The producer copies bytes in at `head`, then publishes the new `head` (release). The
//!   consumer reads `head` (acquire), copies out, then publishes its `tail` (release), which
//!   gives the space back.
//! - A side about to sleep raises its flag with a swap, then looks once more. A side that
//!   published takes the other's flag down with a swap and, if it was up, rings that side's
//!   [`Bell`]. Both swaps are read-modify-writes of one word (acquire and release), so one
//!   comes first: if the sleeper's, the publisher sees the flag up and rings; if the
//!   publisher's, the sleeper's swap reads from it and so sees what was published. No
//!   wake-up is lost (model-checked: `loom_ring_*`). A side that takes its own flag down
//!   (it woke, or looked again and found work) does so with a swap too: a plain store
//!   there would end the chain of swaps its next raise reads from, and that raise could
//!   then miss a publication (loom found exactly this).
//! - A reader that finds its ring empty spins for a while (yielding to the other coroutines
//!   of its worker) before it sleeps, so while messages flow nobody sleeps and no system
//!   call is made.
//! - The end of the stream is the bell's end: the peer closed it, or died. What the peer
//!   wrote before is still read.
//!
//! # A peer that lies
//! The peer can write anywhere in the mapping at any time. So each side keeps its own
//! position privately and only reads the other's: a `head` or `tail` that moves back, passes
//! the other, or spans more than the capacity ends the connection with an error. Bytes are
//! copied out before anything parses them, so a peer scribbling on them makes us read
//! garbage (refused by the frame parser), never out of bounds. The memfd must be sealed
//! against shrinking (a truncation would turn our accesses into SIGBUS) and have exactly
//! the layout's size.
//!
//! # Invariants
//! - `Producer::tail` ≤ `Producer::head` ≤ `Producer::tail + cap`: the producer writes only
//!   into bytes the consumer has given back.
//! - `Consumer::tail` ≤ `Consumer::head` ≤ `Consumer::tail + cap`, and the consumer reads only
//!   below the `head` it accepted.

pub(crate) mod link;
pub(crate) mod mem;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// One header word on a line of its own (128 bytes: CPUs fetch adjacent lines in pairs).
#[repr(C, align(128))]
struct Line<T>(T);

/// A ring's header: what both sides read and write.
#[repr(C)]
pub(crate) struct Header {
    head: Line<AtomicU64>,
    tail: Line<AtomicU64>,
    reader_asleep: Line<AtomicU32>,
    writer_asleep: Line<AtomicU32>,
}

/// Bytes a [`Header`] takes.
pub(crate) const HEADER_LEN: usize = size_of::<Header>();

/// A ring as one side sees it: its header and bytes, in memory that `_keep` keeps alive.
pub(crate) struct Ring {
    header: *const Header,
    data: *mut u8,
    cap: u64,
    _keep: Arc<dyn Send + Sync>,
}

// SAFETY: the header is atomics only, and the bytes are touched only by the copies below,
// which the ring protocol gives to one side at a time (see the module docs); the memory
// lives as long as `_keep`, which is `Send + Sync`.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring over `header` and `cap` bytes at `data`, kept alive by `keep`.
    ///
    /// # Safety
    /// `header` must point to a `Header`-sized, 128-aligned span and `data` to `cap` bytes,
    /// both valid for reads and writes for as long as `keep` lives; `cap` must be a power of
    /// two. Any bit pattern is a valid `Header` (it is atomics only).
    pub(crate) unsafe fn new(
        header: *const Header,
        data: *mut u8,
        cap: u64,
        keep: Arc<dyn Send + Sync>,
    ) -> Ring {
        debug_assert!(cap.is_power_of_two());
        Ring { header, data, cap, _keep: keep }
    }

    /// A ring in this process's heap, for tests, models and the fuzzer.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn in_heap(cap: u64) -> Ring {
        /// Owns the memory the ring points into; never read, only kept.
        #[allow(dead_code)]
        struct Heap(Box<Header>, Box<[std::cell::UnsafeCell<u8>]>);
        // SAFETY: tests share it between threads only through the ring protocol.
        unsafe impl Sync for Heap {}
        // SAFETY: as above.
        unsafe impl Send for Heap {}
        let zero = || Line(AtomicU64::new(0));
        let flag = || Line(AtomicU32::new(0));
        let header =
            Box::new(Header { head: zero(), tail: zero(), reader_asleep: flag(), writer_asleep: flag() });
        let data: Box<[std::cell::UnsafeCell<u8>]> =
            (0..cap).map(|_| std::cell::UnsafeCell::new(0)).collect();
        let (h, d) = (&*header as *const Header, data.as_ptr().cast_mut().cast::<u8>());
        // SAFETY: both boxes live in `keep` as long as the ring; `cap` bytes at `d`.
        unsafe { Ring::new(h, d, cap, Arc::new(Heap(header, data))) }
    }

    /// Another view of the same ring (the other side's, in tests, models and the fuzzer).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn twin(&self) -> Ring {
        Ring { header: self.header, data: self.data, cap: self.cap, _keep: Arc::clone(&self._keep) }
    }

    fn header(&self) -> &Header {
        // SAFETY: `header` stays valid while `_keep` lives (`Ring::new`), and atomics may be
        // shared.
        unsafe { &*self.header }
    }

    /// Copies `src` into the ring at stream position `pos` (wrapping).
    fn copy_in(&self, pos: u64, src: &[u8]) {
        let at = (pos & (self.cap - 1)) as usize;
        let first = src.len().min(self.cap as usize - at);
        // SAFETY: `at + first` ≤ cap and `src.len() - first` ≤ cap (callers copy at most the
        // room, ≤ cap); the producer owns these bytes until it publishes `head` (protocol).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.data.add(at), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.data, src.len() - first);
        }
    }

    /// Copies the ring's bytes at stream position `pos` into `dst` (wrapping).
    fn copy_out(&self, pos: u64, dst: &mut [u8]) {
        let at = (pos & (self.cap - 1)) as usize;
        let first = dst.len().min(self.cap as usize - at);
        // SAFETY: in bounds as in `copy_in` (callers copy at most what is available, ≤ cap);
        // the producer published these bytes and writes them again only after our `tail`
        // passes them. A lying peer may write them anyway: we copy garbage, in bounds.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.add(at), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(self.data, dst.as_mut_ptr().add(first), dst.len() - first);
        }
    }
}

/// How one side wakes the other, and sleeps until woken.
pub(crate) trait Bell {
    /// Wakes the other side (which raised its flag). Never waits.
    fn ring(&self);
    /// Sleeps until rung: `Ok(true)`, possibly for a ring meant for an earlier sleep; or
    /// `Ok(false)` once the other side has gone (closed its end, or died).
    fn wait(&self) -> io::Result<bool>;
}

impl<B: Bell> Bell for Arc<B> {
    fn ring(&self) {
        (**self).ring()
    }
    fn wait(&self) -> io::Result<bool> {
        (**self).wait()
    }
}

fn broken(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the peer broke the shared ring: {what}"))
}

/// The writing side of a ring.
pub(crate) struct Producer<B> {
    ring: Ring,
    head: u64,
    tail: u64,
    bell: B,
}

impl<B: Bell> Producer<B> {
    pub(crate) fn new(ring: Ring, bell: B) -> Self {
        Producer { ring, head: 0, tail: 0, bell }
    }

    /// Bytes written so far: the stream position of the next byte.
    pub(crate) fn position(&self) -> u64 {
        self.head
    }

    /// Free bytes, from the consumer's `tail` (checked).
    fn room(&mut self) -> io::Result<u64> {
        let tail = self.ring.header().tail.0.load(Acquire);
        if tail < self.tail || tail > self.head {
            return Err(broken("its tail moved back or past our head"));
        }
        self.tail = tail;
        Ok(self.ring.cap - (self.head - tail))
    }

    /// How far the consumer has read (its `tail`). A tail that moved back or past our head
    /// (a lying peer) counts as everything read: such a peer gets nothing given back.
    pub(crate) fn read_up_to(&mut self) -> u64 {
        match self.room() {
            Ok(_) => self.tail,
            Err(_) => self.head,
        }
    }

    /// Room by the consumer's `tail` as last read: never more than the real room (a tail
    /// only moves forward), and no load of the line the consumer writes after every read.
    fn room_known(&self) -> u64 {
        self.ring.cap - (self.head - self.tail)
    }

    /// Writes all of `bytes`, sleeping while the ring is full. Fails once the consumer has
    /// gone (`BrokenPipe`) or broke the ring.
    pub(crate) fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let mut woken = false;
        while !bytes.is_empty() {
            // The consumer's `tail` is read only when the room known so far is short: a
            // small write into a roomy ring then touches no line the consumer writes
            // before it publishes `head` (that load was a cache miss on every message,
            // on the round trip's path).
            let known = self.room_known();
            let room = if known >= bytes.len() as u64 { known } else { self.room()? };
            if room == 0 {
                if woken {
                    // Woken, and still no room (a stale ring, or a peer ringing for
                    // nothing): others on this worker run before we wait again, so a
                    // bell kept full cannot hold the worker.
                    kcoro::yield_now();
                }
                self.wake_reader();
                self.wait_for_room()?;
                woken = true;
                continue;
            }
            let n = room.min(bytes.len() as u64) as usize;
            self.ring.copy_in(self.head, &bytes[..n]);
            self.head += n as u64;
            self.ring.header().head.0.store(self.head, Release);
            bytes = &bytes[n..];
        }
        self.wake_reader();
        Ok(())
    }

    fn wake_reader(&self) {
        if self.ring.header().reader_asleep.0.swap(0, AcqRel) != 0 {
            self.bell.ring();
        }
    }

    fn wait_for_room(&mut self) -> io::Result<()> {
        self.ring.header().writer_asleep.0.swap(1, AcqRel);
        if self.room()? > 0 {
            self.ring.header().writer_asleep.0.swap(0, AcqRel);
            return Ok(());
        }
        let rung = self.bell.wait()?;
        self.ring.header().writer_asleep.0.swap(0, AcqRel);
        if rung { Ok(()) } else { Err(io::ErrorKind::BrokenPipe.into()) }
    }
}

/// The reading side of a ring.
pub(crate) struct Consumer<B> {
    ring: Ring,
    tail: u64,
    head: u64,
    bell: B,
    spin: Duration,
    /// Set when our side closed: from then on nothing more is taken out of the ring, so
    /// the producer sees, in our tail, exactly what we read (it gives back the values of
    /// replies we never read).
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// `tail`, for a [`ReadWait`] that waits without holding the consumer.
    read: Arc<std::sync::atomic::AtomicU64>,
}

/// What one step of waiting for bytes found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Look at the ring (again): spinning, or bytes came while we were about to sleep.
    Look,
    /// The producer rang: there may be bytes (or it rang for an earlier sleep).
    Rung,
    /// The producer has gone: what it wrote before is all there will be.
    Gone,
}

/// One step of a reader's wait on an empty ring: a look while `spin` lasts, else the
/// sleep protocol (the flag raised with a swap, one more look, the bell, the flag taken
/// down with a swap). `ready` says whether the producer's `head` passed what we read; a
/// lying `head` is caught by the read that follows, not here.
fn wait_step<B: Bell>(
    header: &Header,
    bell: &B,
    spin: &mut Spin,
    ready: impl Fn() -> bool,
) -> io::Result<Waited> {
    if spin.again() {
        return Ok(Waited::Look);
    }
    header.reader_asleep.0.swap(1, AcqRel);
    if ready() {
        header.reader_asleep.0.swap(0, AcqRel);
        return Ok(Waited::Look);
    }
    let rung = bell.wait()?;
    header.reader_asleep.0.swap(0, AcqRel);
    Ok(if rung { Waited::Rung } else { Waited::Gone })
}

impl<B: Bell> Consumer<B> {
    /// A consumer that spins for up to `spin` on an empty ring before it sleeps.
    pub(crate) fn new(ring: Ring, bell: B, spin: Duration) -> Self {
        Consumer { ring, tail: 0, head: 0, bell, spin, closed: Arc::default(), read: Arc::default() }
    }

    /// The flag that, once set, ends this consumer's reads (see `closed`).
    pub(crate) fn closed_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.closed)
    }

    /// Bytes read so far: the stream position of the next byte.
    pub(crate) fn position(&self) -> u64 {
        self.tail
    }

    /// Bytes waiting, from the producer's `head` (checked).
    fn available(&mut self) -> io::Result<u64> {
        let head = self.ring.header().head.0.load(Acquire);
        if head < self.head || head.wrapping_sub(self.tail) > self.ring.cap {
            return Err(broken("its head moved back or past our tail by more than the ring"));
        }
        self.head = head;
        Ok(head - self.tail)
    }

    /// Reads what is there into `buf` (not empty), waiting for something; 0 at the end of
    /// the stream (the producer has gone and everything it wrote was read).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut spin = Spin::new(self.spin);
        let mut woken = false;
        loop {
            if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                return Ok(0);
            }
            let n = self.take(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if woken {
                // Rung for nothing: as in `Producer::write_all`, others run first.
                kcoro::yield_now();
            }
            let tail = self.tail;
            let header = self.ring.header();
            match wait_step(header, &self.bell, &mut spin, || header.head.0.load(Acquire) != tail)? {
                Waited::Look => {}
                Waited::Rung => woken = true,
                // What the producer wrote before it went, then the end.
                Waited::Gone => return self.take(buf),
            }
        }
    }

    /// Takes what is there now without waiting: `None` when the ring is empty, `Some(0)`
    /// once our side closed.
    pub(crate) fn try_read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(Some(0));
        }
        let n = self.take(buf)?;
        Ok((n > 0).then_some(n))
    }

    /// This ring's waiting half, for a reader that waits without holding the consumer
    /// (so that another may take what comes meanwhile).
    pub(crate) fn waiter(&self) -> ReadWait<B>
    where
        B: Clone,
    {
        ReadWait {
            ring: self.ring.twin(),
            bell: self.bell.clone(),
            spin: self.spin,
            closed: Arc::clone(&self.closed),
            read: Arc::clone(&self.read),
        }
    }

    /// Takes what is there now, up to `buf.len()`, and gives the space back; nothing once
    /// our side closed.
    fn take(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(0);
        }
        let available = self.available()?;
        if available == 0 {
            return Ok(0);
        }
        let n = available.min(buf.len() as u64) as usize;
        self.ring.copy_out(self.tail, &mut buf[..n]);
        self.tail += n as u64;
        self.ring.header().tail.0.store(self.tail, Release);
        self.read.store(self.tail, std::sync::atomic::Ordering::Release);
        if self.ring.header().writer_asleep.0.swap(0, AcqRel) != 0 {
            self.bell.ring();
        }
        Ok(n)
    }
}

/// A consumer's waiting half ([`Consumer::waiter`]): waits until its ring holds bytes
/// past what the consumer read, by the same protocol as [`Consumer::read`], without
/// holding the consumer. Whoever then holds the consumer takes the bytes.
pub(crate) struct ReadWait<B> {
    ring: Ring,
    bell: B,
    spin: Duration,
    closed: Arc<std::sync::atomic::AtomicBool>,
    read: Arc<std::sync::atomic::AtomicU64>,
}

impl<B: Bell> ReadWait<B> {
    /// A fresh spin of this ring's budget.
    pub(crate) fn spin(&self) -> Spin {
        Spin::new(self.spin)
    }

    /// Waits, spending `spin`, until there may be bytes to take (`Look`), the producer
    /// rang (`Rung`: there may be none, if someone else took them) or has gone (`Gone`).
    /// Our side's close answers `Look` (the next take says the end).
    pub(crate) fn wait(&self, spin: &mut Spin) -> io::Result<Waited> {
        let header = self.ring.header();
        let ready = || {
            self.closed.load(std::sync::atomic::Ordering::Acquire)
                || header.head.0.load(Acquire) != self.read.load(std::sync::atomic::Ordering::Acquire)
        };
        loop {
            if ready() {
                return Ok(Waited::Look);
            }
            match wait_step(header, &self.bell, spin, ready)? {
                Waited::Look => {}
                other => return Ok(other),
            }
        }
    }
}

/// A bounded spin: `again` says whether to look once more, until the budget is spent.
/// Each look yields to the other coroutines of its worker (the one that will answer, or
/// that our own side just woke, may be among them), and every [`Spin::OS_YIELD`] looks to
/// the other threads of its CPU: on a machine of few CPUs the thread that will answer may
/// need the very CPU this one spins on. (Measured on two CPUs, pinned round trips of 64
/// bytes: 4.5 us with a coroutine yield every 8 looks and a thread yield every 64; 2.9-3.5
/// us with these.) A yield costs 0.5-0.8 us on the VMs we measure on even when nobody
/// else runs, and a reply that lands during it waits for it: so a thread whose yields run
/// nobody yields less often ([`Spin::next_every`]), and one whose yields run somebody goes
/// back to every 16 looks. (Pinned 64-byte round trips over `shm:`, one worker a side:
/// 1.43-1.52 us yielding every 16 looks, 1.19-1.22 us adapting.)
pub(crate) struct Spin {
    budget: Duration,
    started: Option<Instant>,
    n: u32,
}

thread_local! {
    /// Looks between this thread's yields of its CPU while a ring is empty.
    static OS_YIELD_EVERY: std::cell::Cell<u32> = const { std::cell::Cell::new(Spin::OS_YIELD) };
}

impl Spin {
    const OS_YIELD: u32 = 16;
    const OS_YIELD_MAX: u32 = 256;
    const NOBODY_RAN: Duration = Duration::from_micros(2);

    pub(crate) fn new(budget: Duration) -> Spin {
        Spin { budget, started: None, n: 0 }
    }

    /// Whether to look again; once the budget ran out, never again (a reader woken for
    /// nothing goes back to sleep, it does not spin once more per wake).
    pub(crate) fn again(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        self.n = self.n.wrapping_add(1);
        kcoro::yield_now();
        if self.n % Self::OS_YIELD == 0 {
            let now = Instant::now();
            if now.duration_since(*self.started.get_or_insert(now)) >= self.budget {
                self.budget = Duration::ZERO;
                return false;
            }
            // The budget is checked every 16 looks whatever the interval between yields
            // (a multiple of 16), so a spin still ends when its budget says.
            let every = OS_YIELD_EVERY.get();
            if self.n % every == 0 {
                std::thread::yield_now();
                OS_YIELD_EVERY.set(Self::next_every(every, now.elapsed()));
            }
        }
        true
    }

    /// Looks before the next yield of the CPU, after one that took `took`: a yield that
    /// came straight back ran nobody (no other thread wanted this CPU), so the next waits
    /// twice as long, up to [`Spin::OS_YIELD_MAX`]; one that ran somebody brings the
    /// interval back to [`Spin::OS_YIELD`].
    fn next_every(every: u32, took: Duration) -> u32 {
        if took < Self::NOBODY_RAN { (every * 2).min(Self::OS_YIELD_MAX) } else { Self::OS_YIELD }
    }
}

/// Plays a lying peer against both ends of a ring, from `bytes`: each step moves the
/// peer's head or tail anywhere, scribbles on the ring's bytes, or has our side read or
/// write. For the fuzzer (`fuzz/`, target `rings`) and the stable test that replays its
/// corpus: whatever the peer does, our side must not panic, read or write out of bounds,
/// return more than asked, or wait (the peer's bell says it has gone); once it has seen a
/// lie it only fails.
#[cfg(not(loom))]
#[doc(hidden)]
pub fn fuzz_rings(bytes: &[u8]) {
    /// The peer never wakes us: a wait sees it gone, so nothing blocks.
    struct Gone;
    impl Bell for Gone {
        fn ring(&self) {}
        fn wait(&self) -> io::Result<bool> {
            Ok(false)
        }
    }
    const CAP: u64 = 64;
    let ours_in = Ring::in_heap(CAP);
    let (ours_out, peer) = (ours_in.twin(), ours_in.twin());
    let mut rx = Consumer::new(ours_in, Gone, Duration::ZERO);
    let mut tx = Producer::new(ours_out, Gone);
    let mut buf = [0u8; 100];
    for step in bytes.chunks(9) {
        let (op, arg) =
            (step[0] % 6, step.get(1..9).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))));
        let (before_rx, before_tx) = (rx.position(), tx.position());
        match op {
            0 => peer.header().head.0.store(arg, Release),
            1 => peer.header().tail.0.store(arg, Release),
            2 => peer.copy_in(arg, &step[1..]),
            3 => {
                // Half the reads wait (as a server's reader does), half take what is there
                // (as a client's waiting request does).
                let want = (arg % 100) as usize + 1;
                let got = if arg & 1 == 0 {
                    rx.read(&mut buf[..want]).map(Some)
                } else {
                    rx.try_read(&mut buf[..want])
                };
                if let Ok(n) = got {
                    let n = n.unwrap_or(0);
                    assert!(n <= want);
                    assert_eq!(rx.position(), before_rx + n as u64);
                }
            }
            4 => {
                let n = (arg % 100) as usize;
                if tx.write_all(&buf[..n]).is_ok() {
                    assert_eq!(tx.position(), before_tx + n as u64);
                }
            }
            _ => {
                let mut out = [0u8; 8];
                peer.copy_out(arg, &mut out);
            }
        }
        assert!(rx.position() >= before_rx && tx.position() >= before_tx);
        assert!(rx.position() <= rx.head && rx.head - rx.position() <= CAP);
        assert!(tx.tail <= tx.position() && tx.position() - tx.tail <= CAP);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    /// One direction of waking between threads: a count of rings and a condition
    /// variable; `gone` ends waits, as a closed socket does.
    #[derive(Default)]
    struct ThreadBell {
        rung: Mutex<u32>,
        cv: std::sync::Condvar,
        gone: AtomicBool,
    }

    impl ThreadBell {
        fn hang_up(&self) {
            self.gone.store(true, Release);
            self.cv.notify_all();
        }
    }

    /// A side's bell: it rings `out` and sleeps on `inn`, as a transport side writes and
    /// reads its own socket end.
    struct Side {
        out: Arc<ThreadBell>,
        inn: Arc<ThreadBell>,
    }

    impl Bell for Side {
        fn ring(&self) {
            *self.out.rung.lock().unwrap() += 1;
            self.out.cv.notify_all();
        }
        fn wait(&self) -> io::Result<bool> {
            let mut r = self.inn.rung.lock().unwrap();
            while *r == 0 && !self.inn.gone.load(Acquire) {
                r = self.inn.cv.wait(r).unwrap();
            }
            let rung = *r > 0;
            *r = 0; // a read drains every ring queued
            Ok(rung || !self.inn.gone.load(Acquire))
        }
    }

    /// A producer and a consumer over one heap ring, and the bells that wake the reader
    /// and the writer.
    fn pair(cap: u64, spin: Duration) -> (Producer<Side>, Consumer<Side>, Arc<ThreadBell>, Arc<ThreadBell>) {
        let ring = Ring::in_heap(cap);
        let twin = ring.twin();
        let (to_reader, to_writer) = (Arc::new(ThreadBell::default()), Arc::new(ThreadBell::default()));
        let tx = Producer::new(ring, Side { out: Arc::clone(&to_reader), inn: Arc::clone(&to_writer) });
        let rx = Consumer::new(twin, Side { out: Arc::clone(&to_writer), inn: Arc::clone(&to_reader) }, spin);
        (tx, rx, to_reader, to_writer)
    }

    /// A stream many times the ring's size arrives whole and in order, through wrap-arounds,
    /// a full ring and a sleeping reader, with and without spinning.
    #[test]
    fn bytes_arrive_in_order_through_a_small_ring() {
        for spin in [Duration::ZERO, Duration::from_micros(50)] {
            let (mut tx, mut rx, ..) = pair(64, spin);
            let total: usize = 100_000;
            let writer = std::thread::spawn(move || {
                let bytes: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
                for chunk in bytes.chunks(37) {
                    tx.write_all(chunk).unwrap();
                }
                tx
            });
            let mut got = Vec::with_capacity(total);
            let mut buf = [0u8; 50];
            while got.len() < total {
                let n = rx.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            let tx = writer.join().unwrap();
            assert_eq!(tx.position(), total as u64);
            assert_eq!(rx.position(), total as u64);
            assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        }
    }

    /// The end of the stream comes after what the producer wrote, and a writer whose
    /// reader has gone fails instead of waiting for room.
    #[test]
    fn the_end_comes_after_the_last_bytes() {
        let (mut tx, mut rx, to_reader, to_writer) = pair(64, Duration::ZERO);
        tx.write_all(b"last words").unwrap();
        to_reader.hang_up(); // the producer's end closes: the reader sees the end
        to_writer.hang_up(); // and the consumer's: the writer sees it gone
        let mut buf = [0u8; 64];
        assert_eq!(rx.read(&mut buf).unwrap(), 10);
        assert_eq!(&buf[..10], b"last words");
        assert_eq!(rx.read(&mut buf).unwrap(), 0);
        tx.write_all(&[7; 64]).unwrap();
        assert_eq!(tx.write_all(&[7; 1]).unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    /// A head or tail the peer moved where it cannot be is an error, not an out-of-bounds
    /// read or a wait for ever.
    #[test]
    fn a_peer_that_moves_the_indices_is_refused() {
        // Each case: a fresh ring, and the peer's own view of its header to lie through.
        let lying = |spin| {
            let (tx, rx, ..) = pair(64, spin);
            let peer = tx.ring.twin();
            (tx, rx, peer)
        };
        let mut buf = [0u8; 8];

        let (_tx, mut rx, peer) = lying(Duration::ZERO);
        peer.header().head.0.store(65, Release); // more than the ring holds
        assert_eq!(rx.read(&mut buf).unwrap_err().kind(), io::ErrorKind::InvalidData);

        let (_tx, mut rx, peer) = lying(Duration::ZERO);
        peer.header().head.0.store(4, Release);
        assert_eq!(rx.read(&mut buf).unwrap(), 4);
        peer.header().head.0.store(2, Release); // backwards
        assert_eq!(rx.read(&mut buf).unwrap_err().kind(), io::ErrorKind::InvalidData);

        // The producer reads the consumer's tail when the room it knows of is short (a
        // write into a roomy ring trusts the last tail it read, which never gives it more
        // room than there is): a lie there is refused when it is read.
        let (mut tx, _rx, peer) = lying(Duration::ZERO);
        tx.write_all(b"abcd").unwrap();
        peer.header().tail.0.store(9, Release); // past what was written
        tx.write_all(b"e").unwrap(); // 59 bytes of known room: the tail is not read
        assert_eq!(tx.write_all(&[0; 60]).unwrap_err().kind(), io::ErrorKind::InvalidData);

        let (mut tx, _rx, peer) = lying(Duration::ZERO);
        tx.write_all(b"abcd").unwrap();
        peer.header().tail.0.store(3, Release);
        tx.write_all(&[0; 61]).unwrap(); // needs the tail's 3
        peer.header().tail.0.store(1, Release); // backwards
        assert_eq!(tx.write_all(&[0; 4]).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    /// A spin yields its CPU less often while its yields run nobody, and every 16 looks
    /// again once one ran somebody.
    #[test]
    fn a_spin_yields_less_often_while_nobody_else_wants_the_cpu() {
        let fast = Duration::from_nanos(600);
        let slow = Duration::from_micros(40);
        let mut every = Spin::OS_YIELD;
        let mut seen = vec![every];
        for _ in 0..6 {
            every = Spin::next_every(every, fast);
            seen.push(every);
        }
        assert_eq!(seen, [16, 32, 64, 128, 256, 256, 256]);
        assert_eq!(Spin::next_every(every, slow), Spin::OS_YIELD);
        assert_eq!(Spin::next_every(64, slow), Spin::OS_YIELD);
    }

    /// A producer that trusts the tail it last read never writes over bytes the consumer
    /// has not read: it writes into the room it knows of, reads the tail when that is
    /// short, and waits while the real room is short too.
    #[test]
    fn a_known_tail_never_gives_more_room_than_there_is() {
        let (mut tx, mut rx, _, to_writer) = pair(64, Duration::ZERO);
        tx.write_all(&[1; 60]).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(rx.read(&mut buf[..10]).unwrap(), 10);
        // Known room 4 (the tail last read was 0), real room 14: fits what is known.
        tx.write_all(&[2; 4]).unwrap();
        // Known room 0, real room 10: the eleventh byte would land on position 10, not
        // read yet, so the writer must wait; with the reader's bell gone, that wait
        // ends the write after the 10 bytes that fit.
        to_writer.hang_up();
        assert_eq!(tx.write_all(&[3; 11]).unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(tx.position(), 74);
        let mut got = vec![1u8; 10];
        while got.len() < 74 {
            let n = rx.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got[..60], &[1; 60][..]);
        assert_eq!(&got[60..64], &[2; 4][..]);
        assert_eq!(&got[64..], &[3; 10][..]);
    }

    /// A consumer whose side closed takes nothing more, even what the producer wrote
    /// before: the producer's count of what was read stays true.
    #[test]
    fn a_closed_consumer_takes_nothing_more() {
        let (mut tx, mut rx, to_reader, _) = pair(64, Duration::ZERO);
        tx.write_all(b"read").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(rx.read(&mut buf).unwrap(), 4);
        tx.write_all(b"never read").unwrap();
        rx.closed_flag().store(true, std::sync::atomic::Ordering::Release);
        to_reader.hang_up();
        assert_eq!(rx.read(&mut buf).unwrap(), 0);
        assert_eq!(tx.read_up_to(), 4);
    }

    /// What the consumer has read, as the server counts it to give back the values of
    /// replies a dead client never read: its tail while honest, everything once it lies
    /// (a peer that moves its tail back must not get values given back twice).
    #[test]
    fn read_up_to_follows_an_honest_tail_and_counts_all_for_a_lying_one() {
        let (mut tx, mut rx, ..) = pair(64, Duration::ZERO);
        tx.write_all(b"0123456789").unwrap();
        assert_eq!(tx.read_up_to(), 0);
        let mut buf = [0u8; 4];
        assert_eq!(rx.read(&mut buf).unwrap(), 4);
        assert_eq!(tx.read_up_to(), 4);

        let (mut tx, _rx, ..) = pair(64, Duration::ZERO);
        let peer = tx.ring.twin(); // the consumer's view of the header, to lie through
        tx.write_all(b"abcd").unwrap();
        peer.header().tail.0.store(3, Release);
        assert_eq!(tx.read_up_to(), 3);
        peer.header().tail.0.store(1, Release); // backwards
        assert_eq!(tx.read_up_to(), 4);
        peer.header().tail.0.store(99, Release); // past the head
        assert_eq!(tx.read_up_to(), 4);
    }
}

/// The wake-up protocol under loom: a reader that sleeps on an empty ring and a writer
/// that fills a full one both wake, and every byte arrives once, in order.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::{Condvar, Mutex};

    #[derive(Default)]
    struct LoomBell {
        rung: Mutex<u32>,
        cv: Condvar,
    }

    impl Bell for LoomBell {
        fn ring(&self) {
            *self.rung.lock().unwrap() += 1;
            self.cv.notify_all();
        }
        fn wait(&self) -> io::Result<bool> {
            let mut r = self.rung.lock().unwrap();
            while *r == 0 {
                r = self.cv.wait(r).unwrap();
            }
            *r -= 1;
            Ok(true)
        }
    }

    /// A side's bell: rings one direction, sleeps on the other.
    #[derive(Clone)]
    struct Split(Arc<LoomBell>, Arc<LoomBell>);
    impl Bell for Split {
        fn ring(&self) {
            self.0.ring()
        }
        fn wait(&self) -> io::Result<bool> {
            self.1.wait()
        }
    }

    fn run(cap: u64, chunks: &'static [&'static [u8]]) {
        loom::model(move || {
            let ring = Ring::in_heap(cap);
            let twin = ring.twin();
            // One bell per direction of waking, as the transport has one socket end each.
            let (to_reader, to_writer) = (Arc::new(LoomBell::default()), Arc::new(LoomBell::default()));
            let mut tx = Producer::new(ring, Split(Arc::clone(&to_reader), Arc::clone(&to_writer)));
            let mut rx = Consumer::new(twin, Split(to_writer, to_reader), Duration::ZERO);
            let writer = loom::thread::spawn(move || {
                for c in chunks {
                    tx.write_all(c).unwrap();
                }
            });
            let want: Vec<u8> = chunks.concat();
            let mut got = Vec::new();
            let mut buf = [0u8; 8];
            while got.len() < want.len() {
                let n = rx.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            writer.join().unwrap();
            assert_eq!(got, want);
        });
    }

    /// A reader that waits apart from its consumer ([`ReadWait`], as a connection's reader
    /// does so that a waiting request can take its place) is woken the same way.
    #[test]
    fn loom_ring_a_reader_waiting_apart_is_woken() {
        loom::model(|| {
            let ring = Ring::in_heap(2);
            let twin = ring.twin();
            let (to_reader, to_writer) = (Arc::new(LoomBell::default()), Arc::new(LoomBell::default()));
            let mut tx = Producer::new(ring, Split(Arc::clone(&to_reader), Arc::clone(&to_writer)));
            let mut rx = Consumer::new(twin, Split(to_writer, to_reader), Duration::ZERO);
            let waiter = rx.waiter();
            let writer = loom::thread::spawn(move || {
                tx.write_all(b"abc").unwrap();
            });
            let mut got = Vec::new();
            let mut buf = [0u8; 8];
            while got.len() < 3 {
                match rx.try_read(&mut buf).unwrap() {
                    Some(n) => got.extend_from_slice(&buf[..n]),
                    None => {
                        let mut spin = Spin::new(Duration::ZERO);
                        assert_ne!(waiter.wait(&mut spin).unwrap(), Waited::Gone);
                    }
                }
            }
            writer.join().unwrap();
            assert_eq!(got, b"abc");
        });
    }

    /// The reader sleeps before the bytes come: the writer must see its flag.
    #[test]
    fn loom_ring_a_sleeping_reader_is_woken() {
        run(4, &[b"ab", b"c"]);
    }

    /// The ring fills: the writer sleeps until the reader gives room back.
    #[test]
    fn loom_ring_a_writer_waiting_for_room_is_woken() {
        run(2, &[b"abcd"]);
    }

    /// Both at once, several times over: the ring fills and empties while each side
    /// sleeps and wakes the other.
    #[test]
    fn loom_ring_sleeps_on_both_sides_in_turn() {
        run(2, &[b"abc", b"d", b"ef"]);
    }
}
