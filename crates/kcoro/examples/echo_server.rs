//! A TCP echo server: one coroutine per connection, an accept loop that never blocks its
//! worker, and clients that check every byte comes back.
//!
//! ```sh
//! cargo run --release -p kcoro --example echo_server                  # serve 200 clients, check, exit
//! cargo run --release -p kcoro --example echo_server -- 127.0.0.1:7007  # serve until killed
//! ```

use std::io::{Read, Write};
use std::net::SocketAddr;

use kcoro::net::{TcpListener, TcpStream};

const CLIENTS: usize = 200;
const ROUNDS: usize = 50;

/// Echoes until the peer closes its side.
fn serve(mut conn: TcpStream) -> std::io::Result<u64> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        let n = conn.read(&mut buf)?; // parks this coroutine only
        if n == 0 {
            return Ok(total);
        }
        conn.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn accept_loop(listener: TcpListener) -> ! {
    loop {
        match listener.accept() {
            Ok((conn, _peer)) => {
                // `spread`: connections start on the workers in turn (they stay where they
                // start), not all on the accept loop's worker. Dropping the JoinHandle
                // detaches the coroutine: it runs on by itself.
                match kcoro::spawn_with(kcoro::SpawnOptions::new().spread(), move || serve(conn)) {
                    Ok(handle) => drop(handle),
                    Err(e) => eprintln!("spawn: {e}"),
                }
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn client(addr: SocketAddr, id: usize) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    for round in 0..ROUNDS {
        let msg = format!("client {id} round {round}\n");
        s.write_all(msg.as_bytes())?;
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back)?;
        assert_eq!(back, msg.as_bytes(), "client {id} got someone else's bytes");
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let listen_on = std::env::args().nth(1);
    kcoro::run(move || {
        if let Some(addr) = listen_on {
            let listener = TcpListener::bind(addr)?;
            println!("echoing on {}", listener.local_addr()?);
            accept_loop(listener);
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        drop(kcoro::spawn(move || accept_loop(listener))); // detached; ends with the runtime
        let clients: Vec<_> = (0..CLIENTS).map(|id| kcoro::spawn(move || client(addr, id))).collect();
        for c in clients {
            c.join().expect("client panicked")?;
        }
        println!("echo_server: {CLIENTS} connections x {ROUNDS} round trips echoed exactly");
        Ok(())
    })
}
