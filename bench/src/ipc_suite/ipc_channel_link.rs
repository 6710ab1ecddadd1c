//! `ipc` suite, `ipc-channel` rows: Servo's `ipc-channel`, the Rust crate for channels
//! between processes. Byte channels (`IpcBytesSender`/`IpcBytesReceiver`, no serde on the
//! payload), one each way; the peer makes both and hands the client its ends through the
//! client's `IpcOneShotServer`. The client dropping its sender ends the peer.

use ipc_channel::IpcError;
use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender};

use super::{Answer, IPC_CHANNEL, Link, Mode, PeerLogic, PeerProcess, make_payload, measure};
use crate::harness::Measurement;

/// What the peer sends the client: its sender into the peer, its receiver from the peer.
type Ends = (IpcBytesSender, IpcBytesReceiver);

struct IpcChannelLink {
    tx: IpcBytesSender,
    rx: IpcBytesReceiver,
    msg: Vec<u8>,
    reply: Vec<u8>,
}

impl Link for IpcChannelLink {
    fn send(&mut self) -> Result<(), String> {
        self.tx.send(&self.msg).map_err(|e| format!("send: {e}"))
    }

    fn send_end(&mut self) -> Result<(), String> {
        self.tx.send(&[]).map_err(|e| format!("send: {e}"))
    }

    fn recv(&mut self) -> Result<&[u8], String> {
        self.reply = self.rx.recv().map_err(|e| format!("recv: {e:?}"))?;
        Ok(&self.reply)
    }
}

fn accept(server: IpcOneShotServer<Ends>, size: usize) -> Result<IpcChannelLink, String> {
    let (_, (tx, rx)) = server.accept().map_err(|e| format!("accept: {e:?}"))?;
    Ok(IpcChannelLink { tx, rx, msg: make_payload(size), reply: Vec::new() })
}

/// The client: a one-shot server the peer connects to, then the measurement.
pub fn run(mode: Mode, size: usize, n: u64, peer_cpu: Option<usize>) -> Result<Measurement, String> {
    let (server, name) = IpcOneShotServer::<Ends>::new().map_err(|e| format!("one-shot server: {e}"))?;
    let peer = PeerProcess::spawn(IPC_CHANNEL, mode, size, &name, peer_cpu)?;
    let mut link = accept(server, size)?;
    let m = measure(&mut link, mode, size, n)?;
    drop(link);
    peer.finish()?;
    Ok(m)
}

/// The peer: connects to the client's one-shot server `name`, hands over the ends, serves.
pub fn peer(mut logic: PeerLogic, name: &str) -> Result<(), String> {
    let boot = IpcSender::<Ends>::connect(name.to_string()).map_err(|e| format!("connect: {e}"))?;
    let (in_tx, in_rx) = ipc::bytes_channel().map_err(|e| format!("channel: {e}"))?;
    let (out_tx, out_rx) = ipc::bytes_channel().map_err(|e| format!("channel: {e}"))?;
    boot.send((in_tx, out_rx)).map_err(|e| format!("hand over: {e:?}"))?;
    loop {
        let msg = match in_rx.recv() {
            Ok(m) => m,
            Err(IpcError::Disconnected) => return Ok(()),
            Err(e) => return Err(format!("peer recv: {e:?}")),
        };
        let sent = match logic.on(&msg)? {
            Answer::Send(m) => out_tx.send(m),
            Answer::Count(c) => out_tx.send(&c),
            Answer::Nothing => continue,
        };
        sent.map_err(|e| format!("peer send: {e}"))?;
    }
}

/// Both ends in this process (the peer on a thread), 50 ops.
#[cfg(test)]
pub fn self_test(mode: Mode, size: usize) -> Result<(), String> {
    let (server, name) = IpcOneShotServer::<Ends>::new().map_err(|e| e.to_string())?;
    let peer = std::thread::spawn(move || peer(PeerLogic::new(mode, size), &name));
    let mut link = accept(server, size)?;
    measure(&mut link, mode, size, 50)?;
    drop(link);
    peer.join().map_err(|_| "peer panicked".to_string())?
}
