//! `kcoro ipc serve | send | recv | ls`: distributed channels from the shell.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use kcoro::chan::{self, ChanError};
use kcoro_ipc::{ConnectOptions, Connection, Server};

use crate::args::{Data, IpcAddrArgs, IpcCommand, IpcRecvArgs, IpcSendArgs, ServeArgs};
use crate::signals::Interrupts;

pub fn run(cmd: &IpcCommand) -> ExitCode {
    let r = match cmd {
        IpcCommand::Serve(a) => serve(a),
        IpcCommand::Send(a) => send(a),
        IpcCommand::Recv(a) => recv(a),
        IpcCommand::Ls(a) => ls(a),
    };
    r.unwrap_or_else(|e| {
        eprintln!("kcoro: {e}");
        ExitCode::FAILURE
    })
}

fn secret(file: &Option<std::path::PathBuf>) -> Result<Option<Vec<u8>>, String> {
    file.as_ref()
        .map(|f| {
            std::fs::read(f)
                .map(|s| s.trim_ascii_end().to_vec())
                .map_err(|e| format!("--secret-file {}: {e}", f.display()))
        })
        .transpose()
}

fn connect(a: &IpcAddrArgs) -> Result<Connection, String> {
    let mut opts = ConnectOptions::new();
    if let Some(s) = secret(&a.secret_file)? {
        opts = opts.secret(s);
    }
    Connection::connect(&a.addr, opts).map_err(|e| format!("{}: {e}", a.addr))
}

fn serve(a: &ServeArgs) -> Result<ExitCode, String> {
    if a.channels.is_empty() {
        return Err("nothing to serve: give at least one --channel NAME:KIND[:CAP]".into());
    }
    // Before any thread starts: SIGINT and SIGTERM then wait for us, and stopping removes
    // the socket file instead of leaving it behind.
    let interrupts = Interrupts::block().map_err(|e| format!("cannot block SIGINT/SIGTERM: {e}"))?;
    let mut b = Server::bind(&a.listen).map_err(|e| e.to_string())?;
    for c in &a.channels {
        let (tx, rx) = chan::Builder::<Vec<u8>>::new(c.kind)
            .capacity(c.capacity)
            .name(&c.name)
            .count_payload_bytes()
            .build();
        b = b.serve_channel(&c.name, tx, rx);
    }
    if let Some(s) = secret(&a.secret_file)? {
        b = b.secret(s);
    }
    // `kcoro chanmon ADDR` can watch it (and the runtime serving it).
    let server = b.monitor(None).start().map_err(|e| e.to_string())?;
    let names: Vec<String> = a.channels.iter().map(|c| format!("{}({})", c.name, c.kind.name())).collect();
    println!("serving {} on {}", names.join(", "), server.addr());
    let _ = std::io::stdout().flush();
    if let Some(sig) = interrupts.wait(a.seconds) {
        eprintln!("{sig}: stopping");
    }
    drop(server); // closes every connection and removes the socket file
    Ok(ExitCode::SUCCESS)
}

/// Sends each element and waits for the server to say it is in the channel; stops at the
/// first that is not, and says how many were delivered and which were not.
fn send(a: &IpcSendArgs) -> Result<ExitCode, String> {
    let conn = connect(&a.conn)?;
    let tx = conn.sender::<Vec<u8>>(&a.name).map_err(|e| e.to_string())?;
    let put =
        |v: Vec<u8>| tx.send_acked(v, Some(std::time::Instant::now() + a.timeout)).map_err(|e| e.kind());
    let mut n = 0u64;
    if a.lines {
        let mut lines = std::io::stdin().lock().lines();
        while let Some(line) = lines.next() {
            let line = line.map_err(|e| format!("stdin: {e}"))?;
            if let Err(e) = put(line.into_bytes()) {
                let rest = lines.count() as u64;
                let failed = if rest == 0 {
                    format!("line {}", n + 1)
                } else {
                    format!("lines {}-{}", n + 1, n + 1 + rest)
                };
                eprintln!("sent {n} to {}; {failed} not delivered: {e}", a.name);
                return Ok(ExitCode::FAILURE);
            }
            n += 1;
        }
    } else {
        let v = match &a.data {
            Data::Text(t) => t.as_bytes().to_vec(),
            Data::File(f) => std::fs::read(f).map_err(|e| format!("--data @{f}: {e}"))?,
            Data::Stdin => {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("stdin: {e}"))?;
                buf
            }
        };
        if let Err(e) = put(v) {
            eprintln!("sent 0 to {}; the element was not delivered: {e}", a.name);
            return Ok(ExitCode::FAILURE);
        }
        n = 1;
    }
    eprintln!("sent {n} to {}", a.name);
    Ok(ExitCode::SUCCESS)
}

fn recv(a: &IpcRecvArgs) -> Result<ExitCode, String> {
    let conn = connect(&a.conn)?;
    let rx = conn.receiver::<Vec<u8>>(&a.name).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    while a.count.is_none_or(|c| n < c) {
        match rx.recv_timeout(a.timeout) {
            Ok(v) => {
                out.write_all(&v)
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush())
                    .map_err(|e| e.to_string())?;
                n += 1;
            }
            // The channel closed (and drained), or the connection went: only the first is
            // an end.
            Err(ChanError::Closed) if conn.is_closed() => {
                let why = conn.close_reason().unwrap_or_else(|| "closed".into());
                eprintln!("received {n} from {}: then the connection was lost ({why})", a.name);
                return Ok(ExitCode::FAILURE);
            }
            Err(ChanError::Closed) => break,
            Err(e) => {
                eprintln!("received {n} from {}: then {e}", a.name);
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    eprintln!("received {n} from {}", a.name);
    Ok(ExitCode::SUCCESS)
}

fn ls(a: &IpcAddrArgs) -> Result<ExitCode, String> {
    let conn = connect(a)?;
    let info = conn.info().map_err(|e| e.to_string())?;
    println!(
        "{} (protocol {}.{}), {} connections",
        info.name, info.version.0, info.version.1, info.connections
    );
    println!(
        "{:<20} {:<10} {:>8} {:>8} {:>12} {:>12} {:>14} {:>14}  state",
        "name", "kind", "cap", "len", "sends", "recvs", "bytes sent", "bytes recv"
    );
    for s in conn.list().map_err(|e| e.to_string())? {
        let kind = s.kind().map_or("?", |k| k.name());
        let cap = s.capacity.map_or("-".to_string(), |c| c.to_string());
        println!(
            "{:<20} {:<10} {:>8} {:>8} {:>12} {:>12} {:>14} {:>14}  {}",
            s.name.as_deref().unwrap_or("?"),
            kind,
            cap,
            s.len,
            s.sends,
            s.recvs,
            s.bytes_sent,
            s.bytes_recv,
            if s.closed { "closed" } else { "open" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
