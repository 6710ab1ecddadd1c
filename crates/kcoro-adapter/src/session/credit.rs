//! Credit-based flow control over a kcoro channel: the sender spends credit (bytes) before
//! it sends, the receiver returns credit as it consumes. With no credit left the sender
//! parks on the grant channel, a real parked coroutine, so the producer stops where the
//! consumer stops. Used by stream halves and by the local ingress buffer.
//!
//! # Protocol
//! 1. The sender starts with `window` bytes of credit.
//! 2. `acquire(n)` takes any grants already queued (no wait); if `n` fits it spends and
//!    returns `Immediate`.
//! 3. Otherwise it marks itself waiting and parks on `grants.recv()` until `n` fits, then
//!    returns `AfterWait`: exactly one backpressure episode, counted by the caller.
//! 4. The receiver sends `Grant::Bytes(n)` for every `n` bytes consumed, or
//!    `Grant::Stop(code)` when it will read no more, which fails the waiting sender.
//!
//! # Invariants
//! - bytes in flight (spent and not yet returned) ≤ `window`, as long as every send acquires.
//! - `waiting` is true only while the sender is parked in step 3.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kcoro::chan::{self, Receiver, Sender};

/// A message from the consumer to the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// `n` bytes consumed: spend them again.
    Bytes(u64),
    /// The consumer stopped reading, with a reason code.
    Stop(u32),
}

/// How `acquire` got its credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Acquired {
    /// Enough credit was there.
    Immediate,
    /// The sender parked until the consumer returned enough: one backpressure episode.
    AfterWait,
}

/// The producer's side: credit on hand plus the grant channel.
#[derive(Debug)]
pub(crate) struct CreditSender {
    available: u64,
    grants: Receiver<Grant>,
    waiting: Arc<AtomicBool>,
}

/// The consumer's side: hands credit back.
#[derive(Debug, Clone)]
pub(crate) struct CreditGiver {
    grants: Sender<Grant>,
}

/// A credit pair with `window` bytes to start.
pub(crate) fn credit(window: u64) -> (CreditSender, CreditGiver) {
    let (tx, rx) = chan::unlimited();
    (
        CreditSender { available: window, grants: rx, waiting: Arc::new(AtomicBool::new(false)) },
        CreditGiver { grants: tx },
    )
}

impl CreditSender {
    /// Spends `n` bytes of credit, parking until the consumer returns enough.
    /// `Err(code)` when the consumer stopped (or vanished: code 0).
    /// `on_wait` runs once, just before the first park: the place to count the event.
    pub(crate) fn acquire(&mut self, n: u64, on_wait: impl FnOnce()) -> Result<Acquired, u32> {
        while let Ok(g) = self.grants.try_recv() {
            self.take(g)?;
        }
        if self.available >= n {
            self.available -= n;
            return Ok(Acquired::Immediate);
        }
        on_wait();
        self.waiting.store(true, Ordering::Relaxed);
        let outcome = loop {
            match self.grants.recv() {
                Ok(g) => {
                    if let Err(code) = self.take(g) {
                        break Err(code);
                    }
                    if self.available >= n {
                        self.available -= n;
                        break Ok(Acquired::AfterWait);
                    }
                }
                Err(_) => break Err(0),
            }
        };
        self.waiting.store(false, Ordering::Relaxed);
        outcome
    }

    fn take(&mut self, g: Grant) -> Result<(), u32> {
        match g {
            Grant::Bytes(b) => {
                self.available += b;
                Ok(())
            }
            Grant::Stop(code) => Err(code),
        }
    }

    /// A probe that reads true while the producer is parked for credit.
    pub(crate) fn wait_probe(&self) -> WaitProbe {
        WaitProbe(Arc::clone(&self.waiting))
    }
}

/// Observes, from anywhere, whether a producer is parked waiting for credit.
#[derive(Debug, Clone)]
pub struct WaitProbe(Arc<AtomicBool>);

impl WaitProbe {
    /// True while the producer is parked.
    pub fn is_waiting(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl CreditGiver {
    /// Returns `n` consumed bytes.
    pub(crate) fn grant(&self, n: u64) {
        // Unlimited channel: never waits. A producer already gone needs no credit.
        let _ = self.grants.send(Grant::Bytes(n));
    }

    /// Tells the producer no more will be read.
    pub(crate) fn stop(&self, code: u32) {
        let _ = self.grants.send(Grant::Stop(code));
    }
}
