//! Suite `zcopy`: moving payloads through a kcoro channel as zero-copy leases
//! ([`kcoro::zcopy::ZBuf`]) against copying them into a fresh `Vec<u8>` and against
//! cloning a refcounted `bytes::Bytes`, and the cost of one lease.
//!
//! | case               | shape                                                  | one op          |
//! |--------------------|--------------------------------------------------------|-----------------|
//! | `msg_{64,1k,4k,64k,1m}` | 1 producer, 1 consumer, buffered channel of [`CAPACITY`], payload of that size ([`pipe`]) | one message |
//! | `lease_alloc_free` | one thread, no channel: get a [`LEASE`]-byte buffer, drop it | one pair |
//!
//! Every `msg_*` row uses the same kcoro channel (`chan::buffered(CAPACITY)`) and the same
//! two coroutines on a fresh two-worker runtime; only the message type differs
//! ([`Message`]):
//!
//! - `kcoro`: a [`ZBuf`] leased per message from one `Region::anonymous` sized for two full
//!   channels ([`region_len`]); the producer writes an 8-byte sequence number at its start
//!   and nothing else — not writing the payload is the point of zero copy.
//! - `vec-copy`: a `Vec<u8>` allocated per message, the payload copied into it from a source
//!   buffer, then the sequence number written over its first 8 bytes (what a user without
//!   zero copy writes).
//! - `bytes`: one pre-built `Bytes` of the payload, cloned per message (a refcount
//!   increment; the idiomatic Rust answer). All clones share their bytes, so there is no
//!   sequence number to write: the consumer checks the length.
//!
//! The consumer checks each message (sequence number and length) and drops it, which for
//! a lease returns its block to the region from the consumer's worker. The timed part
//! runs from spawning both parties to joining both; it follows an untimed warm-up of
//! `n / 10 + 1` messages ([`warmup`]) over the same region or source buffer. Before both,
//! the region's [`IN_FLIGHT`] blocks are leased, written and returned once, so no page of
//! the region is first touched while timing (the steady state of a long-lived process).
//!
//! `lease_alloc_free` runs on the child's main thread, no runtime: `kcoro` is
//! `region.alloc(LEASE)` and drop, `vec-alloc` is `Vec::with_capacity(LEASE)` and drop,
//! each through `black_box` so neither is optimised away.

mod messages;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use kcoro::chan::{self, ChanError};
use kcoro::zcopy::{Region, ZBuf};

use crate::chan_suite::{Timed, measure};
use crate::harness::{KCORO, Measurement, Skip, Suite, payload, throughput};
use crate::runtime_suite::{kcoro_rt, warmup};
use messages::Message;

/// Slots of the channel every `msg_*` row uses.
pub const CAPACITY: usize = 256;

/// Bytes of one lease (or `Vec`) in `lease_alloc_free`.
pub const LEASE: usize = 4 << 10;

/// The peer of `lease_alloc_free`.
const VEC_ALLOC: &str = "vec-alloc";

/// The message cases.
const MSG_CASES: &[&str] = &["msg_64", "msg_1k", "msg_4k", "msg_64k", "msg_1m"];

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "zcopy",
    notes: &[
        "msg_*: 1 producer + 1 consumer coroutine, kcoro workers(2), one chan::buffered(256) of the message type;",
        "  one op = one message; the consumer checks it (sequence number, length) and drops it",
        "kcoro: ZBuf leased per message from one Region::anonymous (2 x 256 x payload, at least 64 KiB),",
        "  only an 8-byte sequence number written; vec-copy: Vec allocated + payload copied per message;",
        "  bytes: one pre-built bytes::Bytes cloned per message (refcount)",
        "ops/s = messages/s; GB/s = payload bytes (10^9) per second",
        "lease_alloc_free: one thread, 4 KiB: region.alloc + drop (kcoro) vs Vec::with_capacity + drop",
    ],
    cases: &[
        // n: the slowest row (vec-copy) runs about 0.5 to 12 s per child; the kcoro row of
        // msg_1m still runs 50 000 messages.
        payload("msg_64", 5_000_000, 500_000, 64),
        payload("msg_1k", 5_000_000, 500_000, 1 << 10),
        payload("msg_4k", 2_000_000, 200_000, 4 << 10),
        payload("msg_64k", 500_000, 50_000, 64 << 10),
        payload("msg_1m", 50_000, 5_000, 1 << 20),
        throughput("lease_alloc_free", 20_000_000, 2_000_000),
    ],
    impls: &[KCORO, "vec-copy", "bytes", VEC_ALLOC],
    skips: &[
        Skip { imp: "vec-copy", cases: &["lease_alloc_free"], why: "see vec-alloc" },
        Skip { imp: "bytes", cases: &["lease_alloc_free"], why: "see vec-alloc" },
        Skip { imp: VEC_ALLOC, cases: MSG_CASES, why: "lease_alloc_free only" },
    ],
    prepare: None,
    go_in_child: false,
    child,
};

/// Runs one case of one Rust implementation (the child side of the harness).
fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    if case == "lease_alloc_free" {
        return match imp {
            KCORO => lease_alloc_free(n),
            VEC_ALLOC => vec_alloc_free(n),
            _ => Err(format!("zcopy: {imp} has no {case} row")),
        };
    }
    let size = payload_size(case).ok_or_else(|| format!("zcopy: no case {case:?}"))?;
    match imp {
        KCORO => run_pipe::<ZBuf>(size, n),
        "vec-copy" => run_pipe::<Vec<u8>>(size, n),
        "bytes" => run_pipe::<bytes::Bytes>(size, n),
        _ => Err(format!("zcopy: no Rust impl {imp:?}")),
    }
}

/// The payload bytes of a `msg_*` case.
fn payload_size(case: &str) -> Option<usize> {
    match case {
        "msg_64" => Some(64),
        "msg_1k" => Some(1 << 10),
        "msg_4k" => Some(4 << 10),
        "msg_64k" => Some(64 << 10),
        "msg_1m" => Some(1 << 20),
        _ => None,
    }
}

/// Most messages alive at once in a `msg_*` run: a full channel, the producer's next and
/// the consumer's current.
pub const IN_FLIGHT: usize = CAPACITY + 2;

/// Bytes of the region of a `msg_*` row: twice a full channel of `size`-byte leases, so
/// [`IN_FLIGHT`] leases always fit; at least one 64 KiB slab.
pub fn region_len(size: usize) -> usize {
    (2 * CAPACITY * size).max(64 << 10)
}

/// Builds `M`'s source once, then runs the warm-up and the timed [`pipe`] on a new
/// two-worker runtime.
fn run_pipe<M: Message>(size: usize, n: u64) -> Result<Measurement, String> {
    let source = Arc::new(M::source(size)?);
    kcoro_rt::drive(move || measure(|n| pipe::<M>(&source, size, n), n))
}

/// `n` messages of `size` bytes from a producer coroutine to a consumer coroutine over one
/// `chan::buffered(CAPACITY)`; the channel closes when the producer drops its sender.
fn pipe<M: Message>(source: &Arc<M::Source>, size: usize, n: u64) -> Timed {
    let (tx, rx) = chan::buffered::<M>(CAPACITY);
    let start = Instant::now();
    let src = Arc::clone(source);
    let producer = kcoro::spawn(move || -> Result<(), String> {
        for seq in 0..n {
            let msg = M::make(&src, size, seq)?;
            tx.send(msg).map_err(|e| format!("send {seq}: {}", e.kind()))?;
        }
        Ok(())
    });
    let consumer = kcoro::spawn(move || -> Result<u64, String> {
        let mut seq = 0;
        loop {
            match rx.recv() {
                Ok(msg) => {
                    msg.check(size, seq)?;
                    drop(msg);
                    seq += 1;
                }
                Err(ChanError::Closed) => return Ok(seq),
                Err(e) => return Err(format!("recv {seq}: {e}")),
            }
        }
    });
    let sent = producer.join().map_err(|e| format!("producer: {e}"))?;
    let got = consumer.join().map_err(|e| format!("consumer: {e}"))?;
    let elapsed = start.elapsed();
    sent.map_err(|e| format!("producer: {e}"))?;
    match got.map_err(|e| format!("consumer: {e}"))? {
        got if got == n => Ok((elapsed, n)),
        got => Err(format!("received {got} of {n} messages")),
    }
}

/// `n` leases of [`LEASE`] bytes, each dropped at once, after a warm-up of [`warmup`]`(n)`.
fn lease_alloc_free(n: u64) -> Result<Measurement, String> {
    let region = Region::anonymous(region_len(LEASE)).map_err(|e| format!("region: {e}"))?;
    let pairs = |n: u64| -> Result<(), String> {
        for _ in 0..n {
            drop(black_box(region.alloc(LEASE).map_err(|e| format!("alloc: {e}"))?));
        }
        Ok(())
    };
    pairs(warmup(n))?;
    let start = Instant::now();
    pairs(n)?;
    let elapsed = start.elapsed();
    match region.leases() {
        0 => Ok(Measurement::per_op(elapsed, n)),
        left => Err(format!("{left} leases still alive after the loop")),
    }
}

/// `n` `Vec`s of [`LEASE`] bytes' capacity, each dropped at once, after the same warm-up.
fn vec_alloc_free(n: u64) -> Result<Measurement, String> {
    let pairs = |n: u64| {
        for _ in 0..n {
            drop(black_box(Vec::<u8>::with_capacity(LEASE)));
        }
    };
    pairs(warmup(n));
    let start = Instant::now();
    pairs(n);
    Ok(Measurement::per_op(start.elapsed(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `msg_*` case has a payload size, the suite's notes match the constants, and a
    /// region of [`region_len`] holds more leases than can ever be in flight.
    #[test]
    fn cases_and_sizes_agree() {
        for case in MSG_CASES {
            assert!(SUITE.cases.iter().any(|c| c.name == *case), "{case} is not in the table");
            let size = payload_size(case).unwrap_or_else(|| panic!("{case} has no size"));
            let region = Region::anonymous(region_len(size)).unwrap();
            let leases: Vec<ZBuf> = (0..IN_FLIGHT).map(|_| region.alloc(size).unwrap()).collect();
            assert_eq!(region.leases(), IN_FLIGHT);
            drop(leases);
            assert_eq!(region.leases(), 0);
        }
        assert_eq!(payload_size("lease_alloc_free"), None);
        assert!(SUITE.notes.iter().any(|n| n.contains(&format!("buffered({CAPACITY})"))));
    }

    /// Each message kind goes through a short pipe and comes out checked; a message with
    /// the wrong sequence number or length is refused.
    #[test]
    fn pipes_deliver_checked_messages() {
        fn one<M: Message>(size: usize) {
            let source = Arc::new(M::source(size).unwrap());
            let rt = kcoro::Runtime::builder().workers(2).build().unwrap();
            let src = Arc::clone(&source);
            let (_, ops) = rt.block_on(move || pipe::<M>(&src, size, 1000)).unwrap();
            assert_eq!(ops, 1000);
            let msg = M::make(&source, size, 7).unwrap();
            assert!(msg.check(size, 7).is_ok());
            assert!(msg.check(size + 1, 7).is_err(), "a wrong length passed");
        }
        for size in [64, 4 << 10] {
            one::<ZBuf>(size);
            one::<Vec<u8>>(size);
            one::<bytes::Bytes>(size);
        }
        let source = <ZBuf as Message>::source(64).unwrap();
        let msg = ZBuf::make(&source, 64, 3).unwrap();
        assert!(msg.check(64, 4).is_err(), "a wrong sequence number passed");
    }
}
