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

use crate::ctx::{InCall, LocalFrames};
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
    /// Frames already taken from the slot (or sent on this thread): read without a lock.
    local: LocalFrames,
    /// The sid was ended early, because the terminal frame is already in `local`.
    sid_freed: bool,
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
        let mut local = LocalFrames::default();
        let status = {
            let _in = InCall::enter_stream(&loaded.ctx, sid, &mut local);
            loaded.invoke(entry, sid, req, payload)
        };
        if status != NrStatus::Ok && !local.ended {
            // The plugin refused the call: the stream ends with its status.
            local.queue.push_back(Frame { status, data: Default::default() });
            local.ended = true;
            loaded.ctx.counters.status(status);
        }
        let mut stream = StreamCall {
            plugin: self.clone(),
            sid,
            local,
            sid_freed: false,
            done: false,
            input_closed: false,
            deadline: None,
            timer_armed: false,
        };
        stream.free_if_ended();
        Ok(stream)
    }

    /// Sends `data` to the plugin on the live stream `sid` (`stream_data`).
    pub fn send_stream_data(&self, sid: u64, data: &[u8]) -> Result<NrStatus, HostError> {
        if !self.0.ctx.table.is_live(sid) {
            return Err(HostError::StreamClosed);
        }
        self.0.stream_data(sid, data, None)
    }

    /// Closes the host's side of the live stream `sid` (`stream_close`).
    pub fn close_stream(&self, sid: u64) -> Result<NrStatus, HostError> {
        if !self.0.ctx.table.is_live(sid) {
            return Err(HostError::StreamClosed);
        }
        self.0.stream_close(sid, None)
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

    /// Once the terminal frame is in `local`, ends the sid at once: anything the plugin
    /// sends later is dropped and counted.
    fn free_if_ended(&mut self) {
        if self.local.ended && !self.sid_freed {
            self.sid_freed = true;
            self.plugin.0.finish(self.sid);
        }
    }

    /// Sends data to the plugin (`stream_data`). Fails once the stream has finished.
    pub fn send(&mut self, data: &[u8]) -> Result<NrStatus, HostError> {
        if self.done || self.sid_freed || self.input_closed {
            return Err(HostError::StreamClosed);
        }
        let status = self.plugin.0.stream_data(self.sid, data, Some(&mut self.local));
        self.free_if_ended();
        status
    }

    /// Closes the host's side (`stream_close`); frames keep coming until the plugin ends.
    pub fn close(&mut self) -> Result<NrStatus, HostError> {
        if self.done || self.sid_freed || self.input_closed {
            return Err(HostError::StreamClosed);
        }
        self.input_closed = true;
        let status = self.plugin.0.stream_close(self.sid, Some(&mut self.local));
        self.free_if_ended();
        status
    }

    /// The next frame if one is queued, else registers `unparker`. `Some(Ok(None))`:
    /// finished.
    fn check(&mut self, unparker: impl FnOnce() -> Unparker) -> Option<Result<Option<Frame>, HostError>> {
        if self.done {
            return Some(Ok(None));
        }
        if self.local.queue.is_empty() && !self.sid_freed {
            // Take every queued frame in one lock, and wake every producer waiting for room.
            let producers = {
                let Some(mut slot) = self.plugin.0.ctx.table.get(self.sid) else {
                    self.done = true;
                    return Some(Ok(None));
                };
                if slot.frames.is_empty() {
                    slot.waiter = Some(unparker());
                    None
                } else {
                    std::mem::swap(&mut slot.frames, &mut self.local.queue);
                    Some(std::mem::take(&mut slot.producers))
                }
            };
            for p in producers.into_iter().flatten() {
                p.unpark();
            }
        }
        if let Some(f) = self.local.queue.pop_front() {
            if f.is_terminal() {
                self.finish();
            }
            return Some(Ok(Some(f)));
        }
        if self.sid_freed {
            self.done = true;
            return Some(Ok(None));
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
            if !self.sid_freed {
                self.sid_freed = true;
                self.plugin.0.finish(self.sid);
            }
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
            if !self.input_closed && !self.sid_freed && self.plugin.capabilities().stream_close {
                let _ = self.plugin.0.stream_close(self.sid, None);
            }
            let unread = self.local.queue.len() as u64;
            if unread > 0 {
                self.plugin.0.ctx.counters.add(Counter::DroppedReplies, unread);
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
