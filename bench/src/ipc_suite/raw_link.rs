//! `ipc` suite, `raw` rows: a plain Unix stream socket, each message a `u32` length
//! (big-endian) and the payload. The client writes a message with one `write_all` of a
//! prebuilt frame and reads replies with `read_exact`; the peer reads through a 64 KiB
//! `BufReader`. Nothing batched, nothing shared: the floor.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use super::{Answer, Link, Mode, PeerLogic, PeerProcess, RAW, make_payload, measure, socket_path};
use crate::harness::Measurement;

/// Bytes the peer's reader buffers.
const READ_BUF: usize = 64 << 10;

struct RawLink {
    sock: UnixStream,
    /// Length prefix and payload, written whole per message.
    frame: Vec<u8>,
    reply: Vec<u8>,
}

impl RawLink {
    fn new(sock: UnixStream, size: usize) -> RawLink {
        let mut frame = (size as u32).to_be_bytes().to_vec();
        frame.extend(make_payload(size));
        RawLink { sock, frame, reply: Vec::with_capacity(size) }
    }
}

impl Link for RawLink {
    fn send(&mut self) -> Result<(), String> {
        self.sock.write_all(&self.frame).map_err(|e| format!("write: {e}"))
    }

    fn send_end(&mut self) -> Result<(), String> {
        self.sock.write_all(&0u32.to_be_bytes()).map_err(|e| format!("write: {e}"))
    }

    fn recv(&mut self) -> Result<&[u8], String> {
        let len = read_len(&mut self.sock)?.ok_or("the peer closed the socket")?;
        self.reply.resize(len, 0);
        self.sock.read_exact(&mut self.reply).map_err(|e| format!("read: {e}"))?;
        Ok(&self.reply)
    }
}

/// The next length prefix; `None` at a clean end of stream.
fn read_len(r: &mut impl Read) -> Result<Option<usize>, String> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => Ok(Some(u32::from_be_bytes(len) as usize)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// The client: listens, starts the peer, which connects, and measures.
pub fn run(mode: Mode, size: usize, n: u64, peer_cpu: Option<usize>) -> Result<Measurement, String> {
    let path = socket_path(RAW);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let peer = PeerProcess::spawn(RAW, mode, size, &path.display().to_string(), peer_cpu)?;
    let accepted = listener.accept();
    let _ = std::fs::remove_file(&path);
    let (sock, _) = accepted.map_err(|e| format!("accept: {e}"))?;
    let mut link = RawLink::new(sock, size);
    let m = measure(&mut link, mode, size, n)?;
    drop(link);
    peer.finish()?;
    Ok(m)
}

/// The peer: connects to `path` and serves until the client closes.
pub fn peer(logic: PeerLogic, path: &str) -> Result<(), String> {
    let sock = UnixStream::connect(path).map_err(|e| format!("connect {path}: {e}"))?;
    serve(logic, sock)
}

fn serve(mut logic: PeerLogic, sock: UnixStream) -> Result<(), String> {
    let mut out = sock.try_clone().map_err(|e| format!("clone: {e}"))?;
    let mut input = BufReader::with_capacity(READ_BUF, sock);
    let (mut msg, mut frame) = (Vec::new(), Vec::new());
    while let Some(len) = read_len(&mut input)? {
        msg.resize(len, 0);
        input.read_exact(&mut msg).map_err(|e| format!("read: {e}"))?;
        let count;
        let reply = match logic.on(&msg)? {
            Answer::Send(m) => m,
            Answer::Count(c) => {
                count = c;
                &count[..]
            }
            Answer::Nothing => continue,
        };
        let len = (reply.len() as u32).to_be_bytes();
        let w = if reply.len() < READ_BUF {
            // One write of a small frame; a large one goes as prefix and payload, not copied.
            frame.clear();
            frame.extend_from_slice(&len);
            frame.extend_from_slice(reply);
            out.write_all(&frame)
        } else {
            out.write_all(&len).and_then(|()| out.write_all(reply))
        };
        w.map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}

/// Both ends in this process (the peer on a thread), `n` = 50 ops.
#[cfg(test)]
pub fn self_test(mode: Mode, size: usize) -> Result<(), String> {
    let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
    let peer = std::thread::spawn(move || serve(PeerLogic::new(mode, size), b));
    let mut link = RawLink::new(a, size);
    measure(&mut link, mode, size, 50)?;
    drop(link);
    peer.join().map_err(|_| "peer panicked".to_string())?
}
