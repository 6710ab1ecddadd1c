//! The kcoro IPC wire protocol, version 1: frames of TLV attributes. Pure encoding and
//! decoding, no I/O, so that any transport (and a client in another language, see
//! `docs/IPC_PROTOCOL.md`) can use it.
//!
//! ```text
//!   frame      = header payload
//!   header     = cmd:u16  flags:u16  len:u32          (big-endian; len = payload bytes)
//!   payload    = attribute*
//!   attribute  = type:u16 len:u16 value[len]           (type < 0x8000)
//!              | (type | 0x8000):u16 len:u32 value[len]  (long form, for values > 65535 bytes)
//! ```
//!
//! Integers inside values are big-endian, of the width the attribute defines
//! ([`Attr`]). A reply has `FLAG_REPLY` set, the request's command, and echoes its
//! `REQ_ID`; a server event has `FLAG_EVENT` and command `NOTIFY`. Unknown attributes are
//! skipped by readers; unknown commands are answered with `RESULT = -ENOTSUP`.
//!
//! # Invariants
//! - A decoded frame's attributes lie inside its payload, and there are at most
//!   `Limits::max_attrs` of them; a frame longer than `Limits::max_frame` is refused before
//!   a byte of its payload is read.

mod frame;
pub(crate) mod zdesc;

pub use frame::{Attrs, FrameBuf, FrameRef, Header, decode_header, fixed_value, split_frame};

/// Protocol version spoken here. A peer with another major version is refused in HELLO.
pub const VERSION_MAJOR: u32 = 1;
/// Minor version: additions a reader may ignore.
pub const VERSION_MINOR: u32 = 9;

/// Most channels one LIST reply reports (the first, by name; then the process's other
/// named channels for a monitor).
pub const MAX_LISTED_CHANNELS: usize = 16 << 10;

/// Most attributes a client accepts in one reply, whatever its own `Limits::max_attrs`
/// (which bound what it sends and what a server may send it unasked): a LIST of
/// [`MAX_LISTED_CHANNELS`] channels has that many `STATS`, and the frame size still bounds
/// the rest.
pub const MAX_REPLY_ATTRS: usize = MAX_LISTED_CHANNELS + 64;

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 8;

/// Header flag: this frame answers the request with the same `REQ_ID`.
pub const FLAG_REPLY: u16 = 1 << 0;
/// Header flag: a server-initiated event (`NOTIFY`), not a reply.
pub const FLAG_EVENT: u16 = 1 << 1;

/// Type bit of the long attribute form (32-bit length).
pub const LONG_FORM: u16 = 0x8000;

/// A command number. Unknown numbers are carried as they are, so a server can answer them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cmd(pub u16);

impl Cmd {
    /// Version negotiation and, when required, the authentication challenge.
    pub const HELLO: Cmd = Cmd(1);
    /// Server name, version, limits.
    pub const GET_INFO: Cmd = Cmd(2);
    /// Counters of one channel (`CHAN_ID`) or of every named channel.
    pub const GET_STATS: Cmd = Cmd(3);
    /// The answer to HELLO's challenge (`MAC`, `NONCE`).
    pub const AUTH: Cmd = Cmd(4);
    /// Named channels.
    pub const LIST: Cmd = Cmd(6);
    /// The server's scheduler counters (one `SCHED`); `-ENOTSUP` unless it monitors.
    pub const GET_SCHED: Cmd = Cmd(7);
    /// The monitored runtime's coroutines (one `COROS`); `-ENOTSUP` unless it monitors
    /// (minor version 4).
    pub const GET_COROS: Cmd = Cmd(8);
    /// The program's own counters and gauges (one `METRICS`); `-ENOTSUP` unless the
    /// server has a metrics source (minor version 5).
    pub const GET_METRICS: Cmd = Cmd(9);
    /// Make a channel (`KIND`, `CAPACITY`, optional `NAME`).
    pub const CHAN_MAKE: Cmd = Cmd(10);
    /// Send `ELEMENT` (or `ZDESC`) with `TIMEOUT_MS`.
    pub const CHAN_SEND: Cmd = Cmd(11);
    /// Send without waiting.
    pub const CHAN_TRY_SEND: Cmd = Cmd(12);
    /// Receive with `TIMEOUT_MS`.
    pub const CHAN_RECV: Cmd = Cmd(13);
    /// Receive without waiting.
    pub const CHAN_TRY_RECV: Cmd = Cmd(14);
    /// Close a channel: senders fail, receivers drain.
    pub const CHAN_CLOSE: Cmd = Cmd(15);
    /// Forget a channel made with CHAN_MAKE (closes it).
    pub const CHAN_DESTROY: Cmd = Cmd(16);
    /// Open a channel by `NAME`: its `CHAN_ID`, kind, capacity and send `CREDITS`.
    pub const CHAN_OPEN: Cmd = Cmd(17);
    /// The sender's region memfd, attached with `SCM_RIGHTS` (Unix sockets only).
    pub const REGION_SHARE: Cmd = Cmd(18);
    /// The receiver is done with a span of the sender's region (`ZDESC`).
    pub const REGION_RELEASE: Cmd = Cmd(19);
    /// Not supported (select spans connections client-side); answered `-ENOTSUP`.
    pub const SELECT_REGISTER: Cmd = Cmd(32);
    /// Cancel the in-flight request `TARGET_REQ_ID`.
    pub const CANCEL: Cmd = Cmd(33);
    /// Server event: `EVENT` about `CHAN_ID` (closed).
    pub const NOTIFY: Cmd = Cmd(34);
    /// Server event: `CREDITS` values and `CREDIT_BYTES` bytes of the send window of
    /// `CHAN_ID` come back, for sends marked `CREDITED`; `RESULT` the first failure among
    /// them, else 0 (minor version 7).
    pub const CREDIT: Cmd = Cmd(35);

    /// Name for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::HELLO => "HELLO",
            Cmd::GET_INFO => "GET_INFO",
            Cmd::GET_STATS => "GET_STATS",
            Cmd::AUTH => "AUTH",
            Cmd::LIST => "LIST",
            Cmd::GET_SCHED => "GET_SCHED",
            Cmd::GET_COROS => "GET_COROS",
            Cmd::GET_METRICS => "GET_METRICS",
            Cmd::CHAN_MAKE => "CHAN_MAKE",
            Cmd::CHAN_SEND => "CHAN_SEND",
            Cmd::CHAN_TRY_SEND => "CHAN_TRY_SEND",
            Cmd::CHAN_RECV => "CHAN_RECV",
            Cmd::CHAN_TRY_RECV => "CHAN_TRY_RECV",
            Cmd::CHAN_CLOSE => "CHAN_CLOSE",
            Cmd::CHAN_DESTROY => "CHAN_DESTROY",
            Cmd::CHAN_OPEN => "CHAN_OPEN",
            Cmd::REGION_SHARE => "REGION_SHARE",
            Cmd::REGION_RELEASE => "REGION_RELEASE",
            Cmd::SELECT_REGISTER => "SELECT_REGISTER",
            Cmd::CANCEL => "CANCEL",
            Cmd::NOTIFY => "NOTIFY",
            Cmd::CREDIT => "CREDIT",
            _ => "unknown",
        }
    }
}

/// An attribute type. Widths: `u32` = 4 bytes, `u64` = 8, `i64` = 8 (two's complement),
/// `i32` = 4, `str` = UTF-8 bytes, `bytes` = raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attr(pub u16);

impl Attr {
    /// `u32`: protocol major version (HELLO).
    pub const ABI_MAJOR: Attr = Attr(1);
    /// `u32`: protocol minor version (HELLO).
    pub const ABI_MINOR: Attr = Attr(2);
    /// `i32`: channel kind, kcoro numbering (0 rendezvous, 1 buffered, -1 conflated,
    /// -2 unlimited).
    pub const KIND: Attr = Attr(5);
    /// `u32`: element size; 0 for variable-size elements (the only kind served here).
    pub const ELEM_SIZE: Attr = Attr(6);
    /// `u64`: channel capacity (buffered); `u64::MAX` for unbounded.
    pub const CAPACITY: Attr = Attr(7);
    /// `i64`: milliseconds to wait: < 0 forever, 0 try, > 0 bounded.
    pub const TIMEOUT_MS: Attr = Attr(8);
    /// `u64`: channel id, per server.
    pub const CHAN_ID: Attr = Attr(20);
    /// `bytes`: one element, encoded.
    pub const ELEMENT: Attr = Attr(21);
    /// `i32`: 0 or a negative errno (the kcoro codes).
    pub const RESULT: Attr = Attr(22);
    /// `u64`: request id, echoed by the reply.
    pub const REQ_ID: Attr = Attr(26);
    /// `str`: channel name (at most `Limits::max_name` bytes).
    pub const NAME: Attr = Attr(40);
    /// `u32`: send credits granted to this connection for a channel.
    pub const CREDITS: Attr = Attr(41);
    /// `str`: human-readable error detail accompanying a negative `RESULT`.
    pub const ERROR: Attr = Attr(42);
    /// `u64`: the request a CANCEL targets.
    pub const TARGET_REQ_ID: Attr = Attr(43);
    /// `bytes` (32): a random challenge (HELLO reply, AUTH request).
    pub const NONCE: Attr = Attr(44);
    /// `bytes` (32): HMAC-SHA256 answer (AUTH request and reply).
    pub const MAC: Attr = Attr(45);
    /// `u32`: event kind of a NOTIFY (1 = channel closed).
    pub const EVENT: Attr = Attr(46);
    /// `bytes` (24): region descriptor `region_id:u64 offset:u64 len:u64` of an element
    /// placed in the sender's shared region instead of `ELEMENT`.
    pub const ZDESC: Attr = Attr(47);
    /// `bytes`: one channel's counters ([`crate::stats`] layout), repeated in GET_STATS and
    /// LIST replies.
    pub const STATS: Attr = Attr(48);
    /// `str`: server name (GET_INFO).
    pub const SERVER: Attr = Attr(49);
    /// `u32`: the largest frame the server accepts (GET_INFO, HELLO reply).
    pub const MAX_FRAME: Attr = Attr(50);
    /// `u32`: 1 when AUTH must follow HELLO.
    pub const AUTH_REQUIRED: Attr = Attr(51);
    /// `u64`: the sender's region export id (REGION_SHARE).
    pub const REGION_ID: Attr = Attr(52);
    /// `u32`: 1 if the channel is closed.
    pub const CLOSED: Attr = Attr(53);
    /// `u32`: connections the server has open (GET_INFO).
    pub const CONNECTIONS: Attr = Attr(54);
    /// Nested: the scheduler's counters (GET_SCHED), see `stats::SchedStats`.
    pub const SCHED: Attr = Attr(55);
    /// `u64`: the byte side of the send window: inline element bytes this connection may
    /// have in flight per channel (replies of OPEN/MAKE; minor version 1).
    pub const CREDIT_BYTES: Attr = Attr(56);
    /// `u32`: 1 in a client's HELLO = send me no shared memory: every element of a reply
    /// comes inline, within my `MAX_FRAME` (minor version 3).
    pub const NO_SHM: Attr = Attr(57);
    /// Nested: a runtime's coroutines (GET_COROS), see `coros::CoroutineReport`.
    pub const COROS: Attr = Attr(58);
    /// Nested: a program's own metric samples (GET_METRICS), see `metrics`.
    pub const METRICS: Attr = Attr(59);
    /// `u64`: in a client's HELLO, with three descriptors (the memfd of two rings, and the
    /// server's ends of their bells): move this connection to shared-memory rings of this
    /// many bytes each; in the reply, echoed when the server did (everything after that
    /// reply travels through the rings). Minor version 6; see `ring::link`.
    pub const RING_BYTES: Attr = Attr(60);
    /// `str`: in a HELLO reply without `RING_BYTES` to a client that offered rings: why
    /// the server stays on the socket.
    pub const RING_REFUSED: Attr = Attr(61);
    /// `u32`: 1 on a `CHAN_SEND` within the send window: no reply; its share of the window
    /// comes back in a `CREDIT` event, which also reports its failure (minor version 7).
    pub const CREDITED: Attr = Attr(62);
    /// `u64`: in a CREDIT event, how many of its `CREDIT_BYTES` were elements in the
    /// client's shared memory (minor version 8). The server's window counts inline bytes
    /// only; a client counts shared ones against a bound of its own, and needs this to
    /// give each back to its own count.
    pub const SHARED_BYTES: Attr = Attr(63);
    /// `u32`: 1 in an OPEN or MAKE reply when the channel copies elements that arrive in
    /// the client's shared memory into the server's memory (its element type does not
    /// keep views of them): on this channel they count in the byte window
    /// (`CREDIT_BYTES`) as inline ones, on both sides, and CREDIT events count them in
    /// `CREDIT_BYTES`, not in `SHARED_BYTES` (minor version 9).
    pub const COPIES_SHARED: Attr = Attr(64);
}

/// `EVENT` values of NOTIFY.
pub const EVENT_CLOSED: u32 = 1;

/// Hard limits of one connection, and of the server's connections together; each breach is
/// answered with a protocol error (or, for a frame that cannot be read, closes the
/// connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload, in bytes.
    pub max_frame: u32,
    /// Most attributes in one frame.
    pub max_attrs: usize,
    /// Longest channel name, in bytes.
    pub max_name: usize,
    /// Most channels one connection may open or make.
    pub max_channels: usize,
    /// Most requests in flight on one connection.
    pub max_in_flight: usize,
    /// Most bytes the values of one connection's waiting rendezvous sends may hold in the
    /// server's memory (a rendezvous send waits holding its value until a receiver takes
    /// it, and has no window). One send always fits when none holds any, so an element up
    /// to `max_frame` still goes. Past it: `-ENOBUFS`.
    pub max_waiting_bytes: u64,
    /// Send credits per channel per connection (the window a sender may run ahead), in
    /// values.
    pub credits: u32,
    /// The same window in bytes: inline element bytes of the sends one connection may have
    /// queued per channel. One send is always allowed when none is queued, so an element
    /// larger than this still goes (alone). Elements in the client's shared memory are not
    /// counted here (they take none of the server's memory); the client bounds those itself
    /// (`ConnectOptions::shared_window`).
    pub credit_bytes: u64,
    /// Most regions one connection may share with `REGION_SHARE`.
    pub max_regions: usize,
    /// Most bytes of shared regions one connection may have mapped.
    pub max_region_bytes: u64,
    /// Most bytes of shared regions all connections together may have mapped.
    pub max_server_region_bytes: u64,
    /// Most channels clients may have made (`CHAN_MAKE`) and not destroyed, on the whole
    /// server (`max_channels` bounds each connection).
    pub max_server_channels: usize,
    /// Most memory, in bytes, the channels clients made (`CHAN_MAKE`) may hold on the
    /// whole server. Charged: each channel's room when made (80 bytes per slot a bounded
    /// channel allocates, at most 65 536 of them, plus 4 KiB); each connection's send
    /// window on it while the connection holds it (`credit_bytes` plus 64 per credit: the
    /// sends it may have queued); each value in it until received or dropped (its bytes
    /// plus 64, or only the 64 for a view of the sender's shared memory). A MAKE or OPEN
    /// that does not fit is refused (`-ENOMEM`); a send that does not fit waits as for a
    /// full channel (its deadline and cancel token apply); a copy of a shared element
    /// that does not fit (a peer that takes no `REGION_RELEASE`) is refused (`-ENOMEM`),
    /// and an element larger than the whole budget too (`-EMSGSIZE`).
    pub max_made_bytes: u64,
    /// Most bytes the sends of all connections together may hold in front of the server's
    /// own channels (those it serves, not ones clients made: `max_made_bytes` bounds
    /// those). Charged: each connection's send window on each buffered, conflated or
    /// unlimited channel it opens, while it holds it (`credit_bytes` plus 64 per credit,
    /// what it may have queued); each waiting rendezvous send's value while it waits, on
    /// any channel (its bytes plus 64). An OPEN that does not fit is refused (`-ENOMEM`),
    /// a rendezvous send that does not fit too (`-ENOBUFS`); opening a rendezvous channel
    /// takes nothing.
    /// Without it, `max_connections` clients each opening `max_channels` channels could
    /// queue `credit_bytes` on every one.
    pub max_server_window_bytes: u64,
    /// Largest shared-memory ring a client may move its connection to (`shm:` addresses),
    /// per direction; 0 keeps every connection on its socket. The rings count against
    /// `max_server_region_bytes` with the regions.
    pub max_ring_bytes: u64,
    /// Most connections the server keeps open at once. One past it is answered (its first
    /// request refused with `-EBUSY`, saying so) and closed.
    pub max_connections: usize,
    /// Time a new connection has to finish its handshake (HELLO, and AUTH when a secret is
    /// set): one that has not is closed, so peers that connect and say nothing cannot hold
    /// connections (and their coroutines) forever.
    pub handshake_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 16 << 20,
            max_attrs: 64,
            max_name: 255,
            max_channels: 1024,
            max_in_flight: 1024,
            max_waiting_bytes: 16 << 20,
            credits: 512,
            credit_bytes: 512 << 10,
            max_regions: 4,
            max_region_bytes: 1 << 30,
            max_server_region_bytes: 8 << 30,
            max_server_channels: 16 << 10,
            max_made_bytes: 1 << 30,
            max_server_window_bytes: 8 << 30,
            max_ring_bytes: 16 << 20,
            max_connections: 1024,
            handshake_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// A frame that cannot be decoded. The connection it came on is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Fewer bytes than the header or an attribute announces.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A frame longer than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLong {
        /// Announced payload length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// More attributes than the limit.
    #[error("more than {0} attributes in one frame")]
    TooManyAttrs(usize),
    /// An attribute whose value does not have its type's width or encoding.
    #[error("attribute {0} has a malformed value")]
    BadValue(u16),
    /// A required attribute is missing.
    #[error("missing attribute {0}")]
    Missing(u16),
    /// A long-form attribute whose value would fit the short form's 16-bit length: a
    /// canonical encoder never writes it, so a reader refuses it (one byte string, one
    /// encoding).
    #[error("attribute {0} uses the long form for a short value")]
    NonCanonical(u16),
}

/// Drives every decoder over `bytes` as if a peer had sent them (frames, typed attributes,
/// channel, scheduler and coroutine reports, element descriptors), ignoring the results. For the fuzzer (`fuzz/`) and the
/// stable test that replays its corpus: whatever the bytes, this must not panic.
#[doc(hidden)]
pub fn fuzz_frames(bytes: &[u8]) {
    let limits = Limits { max_frame: 1 << 20, ..Limits::default() };
    let mut rest = bytes;
    while let Ok(Some((f, used))) = split_frame(rest, &limits) {
        let _ = (f.req_id(), f.result(), f.cmd.name());
        let _ = (f.u32(Attr::ABI_MAJOR), f.u64(Attr::CHAN_ID), f.i64(Attr::TIMEOUT_MS), f.str(Attr::NAME));
        let _ = (f.need(Attr::NONCE), f.i32(Attr::KIND), f.u32(Attr::CREDITS), f.u64(Attr::CREDIT_BYTES));
        for s in f.all(Attr::STATS) {
            let _ = crate::stats::ChannelStats::decode(s);
        }
        if let Some(v) = f.get(Attr::SCHED) {
            let _ = crate::stats::SchedStats::decode(v);
        }
        if let Some(v) = f.get(Attr::COROS) {
            let _ = crate::coros::CoroutineReport::decode(v);
        }
        let _ = crate::metrics::decode_all(&f);
        let _ = crate::shm::locate(&f);
        let _ = f.attrs().count();
        rest = &rest[used..];
    }
}
