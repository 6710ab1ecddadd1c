//! Two connections to one server: A, a well-behaved kcoro client that keeps a secret in
//! its unnamed channel and its shared region, and B, whose frames are built from the
//! fuzzer's bytes. After B's sequence: B never received a byte of A's secret, and the
//! server holds no more descriptors than before. Shared by the fuzz target
//! (`cargo +nightly fuzz run two_connections`) and the stable test that replays its corpus
//! (`tests/fuzz_replay.rs`).
//!
//! # Input
//! A sequence of frames, each `cmd flags n (type len value){n}`: `cmd` picks from the
//! commands a client may send (and some it may not), `flags` is sent as it is, `type` picks
//! an attribute, `len` bytes of `value` follow. Values are patched where a random one
//! would never find anything: a `ZDESC` whose first byte is 0 names region
//! `pid << 32 | value[1]` of this process (A's region and the server's own are among the
//! first few) at offset `value[2] * 64 KiB / 256`; a `CHAN_ID` whose first byte is 0 names
//! channel `value[1]` (the server's ids count from 1: A's is among the first).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::Duration;

use kcoro::chan::Kind;
use kcoro_ipc::proto::{Attr, Cmd, FLAG_REPLY, FrameBuf, HEADER_LEN, VERSION_MAJOR, decode_header};

/// What only A may ever see.
const SECRET: &[u8; 16] = b"A's-secret-bytes";
/// An element large enough to go through A's shared region.
const LARGE: usize = 128 << 10;

struct World {
    addr: String,
    /// Descriptors the process had open once A was set up.
    fds: usize,
    _server: kcoro_ipc::Server,
    _a: (kcoro_ipc::Connection, kcoro_ipc::RemoteSender<Vec<u8>>, kcoro_ipc::RemoteReceiver<Vec<u8>>),
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("kcoro-ipc-fuzz-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let addr = format!("unix:{}", path.display());
        let (tx, rx) = kcoro::chan::buffered::<Vec<u8>>(16);
        let server = kcoro_ipc::Server::bind(&addr).unwrap().serve_channel("open", tx, rx).start().unwrap();
        let a = kcoro_ipc::connect(&addr).unwrap();
        let (atx, arx) = a.make::<Vec<u8>>("", Kind::Buffered, 8).unwrap();
        // One element inline, one through A's region: both hold the secret.
        atx.send(SECRET.to_vec()).unwrap();
        atx.send(SECRET.repeat(LARGE / SECRET.len())).unwrap();
        let fds = open_fds();
        World { addr, fds, _server: server, _a: (a, atx, arx) }
    })
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

const CMDS: [Cmd; 17] = [
    Cmd::HELLO,
    Cmd::GET_INFO,
    Cmd::GET_STATS,
    Cmd::LIST,
    Cmd::GET_SCHED,
    Cmd::CHAN_MAKE,
    Cmd::CHAN_SEND,
    Cmd::CHAN_TRY_SEND,
    Cmd::CHAN_RECV,
    Cmd::CHAN_TRY_RECV,
    Cmd::CHAN_CLOSE,
    Cmd::CHAN_DESTROY,
    Cmd::CHAN_OPEN,
    Cmd::REGION_SHARE,
    Cmd::REGION_RELEASE,
    Cmd::CANCEL,
    Cmd(999),
];

const ATTRS: [Attr; 12] = [
    Attr::CHAN_ID,
    Attr::ZDESC,
    Attr::ELEMENT,
    Attr::NAME,
    Attr::KIND,
    Attr::CAPACITY,
    Attr::TIMEOUT_MS,
    Attr::REGION_ID,
    Attr::TARGET_REQ_ID,
    Attr::MAX_FRAME,
    Attr::NO_SHM,
    Attr::ABI_MINOR,
];

/// Reads bytes off the fuzzer's input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (v, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        v
    }
}

/// B's frames from `data`, then a GET_INFO whose reply ends the conversation.
fn frames(data: &[u8]) -> (Vec<u8>, u64) {
    let mut input = Input(data);
    let mut out = Vec::new();
    let mut req = 1u64;
    while let (Some(c), Some(flags), Some(n)) = (input.byte(), input.byte(), input.byte()) {
        let mut f = FrameBuf::begin(&mut out, CMDS[c as usize % CMDS.len()], u16::from(flags & 0x3f));
        f.u64(Attr::REQ_ID, req);
        req += 1;
        for _ in 0..n % 8 {
            let (Some(t), Some(len)) = (input.byte(), input.byte()) else { break };
            let attr = ATTRS[t as usize % ATTRS.len()];
            let mut value = input.take(len as usize).to_vec();
            let at = |i: usize| u64::from(value.get(i).copied().unwrap_or(0));
            match (attr, value.first()) {
                (Attr::ZDESC, Some(0)) => {
                    let region = u64::from(std::process::id()) << 32 | at(1);
                    let offset = at(2) * (64 << 10) / 256;
                    value = [region, offset, SECRET.len() as u64].map(u64::to_be_bytes).concat();
                }
                (Attr::CHAN_ID, Some(0)) => value = at(1).to_be_bytes().to_vec(),
                _ => {}
            }
            f.bytes(attr, &value);
        }
        if f.finish(1 << 20).is_err() {
            break;
        }
    }
    let mut f = FrameBuf::begin(&mut out, Cmd::GET_INFO, 0);
    f.u64(Attr::REQ_ID, u64::MAX);
    let _ = f.finish(u32::MAX);
    (out, u64::MAX)
}

/// Runs one input; panics if B saw A's secret or descriptors leaked.
pub fn two_connections(data: &[u8]) {
    let w = world();
    let path = w.addr.strip_prefix("unix:").unwrap_or(&w.addr);
    let Ok(mut b) = UnixStream::connect(path) else { return };
    let _ = b.set_read_timeout(Some(Duration::from_secs(5)));
    let mut hello = Vec::new();
    let mut f = FrameBuf::begin(&mut hello, Cmd::HELLO, 0);
    f.u64(Attr::REQ_ID, 0).u32(Attr::ABI_MAJOR, VERSION_MAJOR).u32(Attr::ABI_MINOR, 3);
    let _ = f.finish(u32::MAX);
    let (bytes, last) = frames(data);
    if b.write_all(&hello).and_then(|()| b.write_all(&bytes)).is_err() {
        return; // the server closed B early (a malformed frame): nothing more to see
    }
    let mut seen = Vec::new();
    loop {
        let mut h = [0u8; HEADER_LEN];
        if b.read_exact(&mut h).is_err() {
            break;
        }
        let h = decode_header(&h);
        let mut payload = vec![0; h.len as usize];
        if b.read_exact(&mut payload).is_err() {
            break;
        }
        seen.extend_from_slice(&payload);
        let reply = kcoro_ipc::proto::FrameRef::parse(h, &payload, 1000).ok();
        if h.flags & FLAG_REPLY != 0 && reply.and_then(|r| r.req_id().ok()) == Some(last) {
            break;
        }
    }
    drop(b);
    assert!(!seen.windows(SECRET.len()).any(|x| x == SECRET), "B received A's secret");
    // B's socket and whatever it passed are closed once the server sees B go.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open_fds() > w.fds + 4 {
        assert!(std::time::Instant::now() < deadline, "{} descriptors open, {} before", open_fds(), w.fds);
        std::thread::sleep(Duration::from_millis(1));
    }
}
