//! `kcoro proxy` as a process: checking a file, reloading on SIGHUP (and refusing a bad
//! file without stopping), and a SIGTERM that drains open connections before exiting.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(20);

fn kcoro() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kcoro"))
}

/// A backend that greets each connection with `name\n` and then echoes.
fn backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                if conn.write_all(format!("{name}\n").as_bytes()).is_ok() {
                    let _ = std::io::copy(&mut conn.try_clone().unwrap(), &mut conn);
                }
            });
        }
    });
    addr
}

fn config(dir: &Path, listen: SocketAddr, backend: &str, grace: &str) -> PathBuf {
    let path = dir.join("proxy.toml");
    let text = format!(
        "workers = 1\nshutdown_grace = \"{grace}\"\n\n[[listener]]\nname = \"web\"\nbind = \"{listen}\"\npool = \"app\"\n\n\
         [[pool]]\nname = \"app\"\nbackends = [\"{backend}\"]\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kcoro-proxy-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The running proxy, its output lines as they come, killed if the test ends early.
struct Proxy {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proxy {
    fn start(config: &Path) -> Proxy {
        let mut child = kcoro()
            .args(["proxy", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kcoro proxy starts");
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut p = Proxy { child, lines };
        p.expect("listening: web on");
        p
    }

    /// Waits for an output line containing `needle`; returns it.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
        panic!("no line with {needle:?}; saw {seen:?}");
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, sig) }, 0);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn greeting(addr: SocketAddr) -> (String, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).expect("connect through the proxy");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("greeting");
    (line.trim_end().to_string(), r)
}

fn echo(r: &mut BufReader<TcpStream>, msg: &[u8]) {
    r.get_mut().write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    r.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

#[test]
fn check_accepts_a_good_file_and_names_the_line_of_a_bad_one() {
    let dir = temp_dir("check");
    let good = config(&dir, free_port(), "127.0.0.1:9", "1s");
    let out = kcoro().args(["proxy", "--check", "--config"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 listeners, 1 pools)"));

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:1\"\npool = \"nope\"\n").unwrap();
    let out = kcoro().args(["proxy", "--check", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4:", bad.display())) && err.contains("no pool named \"nope\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sighup_reloads_a_good_file_keeps_the_old_one_for_a_bad_file_and_sigterm_drains() {
    let dir = temp_dir("signals");
    let (a, b) = (backend("A"), backend("B"));
    let listen = free_port();
    let path = config(&dir, listen, &a.to_string(), "20s");
    let mut proxy = Proxy::start(&path);
    let (name, mut open) = greeting(listen);
    assert_eq!(name, "A");

    config(&dir, listen, &b.to_string(), "20s");
    proxy.signal(libc::SIGHUP);
    proxy.expect("reloaded:");
    assert_eq!(greeting(listen).0, "B", "new connections follow the new file");
    echo(&mut open, b"the open connection stays on A");

    std::fs::write(&path, "[[listener]]\nname = \"web\"\nbind = \"oops\"\n").unwrap();
    proxy.signal(libc::SIGHUP);
    let refused = proxy.expect("reload refused");
    assert!(refused.contains("proxy.toml:3:"), "{refused}");
    assert_eq!(greeting(listen).0, "B", "still serving the running configuration");

    proxy.signal(libc::SIGTERM);
    proxy.expect("SIGTERM: stopping");
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(listen).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    echo(&mut open, b"served while draining");
    assert!(proxy.child.try_wait().unwrap().is_none(), "waits for the open connection");
    drop(open);
    let stopped = proxy.expect("stopped:");
    assert!(stopped.contains("0 closed at the end of the grace"), "{stopped}");
    let status = proxy.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}
