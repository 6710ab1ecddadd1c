//! A WebSocket echo server on `kcoro::net` with tungstenite's blocking API: `accept` and
//! `read`/`send` run on each connection's coroutine and park it, not its worker, while the
//! socket is not ready. Client coroutines open a WebSocket with `tungstenite::client`,
//! send text and binary messages in turn, check each echo, and close with the close
//! handshake.
//!
//! ```sh
//! cargo run --release -p kcoro-bench --example ws_echo            # 100 connections x 100 messages
//! cargo run --release -p kcoro-bench --example ws_echo -- 10 20   # CONNECTIONS MESSAGES
//! ```

use std::net::SocketAddr;

use kcoro::net::{TcpListener, TcpStream};
use tungstenite::{Error as WsError, Message};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Echoes data messages until the close handshake ends. tungstenite answers pings and the
/// client's close frame itself (on the next read or send), so the loop only reads on.
fn serve(stream: TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut ws = tungstenite::accept(stream).map_err(|e| format!("handshake: {e}"))?;
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => ws.send(msg)?,
            Ok(_) => {}                                      // ping, pong, close: handled inside
            Err(WsError::ConnectionClosed) => return Ok(()), // close handshake complete
            Err(e) => return Err(e.into()),
        }
    }
}

fn accept_loop(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept() {
        // `spread`: connections start on the workers in turn; a dropped handle detaches.
        let spawned = kcoro::spawn_with(kcoro::SpawnOptions::new().spread(), move || {
            if let Err(e) = serve(stream) {
                eprintln!("ws_echo: connection: {e}");
            }
        });
        if let Err(e) = spawned {
            eprintln!("ws_echo: spawn: {e}");
        }
    }
}

/// Message `i` of client `id`: even ones text, odd ones binary.
fn message(id: usize, i: usize) -> Message {
    if i.is_multiple_of(2) {
        Message::text(format!("client {id} text {i}"))
    } else {
        Message::binary(format!("client {id} bytes {i}").into_bytes())
    }
}

/// One connection: `messages` round trips, each checked, then the close handshake.
fn client(addr: SocketAddr, id: usize, messages: usize) -> Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let url = format!("ws://localhost:{}/echo", addr.port());
    let (mut ws, _response) =
        tungstenite::client(url.as_str(), stream).map_err(|e| format!("handshake: {e}"))?;
    for i in 0..messages {
        let sent = message(id, i);
        ws.send(sent.clone())?;
        let back = ws.read()?;
        if back != sent {
            return Err(format!("client {id}: sent {sent:?}, got {back:?}").into());
        }
    }
    ws.close(None)?;
    // Read until the server's close frame arrives: only then is the handshake complete.
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => {}
            Err(WsError::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// `[CONNECTIONS [MESSAGES]]`, default 100 and 100.
fn args() -> Result<(usize, usize)> {
    let mut args = std::env::args().skip(1);
    let mut next = |default: usize| -> Result<usize> {
        Ok(args.next().map(|a| a.parse()).transpose()?.unwrap_or(default))
    };
    Ok((next(100)?, next(100)?))
}

fn main() -> Result<()> {
    let (connections, messages) = args()?;
    kcoro::run(move || {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        drop(kcoro::spawn(move || accept_loop(listener))); // ends with the runtime
        let clients: Vec<_> =
            (0..connections).map(|id| kcoro::spawn(move || client(addr, id, messages))).collect();
        for c in clients {
            c.join().map_err(|e| format!("client coroutine: {e}"))??;
        }
        println!(
            "ws_echo: {connections} connections x {messages} messages (text and binary) echoed exactly, \
             {connections} close handshakes"
        );
        Ok(())
    })
}
