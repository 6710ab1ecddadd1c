//! The channels a server serves, type-erased: each one decodes elements arriving as bytes
//! into its element type, and encodes what it hands out.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use kcoro::chan::{ChanError, Kind, Receiver, Sender, Snapshot};
use kcoro::sync::CancelToken;

use super::budget::Budget;
use crate::Element;
use crate::element::DecodeError;
use crate::shm::{Located, Release, ShmRx, decode_element};

/// How long an operation may wait, from its `TIMEOUT_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Try,
    Forever,
    Until(Instant),
}

impl Wait {
    pub(crate) fn from_ms(ms: i64) -> Wait {
        match ms {
            0 => Wait::Try,
            ms if ms < 0 => Wait::Forever,
            ms => Instant::now()
                .checked_add(std::time::Duration::from_millis(ms as u64))
                .map_or(Wait::Forever, Wait::Until),
        }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(t) => Some(t),
            _ => None,
        }
    }
}

/// Why a send through the server failed.
pub(crate) enum SendFail {
    Chan(ChanError),
    Decode(DecodeError),
    /// An element larger than the whole budget for clients' channels (`budget`).
    TooLarge {
        bytes: u64,
        budget: u64,
    },
    /// A copy the budget for clients' channels has no room for, that cannot wait in a
    /// window (a shared element of a peer that takes no `REGION_RELEASE`).
    Spent,
}

/// What [`Served::offer`] did with an element.
pub(crate) enum Offered {
    /// In the channel, without waiting.
    Sent,
    Failed(SendFail),
    /// Decoded but not sent: the channel had no room, or the caller asked to keep it. A
    /// send that may wait takes it to [`Served::send_decoded`].
    Kept(Box<dyn Any + Send>),
}

/// A value taken from a channel, ready to be encoded into a reply.
pub(crate) trait Encode: Send {
    fn encoded_len(&self) -> usize;
    fn encode_into(&self, out: &mut [u8]);
    /// The value itself again, for [`Served::put_back`].
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: Element> Encode for T {
    fn encoded_len(&self) -> usize {
        Element::encoded_len(self)
    }
    fn encode_into(&self, out: &mut [u8]) {
        Element::encode_into(self, out)
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// One served channel.
pub(crate) trait Served: Send + Sync {
    fn kind(&self) -> Kind;
    fn capacity(&self) -> Option<usize>;
    /// Decodes `el` (a shared one from the regions of `rx`, the sending connection's) and,
    /// if `send_now`, sends it if that needs no wait; otherwise hands the decoded value
    /// back. `release` (shared elements of a peer that takes `REGION_RELEASE` for them)
    /// lets the value keep the peer's span until it is dropped.
    fn offer(&self, el: &Located<'_>, rx: &ShmRx, release: Option<Release>, send_now: bool) -> Offered;
    /// Sends a value [`offer`](Self::offer) kept if that needs no wait, as `offer` would
    /// have; else hands it back again.
    fn offer_kept(&self, v: Box<dyn Any + Send>) -> Offered;
    /// Sends a value [`offer`](Self::offer) kept.
    fn send_decoded(
        &self,
        v: Box<dyn Any + Send>,
        wait: Wait,
        token: Option<&CancelToken>,
    ) -> Result<(), SendFail>;
    fn recv(&self, wait: Wait, token: Option<&CancelToken>) -> Result<Box<dyn Encode>, ChanError>;
    /// A value if one is ready now (counted as a receive), else `None`, counting nothing:
    /// a receive that must wait then waits in [`recv`](Self::recv).
    fn take_ready(&self) -> Option<Box<dyn Encode>>;
    /// Gives back a value [`recv`](Self::recv) took but could not deliver (its reply does
    /// not fit the receiver's frame limit, or the receiver went before it was written): it
    /// is sent into the channel again, at the tail (waiting in a coroutine of its own if
    /// the channel is full), so that no value a sender was told is delivered gets lost by
    /// the server. Dropped only if the channel is closed.
    fn put_back(&self, v: Box<dyn Encode>);
    /// Closes; `true` for the call that did.
    fn close(&self) -> bool;
    fn is_closed(&self) -> bool;
    fn snapshot(&self) -> Snapshot;
    /// Whether a shared element sent by a peer that takes `REGION_RELEASE` stays a view
    /// of the peer's region ([`Element::KEEPS_SHARED_VIEWS`]) instead of a copy in ours.
    fn keeps_shared_views(&self) -> bool;
    /// The budget this channel's values are charged to: a channel a client made.
    fn budget(&self) -> Option<&Arc<Budget>> {
        None
    }
}

/// A local channel served as it is.
pub(crate) struct Typed<T> {
    pub(crate) tx: Sender<T>,
    pub(crate) rx: Receiver<T>,
}

impl<T: Encode + Send + 'static> Typed<T> {
    /// Sends `v` if that needs no wait, else keeps it (the [`Served::offer`] outcome).
    pub(crate) fn send_now(&self, v: T) -> Offered {
        match self.tx.try_send(v) {
            Ok(()) => Offered::Sent,
            Err(e) if e.kind() == ChanError::WouldBlock => Offered::Kept(Box::new(e.into_inner())),
            Err(e) => Offered::Failed(SendFail::Chan(e.kind())),
        }
    }

    /// Sends a value of this channel's type, waiting as `wait` allows.
    pub(crate) fn send_value(&self, v: T, wait: Wait, token: Option<&CancelToken>) -> Result<(), SendFail> {
        let r = match wait {
            Wait::Try => self.tx.try_send(v),
            w => self.tx.send_with(v, w.deadline(), token),
        };
        r.map_err(|e| SendFail::Chan(e.kind()))
    }

    pub(crate) fn recv(&self, wait: Wait, token: Option<&CancelToken>) -> Result<Box<dyn Encode>, ChanError> {
        let v = match wait {
            Wait::Try => self.rx.try_recv(),
            w => self.rx.recv_with(w.deadline(), token),
        }?;
        Ok(Box::new(v))
    }

    pub(crate) fn take_ready(&self) -> Option<Box<dyn Encode>> {
        self.rx.take_ready().map(|v| Box::new(v) as Box<dyn Encode>)
    }

    /// [`Served::put_back`] for a channel of `T`.
    pub(crate) fn put_back(&self, v: Box<dyn Encode>) {
        let Ok(v) = v.into_any().downcast::<T>() else {
            unreachable!("Typed::put_back: a value of this channel's own type")
        };
        match self.tx.try_send(*v) {
            Ok(()) => {}
            Err(e) if e.kind() == ChanError::Closed => {}
            Err(e) => {
                let (tx, v) = (self.tx.clone(), e.into_inner());
                // Usually on the server's runtime; a connection's last owner may be a
                // thread, where a kcoro spawn would panic.
                match kcoro::Handle::try_current() {
                    Some(h) => drop(h.spawn(move || tx.send(v))),
                    None => drop(std::thread::spawn(move || tx.send(v))),
                }
            }
        }
    }
}

impl<T: Element> Served for Typed<T> {
    fn kind(&self) -> Kind {
        self.tx.kind()
    }

    fn keeps_shared_views(&self) -> bool {
        T::KEEPS_SHARED_VIEWS
    }

    fn capacity(&self) -> Option<usize> {
        self.tx.capacity()
    }

    fn offer(&self, el: &Located<'_>, rx: &ShmRx, release: Option<Release>, send_now: bool) -> Offered {
        let v: T = match decode_element(el, None, release, rx) {
            Ok(v) => v,
            Err(e) => return Offered::Failed(SendFail::Decode(e)),
        };
        if !send_now {
            return Offered::Kept(Box::new(v));
        }
        self.send_now(v)
    }

    fn offer_kept(&self, v: Box<dyn Any + Send>) -> Offered {
        let Ok(v) = v.downcast::<T>() else {
            unreachable!("Typed::offer_kept: a value this channel's own offer decoded")
        };
        self.send_now(*v)
    }

    fn send_decoded(
        &self,
        v: Box<dyn Any + Send>,
        wait: Wait,
        token: Option<&CancelToken>,
    ) -> Result<(), SendFail> {
        let Ok(v) = v.downcast::<T>() else {
            unreachable!("Typed::send_decoded: a value this channel's own offer decoded")
        };
        self.send_value(*v, wait, token)
    }

    fn recv(&self, wait: Wait, token: Option<&CancelToken>) -> Result<Box<dyn Encode>, ChanError> {
        Typed::recv(self, wait, token)
    }

    fn take_ready(&self) -> Option<Box<dyn Encode>> {
        Typed::take_ready(self)
    }

    fn put_back(&self, v: Box<dyn Encode>) {
        Typed::put_back(self, v)
    }

    fn close(&self) -> bool {
        self.tx.close()
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn snapshot(&self) -> Snapshot {
        self.tx.snapshot()
    }
}

/// A channel in the registry.
pub(crate) struct Entry {
    pub(crate) name: Option<String>,
    pub(crate) chan: Arc<dyn Served>,
    /// Made by a client (CHAN_MAKE), counted against `Limits::max_server_channels`.
    pub(crate) made: bool,
}

/// Channels by id and by name.
#[derive(Default)]
pub(crate) struct Registry {
    next_id: u64,
    by_id: HashMap<u64, Entry>,
    by_name: HashMap<String, u64>,
}

impl Registry {
    /// Adds a channel (`made`: by a client); `None` if the name is taken.
    pub(crate) fn add(&mut self, name: Option<String>, chan: Arc<dyn Served>, made: bool) -> Option<u64> {
        if let Some(n) = &name
            && self.by_name.contains_key(n)
        {
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        if let Some(n) = &name {
            self.by_name.insert(n.clone(), id);
        }
        self.by_id.insert(id, Entry { name, chan, made });
        Some(id)
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<(u64, Arc<dyn Served>)> {
        let id = *self.by_name.get(name)?;
        Some((id, Arc::clone(&self.by_id.get(&id)?.chan)))
    }

    pub(crate) fn by_id(&self, id: u64) -> Option<Arc<dyn Served>> {
        self.by_id.get(&id).map(|e| Arc::clone(&e.chan))
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.by_id.remove(&id)?;
        if let Some(n) = &e.name {
            self.by_name.remove(n);
        }
        Some(e)
    }

    /// Named channels, by name.
    pub(crate) fn named(&self) -> Vec<(u64, String, Arc<dyn Served>)> {
        let mut v: Vec<_> = self
            .by_name
            .iter()
            .filter_map(|(n, id)| Some((*id, n.clone(), Arc::clone(&self.by_id.get(id)?.chan))))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }

    pub(crate) fn name_of(&self, id: u64) -> Option<String> {
        self.by_id.get(&id)?.name.clone()
    }
}
