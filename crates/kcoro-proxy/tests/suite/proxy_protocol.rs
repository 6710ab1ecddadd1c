//! The PROXY protocol header reaches the backend first and names the real client, as our
//! own reader parses it and as HAProxy (a backend that accepts the protocol) reads it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use crate::common::{PATIENCE, Running, config};

/// Accepts one connection and returns the first `n` bytes it receives.
fn first_bytes(listener: TcpListener, n: usize) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = vec![0u8; n];
        conn.read_exact(&mut got).unwrap();
        got
    })
}

#[test]
fn v1_and_v2_name_the_client_before_its_bytes() {
    for version in ["v1", "v2"] {
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let baddr = backend.local_addr().unwrap();
        let p = Running::start(&config(&[baddr], &format!("proxy_protocol = \"{version}\""), ""));
        let mut client = TcpStream::connect(p.addr()).unwrap();
        let me = client.local_addr().unwrap();
        let header = if version == "v1" {
            format!("PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n", me.port(), p.addr().port()).into_bytes()
        } else {
            let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c\x7f\0\0\x01\x7f\0\0\x01".to_vec();
            h.extend_from_slice(&me.port().to_be_bytes());
            h.extend_from_slice(&p.addr().port().to_be_bytes());
            h
        };
        let got = first_bytes(backend, header.len() + 5);
        client.write_all(b"hello").unwrap();
        let got = got.join().unwrap();
        assert_eq!(&got[..header.len()], &header[..], "{version}: {:?}", String::from_utf8_lossy(&got));
        assert_eq!(&got[header.len()..], b"hello");
    }
}

/// HAProxy as the backend, with `accept-proxy`: it answers with the source address the
/// header gave it. Skipped (with a note) where haproxy is not installed.
#[test]
fn haproxy_reads_our_header_as_the_client_address() {
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("note: haproxy not installed; skipping the PROXY protocol check against it");
        return;
    }
    // HAProxy takes our listening socket (`fd@`): no port is picked, released and then
    // raced for by the other tests' sockets before HAProxy binds it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let dir = std::env::temp_dir().join(format!("kcoro-proxy-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n\
             frontend f\n  bind fd@{fd} accept-proxy\n  \
             http-request return status 200 content-type text/plain lf-string \"src=%[src]:%[src_port]\"\n"
        ),
    )
    .unwrap();
    let mut command = Command::new("haproxy");
    command.args(["-db", "-f"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: runs in the forked child before exec, where only async-signal-safe calls are
    // allowed: fcntl(2) is one, and the closure neither allocates nor locks.
    unsafe {
        command.pre_exec(move || {
            // The listener is opened close-on-exec; HAProxy must inherit it.
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut haproxy = Killed(command.spawn().expect("haproxy starts"));
    drop(listener);
    for version in ["v1", "v2"] {
        let p = Running::start(&config(&[backend], &format!("proxy_protocol = \"{version}\""), ""));
        let mut client = TcpStream::connect(p.addr()).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        let read = client.read_to_string(&mut answer);
        if read.is_err() || answer.is_empty() {
            let exited = haproxy.0.try_wait().unwrap();
            panic!("{version}: no answer from HAProxy ({read:?}); exited: {exited:?}; {}", haproxy.stderr());
        }
        let me = client.local_addr().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 "), "{version}: {answer}");
        assert!(answer.ends_with(&format!("src={}:{}", me.ip(), me.port())), "{version}: {answer}");
    }
    drop(haproxy);
    let _ = std::fs::remove_dir_all(&dir);
}

struct Killed(Child);

impl Killed {
    /// What the child wrote on stderr, once it has exited (or been killed for asking).
    fn stderr(&mut self) -> String {
        let _ = self.0.kill();
        let mut text = String::new();
        if let Some(mut err) = self.0.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
