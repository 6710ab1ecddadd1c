//! Unary calls: one future type that `.await`s on any executor or `.wait()`s by parking the
//! calling coroutine (or thread).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kcoro::park::{self, Unparker};

use crate::ctx::InCall;
use crate::metrics::Counter;
use crate::payload::Frame;
use crate::plugin::{EntryRef, InFlight, Plugin};
use crate::request::{HighLevelRequest, RawRequest};
use crate::table::Kind;
use crate::{HostError, timer};

/// A unary reply: the plugin's status and bytes.
pub type Reply = Frame;

enum State<'a> {
    Start,
    Waiting { sid: u64, deadline: Option<Instant>, timer_armed: bool, _in_flight: InFlight<'a> },
    Done,
}

/// A unary call. Nothing happens until it is first polled (or [`Call::wait`]ed): then the
/// plugin's `handle` runs on the calling thread, and a reply sent inside `handle` completes
/// the call at once, with no wake-up.
#[must_use = "a call does nothing until awaited or waited"]
pub struct Call<'a> {
    plugin: &'a Plugin,
    entry: EntryRef<'a>,
    req: Option<&'a HighLevelRequest>,
    payload: &'a [u8],
    timeout: Option<Duration>,
    inline_only: bool,
    state: State<'a>,
}

impl<'a> Call<'a> {
    #[inline]
    pub(crate) fn new(
        plugin: &'a Plugin,
        entry: EntryRef<'a>,
        req: Option<&'a HighLevelRequest>,
        payload: &'a [u8],
    ) -> Call<'a> {
        Call { plugin, entry, req, payload, timeout: None, inline_only: false, state: State::Start }
    }

    /// Asks for the reply inside `handle`, on the calling thread, as a plugin that answers
    /// synchronously gives it. The call then takes no sid from the host's table (about 120
    /// instructions of an empty call's 700, docs/BENCHMARKS.md). If `handle` returns without
    /// a reply the call fails with [`HostError::NoInlineReply`], and whatever the plugin
    /// sends for it later, from any thread, is dropped and counted in
    /// [`Metrics::dropped_replies`](crate::Metrics::dropped_replies). A plugin that answers
    /// an error status from `handle` still gets it back as the reply. A reply buffer leased
    /// to the plugin (nylon-ring 0.2) is served inside `handle`; per-call state needs a
    /// slot, so the plugin's requests for it fail in such a call.
    pub fn inline_only(mut self) -> Self {
        self.inline_only = true;
        self
    }

    /// Fails the call with [`HostError::Timeout`] if no reply arrives within `d`; a reply
    /// that arrives later is dropped and counted.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Runs the call to completion, parking the calling coroutine (or thread) while the
    /// plugin works.
    #[inline]
    pub fn wait(mut self) -> Result<Reply, HostError> {
        if let Some(done) = self.start()? {
            return Ok(done);
        }
        loop {
            if let Some(r) = self.check(park::current) {
                return r;
            }
            match self.deadline() {
                Some(d) => {
                    park::park_deadline(d);
                }
                None => park::park(),
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { deadline, .. } => deadline,
            _ => None,
        }
    }

    /// Calls the plugin. `Some` when the call completed inside `handle`.
    #[inline]
    fn start(&mut self) -> Result<Option<Reply>, HostError> {
        let plugin: &'a Plugin = self.plugin;
        let loaded = &*plugin.0;
        let in_flight = loaded.enter()?;
        let mut raw = self.req.map(RawRequest::new).transpose()?;
        let payload = self.req.map_or(self.payload, |r| &r.body[..]);
        let inline_sid = if self.inline_only { loaded.ctx.table.inline_sid() } else { None };
        let sid = match inline_sid {
            Some(sid) => sid,
            // A thread without an exclusive index (past the first 64) takes a table sid;
            // the call still fails below if the reply does not come inline.
            None => self.plugin.alloc(Kind::Unary)?,
        };
        loaded.ctx.counters.add(Counter::Calls, 1);
        let mut reply = None;
        let status = {
            let _in = InCall::enter(&loaded.ctx, sid, &mut reply);
            let req = raw.as_mut().map_or(std::ptr::null(), |r| r.as_ptr());
            loaded.invoke(self.entry, sid, req, payload)
        };
        if inline_sid.is_some() {
            loaded.ctx.end_inline_leases(sid);
        }
        let done = match reply {
            Some(frame) => Some(frame),
            None if status != kcoro_abi::NrStatus::Ok => Some(Frame { status, data: Default::default() }),
            None => None,
        };
        if let Some(frame) = done {
            if inline_sid.is_none() {
                loaded.finish(sid);
            }
            loaded.ctx.counters.status(frame.status);
            self.state = State::Done;
            return Ok(Some(frame));
        }
        if self.inline_only {
            if inline_sid.is_none() {
                loaded.finish(sid);
            }
            self.state = State::Done;
            return Err(HostError::NoInlineReply(loaded.name.clone()));
        }
        let deadline = self.timeout.map(|d| Instant::now() + d);
        self.state = State::Waiting { sid, deadline, timer_armed: false, _in_flight: in_flight };
        Ok(None)
    }

    /// Takes the reply if it is there, else registers `unparker` for it. Also ends the call
    /// on timeout.
    fn check(&mut self, unparker: impl FnOnce() -> Unparker) -> Option<Result<Reply, HostError>> {
        let State::Waiting { sid, deadline, .. } = self.state else {
            return Some(Err(HostError::StreamClosed));
        };
        let loaded = &self.plugin.0;
        let got = {
            let Some(mut slot) = loaded.ctx.table.get(sid) else {
                self.state = State::Done;
                return Some(Err(HostError::StreamClosed));
            };
            let got = slot.frames.pop_front();
            if got.is_none() {
                slot.waiter = Some(unparker());
            }
            got
        };
        if let Some(frame) = got {
            loaded.finish(sid);
            loaded.ctx.counters.status(frame.status);
            self.state = State::Done;
            return Some(Ok(frame));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            loaded.finish(sid);
            self.state = State::Done;
            return Some(Err(HostError::Timeout));
        }
        None
    }
}

impl Future for Call<'_> {
    type Output = Result<Reply, HostError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Start = this.state {
            match this.start() {
                Ok(Some(reply)) => return Poll::Ready(Ok(reply)),
                Ok(None) => {}
                Err(e) => {
                    this.state = State::Done;
                    return Poll::Ready(Err(e));
                }
            }
        }
        if let Some(r) = this.check(|| Unparker::from_waker(cx.waker().clone())) {
            return Poll::Ready(r);
        }
        if let State::Waiting { deadline: Some(d), timer_armed, .. } = &mut this.state
            && !*timer_armed
        {
            *timer_armed = true;
            timer::wake_at(*d, cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if let State::Waiting { sid, .. } = self.state {
            self.plugin.0.finish(sid);
        }
    }
}

impl Plugin {
    /// A unary call with a full request.
    #[inline]
    pub fn call<'a>(&'a self, entry: impl Into<EntryRef<'a>>, req: &'a HighLevelRequest) -> Call<'a> {
        Call::new(self, entry.into(), Some(req), &[])
    }

    /// A unary call with only a payload: the plugin sees an empty request.
    #[inline]
    pub fn call_raw<'a>(&'a self, entry: impl Into<EntryRef<'a>>, payload: &'a [u8]) -> Call<'a> {
        Call::new(self, entry.into(), None, payload)
    }
}
