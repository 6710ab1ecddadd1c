//! `ipc` suite, `kcoro` rows: kcoro-ipc with its defaults. The peer serves two buffered
//! channels of `bytes::Bytes`, `in` ([`IN_CAPACITY`]) and `out` ([`OUT_CAPACITY`]), and
//! echoes or counts from a coroutine of its own runtime; the client sends and receives
//! from a coroutine of its own runtime. Both runtimes have two workers, or one in the
//! `kcoro-1w` and `kcoro-shm1w` rows. Each message is a clone of one
//! prebuilt `Bytes` (a refcount, so the client's only copy is the encoding into the frame
//! or the shared region). At the end the client closes `in`, which ends the peer.

use bytes::Bytes;
use kcoro::chan::{self, ChanError};
use kcoro_ipc::{RemoteReceiver, RemoteSender};

use super::{
    Answer, KCORO, KCORO_1W, Link, Mode, PeerLogic, PeerProcess, make_payload, measure, socket_path,
};
use crate::harness::Measurement;
use crate::runtime_suite::kcoro_rt;

/// Slots of the peer's `in` channel.
pub const IN_CAPACITY: usize = 256;

/// Slots of the peer's `out` channel.
pub const OUT_CAPACITY: usize = 16;

struct KcoroLink {
    tx: RemoteSender<Bytes>,
    rx: RemoteReceiver<Bytes>,
    msg: Bytes,
    reply: Bytes,
    /// Each message is built in a lease of the connection's region (`kcoro-lease`).
    leased: bool,
}

impl KcoroLink {
    fn connect(addr: &str, size: usize, leased: bool) -> Result<KcoroLink, String> {
        let conn = kcoro_ipc::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        if addr.starts_with("shm:") && conn.transport() != kcoro_ipc::Transport::Shm {
            return Err(format!("{addr}: the peer kept the socket: {:?}", conn.ring_refused()));
        }
        Ok(KcoroLink {
            tx: conn.sender("in").map_err(|e| format!("open in: {e}"))?,
            rx: conn.receiver("out").map_err(|e| format!("open out: {e}"))?,
            msg: Bytes::from(make_payload(size)),
            reply: Bytes::new(),
            leased,
        })
    }
}

impl Link for KcoroLink {
    fn send(&mut self) -> Result<(), String> {
        if self.leased {
            let mut lease =
                self.tx.lease(self.msg.len()).ok_or("no lease: the element is below the threshold")?;
            // Produced in place: only the bytes the echo check reads are written.
            let last = self.msg.len() - 1;
            (lease[0], lease[last]) = (self.msg[0], self.msg[last]);
            return lease.send().map_err(|e| format!("send: {}", e.kind()));
        }
        self.tx.send(self.msg.clone()).map_err(|e| format!("send: {}", e.kind()))
    }

    fn send_end(&mut self) -> Result<(), String> {
        self.tx.send(Bytes::new()).map_err(|e| format!("send: {}", e.kind()))
    }

    fn recv(&mut self) -> Result<&[u8], String> {
        self.reply = self.rx.recv().map_err(|e| format!("recv: {e}"))?;
        Ok(&self.reply)
    }
}

/// How the client's connection carries its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// The Unix socket (`unix:`).
    Socket,
    /// Shared-memory rings (`shm:`), checked to be in use.
    Rings,
    /// The Unix socket, each message built in a lease of the connection's region.
    Leases,
}

/// The client: starts the peer, waits until it serves, connects and measures; each side's
/// runtime has `workers` workers (the suite's two, or one).
pub fn run(
    over: Over,
    mode: Mode,
    size: usize,
    n: u64,
    peer_cpu: Option<usize>,
    workers: usize,
) -> Result<Measurement, String> {
    let path = socket_path(KCORO);
    let peer_impl = if workers == 1 { KCORO_1W } else { KCORO };
    let mut peer = PeerProcess::spawn(peer_impl, mode, size, &path.display().to_string(), peer_cpu)?;
    peer.ready()?;
    let scheme = if over == Over::Rings { "shm" } else { "unix" };
    let addr = format!("{scheme}:{}", path.display());
    let m = kcoro_rt::drive_with(workers, move || {
        let mut link = KcoroLink::connect(&addr, size, over == Over::Leases)?;
        let m = measure(&mut link, mode, size, n)?;
        link.tx.close();
        Ok(m)
    })?;
    peer.finish()?;
    Ok(m)
}

/// The peer process: serves at `path`, says `ready` on stdout, runs until `in` is closed.
pub fn peer(logic: PeerLogic, path: &str, workers: usize) -> Result<(), String> {
    serve(logic, path, workers, || {
        use std::io::Write;
        println!("ready");
        let _ = std::io::stdout().flush();
    })
}

fn serve(
    mut logic: PeerLogic,
    path: &str,
    workers: usize,
    ready: impl FnOnce() + Send + 'static,
) -> Result<(), String> {
    let addr = format!("unix:{path}");
    let rt = kcoro::Runtime::builder().workers(workers).build().map_err(|e| format!("peer runtime: {e}"))?;
    rt.block_on(move || {
        let (in_tx, in_rx) = chan::buffered::<Bytes>(IN_CAPACITY);
        let (out_tx, out_rx) = chan::buffered::<Bytes>(OUT_CAPACITY);
        let server = kcoro_ipc::Server::bind(&addr)
            .and_then(|b| {
                b.serve_channel("in", in_tx, in_rx.clone())
                    .serve_channel("out", out_tx.clone(), out_rx)
                    .start()
            })
            .map_err(|e| format!("serve {addr}: {e}"))?;
        ready();
        loop {
            let msg = match in_rx.recv() {
                Ok(m) => m,
                Err(ChanError::Closed) => break,
                Err(e) => return Err(format!("peer recv: {e}")),
            };
            let reply = match logic.on(&msg)? {
                Answer::Send(_) => msg.clone(),
                Answer::Count(c) => Bytes::copy_from_slice(&c),
                Answer::Nothing => continue,
            };
            out_tx.send(reply).map_err(|e| format!("peer send: {}", e.kind()))?;
        }
        drop(server);
        Ok(())
    })
}

/// Both ends in this process (the peer on a thread), each on a runtime of `workers`
/// workers, 50 ops.
#[cfg(test)]
pub fn self_test(over: Over, mode: Mode, size: usize, workers: usize) -> Result<(), String> {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    static RUN: AtomicU32 = AtomicU32::new(0);
    let path = socket_path(&format!("kcoro-test{}", RUN.fetch_add(1, Relaxed)));
    let p = path.display().to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let peer = std::thread::spawn(move || {
        serve(PeerLogic::new(mode, size), &p, workers, move || {
            let _ = ready_tx.send(());
        })
    });
    ready_rx.recv().map_err(|_| "the peer did not start".to_string())?;
    let scheme = if over == Over::Rings { "shm" } else { "unix" };
    let addr = format!("{scheme}:{}", path.display());
    kcoro_rt::drive_with(workers, move || {
        let mut link = KcoroLink::connect(&addr, size, over == Over::Leases)?;
        let m = measure(&mut link, mode, size, 50)?;
        link.tx.close();
        Ok(m)
    })?;
    peer.join().map_err(|_| "peer panicked".to_string())?
}
