//! Streaming and bidirectional calls.
//!
//! Frames queue in the sid's slot, bounded by [`crate::LoadOptions::stream_capacity`]. When
//! the queue is full a version-1 `send_result` from a plugin thread waits for room (the
//! plugin's thread parks), `try_send` / `send_owned` return `Backpressure`, and a send from
//! inside a host → plugin call on the reader's own thread is let through so the reader can
//! never deadlock on itself. The stream ends with the first terminal frame (`StreamEnd`,
//! `Err`, `Invalid`, `Unsupported`); anything sent after it is dropped and counted.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kcoro::park::{self, Unparker};
use kcoro_abi::NrStatus;

use crate::ctx::InCall;
use crate::metrics::Counter;
use crate::payload::Frame;
use crate::plugin::{EntryRef, Plugin};
use crate::request::{HighLevelRequest, RawRequest};
use crate::table::Kind;
use crate::{HostError, timer};

/// A running stream. Yields every frame, the terminal one included, then ends. Dropping it
/// early ends the sid (later frames are dropped and counted) and tells the plugin through
/// `stream_close`.
pub struct StreamCall {
    plugin: Plugin,
    sid: u64,
    done: bool,
    input_closed: bool,
    deadline: Option<Instant>,
    timer_armed: bool,
}

impl Plugin {
    /// Starts a stream with a full request.
    pub fn call_stream<'a>(
        &self,
        entry: impl Into<EntryRef<'a>>,
        req: &HighLevelRequest,
    ) -> Result<StreamCall, HostError> {
        let mut raw = RawRequest::new(req)?;
        self.start_stream(entry.into(), raw.as_ptr(), &req.body)
    }

    /// Starts a stream with only a payload.
    pub fn call_stream_raw<'a>(
        &self,
        entry: impl Into<EntryRef<'a>>,
        payload: &[u8],
    ) -> Result<StreamCall, HostError> {
        self.start_stream(entry.into(), std::ptr::null(), payload)
    }

    fn start_stream(
        &self,
        entry: EntryRef<'_>,
        req: *const kcoro_abi::NrRequest,
        payload: &[u8],
    ) -> Result<StreamCall, HostError> {
        let loaded = &self.0;
        let in_flight = loaded.enter()?;
        let sid = self.alloc(Kind::Stream)?;
        // From here the stream owns the in-flight count; `StreamCall::drop` gives it back.
        std::mem::forget(in_flight);
        loaded.ctx.counters.add(Counter::Streams, 1);
        let status = {
            let _in = InCall::enter(&loaded.ctx, sid, std::ptr::null_mut());
            loaded.invoke(entry, sid, req, payload)
        };
        let stream = StreamCall {
            plugin: self.clone(),
            sid,
            done: false,
            input_closed: false,
            deadline: None,
            timer_armed: false,
        };
        if status != NrStatus::Ok {
            stream.end_with(status);
        }
        Ok(stream)
    }

    /// Sends `data` to the plugin on the live stream `sid` (`stream_data`).
    pub fn send_stream_data(&self, sid: u64, data: &[u8]) -> Result<NrStatus, HostError> {
        if !self.0.ctx.table.is_live(sid) {
            return Err(HostError::StreamClosed);
        }
        self.0.stream_data(sid, data)
    }

    /// Closes the host's side of the live stream `sid` (`stream_close`).
    pub fn close_stream(&self, sid: u64) -> Result<NrStatus, HostError> {
        if !self.0.ctx.table.is_live(sid) {
            return Err(HostError::StreamClosed);
        }
        self.0.stream_close(sid)
    }
}

impl StreamCall {
    /// The stream's sid.
    pub fn sid(&self) -> u64 {
        self.sid
    }

    /// Ends the stream with [`HostError::Timeout`] if it has not finished within `d`.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.deadline = Some(Instant::now() + d);
        self
    }

    /// Queues a terminal frame made by the host (the plugin refused the call).
    fn end_with(&self, status: NrStatus) {
        let ctx = &self.plugin.0.ctx;
        if let Some(mut slot) = ctx.table.get(self.sid)
            && !slot.ended
        {
            slot.ended = true;
            slot.frames.push_back(Frame { status, data: Default::default() });
            ctx.counters.status(status);
        }
    }

    /// Sends data to the plugin (`stream_data`). Fails once the stream has finished.
    pub fn send(&self, data: &[u8]) -> Result<NrStatus, HostError> {
        if self.done || self.input_closed {
            return Err(HostError::StreamClosed);
        }
        self.plugin.0.stream_data(self.sid, data)
    }

    /// Closes the host's side (`stream_close`); frames keep coming until the plugin ends.
    pub fn close(&mut self) -> Result<NrStatus, HostError> {
        if self.done || self.input_closed {
            return Err(HostError::StreamClosed);
        }
        self.input_closed = true;
        self.plugin.0.stream_close(self.sid)
    }

    /// The next frame if one is queued, else registers `unparker`. `Some(None)`: finished.
    fn check(&mut self, unparker: impl FnOnce() -> Unparker) -> Option<Result<Option<Frame>, HostError>> {
        if self.done {
            return Some(Ok(None));
        }
        let loaded = &self.plugin.0;
        let (frame, producer) = {
            let Some(mut slot) = loaded.ctx.table.get(self.sid) else {
                self.done = true;
                return Some(Ok(None));
            };
            let frame = slot.frames.pop_front();
            let producer = if frame.is_some() { slot.producers.pop() } else { None };
            if frame.is_none() {
                slot.waiter = Some(unparker());
            }
            (frame, producer)
        };
        if let Some(p) = producer {
            p.unpark();
        }
        if let Some(f) = frame {
            if f.is_terminal() {
                self.finish();
            }
            return Some(Ok(Some(f)));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.finish();
            return Some(Err(HostError::Timeout));
        }
        None
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.plugin.0.finish(self.sid);
        }
    }

    /// The next frame, parking the calling coroutine (or thread) until one arrives;
    /// `Ok(None)` once the terminal frame has been returned.
    pub fn recv(&mut self) -> Result<Option<Frame>, HostError> {
        loop {
            if let Some(r) = self.check(park::current) {
                return r;
            }
            match self.deadline {
                Some(d) => {
                    park::park_deadline(d);
                }
                None => park::park(),
            }
        }
    }

    /// Reads the stream to its end: every frame, the terminal one last.
    pub fn collect(mut self) -> Result<Vec<Frame>, HostError> {
        let mut frames = Vec::new();
        while let Some(f) = self.recv()? {
            frames.push(f);
        }
        Ok(frames)
    }
}

impl futures_core::Stream for StreamCall {
    type Item = Result<Frame, HostError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.check(|| Unparker::from_waker(cx.waker().clone())) {
            Some(r) => Poll::Ready(r.transpose()),
            None => {
                if let (Some(d), false) = (this.deadline, this.timer_armed) {
                    this.timer_armed = true;
                    timer::wake_at(d, cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for StreamCall {
    fn drop(&mut self) {
        if !self.done {
            if !self.input_closed && self.plugin.has_stream_input() {
                let _ = self.plugin.0.stream_close(self.sid);
            }
            self.finish();
        }
        self.plugin.0.ctx.counters.leave();
    }
}

impl std::fmt::Debug for StreamCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCall").field("plugin", &self.plugin.name()).field("sid", &self.sid).finish()
    }
}
