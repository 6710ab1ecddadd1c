//! The memory clients' channels may hold on the server (`Limits::max_made_bytes`).
//!
//! A channel a client made (`CHAN_MAKE`) holds what clients send into it until someone
//! receives it; without a bound, one client with an unlimited channel and no receiver could
//! fill the server's memory. Charged, each for as long as it lasts:
//! - a made channel, the room it allocates when made;
//! - each connection holding one, its send window (what it may have queued in front of
//!   the channel);
//! - each value, its bytes, from when it goes into the channel (a shared element kept as a
//!   view of the sender's region: only its place) until it is dropped: a [`Charge`]
//!   travels with the value and gives its bytes back wherever that happens (received,
//!   replaced in a conflated channel, dropped with the channel). A copy of a shared
//!   element from a peer that takes no `REGION_RELEASE` is charged as soon as it is read.
//!
//! A send that finds the budget spent waits in its window as it would for a full channel,
//! with its deadline and cancel token.
//!
//! The same kind of budget bounds what sends hold in front of the server's own channels
//! (`Limits::max_server_window_bytes`): each connection's window on each channel it
//! opens, and each waiting rendezvous send's value; there nothing waits for it, what does
//! not fit is refused.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;

use kcoro::chan::{ByteLen, ChanError, Kind, Snapshot};
use kcoro::sync::{CancelToken, Semaphore, SemaphorePermit, WaitError, with_token};

use super::served::{Encode, Offered, SendFail, Served, Typed, Wait};
use crate::shm::{Located, Release, ShmRx, decode_element};

/// What a value costs beyond its bytes: its place in the channel's buffer.
const VALUE_OVERHEAD: u64 = 64;
/// What a made channel costs before any value: its state, and each slot it allocates up
/// front (a bounded channel allocates at most `PREALLOCATED_SLOTS`; see `kcoro::chan`).
const CHANNEL_OVERHEAD: u64 = 4 << 10;
const PREALLOCATED_SLOTS: u64 = 1 << 16;
/// What a preallocated slot costs besides its value's place: the two running byte counts
/// (8 bytes each) a channel that counts payload bytes keeps beside each slot.
const SLOT_BYTE_COUNTS: u64 = 16;

/// The server's budget for made channels, in bytes.
pub(crate) struct Budget {
    room: Semaphore,
    total: u64,
}

/// Bytes taken from a [`Budget`]; given back when dropped.
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.room.add_permits(self.bytes);
    }
}

impl Budget {
    pub(crate) fn new(total: u64) -> Arc<Budget> {
        // Permits are `usize`; a budget past it is no budget on any machine this runs on.
        let permits = usize::try_from(total).unwrap_or(usize::MAX);
        Arc::new(Budget { room: Semaphore::new(permits), total })
    }

    /// What making a channel of this kind and capacity charges.
    pub(crate) fn channel_cost(kind: Kind, capacity: usize) -> u64 {
        let slots = match kind {
            Kind::Buffered => (capacity as u64).min(PREALLOCATED_SLOTS),
            _ => 1,
        };
        CHANNEL_OVERHEAD + slots * (VALUE_OVERHEAD + SLOT_BYTE_COUNTS)
    }

    /// What one connection's send window on a made channel may hold queued: `values`
    /// sends of `bytes` inline bytes in all.
    pub(crate) fn window_cost(values: u32, bytes: u64) -> u64 {
        bytes.saturating_add(u64::from(values) * VALUE_OVERHEAD)
    }

    /// What a value of `len` bytes held in the server's memory costs.
    pub(crate) fn value_cost(len: u64) -> u64 {
        len.saturating_add(VALUE_OVERHEAD)
    }

    /// `bytes` now, if the budget has them and no send waits ahead; never waits.
    pub(crate) fn try_charge(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        let n = usize::try_from(bytes).ok()?;
        let permit = self.room.try_acquire_many(n)?;
        permit.forget();
        Some(Charge { budget: Arc::clone(self), bytes: n })
    }

    /// `bytes`, waiting as `wait` allows (and until `token` fires) for others to be given
    /// back. More than the whole budget is refused at once: it would wait forever.
    fn charge(
        self: &Arc<Self>,
        bytes: u64,
        wait: Wait,
        token: Option<&CancelToken>,
    ) -> Result<Charge, SendFail> {
        if bytes > self.total {
            return Err(SendFail::TooLarge { bytes, budget: self.total });
        }
        let n = bytes as usize;
        let acquire = || {
            match wait {
                Wait::Try => self.room.try_acquire_many(n).ok_or(ChanError::WouldBlock),
                Wait::Forever => self.room.acquire_many(n).map_err(|_| ChanError::Canceled),
                Wait::Until(t) => self.room.acquire_many_deadline(n, t).map_err(|e| match e {
                    WaitError::Timeout => ChanError::Timeout,
                    WaitError::Cancelled => ChanError::Canceled,
                }),
            }
            .map(SemaphorePermit::forget)
        };
        match token {
            Some(t) => with_token(t.clone(), acquire),
            None => acquire(),
        }
        .map_err(SendFail::Chan)?;
        Ok(Charge { budget: Arc::clone(self), bytes: n })
    }
}

/// A value in a made channel, with its share of the budget (`None` until it has one).
pub(crate) struct Charged {
    bytes: Bytes,
    /// What it costs the budget: its bytes and [`VALUE_OVERHEAD`], or only the overhead
    /// when `bytes` is a view of the sender's shared memory (that memory is the sender's
    /// region, bounded and counted as mapped, not the server's heap).
    cost: u64,
    charge: Option<Charge>,
}

impl Encode for Charged {
    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }
    fn encode_into(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.bytes);
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

impl ByteLen for Charged {
    fn byte_len(&self) -> usize {
        self.bytes.len()
    }
}

/// A channel a client made: bytes in, bytes out, every value charged to the budget.
pub(crate) struct Made {
    chan: Typed<Charged>,
    budget: Arc<Budget>,
    /// The channel's own cost, given back when the last holder lets go of it.
    _room: Charge,
}

impl Made {
    pub(crate) fn new(chan: Typed<Charged>, budget: Arc<Budget>, room: Charge) -> Made {
        Made { chan, budget, _room: room }
    }
}

impl Served for Made {
    fn kind(&self) -> Kind {
        self.chan.tx.kind()
    }

    fn keeps_shared_views(&self) -> bool {
        <Bytes as crate::Element>::KEEPS_SHARED_VIEWS
    }

    fn capacity(&self) -> Option<usize> {
        self.chan.tx.capacity()
    }

    fn offer(&self, el: &Located<'_>, rx: &ShmRx, release: Option<Release>, send_now: bool) -> Offered {
        // A shared element with a release stays a view of the sender's region; anything
        // else is copied into the server's memory and costs its bytes.
        let view = matches!(el, Located::Shared(_)) && release.is_some();
        let bytes: Bytes = match decode_element(el, None, release, rx) {
            Ok(v) => v,
            Err(e) => return Offered::Failed(SendFail::Decode(e)),
        };
        let cost = VALUE_OVERHEAD + if view { 0 } else { bytes.len() as u64 };
        let mut v = Charged { bytes, cost, charge: None };
        if cost > self.budget.total {
            return Offered::Failed(SendFail::TooLarge { bytes: cost, budget: self.budget.total });
        }
        // A copy of a shared element is not in any window: charged now or refused, so a
        // peer cannot queue copies the budget does not see.
        if matches!(el, Located::Shared(_)) && !view {
            match self.budget.try_charge(cost) {
                Some(c) => v.charge = Some(c),
                None => return Offered::Failed(SendFail::Spent),
            }
        }
        if !send_now {
            return Offered::Kept(Box::new(v));
        }
        if v.charge.is_none() {
            match self.budget.try_charge(cost) {
                Some(c) => v.charge = Some(c),
                None => return Offered::Kept(Box::new(v)),
            }
        }
        self.chan.send_now(v)
    }

    fn offer_kept(&self, v: Box<dyn Any + Send>) -> Offered {
        let Ok(mut v) = v.downcast::<Charged>() else {
            unreachable!("Made::offer_kept: a value this channel's own offer decoded")
        };
        if v.charge.is_none() {
            match self.budget.try_charge(v.cost) {
                Some(c) => v.charge = Some(c),
                None => return Offered::Kept(v),
            }
        }
        self.chan.send_now(*v)
    }

    fn send_decoded(
        &self,
        v: Box<dyn Any + Send>,
        wait: Wait,
        token: Option<&CancelToken>,
    ) -> Result<(), SendFail> {
        let Ok(mut v) = v.downcast::<Charged>() else {
            unreachable!("Made::send_decoded: a value this channel's own offer decoded")
        };
        if v.charge.is_none() {
            v.charge = Some(self.budget.charge(v.cost, wait, token)?);
        }
        self.chan.send_value(*v, wait, token)
    }

    fn recv(&self, wait: Wait, token: Option<&CancelToken>) -> Result<Box<dyn Encode>, ChanError> {
        self.chan.recv(wait, token)
    }

    fn take_ready(&self) -> Option<Box<dyn Encode>> {
        self.chan.take_ready()
    }

    fn put_back(&self, v: Box<dyn Encode>) {
        self.chan.put_back(v)
    }

    fn close(&self) -> bool {
        self.chan.tx.close()
    }

    fn is_closed(&self) -> bool {
        self.chan.tx.is_closed()
    }

    fn snapshot(&self) -> Snapshot {
        self.chan.tx.snapshot()
    }

    fn budget(&self) -> Option<&Arc<Budget>> {
        Some(&self.budget)
    }
}
