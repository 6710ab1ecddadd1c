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

fn config(dir: &Path, backend: &str, grace: &str) -> PathBuf {
    let path = dir.join("proxy.toml");
    let text = format!(
        "workers = 1\nshutdown_grace = \"{grace}\"\n\n[[listener]]\nname = \"web\"\nbind = \"{ANY_PORT}\"\npool = \"app\"\n\n\
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

/// Every listener binds port 0: the proxy says where it listens (`Proxy::addr`), so no
/// port is picked, released and raced for by the other tests' sockets meanwhile.
const ANY_PORT: &str = "127.0.0.1:0";

/// The running proxy, its output lines as they come, killed if the test ends early.
struct Proxy {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Where its listener `web` is bound.
    addr: SocketAddr,
}

impl Proxy {
    fn start(config: &Path) -> Proxy {
        Proxy::start_with(config, &[])
    }

    fn start_with(config: &Path, extra: &[&str]) -> Proxy {
        let mut child = kcoro()
            .args(["proxy", "--config"])
            .arg(config)
            .args(extra)
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
        let mut p = Proxy { child, lines, addr: SocketAddr::from(([0, 0, 0, 0], 0)) };
        let line = p.expect("listening: web on ");
        let at = line.rsplit(' ').next().unwrap_or_default();
        p.addr = at.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
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
    let good = config(&dir, "127.0.0.1:9", "1s");
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
    let path = config(&dir, &a.to_string(), "20s");
    let mut proxy = Proxy::start(&path);
    let listen = proxy.addr;
    let (name, mut open) = greeting(listen);
    assert_eq!(name, "A");

    // Port 0 again, under the same name: the running listener is kept, not rebound.
    config(&dir, &b.to_string(), "20s");
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

/// `kcoro chanmon`, attached to the proxy's monitor, records the proxy's own counters:
/// the connection it served and the bytes it carried each way, per listener and backend.
#[test]
fn chanmon_attached_to_the_monitor_records_the_proxys_counters() {
    let dir = temp_dir("chanmon");
    let a = backend("A");
    let path = config(&dir, &a.to_string(), "1s");
    let monitor = format!("unix:{}", dir.join("monitor.sock").display());
    let mut proxy = Proxy::start_with(&path, &["--monitor", &monitor]);
    let (name, mut open) = greeting(proxy.addr);
    assert_eq!(name, "A");
    echo(&mut open, b"0123456789");
    drop(open);
    let sample = || {
        let out = kcoro()
            .args(["chanmon", &monitor, "--json", "-", "--samples", "1", "--interval", "0.1"])
            .output()
            .expect("kcoro chanmon runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        text.lines().next().unwrap_or_default().to_string()
    };
    let metric = |sample: &str, name: &str, labels: &str| {
        let key = format!("\"name\":\"{name}\",");
        sample
            .split("{\"name\":")
            .map(|m| format!("{{\"name\":{m}"))
            .find(|m| m.contains(&key) && m.contains(labels))
            .unwrap_or_else(|| panic!("no {name} {labels} in {sample}"))
    };
    // The connection's byte counts are added when it ends: sample until it has.
    let deadline = Instant::now() + PATIENCE;
    let sample = loop {
        let s = sample();
        if metric(&s, "kcoro_proxy_connections_open", "web").contains("\"value\":0.0") {
            break s;
        }
        assert!(Instant::now() < deadline, "the connection never ended: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let metric = |name: &str, labels: &str| metric(&sample, name, labels);
    let accepted = metric("kcoro_proxy_connections_total", "[[\"listener\",\"web\"]]");
    assert!(accepted.contains("\"kind\":\"counter\"") && accepted.contains("\"value\":1.0"), "{accepted}");
    // The greeting (2 bytes) and the echo came back; the 10 bytes went out.
    assert!(metric("kcoro_proxy_received_bytes_total", "web").contains("\"value\":10.0"), "{sample}");
    assert!(metric("kcoro_proxy_sent_bytes_total", "web").contains("\"value\":12.0"), "{sample}");
    let up = metric("kcoro_proxy_backend_up", &format!("[\"backend\",\"{a}\"]"));
    assert!(up.contains("\"kind\":\"gauge\"") && up.contains("\"value\":1.0"), "{up}");
    proxy.signal(libc::SIGTERM);
    proxy.expect("stopped:");
    let _ = std::fs::remove_dir_all(dir);
}

/// The open-file limit, raised to the hard limit.
fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
    // SAFETY: `raised` is a valid in-pointer; raising the soft limit to the hard one is allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 { lim.rlim_max } else { lim.rlim_cur }
}

/// The size of process `pid`'s descriptor table (`FDSize`).
fn fd_table(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("FDSize:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// The proxy sizes its descriptor table for `max_connections` before any connection
/// comes: a burst of connects then never waits for the kernel to grow it (each growth
/// in a multi-threaded process waits for an RCU grace period, about 10 ms).
#[test]
fn the_descriptor_table_is_reserved_for_max_connections_at_start() {
    let limit = nofile_limit();
    assert!(limit >= 4_096, "an open-file limit of {limit} is too low for this test");
    let dir = temp_dir("fds");
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        format!(
            "workers = 2\n[[listener]]\nname = \"web\"\nbind = \"{ANY_PORT}\"\npool = \"app\"\nmax_connections = 1500\n\
             [[pool]]\nname = \"app\"\nbackends = [\"127.0.0.1:9\"]\n"
        ),
    )
    .unwrap();
    let proxy = Proxy::start(&path);
    // Two descriptors a connection, one health check per backend, 64 beside.
    let table = fd_table(proxy.child.id());
    assert!(table >= 1_500 * 2 + 1 + 64, "FDSize {table}");
    let _ = std::fs::remove_dir_all(dir);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 10,000 idle connections through the proxy process (each costs it two descriptors, so
/// where the hard open-file limit is lower, as many as it allows, said on stderr): all
/// stay open, a new one is served while they wait, and then every one of them answers.
#[test]
fn ten_thousand_idle_connections_stay_and_a_new_one_is_served() {
    // The proxy inherits the raised limit; this process holds the clients and the backend.
    let limit = nofile_limit();
    let idle = 10_000.min((limit.saturating_sub(200) / 2) as usize);
    if idle < 10_000 {
        eprintln!("note: the open-file limit is {limit}: {idle} idle connections, not 10,000");
    }
    assert!(idle >= 1_000, "an open-file limit of {limit} is too low for this test");
    let backend_rt = kcoro::Runtime::builder().workers(1).build().expect("backend runtime");
    let backend = backend_rt.block_on(|| {
        let l = kcoro::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        kcoro::spawn(move || {
            while let Ok((conn, _)) = l.accept() {
                kcoro::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = (&conn).read(&mut buf) {
                        if (&conn).write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    });
    let dir = temp_dir("idle");
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        format!(
            "workers = 2\n[[listener]]\nname = \"web\"\nbind = \"{ANY_PORT}\"\npool = \"app\"\n\
             [[pool]]\nname = \"app\"\nbackends = [\"{backend}\"]\n"
        ),
    )
    .unwrap();
    let mut proxy = Proxy::start(&path);
    let (pid, listen) = (proxy.child.id(), proxy.addr);
    let before = rss_kib(pid);
    let mut conns: Vec<TcpStream> = (0..idle)
        .map(|i| TcpStream::connect(listen).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    // One round trip on the last one: every earlier one was accepted before it.
    let mut fresh = TcpStream::connect(listen).expect("one more while they wait");
    fresh.set_read_timeout(Some(PATIENCE)).unwrap();
    fresh.write_all(b"new").unwrap();
    let mut back = [0u8; 3];
    fresh.read_exact(&mut back).expect("served while the others wait");
    assert_eq!(&back, b"new");
    let after = rss_kib(pid);
    eprintln!(
        "{idle} idle connections: proxy RSS {before} KiB -> {after} KiB, {:.1} KiB each",
        after.saturating_sub(before) as f64 / idle as f64
    );

    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(&(i as u32).to_le_bytes()).unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(u32::from_le_bytes(got), i as u32, "connection {i} got another's bytes");
    }
    drop(conns);
    drop(fresh);
    proxy.signal(libc::SIGTERM);
    let stopped = proxy.expect("stopped:");
    assert!(stopped.contains("0 closed at the end of the grace"), "{stopped}");
    let _ = std::fs::remove_dir_all(dir);
}
