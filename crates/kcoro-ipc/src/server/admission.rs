//! Who gets a connection: at most `Limits::max_connections` at once, each of which must
//! finish its handshake within `Limits::handshake_timeout`.
//!
//! Without these a peer could hold the server's descriptors and coroutines by connecting
//! and saying nothing, or by connecting without end, until honest clients could not get in.
//!
//! - A connection past the limit is answered, not just dropped: a coroutine of its own
//!   reads its first request (for a bounded time) and refuses it with `-EBUSY` and a
//!   message, so the client's `connect` says why. At most [`MAX_REFUSING`] are answered at
//!   once; past that (a flood) they are closed unanswered.
//! - One coroutine per server ([`reap_silent`]) closes connections whose handshake is
//!   overdue. A deadline per read would not do: a peer sending a byte just before each
//!   read's deadline would never meet it.

use std::sync::Arc;
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

use super::ServerInner;
use super::conn::HANDSHAKE_FRAME;
use crate::proto::{Attr, FLAG_REPLY, FrameBuf, Limits, VERSION_MAJOR};
use crate::wire::{FrameReader, Outbox, Stream};

/// Connections past the limit answered at once; more are closed unanswered.
const MAX_REFUSING: usize = 16;

/// Time a connection past the limit has to send its first request, and then to close.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Longest pause of [`reap_silent`] between two looks.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Answers `stream`, a connection past `Limits::max_connections`, with a refusal and
/// closes it; or closes it at once when too many are being answered already.
pub(super) fn refuse(server: &Arc<ServerInner>, stream: Stream) {
    if server.refusing.fetch_add(1, AcqRel) >= MAX_REFUSING {
        server.refusing.fetch_sub(1, AcqRel);
        return; // `stream` closes here
    }
    let s = Arc::clone(server);
    let answer = move || {
        answer_refusal(&s, &stream);
        s.refusing.fetch_sub(1, AcqRel);
    };
    if kcoro::spawn_with(server.spawn_options(), answer).is_err() {
        // No coroutine (no stack left): the closure, and the stream with it, are dropped.
        server.refusing.fetch_sub(1, AcqRel);
    }
}

/// Reads the first request, answers it `-EBUSY` (with this protocol's `ABI_MAJOR`, which
/// a client checks first), and waits a moment for the client to close: a socket closed
/// with the client's bytes unread could reset the connection and lose the answer.
fn answer_refusal(server: &ServerInner, stream: &Stream) {
    stream.set_read_timeout(Some(REFUSAL_WAIT));
    let mut frames = FrameReader::new(Limits { max_frame: HANDSHAKE_FRAME, ..server.limits });
    let first = frames.next(stream, |f, _| f.req_id().ok().map(|req| (f.cmd, req)));
    let Ok(Some(Some((cmd, req)))) = first else { return };
    let max = server.limits.max_connections;
    let msg = format!("the server has {max} connections open, its limit (max_connections)");
    let (outbox, _writer_bell) = Outbox::new(u32::MAX);
    let answered = outbox.push_and_flush(stream, |out, max_frame| {
        let mut f = FrameBuf::begin(out, cmd, FLAG_REPLY);
        f.u64(Attr::REQ_ID, req)
            .i32(Attr::RESULT, -libc::EBUSY)
            .u32(Attr::ABI_MAJOR, VERSION_MAJOR)
            .str(Attr::ERROR, &msg);
        f.finish(max_frame)
    });
    if answered.is_ok() {
        stream.finish_writes();
        let _ = frames.next(stream, |_, _| ());
    }
}

/// Closes, once per [`REAP_EVERY`] or sooner, every connection whose handshake is overdue;
/// returns when the server shuts down.
pub(super) fn reap_silent(server: &ServerInner) {
    let every = (server.limits.handshake_timeout / 4).clamp(Duration::from_millis(10), REAP_EVERY);
    while !server.token.cancelled_deadline(Instant::now() + every) {
        let now = Instant::now();
        for conn in server.others(0) {
            if conn.handshake_overdue(now) {
                conn.shut();
            }
        }
    }
}
