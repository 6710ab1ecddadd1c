//! Go's channel tests, rewritten in Rust against kcoro's API: one `mod` per Go file, each
//! citing its source. The shapes follow the Go originals (and the cases crossbeam-channel
//! keeps in its own `tests/golang.rs`); the code is new.
//!
//! Every test runs twice, with coroutines on a two-worker runtime and with plain threads
//! (`common::both`), and every party that Go would leak is joined under a watchdog.
//!
//! # Translation
//! - `make(chan T)` is [`chan::rendezvous`], `make(chan T, n)` is [`chan::buffered`]`(n)`
//!   (kcoro's `buffered(0)` means a default capacity, so capacity 0 must map to
//!   rendezvous: see [`make`]).
//! - `close(c)` is `tx.close()`. A receive from a closed, drained channel gives
//!   `Err(ChanError::Closed)` where Go gives the zero value (with `ok == false`), so Go's
//!   `v, ok := <-c` and `v := <-c` become one `Result`. Sending on a closed channel, which
//!   panics in Go, fails with `Closed` and hands the value back; closing twice, which
//!   panics in Go, returns `false`.
//! - `select` is [`kcoro::select_unbiased!`] (Go chooses uniformly among ready cases),
//!   `select` with `default` adds a `default` clause, and a runtime-built case list is a
//!   [`Select`]. A nil channel (never ready) is emulated by leaving its clause out of a
//!   dynamic `Select`; blocking forever is shown by a timed wait that times out.
//! - `time.Sleep` is [`kcoro::sleep`] and only ever an input (time for another party to
//!   block), `runtime.Gosched` is [`kcoro::yield_now`], a `sync.WaitGroup` is a set of
//!   joins.
//! - Loop counts are cut down from Go's (to its `-short` counts or near them), so the
//!   whole file runs in about a second in a debug build.
//!
//! # Not ported
//! - `chan_test.go`: `TestNoShrinkStackWhileParking` races Go's GC stack shrinking with
//!   parking; kcoro stacks never move or shrink, so nothing corresponds.
//! - `sieve2.go`: a prime wheel over a heap of channels; `sieve1` covers the channel
//!   pattern (a chain of filters) and crossbeam keeps only `sieve1` too.
//! - The other files of `test/chan` (`perm.go`: compile-time direction checks; `powser*`,
//!   `select8`, `sendstmt`), as in crossbeam.
//!
//! `TestSelectFairness` is ported but ignored: it fails on a bug (see its attribute).
//!
//! The Go tests are Copyright (c) 2009 The Go Authors, under a BSD-style license
//! (<https://golang.org/LICENSE>).

use crate::common;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use common::{Joiner, Mode, SETTLE, both, join_all};
use kcoro::chan::{self, ChanError, Receiver, Select, Sender};

/// Go's `make(chan T, cap)`.
fn make<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    if cap == 0 { chan::rendezvous() } else { chan::buffered(cap) }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// https://github.com/golang/go/blob/master/test/chan/doubleselect.go
mod doubleselect {
    use super::*;

    const ITERATIONS: i32 = 2_000;

    /// Sends each value on whichever of the four channels is ready, then closes them all.
    fn sender(n: i32, c: [Sender<i32>; 4]) {
        for i in 0..n {
            kcoro::select_unbiased! {
                send(c[0], i) -> r => r.unwrap(),
                send(c[1], i) -> r => r.unwrap(),
                send(c[2], i) -> r => r.unwrap(),
                send(c[3], i) -> r => r.unwrap(),
            }
        }
        for tx in &c {
            tx.close();
        }
    }

    /// Forwards `inp` to `out` until `inp` closes, then says so on `done`.
    fn mux(out: Sender<i32>, inp: Receiver<i32>, done: Sender<bool>) {
        for v in &inp {
            out.send(v).unwrap();
        }
        done.send(true).unwrap();
    }

    #[test]
    fn main() {
        both(|m| {
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| make::<i32>(0)).unzip();
            let txs: [Sender<i32>; 4] = txs.try_into().unwrap_or_else(|_| unreachable!());
            let (done_tx, done_rx) = make::<bool>(0);
            let (cmux_tx, cmux_rx) = make::<i32>(0);
            let mut parties = vec![m.go(move || sender(ITERATIONS, txs))];
            for rx in rxs {
                let (out, done) = (cmux_tx.clone(), done_tx.clone());
                parties.push(m.go(move || mux(out, rx, done)));
            }
            parties.push(m.go(move || {
                for _ in 0..4 {
                    done_rx.recv().unwrap();
                }
                cmux_tx.close();
            }));
            // The receiver: no value twice (Go's check) and, here, none lost either.
            let mut seen = HashSet::new();
            for v in &cmux_rx {
                assert!(seen.insert(v), "got duplicate value for {v}");
            }
            assert_eq!(seen.len(), ITERATIONS as usize);
            join_all(parties);
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/fifo.go
mod fifo {
    use super::*;

    const N: i32 = 10;

    #[test]
    fn asynch_fifo() {
        both(|_| {
            let (tx, rx) = make::<i32>(N as usize);
            for i in 0..N {
                tx.send(i).unwrap();
            }
            for i in 0..N {
                assert_eq!(rx.recv(), Ok(i), "bad receive");
            }
        });
    }

    #[test]
    fn synch_fifo() {
        both(|m| {
            let (ch_tx, ch_rx) = make::<i32>(0);
            let (start, mut inp) = make::<i32>(0);
            let mut parties = Vec::new();
            for i in 0..N {
                // Link i waits for its turn on `prev`, takes one value, passes the turn on.
                let (out, next) = make::<i32>(0);
                let prev = std::mem::replace(&mut inp, next);
                let ch = ch_rx.clone();
                parties.push(m.go(move || {
                    prev.recv().unwrap();
                    assert_eq!(ch.recv(), Ok(i));
                    out.send(1).unwrap();
                }));
            }
            start.send(0).unwrap();
            for i in 0..N {
                ch_tx.send(i).unwrap();
            }
            assert_eq!(inp.recv(), Ok(1));
            join_all(parties);
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/goroutines.go
mod goroutines {
    use super::*;

    #[test]
    fn main() {
        both(|m| {
            // Go's default is 10,000 goroutines; threads are costlier than coroutines.
            let n = if m.is_coro() { 2_000 } else { 200 };
            let (leftmost_tx, leftmost_rx) = make::<i32>(0);
            let mut left = leftmost_tx;
            let mut parties = Vec::with_capacity(n + 1);
            for _ in 0..n {
                let (right_tx, right_rx) = make::<i32>(0);
                let l = std::mem::replace(&mut left, right_tx);
                parties.push(m.go(move || {
                    let v = right_rx.recv().unwrap();
                    l.send(v).unwrap();
                }));
            }
            let rightmost = left;
            parties.push(m.go(move || rightmost.send(1).unwrap()));
            assert_eq!(leftmost_rx.recv(), Ok(1));
            join_all(parties);
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/nonblock.go
mod nonblock {
    use super::*;

    /// Go's `sleep` between non-blocking attempts: give the other party a chance to run.
    fn pause() {
        kcoro::yield_now();
        kcoro::sleep(Duration::from_micros(50));
    }

    /// Retries a non-blocking operation until it succeeds (watchdog-bounded, where Go gives
    /// up after `maxTries`).
    fn retry(what: &str, mut attempt: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + common::WATCHDOG;
        while !attempt() {
            assert!(std::time::Instant::now() < deadline, "{what}: never ready");
            pause();
        }
    }

    /// One of Go's per-type blocks: a non-blocking receive on the empty channel takes the
    /// default; non-blocking sends reach a receiving party; non-blocking receives reach a
    /// sending party.
    fn exercise<T>(m: &Mode, buffer: usize, to_receiver: T, from_sender: T)
    where
        T: Clone + PartialEq + Debug + Send + 'static,
    {
        let (sync_tx, sync_rx) = make::<bool>(0);
        let (tx, rx) = make::<T>(buffer);

        kcoro::select_unbiased! {
            recv(rx) -> _ => panic!("blocked sender (buffer {buffer})"),
            default => {}
        }

        let (r, s, want) = (rx.clone(), sync_tx.clone(), to_receiver.clone());
        let receiver = m.go(move || {
            assert_eq!(r.recv(), Ok(want), "receiver value");
            s.send(true).unwrap();
        });
        retry("receiver", || {
            kcoro::select_unbiased! {
                send(tx, to_receiver.clone()) -> r => { r.unwrap(); true }
                default => false,
            }
        });
        sync_rx.recv().unwrap();
        receiver.join();

        let (t, s, v) = (tx.clone(), sync_tx.clone(), from_sender.clone());
        let sender = m.go(move || {
            t.send(v).unwrap();
            s.send(true).unwrap();
        });
        if buffer > 0 {
            sync_rx.recv().unwrap();
        }
        retry("sender", || {
            kcoro::select_unbiased! {
                recv(rx) -> v => { assert_eq!(v, Ok(from_sender.clone()), "sender value"); true }
                default => false,
            }
        });
        if buffer == 0 {
            sync_rx.recv().unwrap();
        }
        sender.join();
    }

    #[test]
    fn main() {
        both(|m| {
            for buffer in 0..2 {
                exercise::<i32>(&m, buffer, 123, 234);
                exercise::<i64>(&m, buffer, 123_456, 234_567);
                exercise::<bool>(&m, buffer, true, true);
                exercise::<String>(&m, buffer, "hello".into(), "hello again".into());
            }
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/select.go
mod select {
    use super::*;

    /// Go's `GetValue`: 1, 2, 4, … as `shift` grows; counts its calls.
    struct Values {
        shift: Cell<u32>,
        counter: Cell<u32>,
    }

    impl Values {
        fn get(&self) -> u32 {
            self.counter.set(self.counter.get() + 1);
            1 << self.shift.get()
        }
    }

    /// Go's `Send`: non-blocking selects sending on `a` and `b` until neither is ready; a
    /// channel that took a value becomes nil (its clause is left out). Returns the number
    /// of sends.
    fn send(vals: &Values, mut a: Option<&Sender<u32>>, mut b: Option<&Sender<u32>>) -> u32 {
        let mut i = 0;
        loop {
            // Go evaluates every case's value, nil channel or not.
            let (v1, v2) = (vals.get(), vals.get());
            let mut sel = Select::unbiased();
            let ia = a.map(|tx| sel.send(tx, v1));
            let ib = b.map(|tx| sel.send(tx, v2));
            match sel.try_wait() {
                Ok(op) if Some(op.index()) == ia => {
                    op.send(a.take().unwrap()).unwrap();
                    i += 1;
                }
                Ok(op) if Some(op.index()) == ib => {
                    op.send(b.take().unwrap()).unwrap();
                    i += 1;
                }
                Ok(op) => panic!("select chose clause {} of none", op.index()),
                Err(e) => {
                    assert_eq!(e, ChanError::WouldBlock);
                    break;
                }
            }
            vals.shift.set(vals.shift.get() + 1);
        }
        i
    }

    #[test]
    fn main() {
        both(|_| {
            let vals = Values { shift: Cell::new(0), counter: Cell::new(0) };
            let (a_tx, a_rx) = make::<u32>(1);
            let (b_tx, b_rx) = make::<u32>(1);

            assert_eq!(send(&vals, Some(&a_tx), Some(&b_tx)), 2);
            let (av, bv) = (a_rx.recv().unwrap(), b_rx.recv().unwrap());
            assert_eq!(av | bv, 3, "bad values {av} {bv}");

            assert_eq!(send(&vals, Some(&a_tx), None), 1);
            assert_eq!(vals.counter.get(), 10);
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/select2.go
mod select2 {
    //! Go checks that 100,000 selects leave the heap no bigger. A counting allocator does
    //! the same here; it counts only on threads that flag themselves (this test's threads,
    //! or the workers of this test's own runtime), so tests running in parallel do not
    //! disturb the count.

    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::AtomicIsize;

    const N: usize = 20_000;

    thread_local! {
        static TRACKED: Cell<bool> = const { Cell::new(false) };
    }

    /// Net bytes allocated by tracked threads.
    static NET: AtomicIsize = AtomicIsize::new(0);

    struct Counting;

    fn count(delta: isize) {
        if TRACKED.try_with(Cell::get).unwrap_or(false) {
            NET.fetch_add(delta, SeqCst);
        }
    }

    // SAFETY: forwards every call to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is passed on unchanged.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                count(layout.size() as isize);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as in `alloc`.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                count(layout.size() as isize);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as in `alloc`.
            unsafe { System.dealloc(ptr, layout) };
            count(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as in `alloc`.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                count(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    fn sender(tx: Sender<i32>, n: usize) {
        TRACKED.set(true);
        for _ in 0..n {
            tx.send(1).unwrap();
        }
    }

    fn receiver(rx: &Receiver<i32>, dummy: &Receiver<i32>, n: usize) {
        for _ in 0..n {
            kcoro::select_unbiased! {
                recv(rx) -> v => assert_eq!(v, Ok(1)),
                recv(dummy) -> _ => panic!("dummy"),
            }
        }
    }

    #[test]
    fn main() {
        both(|m| {
            TRACKED.set(true);
            // The counter sees this thread's allocations (else the check below is void).
            let probe = NET.load(SeqCst);
            let block = std::hint::black_box(vec![0u8; 1 << 20]);
            assert!(NET.load(SeqCst) - probe >= 1 << 20, "the counting allocator is not counting");
            drop(block);

            let (tx, rx) = make::<i32>(0);
            let (_dummy_tx, dummy_rx) = make::<i32>(0);

            // Warm up: queues and pools reach their working size.
            let t = tx.clone();
            let warm = m.go(move || sender(t, N));
            receiver(&rx, &dummy_rx, N);
            warm.join();
            let before = NET.load(SeqCst);

            // The second time should not grow the footprint by much.
            let t = tx.clone();
            let again = m.go(move || sender(t, N));
            receiver(&rx, &dummy_rx, N);
            again.join();
            let grown = NET.load(SeqCst) - before;
            // A leaked waiter per parked select or send would be N * (≥ 32 bytes).
            assert!(grown < (N as isize) * 2, "too much memory for {N} selects: {grown} bytes");
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/select3.go
mod select3 {
    //! Which operations block. Go's `testBlock(always, f)` runs `f` and sees it still
    //! blocked after 0.1 s; here the operation itself is given a short limit and must time
    //! out (its result is checked, not the time taken). `testBlock(never, f)` runs the
    //! blocking form, which must complete (under the watchdog). Go's nil channel is a
    //! clause left out of a dynamic `Select`; its `select {}` is an empty `Select`.

    use super::*;

    /// A select with no clauses (Go: `select {}`, or only nil-channel cases) blocks.
    fn empty_select_blocks() {
        assert_eq!(
            Select::new().timeout(SETTLE).wait().map(|op| op.index()).unwrap_err(),
            ChanError::Timeout
        );
    }

    #[test]
    fn main() {
        both(|_| {
            let (closed_tx, closed_rx) = make::<i32>(0);
            closed_tx.close();

            // Sending to / receiving from a nil channel blocks, and inside a select with
            // a default it is never selected (the clause is absent).
            empty_select_blocks();
            assert_eq!(Select::new().try_wait().map(|op| op.index()).unwrap_err(), ChanError::WouldBlock);

            // Sending to an async channel with free buffer space never blocks.
            let (tx, _rx) = make::<i32>(1);
            tx.send(7).unwrap();

            // Receiving from a closed channel never blocks.
            for _ in 0..10 {
                assert_eq!(closed_rx.recv(), Err(ChanError::Closed));
                assert_eq!(closed_rx.try_recv(), Err(ChanError::Closed));
            }

            // Sending to a closed channel fails (Go: panics) and hands the value back.
            let err = closed_tx.send(7).unwrap_err();
            assert!(err.is_closed());
            assert_eq!(err.into_inner(), 7);

            // Receiving from a non-ready channel always blocks.
            let (_tx, rx) = make::<i32>(0);
            assert_eq!(rx.recv_timeout(SETTLE), Err(ChanError::Timeout));

            // Empty selects, and selects with only nil channels, always block.
            empty_select_blocks();

            // Selects with non-ready non-nil channels always block.
            let blocked = kcoro::select_unbiased! {
                recv(rx) -> _ => panic!("control flow shouldn't reach here"),
                timeout(SETTLE) => true,
            };
            assert!(blocked);

            // Selects with default cases don't block, with or without (nil) channels.
            assert!(kcoro::select! { default => true });
            assert!(kcoro::select_unbiased! {
                recv(rx) -> _ => panic!("control flow shouldn't reach here"),
                default => true,
            });

            // Selects with ready channels don't block.
            let (tx, rx) = make::<i32>(1);
            kcoro::select_unbiased! {
                send(tx, 7) -> r => r.unwrap(),
                default => panic!("control flow shouldn't reach here"),
            }
            kcoro::select_unbiased! {
                recv(rx) -> v => assert_eq!(v, Ok(7)),
                default => panic!("control flow shouldn't reach here"),
            }

            // Selects with closed channels behave like ordinary operations.
            kcoro::select_unbiased! {
                recv(closed_rx) -> v => assert_eq!(v, Err(ChanError::Closed)),
            }
            kcoro::select_unbiased! {
                send(closed_tx, 7) -> r => assert_eq!(r.map_err(|e| (e.kind(), e.into_inner())), Err((ChanError::Closed, 7))),
            }

            // A select should not get confused if it sees itself.
            let (tx, rx) = make::<i32>(0);
            let blocked = kcoro::select_unbiased! {
                send(tx, 1) -> _ => panic!("matched its own receive"),
                recv(rx) -> _ => panic!("matched its own send"),
                timeout(SETTLE) => true,
            };
            assert!(blocked);
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/select4.go
mod select4 {
    use super::*;

    #[test]
    fn main() {
        both(|_| {
            let (tx, rx) = make::<i32>(1);
            let (_tx1, rx1) = make::<i32>(0);
            tx.send(42).unwrap();
            kcoro::select_unbiased! {
                recv(rx1) -> _ => panic!("BUG: the non-ready clause ran"),
                recv(rx) -> v => assert_eq!(v, Ok(42)),
            }
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/select5.go
mod select5 {
    //! Go generates one program per combination of select shapes around a single real
    //! send or receive on a buffered channel (so one goroutine suffices): optional
    //! `default`, dummy cases on a channel nobody uses, nil-channel cases, and the order
    //! in which case expressions are evaluated. Here the combinations are enumerated at
    //! run time with a dynamic `Select` (nil cases are left out, as a nil channel is
    //! never ready), and evaluation order is checked on the `select!` macro.

    use super::*;

    /// The optional companions of the real clause.
    #[derive(Debug, Clone, Copy)]
    struct Shape {
        default: bool,
        dummy_send: bool,
        dummy_recv: bool,
        /// Where the real clause goes among the companions.
        position: usize,
        unbiased: bool,
    }

    /// Every shape, with nil-channel cases folded in: a nil case adds no clause, so its
    /// presence or absence gives the same `Select` (Go generates both).
    fn shapes() -> Vec<Shape> {
        let mut out = Vec::new();
        for bits in 0..8u32 {
            let (default, dummy_send, dummy_recv) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
            let companions = usize::from(dummy_send) + usize::from(dummy_recv);
            for position in 0..=companions {
                for unbiased in [false, true] {
                    out.push(Shape { default, dummy_send, dummy_recv, position, unbiased });
                }
            }
        }
        out
    }

    #[derive(Clone, Copy)]
    enum Real<'a> {
        Recv(&'a Receiver<i32>),
        Send(&'a Sender<i32>, i32),
    }

    #[derive(Clone, Copy)]
    enum Clause {
        Real,
        DummySend,
        DummyRecv,
    }

    /// Builds the select for `shape` around `real` and runs it; returns the real
    /// operation's outcome (`None`: the default ran).
    fn run(
        shape: Shape,
        real: Real<'_>,
        dummy: &(Sender<i32>, Receiver<i32>),
    ) -> Option<Result<i32, ChanError>> {
        let mut clauses = Vec::new();
        if shape.dummy_send {
            clauses.push(Clause::DummySend);
        }
        if shape.dummy_recv {
            clauses.push(Clause::DummyRecv);
        }
        clauses.insert(shape.position, Clause::Real);
        let mut sel = if shape.unbiased { Select::unbiased() } else { Select::new() };
        let mut real_index = None;
        for c in clauses {
            match c {
                Clause::Real => {
                    real_index = Some(match real {
                        Real::Recv(rx) => sel.recv(rx),
                        Real::Send(tx, v) => sel.send(tx, v),
                    })
                }
                Clause::DummySend => {
                    sel.send(&dummy.0, 1);
                }
                Clause::DummyRecv => {
                    sel.recv(&dummy.1);
                }
            }
        }
        let real_index = real_index.expect("real clause added");
        let op = if shape.default {
            match sel.try_wait() {
                Ok(op) => op,
                Err(ChanError::WouldBlock) => return None,
                Err(e) => panic!("{shape:?}: {e}"),
            }
        } else {
            sel.wait().unwrap()
        };
        assert_eq!(op.index(), real_index, "{shape:?}: a dummy clause won");
        Some(match real {
            Real::Recv(rx) => op.recv(rx),
            Real::Send(tx, v) => op.send(tx).map(|()| v).map_err(|e| e.kind()),
        })
    }

    #[test]
    fn recv_and_send_in_every_shape() {
        both(|_| {
            let (tx, rx) = make::<i32>(1);
            let dummy = make::<i32>(0);
            let mut n = 1;
            let mut cases = 0;
            for shape in shapes() {
                // recv: send n directly, receive it through the select.
                tx.send(n).unwrap();
                assert_eq!(run(shape, Real::Recv(&rx), &dummy), Some(Ok(n)), "recv {shape:?}");
                n += 1;
                // send: send n through the select, receive it directly.
                assert_eq!(run(shape, Real::Send(&tx, n), &dummy), Some(Ok(n)), "send {shape:?}");
                assert_eq!(rx.try_recv(), Ok(n), "send {shape:?}");
                n += 1;
                cases += 2;
            }
            assert_eq!(cases, 2 * shapes().len());
            assert!(cases >= 40, "only {cases} cases");
        });
    }

    #[test]
    fn nonblock_takes_default() {
        both(|_| {
            let (dummy_tx, dummy_rx) = make::<i32>(0);
            // Every subset of {dummy send, dummy recv, a second dummy recv}, each with
            // nil cases (absent), with a default: only the default may run.
            for bits in 0..8u32 {
                let mut sel = Select::unbiased();
                if bits & 1 != 0 {
                    sel.send(&dummy_tx, 1);
                }
                if bits & 2 != 0 {
                    sel.recv(&dummy_rx);
                }
                if bits & 4 != 0 {
                    sel.recv(&dummy_rx);
                }
                match sel.try_wait() {
                    Ok(op) => panic!("clause {} of {bits:03b} ran", op.index()),
                    Err(e) => assert_eq!(e, ChanError::WouldBlock),
                }
            }
        });
    }

    /// Go's `checkorder`: calls must come in strictly increasing order.
    struct Order(Cell<u32>);

    impl Order {
        fn check(&self, o: u32) {
            assert!(o > self.0.get(), "invalid order {o} after {}", self.0.get());
            self.0.set(o);
        }

        fn chan<'a, C>(&self, c: &'a C, o: u32) -> &'a C {
            self.check(o);
            c
        }

        fn val(&self, v: i32, o: u32) -> i32 {
            self.check(o);
            v
        }
    }

    #[test]
    fn case_expressions_evaluate_once_in_order_before_the_body() {
        both(|_| {
            let (tx, rx) = make::<i32>(1);
            let (dummy_tx, dummy_rx) = make::<i32>(0);
            for n in 0..4 {
                // recvOrder: channel expressions, then send values, left to right; the
                // chosen body runs after all of them.
                let order = Order(Cell::new(0));
                tx.send(n).unwrap();
                let x = kcoro::select_unbiased! {
                    recv(*order.chan(&rx, 1)) -> v => { order.check(100); v.unwrap() }
                    send(*order.chan(&dummy_tx, 2), order.val(1, 3)) -> _ => panic!("dummy send"),
                    recv(*order.chan(&dummy_rx, 4)) -> _ => panic!("dummy receive"),
                };
                assert_eq!(x, n);

                // sendOrder, with a default that must not run.
                let order = Order(Cell::new(0));
                kcoro::select! {
                    send(*order.chan(&tx, 1), order.val(n, 2)) -> r => { order.check(100); r.unwrap() }
                    send(*order.chan(&dummy_tx, 3), order.val(1, 4)) -> _ => panic!("dummy send"),
                    recv(*order.chan(&dummy_rx, 5)) -> _ => panic!("dummy receive"),
                    default => panic!("nonblock"),
                }
                assert_eq!(rx.try_recv(), Ok(n));
            }
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/select6.go
mod select6 {
    //! A select that lost on `c1` must not leave a stale entry that later steals a send
    //! meant for another receiver on `c1` (Go issue 2075).

    use super::*;

    #[test]
    fn main() {
        both(|m| {
            let (c1_tx, c1_rx) = make::<bool>(0);
            let (c2_tx, c2_rx) = make::<bool>(0);
            let (c3_tx, c3_rx) = make::<bool>(0);
            let r = c1_rx.clone();
            let a = m.go(move || {
                r.recv().unwrap();
            });
            let b = m.go(move || {
                kcoro::select_unbiased! {
                    recv(c1_rx) -> _ => panic!("dummy"),
                    recv(c2_rx) -> _ => c3_tx.send(true).unwrap(),
                }
                c1_rx.recv().unwrap();
            });
            let c = m.go(move || c2_tx.send(true).unwrap());
            c3_rx.recv().unwrap();
            c1_tx.send(true).unwrap();
            c1_tx.send(true).unwrap();
            join_all([a, b, c]);
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/select7.go
mod select7 {
    //! Every pairing of a plain, a one-clause-select and a two-clause-select receive with
    //! the same three forms of send.

    use super::*;

    type Recv = fn(Receiver<i32>);

    fn recv1(c: Receiver<i32>) {
        assert_eq!(c.recv(), Ok(1));
    }

    fn recv2(c: Receiver<i32>) {
        kcoro::select_unbiased! {
            recv(c) -> v => assert_eq!(v, Ok(1)),
        }
    }

    fn recv3(c: Receiver<i32>) {
        let (_tx2, c2) = make::<i32>(0);
        kcoro::select_unbiased! {
            recv(c) -> v => assert_eq!(v, Ok(1)),
            recv(c2) -> _ => panic!("c2 is never ready"),
        }
    }

    fn send1(m: &Mode, recv: Recv) {
        let (tx, rx) = make::<i32>(0);
        let r = m.go(move || recv(rx));
        kcoro::yield_now();
        tx.send(1).unwrap();
        r.join();
    }

    fn send2(m: &Mode, recv: Recv) {
        let (tx, rx) = make::<i32>(0);
        let r = m.go(move || recv(rx));
        kcoro::yield_now();
        kcoro::select_unbiased! {
            send(tx, 1) -> r => r.unwrap(),
        }
        r.join();
    }

    fn send3(m: &Mode, recv: Recv) {
        let (tx, rx) = make::<i32>(0);
        let r = m.go(move || recv(rx));
        kcoro::yield_now();
        let (tx2, _rx2) = make::<i32>(0);
        kcoro::select_unbiased! {
            send(tx, 1) -> r => r.unwrap(),
            send(tx2, 1) -> _ => panic!("nobody receives on c2"),
        }
        r.join();
    }

    #[test]
    fn main() {
        both(|m| {
            for recv in [recv1 as Recv, recv2, recv3] {
                send1(&m, recv);
                send2(&m, recv);
                send3(&m, recv);
            }
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/sieve1.go
mod sieve1 {
    //! Go's goroutines run forever; here the chain unwinds once the main party drops the
    //! primes receiver: each party's next send fails with `Closed`, it returns, and its
    //! receiver's drop cancels the channel upstream.

    use super::*;

    fn generate(m: Mode, ch: Sender<i32>) -> Joiner<()> {
        m.go(move || {
            let mut i = 2;
            while ch.send(i).is_ok() {
                i += 1;
            }
        })
    }

    fn filter(inp: Receiver<i32>, out: Sender<i32>, prime: i32) {
        for i in &inp {
            if i % prime != 0 && out.send(i).is_err() {
                return;
            }
        }
    }

    fn sieve(m: Mode, primes: Sender<i32>) {
        let (tx, mut ch) = make::<i32>(0);
        let mut parties = vec![generate(m.clone(), tx)];
        while let Ok(prime) = ch.recv() {
            if primes.send(prime).is_err() {
                break;
            }
            let (tx1, rx1) = make::<i32>(0);
            let inp = std::mem::replace(&mut ch, rx1);
            parties.push(m.go(move || filter(inp, tx1, prime)));
        }
        drop(ch);
        join_all(parties);
    }

    #[test]
    fn main() {
        both(|m| {
            let (tx, primes) = make::<i32>(0);
            let m2 = m.clone();
            let s = m.go(move || sieve(m2, tx));
            let a = [
                2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
                97,
            ];
            for want in a {
                assert_eq!(primes.recv(), Ok(want));
            }
            drop(primes);
            s.join();
        });
    }
}

// https://github.com/golang/go/blob/master/test/chan/zerosize.go
mod zerosize {
    //! Go only makes the channels; here values also go through, and weigh nothing in the
    //! byte counters.

    use super::*;

    fn round_trip<T: Default + PartialEq + Debug + Send + 'static>(m: &Mode, cap: usize) {
        let (tx, rx) = make::<T>(cap);
        let t = tx.clone();
        let sender = m.go(move || {
            for _ in 0..3 {
                t.send(T::default()).unwrap();
            }
        });
        for _ in 0..3 {
            assert_eq!(rx.recv(), Ok(T::default()));
        }
        sender.join();
        let snap = rx.snapshot();
        assert_eq!((snap.sends, snap.recvs, snap.bytes_sent, snap.bytes_recv), (3, 3, 0, 0));
    }

    #[test]
    fn zero_size_array() {
        both(|m| {
            round_trip::<[u8; 0]>(&m, 0);
            round_trip::<[u8; 0]>(&m, 1);
        });
    }

    #[test]
    fn zero_size_struct() {
        #[derive(Default, PartialEq, Debug)]
        struct Zero;
        both(|m| {
            round_trip::<Zero>(&m, 0);
            round_trip::<Zero>(&m, 1);
        });
    }
}

// https://github.com/golang/go/blob/master/test/closedchan.go
mod closedchan {
    //! Receives and sends on closed channels, directly, through a one-clause select, and
    //! through a select with a dummy clause. Go's `Recv2`/`Nbrecv2` (with `ok`) are the
    //! same calls here: the `Result` carries `ok`.

    use super::*;

    /// A way of doing each operation. `nb*` return `None` when the default ran.
    trait Ops {
        fn name(&self) -> &'static str;
        fn send(&self, tx: &Sender<i32>, v: i32) -> Result<(), chan::SendError<i32>>;
        fn nbsend(&self, tx: &Sender<i32>, v: i32) -> Option<Result<(), chan::SendError<i32>>>;
        fn recv(&self, rx: &Receiver<i32>) -> Result<i32, ChanError>;
        fn nbrecv(&self, rx: &Receiver<i32>) -> Option<Result<i32, ChanError>>;
    }

    /// Go's `XChan`: direct operations.
    struct Direct;

    fn would_block<T, E: Into<ChanError> + Copy>(r: Result<T, E>) -> Option<Result<T, E>> {
        match r {
            Err(e) if e.into() == ChanError::WouldBlock => None,
            r => Some(r),
        }
    }

    impl Ops for Direct {
        fn name(&self) -> &'static str {
            "direct"
        }
        fn send(&self, tx: &Sender<i32>, v: i32) -> Result<(), chan::SendError<i32>> {
            tx.send(v)
        }
        fn nbsend(&self, tx: &Sender<i32>, v: i32) -> Option<Result<(), chan::SendError<i32>>> {
            match tx.try_send(v) {
                Err(e) if e.kind() == ChanError::WouldBlock => None,
                r => Some(r),
            }
        }
        fn recv(&self, rx: &Receiver<i32>) -> Result<i32, ChanError> {
            rx.recv()
        }
        fn nbrecv(&self, rx: &Receiver<i32>) -> Option<Result<i32, ChanError>> {
            would_block(rx.try_recv())
        }
    }

    /// Go's `SChan`: one-clause selects.
    struct OneClause;

    impl Ops for OneClause {
        fn name(&self) -> &'static str {
            "select"
        }
        fn send(&self, tx: &Sender<i32>, v: i32) -> Result<(), chan::SendError<i32>> {
            kcoro::select_unbiased! { send(tx, v) -> r => r }
        }
        fn nbsend(&self, tx: &Sender<i32>, v: i32) -> Option<Result<(), chan::SendError<i32>>> {
            kcoro::select_unbiased! { default => None, send(tx, v) -> r => Some(r) }
        }
        fn recv(&self, rx: &Receiver<i32>) -> Result<i32, ChanError> {
            kcoro::select_unbiased! { recv(rx) -> r => r }
        }
        fn nbrecv(&self, rx: &Receiver<i32>) -> Option<Result<i32, ChanError>> {
            kcoro::select_unbiased! { default => None, recv(rx) -> r => Some(r) }
        }
    }

    /// Go's `SSChan`: selects with an extra clause on a channel nobody uses.
    struct WithDummy(Receiver<bool>);

    impl Ops for WithDummy {
        fn name(&self) -> &'static str {
            "select with a dummy"
        }
        fn send(&self, tx: &Sender<i32>, v: i32) -> Result<(), chan::SendError<i32>> {
            kcoro::select_unbiased! {
                send(tx, v) -> r => r,
                recv(self.0) -> _ => panic!("dummy"),
            }
        }
        fn nbsend(&self, tx: &Sender<i32>, v: i32) -> Option<Result<(), chan::SendError<i32>>> {
            kcoro::select_unbiased! {
                default => None,
                recv(self.0) -> _ => panic!("dummy"),
                send(tx, v) -> r => Some(r),
            }
        }
        fn recv(&self, rx: &Receiver<i32>) -> Result<i32, ChanError> {
            kcoro::select_unbiased! {
                recv(self.0) -> _ => panic!("dummy"),
                recv(rx) -> r => r,
            }
        }
        fn nbrecv(&self, rx: &Receiver<i32>) -> Option<Result<i32, ChanError>> {
            kcoro::select_unbiased! {
                recv(self.0) -> _ => panic!("dummy"),
                default => None,
                recv(rx) -> r => Some(r),
            }
        }
    }

    /// Go's `test1`: a closed, drained channel.
    fn test1(c: &dyn Ops, tx: &Sender<i32>, rx: &Receiver<i32>) {
        let who = c.name();
        for _ in 0..3 {
            assert_eq!(c.recv(rx), Err(ChanError::Closed), "{who}: recv on closed");
            // Selected without blocking.
            assert_eq!(c.nbrecv(rx), Some(Err(ChanError::Closed)), "{who}: nbrecv on closed");
        }
        // Go panics; the send fails and the value comes back.
        let r = c.nbsend(tx, 1).expect("a send on a closed channel is ready (it fails)");
        assert_eq!(r.map_err(|e| (e.kind(), e.into_inner())), Err((ChanError::Closed, 1)), "{who}");
        // The value was not buffered.
        assert_eq!(c.recv(rx), Err(ChanError::Closed), "{who}: recv after send on closed");
        let r = c.send(tx, 2);
        assert_eq!(r.map_err(|e| (e.kind(), e.into_inner())), Err((ChanError::Closed, 2)), "{who}");
        assert_eq!(c.recv(rx), Err(ChanError::Closed), "{who}: recv after send on closed");
    }

    fn closed_sync() -> (Sender<i32>, Receiver<i32>) {
        let (tx, rx) = make::<i32>(0);
        tx.close();
        (tx, rx)
    }

    fn closed_async() -> (Sender<i32>, Receiver<i32>) {
        let (tx, rx) = make::<i32>(2);
        tx.send(1).unwrap();
        tx.close();
        (tx, rx)
    }

    #[test]
    fn main() {
        both(|_| {
            let (_dummy_tx, dummy_rx) = make::<bool>(0);
            let ops: [&dyn Ops; 3] = [&Direct, &OneClause, &WithDummy(dummy_rx)];
            for c in ops {
                let (tx, rx) = closed_sync();
                test1(c, &tx, &rx);
            }
            // Go's testasync1..4: the buffered value comes out first (by recv/recv2, then
            // by nbrecv/nbrecv2, which are one call each here).
            for c in ops {
                let (tx, rx) = closed_async();
                assert_eq!(c.recv(&rx), Ok(1), "{}: recv did not get 1", c.name());
                test1(c, &tx, &rx);

                let (tx, rx) = closed_async();
                assert_eq!(c.nbrecv(&rx), Some(Ok(1)), "{}: nbrecv did not get 1", c.name());
                test1(c, &tx, &rx);
            }
            // Closing a closed channel: Go panics; kcoro reports `false`.
            let (tx, rx) = make::<i32>(0);
            assert!(tx.close());
            assert!(!tx.close());
            assert!(!rx.close());
        });
    }
}

// https://github.com/golang/go/blob/master/src/runtime/chan_test.go
mod chan_test {
    use super::*;

    /// Go's `-short` count.
    const CAPS: usize = 20;

    #[test]
    fn test_chan() {
        both(|m| {
            for cap in 0..CAPS {
                {
                    // A receive from an empty channel blocks.
                    let (tx, rx) = make::<i32>(cap);
                    let recv1 = Arc::new(AtomicBool::new(false));
                    let recv2 = Arc::new(AtomicBool::new(false));
                    let parties: Vec<_> = [&recv1, &recv2]
                        .into_iter()
                        .map(|flag| {
                            let (rx, flag) = (rx.clone(), Arc::clone(flag));
                            m.go(move || {
                                rx.recv().unwrap();
                                flag.store(true, SeqCst);
                            })
                        })
                        .collect();
                    kcoro::sleep(ms(1));
                    assert!(
                        !recv1.load(SeqCst) && !recv2.load(SeqCst),
                        "chan[{cap}]: receive from empty chan"
                    );
                    // A non-blocking receive does not block.
                    kcoro::select_unbiased! {
                        recv(rx) -> _ => panic!("chan[{cap}]: receive from empty chan"),
                        default => {}
                    }
                    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock), "chan[{cap}]");
                    tx.send(0).unwrap();
                    tx.send(0).unwrap();
                    join_all(parties);
                    assert!(recv1.load(SeqCst) && recv2.load(SeqCst));
                }

                {
                    // A send to a full channel blocks.
                    let (tx, rx) = make::<i32>(cap);
                    for i in 0..cap {
                        tx.send(i as i32).unwrap();
                    }
                    let sent = Arc::new(AtomicBool::new(false));
                    let (t, s) = (tx.clone(), Arc::clone(&sent));
                    let sender = m.go(move || {
                        t.send(0).unwrap();
                        s.store(true, SeqCst);
                    });
                    kcoro::sleep(ms(1));
                    assert!(!sent.load(SeqCst), "chan[{cap}]: send to full chan");
                    // A non-blocking send does not block.
                    kcoro::select_unbiased! {
                        send(tx, 0) -> _ => panic!("chan[{cap}]: send to full chan"),
                        default => {}
                    }
                    rx.recv().unwrap();
                    sender.join();
                    assert!(sent.load(SeqCst));
                }

                {
                    // A closed channel drains, then reports closed (Go: zero values).
                    let (tx, rx) = make::<i32>(cap);
                    for i in 0..cap {
                        tx.send(i as i32).unwrap();
                    }
                    tx.close();
                    for i in 0..cap {
                        assert_eq!(rx.recv(), Ok(i as i32), "chan[{cap}]");
                    }
                    assert_eq!(rx.recv(), Err(ChanError::Closed), "chan[{cap}]");
                    assert_eq!(rx.recv(), Err(ChanError::Closed), "chan[{cap}]");
                }

                {
                    // Close unblocks a receive.
                    let (tx, rx) = make::<i32>(cap);
                    let (done_tx, done_rx) = make::<bool>(0);
                    let r = m.go(move || done_tx.send(rx.recv() == Err(ChanError::Closed)).unwrap());
                    kcoro::sleep(ms(1));
                    tx.close();
                    assert!(done_rx.recv().unwrap(), "chan[{cap}]: received a value from a closed chan");
                    r.join();
                }

                {
                    // 100 integers arrive uncorrupted, in FIFO order (Go: with `<-c`, then
                    // with `v, ok := <-c`; one form here, done twice).
                    let (tx, rx) = make::<i32>(cap);
                    for _ in 0..2 {
                        let t = tx.clone();
                        let s = m.go(move || {
                            for i in 0..100 {
                                t.send(i).unwrap();
                            }
                        });
                        for i in 0..100 {
                            assert_eq!(rx.recv(), Ok(i), "chan[{cap}]");
                        }
                        s.join();
                    }

                    // 1000 integers from each of 4 parties to 4 receiving parties: each
                    // value arrives 4 times.
                    const P: usize = 4;
                    const L: i32 = 1000;
                    let mut parties: Vec<Joiner<HashMap<i32, usize>>> = Vec::new();
                    for _ in 0..P {
                        let t = tx.clone();
                        parties.push(m.go(move || {
                            for i in 0..L {
                                t.send(i).unwrap();
                            }
                            HashMap::new()
                        }));
                    }
                    for _ in 0..P {
                        let r = rx.clone();
                        parties.push(m.go(move || {
                            let mut recv = HashMap::new();
                            for _ in 0..L {
                                *recv.entry(r.recv().unwrap()).or_default() += 1;
                            }
                            recv
                        }));
                    }
                    let mut recv: HashMap<i32, usize> = HashMap::new();
                    for part in join_all(parties) {
                        for (k, v) in part {
                            *recv.entry(k).or_default() += v;
                        }
                    }
                    assert_eq!(recv.len(), L as usize, "chan[{cap}]: distinct values");
                    assert!(recv.values().all(|&v| v == P), "chan[{cap}]: a value not received {P} times");
                }

                {
                    // len and cap.
                    let (tx, rx) = make::<i32>(cap);
                    assert_eq!((rx.len(), rx.capacity()), (0, Some(cap)), "chan[{cap}]");
                    for i in 0..cap {
                        tx.send(i as i32).unwrap();
                    }
                    assert_eq!((rx.len(), rx.capacity()), (cap, Some(cap)), "chan[{cap}]");
                }
            }
        });
    }

    #[test]
    fn test_nonblock_recv_race() {
        both(|m| {
            for _ in 0..500 {
                let (tx, rx) = make::<i32>(1);
                tx.send(1).unwrap();
                let r = rx.clone();
                let party = m.go(move || {
                    // Either the value or the close: never "not ready".
                    kcoro::select_unbiased! {
                        recv(r) -> v => assert!(matches!(v, Ok(1) | Err(ChanError::Closed)), "{v:?}"),
                        default => panic!("chan is not ready"),
                    }
                });
                tx.close();
                let _ = rx.recv();
                party.join();
            }
        });
    }

    /// From the moment the party starts, at least one of `c1` and `c2` is always ready,
    /// so its non-blocking select must never take the default. `c2_ready` makes `c2`
    /// ready: by a send (`TestNonblockSelectRace`) or by closing it (`…Race2`).
    fn nonblock_select_race(m: &Mode, c2_cap: usize, c2_ready: fn(&Sender<i32>)) {
        let (done_tx, done_rx) = make::<bool>(1);
        for _ in 0..500 {
            let (c1_tx, c1_rx) = make::<i32>(1);
            let (c2_tx, c2_rx) = make::<i32>(c2_cap);
            c1_tx.send(1).unwrap();
            // The party gets clones: a dropped last receiver would close the channel.
            let (r1, r2, done) = (c1_rx.clone(), c2_rx.clone(), done_tx.clone());
            let party = m.go(move || {
                let ready = kcoro::select_unbiased! {
                    recv(r1) -> _ => true,
                    recv(r2) -> _ => true,
                    default => false,
                };
                done.send(ready).unwrap();
            });
            c2_ready(&c2_tx);
            kcoro::select_unbiased! {
                recv(c1_rx) -> _ => {}
                default => {}
            }
            assert!(done_rx.recv().unwrap(), "no chan is ready");
            party.join();
        }
    }

    #[test]
    fn test_nonblock_select_race() {
        both(|m| nonblock_select_race(&m, 1, |c2| c2.send(1).unwrap()));
    }

    #[test]
    fn test_nonblock_select_race2() {
        both(|m| {
            nonblock_select_race(&m, 0, |c2| {
                c2.close();
            })
        });
    }

    #[test]
    fn test_self_select() {
        // Send and receive on the same channel in one select: no crash, no deadlock, and
        // on a rendezvous channel never a value from oneself.
        both(|m| {
            for cap in [0, 10] {
                let (tx, rx) = make::<i32>(cap);
                let parties: Vec<_> = (0..2)
                    .map(|p: i32| {
                        let (tx, rx) = (tx.clone(), rx.clone());
                        m.go(move || {
                            let check = |v: Result<i32, ChanError>| {
                                let v = v.unwrap();
                                assert!(!(cap == 0 && v == p), "self receive");
                            };
                            for i in 0..1000 {
                                if p == 0 || i % 2 == 0 {
                                    kcoro::select! {
                                        send(tx, p) -> r => r.unwrap(),
                                        recv(rx) -> v => check(v),
                                    }
                                } else {
                                    kcoro::select! {
                                        recv(rx) -> v => check(v),
                                        send(tx, p) -> r => r.unwrap(),
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                join_all(parties);
            }
        });
    }

    #[test]
    fn test_select_stress() {
        // 4 parties send N values on each channel, 4 receive N from each, one sends N on
        // each in a single select and one receives N from each in a single select; a
        // channel that is done becomes nil (its clause is left out). It must not deadlock.
        const N: usize = 2_000;
        both(|m| {
            let (txs, rxs): (Vec<_>, Vec<_>) = [0, 0, 2, 3].into_iter().map(make::<i32>).unzip();
            let (txs, rxs) = (Arc::new(txs), Arc::new(rxs));
            let mut parties = Vec::new();
            for k in 0..4 {
                let (t, r) = (Arc::clone(&txs), Arc::clone(&rxs));
                parties.push(m.go(move || {
                    for _ in 0..N {
                        t[k].send(0).unwrap();
                    }
                }));
                parties.push(m.go(move || {
                    for _ in 0..N {
                        r[k].recv().unwrap();
                    }
                }));
            }
            let t = Arc::clone(&txs);
            parties.push(m.go(move || {
                let mut n = [0; 4];
                for _ in 0..4 * N {
                    let mut sel = Select::unbiased();
                    let mut clause_chan = Vec::new();
                    for k in [3, 2, 0, 1] {
                        if n[k] < N {
                            clause_chan.push((sel.send(&t[k], 0), k));
                        }
                    }
                    let op = sel.wait().unwrap();
                    let (_, k) = *clause_chan.iter().find(|(i, _)| *i == op.index()).unwrap();
                    op.send(&t[k]).unwrap();
                    n[k] += 1;
                }
            }));
            let r = Arc::clone(&rxs);
            parties.push(m.go(move || {
                let mut n = [0; 4];
                for _ in 0..4 * N {
                    let mut sel = Select::unbiased();
                    let mut clause_chan = Vec::new();
                    for k in 0..4 {
                        if n[k] < N {
                            clause_chan.push((sel.recv(&r[k]), k));
                        }
                    }
                    let op = sel.wait().unwrap();
                    let (_, k) = *clause_chan.iter().find(|(i, _)| *i == op.index()).unwrap();
                    op.recv(&r[k]).unwrap();
                    n[k] += 1;
                }
            }));
            join_all(parties);
            for (k, rx) in rxs.iter().enumerate() {
                assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock), "chan {k} has leftovers");
                assert_eq!(rx.snapshot().recvs, 2 * N as u64, "chan {k}");
            }
        });
    }

    #[test]
    fn test_select_fairness() {
        // Two always-ready channels behind two never-ready ones: a fair select picks each
        // ready one about half the time. Go allows 10 standard deviations (at 10,000
        // trials: 500), which a fair select exceeds with probability below 1e-20.
        const TRIALS: usize = 10_000;
        both(|m| {
            let (c1_tx, c1_rx) = make::<u8>(TRIALS + 1);
            let (c2_tx, c2_rx) = make::<u8>(TRIALS + 1);
            for _ in 0..=TRIALS {
                c1_tx.send(1).unwrap();
                c2_tx.send(2).unwrap();
            }
            let (_c3_tx, c3_rx) = make::<u8>(0);
            let (_c4_tx, c4_rx) = make::<u8>(0);
            let (out_tx, out_rx) = make::<u8>(0);
            let (done_tx, done_rx) = make::<u8>(0);
            let party = m.go(move || {
                loop {
                    let b = kcoro::select_unbiased! {
                        recv(c3_rx) -> v => v.unwrap(),
                        recv(c4_rx) -> v => v.unwrap(),
                        recv(c1_rx) -> v => v.unwrap(),
                        recv(c2_rx) -> v => v.unwrap(),
                    };
                    let more = kcoro::select_unbiased! {
                        send(out_tx, b) -> r => { r.unwrap(); true }
                        recv(done_rx) -> _ => false,
                    };
                    if !more {
                        return;
                    }
                }
            });
            let (mut cnt1, mut cnt2) = (0usize, 0usize);
            for _ in 0..TRIALS {
                match out_rx.recv() {
                    Ok(1) => cnt1 += 1,
                    Ok(2) => cnt2 += 1,
                    b => panic!("unexpected value {b:?} on channel"),
                }
            }
            done_tx.close();
            party.join();
            let mean = TRIALS as f64 * 0.5;
            let stddev = (TRIALS as f64 * 0.25).sqrt();
            assert!(
                (cnt1 as f64 - mean).abs() <= 10.0 * stddev,
                "unfair select: in {TRIALS} trials, results were {cnt1}, {cnt2}"
            );
        });
    }

    #[test]
    fn test_chan_send_interface() {
        struct Mt;
        both(|_| {
            let (tx, _rx) = make::<Box<dyn std::any::Any + Send>>(1);
            tx.send(Box::new(Mt)).unwrap();
            // The buffer is full: only the default can run.
            kcoro::select_unbiased! {
                send(tx, Box::new(Mt)) -> _ => panic!("sent to a full chan"),
                default => {}
            }
            kcoro::select_unbiased! {
                send(tx, Box::new(Mt)) -> _ => panic!("sent to a full chan"),
                send(tx, Box::new(Mt)) -> _ => panic!("sent to a full chan"),
                default => {}
            }
        });
    }

    #[test]
    fn test_pseudo_random_send() {
        // Two send clauses on one channel, both ready together: each must win sometimes.
        const N: usize = 100;
        both(|m| {
            for cap in [0, N] {
                let (tx, rx) = make::<i32>(cap);
                let receiver = m.go(move || {
                    (0..N)
                        .map(|_| {
                            kcoro::yield_now();
                            rx.recv().unwrap()
                        })
                        .collect::<Vec<_>>()
                });
                for _ in 0..N {
                    kcoro::select_unbiased! {
                        send(tx, 1) -> r => r.unwrap(),
                        send(tx, 0) -> r => r.unwrap(),
                    }
                }
                let l = receiver.join();
                let n1 = l.iter().filter(|&&v| v == 1).count();
                let n0 = N - n1;
                assert!(
                    n0 > N / 10 && n1 > N / 10,
                    "want pseudorandom, got {n0} zeros and {n1} ones (chan cap {cap})"
                );
            }
        });
    }

    #[test]
    fn test_multi_consumer() {
        const NWORK: usize = 23;
        const NITER: usize = 27_183; // Go: 271,828
        let pn = [2, 3, 7, 11, 13, 17, 19, 23, 27, 31];
        both(move |m| {
            let (q_tx, q_rx) = make::<usize>(NWORK * 3);
            let (r_tx, r_rx) = make::<usize>(NWORK * 3);
            // Workers: mess with the FIFO-ish nature of the queue by yielding sometimes.
            let workers: Vec<_> = (0..NWORK)
                .map(|w| {
                    let (q, r) = (q_rx.clone(), r_tx.clone());
                    m.go(move || {
                        for v in &q {
                            if pn[w % pn.len()] == v {
                                kcoro::yield_now();
                            }
                            r.send(v).unwrap();
                        }
                    })
                })
                .collect();
            drop(q_rx);
            // Feeder and closer.
            let feeder = m.go(move || {
                let mut expect = 0;
                for i in 0..NITER {
                    let v = pn[i % pn.len()];
                    expect += v;
                    q_tx.send(v).unwrap();
                }
                q_tx.close(); // no more work
                join_all(workers); // workers done
                r_tx.close(); // ... so there can be no more results
                expect
            });
            // Consume and check.
            let (mut n, mut s) = (0, 0);
            for v in &r_rx {
                n += 1;
                s += v;
            }
            let expect = feeder.join();
            assert_eq!((n, s), (NITER, expect));
        });
    }

    fn stack_growth_recursive(depth: usize) -> u64 {
        // About 1 KiB of frame per level in a debug build; coroutine stacks are 64 KiB.
        let mut pad = [0u8; 512];
        pad[depth % 512] = depth as u8;
        let pad = std::hint::black_box(pad);
        if depth == 0 {
            u64::from(pad[0])
        } else {
            stack_growth_recursive(depth - 1) + u64::from(pad[depth % 512])
        }
    }

    #[test]
    fn test_shrink_stack_during_blocked_send() {
        // Go shrinks the stack of a goroutine blocked in a send. kcoro stacks never move,
        // but a parked send's value waits in a slot on the sender's own stack, so the
        // sender using lots of stack between blocking sends must not disturb delivery.
        const N: i32 = 10;
        both(|m| {
            let (tx, rx) = make::<i32>(0);
            let sender = m.go(move || {
                for i in 0..N {
                    tx.send(i).unwrap();
                    std::hint::black_box(stack_growth_recursive(20));
                }
            });
            for i in 0..N {
                assert_eq!(rx.recv(), Ok(i), "bad channel read");
                kcoro::sleep(ms(1)); // the sender uses its stack, then blocks again
            }
            sender.join();
        });
    }

    #[test]
    fn test_select_duplicate_channel() {
        // A party may be queued on one channel several times (Go issue 8252).
        both(|m| {
            let (c_tx, c_rx) = make::<i32>(0);
            let (d_tx, d_rx) = make::<i32>(0);
            let (e_tx, e_rx) = make::<i32>(0);
            let c = c_rx.clone();
            let a = m.go(move || {
                kcoro::select_unbiased! {
                    recv(c) -> _ => panic!("nobody sends on c yet"),
                    recv(c) -> _ => panic!("nobody sends on c yet"),
                    recv(d_rx) -> v => assert_eq!(v, Ok(7)),
                }
                e_tx.send(9).unwrap();
            });
            kcoro::sleep(ms(1)); // A queues first on c (twice)
            let b = m.go(move || assert_eq!(c_rx.recv(), Ok(8)));
            kcoro::sleep(ms(1)); // B queues on c behind A
            d_tx.send(7).unwrap(); // wakes A, which dequeues itself from c
            assert_eq!(e_rx.recv(), Ok(9));
            c_tx.send(8).unwrap(); // must reach B, not A's stale entries
            join_all([a, b]);
        });
    }

    #[test]
    fn test_select_stack_adjust() {
        // Go checks that select receive slots holding stack pointers survive a stack
        // shrink. kcoro stacks never move; what carries over is a select parked after
        // heavy stack use, registered once or twice on each channel, woken by a close,
        // with its locals intact.
        both(|m| {
            let (_c_tx, c_rx) = make::<i32>(0);
            let (d_tx, d_rx) = make::<i32>(0);
            let (ready_tx, ready_rx) = make::<bool>(0);
            let parties: Vec<_> = [false, true]
                .into_iter()
                .map(|dup| {
                    let (c, d, ready) = (c_rx.clone(), d_rx.clone(), ready_tx.clone());
                    m.go(move || {
                        std::hint::black_box(stack_growth_recursive(10));
                        ready.send(true).unwrap();
                        let mut val = 42;
                        let cx = &mut val;
                        let mut sel = Select::unbiased();
                        let mut on_d = vec![];
                        sel.recv(&c);
                        if dup {
                            sel.recv(&c); // Go: c2 = c, else nil
                        }
                        on_d.push(sel.recv(&d));
                        if dup {
                            on_d.push(sel.recv(&d));
                        }
                        let op = sel.wait().unwrap();
                        assert!(on_d.contains(&op.index()), "woken on c");
                        assert_eq!(op.recv(&d), Err(ChanError::Closed));
                        assert_eq!(*cx, 42, "val changed");
                        *cx = 43;
                        assert_eq!(val, 43);
                        ready.send(true).unwrap();
                    })
                })
                .collect();
            ready_rx.recv().unwrap();
            ready_rx.recv().unwrap();
            kcoro::sleep(ms(10)); // let both selects park
            d_tx.close();
            ready_rx.recv().unwrap();
            ready_rx.recv().unwrap();
            join_all(parties);
        });
    }
}
