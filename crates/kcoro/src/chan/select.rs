//! Select: wait on several channel operations, complete exactly one.
//!
//! # Protocol
//! 1. **Try pass.** In clause order (biased) or from a random start (unbiased), attempt
//!    each operation without waiting; the first that completes wins. A closed channel
//!    completes its clause with `Closed`.
//! 2. **Register pass.** With one fresh [`Waiter`], lock each clause's channel in turn:
//!    if the operation could complete now (something arrived since pass 1), stop and
//!    go to 4; else leave an entry in its queue.
//! 3. **Park** until a counterpart claims the waiter for one clause (moving the value
//!    through that clause's slot), or the deadline / token gives up.
//! 4. A clause became ready during registration: abort the waiter. If the abort wins,
//!    unregister and start again at 1; if it loses, a counterpart claimed us: as 3.
//! 5. **Unregister** every clause's entry (losers' entries would otherwise stay queued).
//!
//! Registering one channel at a time (instead of locking them all, as Go does) is safe
//! because the waiter's single CAS decides the winner; step 4 is what makes an operation
//! that is ready *and* registered elsewhere never complete twice. An operation never
//! matches its own select's entry on the other side of the same channel.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{Chan, RecvAttempt, SendAttempt, Until, Wait, park_on};
use super::error::{ChanError, SendError};
use super::flavor::ring::{Pop, Push};
use super::handle::{Receiver, Sender};
use super::waiter::{Entry, Waiter};
use crate::coro::wait::{SELECT_SEND, Wait as WaitOn};
use crate::sync::CancelToken;

/// One select clause, type-erased. Used by the `select!` macros; not public API.
#[doc(hidden)]
pub trait Clause {
    /// Pass 1: completes the operation if it needs no waiting. `true` if it completed.
    fn try_now(&mut self) -> bool;
    /// Pass 2: `true` if the operation could complete now (nothing registered); else
    /// leaves an entry for `waiter`, clause `index`.
    fn register(&mut self, waiter: &Arc<Waiter>, index: usize) -> bool;
    /// Step 5: removes this clause's entry, if any.
    fn unregister(&mut self, waiter: &Arc<Waiter>);
    /// After a counterpart claimed and finished this clause: turn the slot into a result.
    fn complete(&mut self);
    /// The channel and direction, for [`SelectedOperation`]'s type check.
    fn identity(&self) -> (*const (), bool);
    /// The channel's id (0 if unknown), for monitors to say what a select waits on.
    fn channel_id(&self) -> u64 {
        0
    }
    /// Points at this clause's `Option<Result<..>>` result.
    fn result_ptr(&mut self) -> *mut ();
}

/// A receive clause.
#[doc(hidden)]
pub struct RecvClause<'a, T> {
    chan: &'a Chan<T>,
    slot: UnsafeCell<Option<T>>,
    result: Option<Result<T, ChanError>>,
}

impl<'a, T> RecvClause<'a, T> {
    pub fn new(rx: &'a Receiver<T>) -> Self {
        RecvClause { chan: &rx.chan, slot: UnsafeCell::new(None), result: None }
    }

    /// The clause's outcome; call only for the winning clause.
    pub fn into_result(self) -> Result<T, ChanError> {
        match self.result {
            Some(r) => r,
            None => unreachable!("RecvClause::into_result: the clause did not win"),
        }
    }
}

impl<T> Clause for RecvClause<'_, T> {
    fn try_now(&mut self) -> bool {
        let chan = self.chan;
        match chan.recv_lock_free() {
            Pop::Got(v) => {
                self.result = Some(Ok(v));
                return true;
            }
            Pop::Empty => return false,
            Pop::Refused => {}
        }
        let mut g = chan.lock();
        let result = match chan.try_recv_locked(&mut g, None) {
            RecvAttempt::Got(v, after) => {
                drop(g);
                after.run(chan);
                Ok(v)
            }
            RecvAttempt::Closed => Err(chan.recv_failed(g, ChanError::Closed)),
            RecvAttempt::Empty => return false,
        };
        self.result = Some(result);
        true
    }

    fn register(&mut self, waiter: &Arc<Waiter>, index: usize) -> bool {
        let mut g = self.chan.lock();
        if self.chan.recv_ready_locked(&g, waiter) {
            return true;
        }
        let slot = self.slot.get();
        let wakes = self.chan.park_receiver_locked(&mut g, Entry::new(waiter, index, slot, 0));
        drop(g);
        wakes.run();
        false
    }

    fn unregister(&mut self, waiter: &Arc<Waiter>) {
        let mut g = self.chan.lock();
        self.chan.unpark_locked(&mut g, waiter);
    }

    fn complete(&mut self) {
        // Filled by a sender, or left empty by a close (which counted the failure).
        self.result = Some(self.slot.get_mut().take().ok_or(ChanError::Closed));
    }

    fn identity(&self) -> (*const (), bool) {
        (std::ptr::from_ref(self.chan).cast(), false)
    }

    fn channel_id(&self) -> u64 {
        self.chan.id()
    }

    fn result_ptr(&mut self) -> *mut () {
        std::ptr::from_mut(&mut self.result).cast()
    }
}

/// A send clause; its value is dropped if another clause wins.
#[doc(hidden)]
pub struct SendClause<'a, T> {
    chan: &'a Chan<T>,
    /// The value, until it is sent; a registered entry points here.
    slot: UnsafeCell<Option<T>>,
    bytes: usize,
    result: Option<Result<(), SendError<T>>>,
}

impl<'a, T> SendClause<'a, T> {
    pub fn new(tx: &'a Sender<T>, value: T) -> Self {
        let bytes = tx.chan.measure(&value);
        SendClause { chan: &tx.chan, slot: UnsafeCell::new(Some(value)), bytes, result: None }
    }

    /// The clause's outcome; call only for the winning clause.
    pub fn into_result(self) -> Result<(), SendError<T>> {
        match self.result {
            Some(r) => r,
            None => unreachable!("SendClause::into_result: the clause did not win"),
        }
    }
}

impl<T> Clause for SendClause<'_, T> {
    fn try_now(&mut self) -> bool {
        // A clause that already won in an earlier wait of a reused `Select` is spent.
        let Some(v) = self.slot.get_mut().take() else { return false };
        let chan = self.chan;
        let v = match chan.send_lock_free(v) {
            Push::Done => {
                self.result = Some(Ok(()));
                return true;
            }
            Push::Full(v) => {
                *self.slot.get_mut() = Some(v);
                return false;
            }
            Push::Refused(v) => v,
        };
        let mut g = chan.lock();
        let result = match chan.try_send_locked(&mut g, v, self.bytes, None) {
            SendAttempt::Sent(after) => {
                drop(g);
                after.run(chan);
                Ok(())
            }
            SendAttempt::Closed(v) => Err(chan.send_failed(g, ChanError::Closed, v)),
            SendAttempt::Full(v) => {
                *self.slot.get_mut() = Some(v);
                return false;
            }
        };
        self.result = Some(result);
        true
    }

    fn register(&mut self, waiter: &Arc<Waiter>, index: usize) -> bool {
        if self.slot.get_mut().is_none() {
            return false; // spent: never ready, nothing to register
        }
        let mut g = self.chan.lock();
        if self.chan.send_ready_locked(&g, waiter) {
            return true;
        }
        let (slot, bytes) = (self.slot.get(), self.bytes);
        let wakes = self.chan.park_sender_locked(&mut g, Entry::new(waiter, index, slot, bytes));
        drop(g);
        wakes.run();
        false
    }

    fn unregister(&mut self, waiter: &Arc<Waiter>) {
        let mut g = self.chan.lock();
        self.chan.unpark_locked(&mut g, waiter);
    }

    fn complete(&mut self) {
        // Emptied by a receiver, or left full by a close (which counted the failure).
        self.result = Some(match self.slot.get_mut().take() {
            None => Ok(()),
            Some(v) => Err(SendError::new(ChanError::Closed, v)),
        });
    }

    fn identity(&self) -> (*const (), bool) {
        (std::ptr::from_ref(self.chan).cast(), true)
    }

    fn channel_id(&self) -> u64 {
        self.chan.id() | SELECT_SEND
    }

    fn result_ptr(&mut self) -> *mut () {
        std::ptr::from_mut(&mut self.result).cast()
    }
}

/// Runs the protocol over `clauses`; returns the winning index, or why none won:
/// `WouldBlock` (a try), `Timeout`, `Canceled`.
pub(crate) fn run(clauses: &mut [&mut dyn Clause], wait: Wait<'_>, biased: bool) -> Result<usize, ChanError> {
    let n = clauses.len();
    // Poll order: as written, or a fresh uniform shuffle (Go's `selectgo` shuffles too;
    // a random rotation would favour a ready clause that follows unready ones).
    let mut order_buf = [0usize; 32];
    let mut order_vec = Vec::new();
    let order: &mut [usize] = if n <= order_buf.len() {
        &mut order_buf[..n]
    } else {
        order_vec.resize(n, 0);
        &mut order_vec
    };
    for (k, slot) in order.iter_mut().enumerate() {
        *slot = k;
    }
    if !biased {
        for k in (1..n).rev() {
            order.swap(k, crate::rand::below(k + 1));
        }
    }
    let why = waiting_on(clauses);
    loop {
        // Pass 1.
        for &i in order.iter() {
            if clauses[i].try_now() {
                return Ok(i);
            }
        }
        if let Some(why) = wait.refuse() {
            return Err(why);
        }
        let waiter = Waiter::for_current();
        let outcome = {
            // Pass 2; dropping `reg` is pass 5, also when a shutdown unwinds the park.
            let mut reg = Registration { clauses: &mut *clauses, order, registered: 0, waiter: &waiter };
            let ready = reg.register_all();
            // Passes 3 and 4.
            if ready && waiter.try_abort() { None } else { Some(park_on(&waiter, wait, why)) }
        };
        match outcome {
            None => continue,
            Some(Ok(i)) => {
                Waiter::recycle(waiter);
                clauses[i].complete();
                return Ok(i);
            }
            Some(Err(why)) => return Err(why),
        }
    }
}

/// A select's entries in its clauses' queues (pass 2), withdrawn on drop (pass 5).
///
/// Withdrawal first aborts the waiter (a no-op once it is done or aborted), then removes
/// each entry under its channel's lock, which also waits out a claimer still moving a
/// value: after the drop no queue points into the clauses. The drop runs on every exit,
/// including the unwind a runtime shutdown sends through a parked coroutine.
struct Registration<'r, 'c> {
    clauses: &'r mut [&'c mut dyn Clause],
    order: &'r [usize],
    registered: usize,
    waiter: &'r Arc<Waiter>,
}

impl Registration<'_, '_> {
    /// Registers clause after clause; `true` (and stops) if one could complete now.
    fn register_all(&mut self) -> bool {
        for &i in self.order {
            if self.clauses[i].register(self.waiter, i) {
                return true;
            }
            self.registered += 1;
        }
        false
    }
}

impl Drop for Registration<'_, '_> {
    fn drop(&mut self) {
        let _ = self.waiter.try_abort();
        for &i in &self.order[..self.registered] {
            self.clauses[i].unregister(self.waiter);
        }
    }
}

/// Entry point of the `select!` macros.
#[doc(hidden)]
pub fn run_macro(
    clauses: &mut [&mut dyn Clause],
    deadline: Option<Instant>,
    try_only: bool,
    biased: bool,
) -> Result<usize, ChanError> {
    let until = match (try_only, deadline) {
        (true, _) => Until::Now,
        (false, Some(t)) => Until::At(t),
        (false, None) => Until::Forever,
    };
    run(clauses, Wait { until, cancel: None }, biased)
}

/// A runtime-sized select: add clauses, then wait for one to complete.
///
/// ```
/// use kcoro::chan::{self, Select};
///
/// let receivers: Vec<_> = (0..4).map(|_| chan::buffered::<usize>(1)).collect();
/// receivers[2].0.send(42).unwrap();
/// let mut sel = Select::new();
/// for (_, rx) in &receivers {
///     sel.recv(rx);
/// }
/// let op = sel.wait().unwrap();
/// assert_eq!(op.index(), 2);
/// assert_eq!(op.recv(&receivers[2].1), Ok(42));
/// ```
///
/// A `Select` may wait again: receive clauses stay armed, a send clause that won is spent.
#[derive(Default)]
pub struct Select<'a> {
    clauses: Vec<Box<dyn Clause + 'a>>,
    deadline: Option<Instant>,
    cancel: Option<&'a CancelToken>,
    unbiased: bool,
}

impl<'a> Select<'a> {
    /// An empty select, biased: earlier clauses win ties.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty select that starts each pass at a random clause.
    pub fn unbiased() -> Self {
        Select { unbiased: true, ..Self::default() }
    }

    /// Adds a receive clause; returns its index.
    pub fn recv<T>(&mut self, rx: &'a Receiver<T>) -> usize {
        self.clauses.push(Box::new(RecvClause::new(rx)));
        self.clauses.len() - 1
    }

    /// Adds a send clause; returns its index. The value is dropped if another clause wins.
    pub fn send<T>(&mut self, tx: &'a Sender<T>, value: T) -> usize {
        self.clauses.push(Box::new(SendClause::new(tx, value)));
        self.clauses.len() - 1
    }

    /// Gives up with `Timeout` after `timeout` (from now).
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.deadline = crate::runtime::now().checked_add(timeout);
        self
    }

    /// Gives up with `Timeout` at `deadline`.
    pub fn deadline(&mut self, deadline: Instant) -> &mut Self {
        self.deadline = Some(deadline);
        self
    }

    /// Gives up with `Canceled` as soon as `token` is cancelled (winning over timeout).
    pub fn cancel_on(&mut self, token: &'a CancelToken) -> &mut Self {
        self.cancel = Some(token);
        self
    }

    /// Number of clauses.
    pub fn len(&self) -> usize {
        self.clauses.len()
    }

    /// True if no clause was added.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Waits until one clause completes (or the deadline / token gives up). With no
    /// clauses, waits only for the deadline or token (forever, like Go's `select {}`).
    pub fn wait(&mut self) -> Result<SelectedOperation<'_, 'a>, ChanError> {
        let until = self.deadline.map_or(Until::Forever, Until::At);
        self.run(Wait { until, cancel: self.cancel })
    }

    /// Completes a clause that needs no waiting, else `WouldBlock`.
    pub fn try_wait(&mut self) -> Result<SelectedOperation<'_, 'a>, ChanError> {
        self.run(Wait::TRY)
    }

    fn run(&mut self, wait: Wait<'_>) -> Result<SelectedOperation<'_, 'a>, ChanError> {
        if self.clauses.is_empty() {
            return Err(wait_without_clauses(wait));
        }
        let mut refs: Vec<&mut dyn Clause> =
            self.clauses.iter_mut().map(|c| &mut **c as &mut dyn Clause).collect();
        let index = run(&mut refs, wait, !self.unbiased)?;
        Ok(SelectedOperation { select: self, index })
    }
}

impl std::fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Select")
            .field("clauses", &self.clauses.len())
            .field("deadline", &self.deadline)
            .field("unbiased", &self.unbiased)
            .finish()
    }
}

/// What a select over `clauses` waits on: their count and the first two channels.
fn waiting_on(clauses: &[&mut dyn Clause]) -> WaitOn {
    let id = |i: usize| clauses.get(i).map_or(0, |c| c.channel_id());
    WaitOn::select(clauses.len(), id(0), id(1))
}

/// A select with nothing to wait for waits for its deadline or token.
fn wait_without_clauses(wait: Wait<'_>) -> ChanError {
    if let Some(why) = wait.refuse() {
        return why;
    }
    let waiter = Waiter::for_current();
    match park_on(&waiter, wait, WaitOn::select(0, 0, 0)) {
        Err(why) => why,
        Ok(_) => unreachable!("wait_without_clauses: a waiter in no queue was claimed"),
    }
}

/// The clause that won a [`Select`]; take its outcome with [`recv`](Self::recv) or
/// [`send`](Self::send), passing the same channel end the clause was built with.
#[must_use = "the outcome of the winning clause is in here"]
pub struct SelectedOperation<'s, 'a> {
    select: &'s mut Select<'a>,
    index: usize,
}

impl SelectedOperation<'_, '_> {
    /// Index of the winning clause, as returned when it was added.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The received value (or `Closed`).
    ///
    /// # Panics
    /// If the winning clause is not a receive on `rx`'s channel.
    pub fn recv<T>(mut self, rx: &Receiver<T>) -> Result<T, ChanError> {
        let p = self.result_ptr(std::ptr::from_ref(&*rx.chan).cast(), false, "recv");
        // SAFETY: `result_ptr` checked that the clause receives on this very channel, so it
        // is a `RecvClause<T>` whose result has this type; `self` borrows it mutably.
        let result = unsafe { (*p.cast::<Option<Result<T, ChanError>>>()).take() };
        result.unwrap_or_else(|| unreachable!("SelectedOperation::recv: no result"))
    }

    /// The send's outcome (`Closed` hands the value back).
    ///
    /// # Panics
    /// If the winning clause is not a send on `tx`'s channel.
    pub fn send<T>(mut self, tx: &Sender<T>) -> Result<(), SendError<T>> {
        let p = self.result_ptr(std::ptr::from_ref(&*tx.chan).cast(), true, "send");
        // SAFETY: as in `recv`, for a `SendClause<T>`.
        let result = unsafe { (*p.cast::<Option<Result<(), SendError<T>>>>()).take() };
        result.unwrap_or_else(|| unreachable!("SelectedOperation::send: no result"))
    }

    fn result_ptr(&mut self, chan: *const (), sending: bool, what: &str) -> *mut () {
        let clause = &mut self.select.clauses[self.index];
        assert!(
            clause.identity() == (chan, sending),
            "SelectedOperation::{what}: clause {} is not a {what} on this channel",
            self.index
        );
        clause.result_ptr()
    }
}

impl std::fmt::Debug for SelectedOperation<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectedOperation").field("index", &self.index).finish()
    }
}
