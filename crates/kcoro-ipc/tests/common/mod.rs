//! A server in a child process: this test binary re-executed with `KCORO_IPC_CHILD`
//! naming what to serve. The child prints `ready <addr>` and serves until its stdin closes
//! (or it is killed).
#![allow(dead_code)]

pub mod raw;
pub mod rings;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kcoro::chan::{self, Builder, Kind};
use kcoro_ipc::Server;
use kcoro_ipc::proto::Limits;

pub const CHILD_ENV: &str = "KCORO_IPC_CHILD";
pub const WATCHDOG: Duration = Duration::from_secs(30);
pub const SECRET: &str = "a shared secret of some length";

/// A fresh socket path in a private directory.
pub fn sock(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("kcoro-ipc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    format!("unix:{}", p.display())
}

/// The channels every test server serves.
pub fn serve_all(addr: &str, limits: Limits, secret: Option<&str>) -> Server {
    let rv = chan::rendezvous::<Vec<u8>>();
    let buf = chan::buffered::<Vec<u8>>(8);
    let conf = chan::conflated::<Vec<u8>>();
    let unl = chan::unlimited::<Vec<u8>>();
    let jobs = Builder::<Vec<u8>>::buffered(1024).count_payload_bytes().build();
    let slow = chan::buffered::<Vec<u8>>(4);
    // As "slow", for a type that keeps shared elements as views of the sender's region.
    let slow_views = chan::buffered::<bytes::Bytes>(4);
    let unl_views = chan::unlimited::<bytes::Bytes>();
    let mut b = Server::bind(addr)
        .unwrap()
        .limits(limits)
        .serve_channel("rv", rv.0, rv.1)
        .serve_channel("buf", buf.0, buf.1)
        .serve_channel("conf", conf.0, conf.1)
        .serve_channel("unl", unl.0, unl.1)
        .serve_channel("jobs", jobs.0, jobs.1)
        .serve_channel("slow", slow.0, slow.1)
        .serve_channel("slow_views", slow_views.0, slow_views.1)
        .serve_channel("unl_views", unl_views.0, unl_views.1);
    if let Some(s) = secret {
        b = b.secret(s);
    }
    b.start().unwrap()
}

/// Runs as the child when `KCORO_IPC_CHILD` is set: `serve ADDR [limits] [secret]`.
pub fn child_main() -> bool {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return false };
    let mut it = spec.split(' ');
    let (Some("serve"), Some(addr)) = (it.next(), it.next()) else { panic!("bad child spec {spec}") };
    let mut limits = Limits::default();
    let mut secret = None;
    let mut stacks = None;
    for opt in it {
        match opt.split_once('=') {
            Some(("credits", n)) => limits.credits = n.parse().unwrap(),
            Some(("credit_bytes", n)) => limits.credit_bytes = n.parse().unwrap(),
            Some(("in_flight", n)) => limits.max_in_flight = n.parse().unwrap(),
            Some(("channels", n)) => limits.max_channels = n.parse().unwrap(),
            Some(("frame", n)) => limits.max_frame = n.parse().unwrap(),
            Some(("attrs", n)) => limits.max_attrs = n.parse().unwrap(),
            Some(("name", n)) => limits.max_name = n.parse().unwrap(),
            Some(("regions", n)) => limits.max_regions = n.parse().unwrap(),
            Some(("region_bytes", n)) => limits.max_region_bytes = n.parse().unwrap(),
            Some(("server_channels", n)) => limits.max_server_channels = n.parse().unwrap(),
            Some(("made_bytes", n)) => limits.max_made_bytes = n.parse().unwrap(),
            Some(("waiting_bytes", n)) => limits.max_waiting_bytes = n.parse().unwrap(),
            Some(("window_bytes", n)) => limits.max_server_window_bytes = n.parse().unwrap(),
            Some(("connections", n)) => limits.max_connections = n.parse().unwrap(),
            Some(("handshake_ms", n)) => limits.handshake_timeout = Duration::from_millis(n.parse().unwrap()),
            Some(("secret", _)) => secret = Some(SECRET),
            // Served on a runtime of its own that can hold this many coroutines at once.
            Some(("stacks", n)) => stacks = Some(n.parse().unwrap()),
            _ => panic!("bad option {opt}"),
        }
    }
    let runtime = stacks.map(|n| kcoro::Runtime::builder().workers(1).max_stacks(n).build().unwrap());
    let server = match &runtime {
        Some(rt) => {
            let addr = addr.to_string();
            rt.block_on(move || serve_all(&addr, limits, secret))
        }
        None => serve_all(addr, limits, secret),
    };
    println!("ready {}", server.addr());
    // Serve until the parent closes our stdin (or kills us).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(server);
    drop(runtime);
    true
}

/// A server child process; killed when dropped.
pub struct ServerProc {
    pub child: Child,
    pub addr: String,
}

impl ServerProc {
    /// Starts `serve ADDR OPTS` in a child and waits for it to listen.
    // The child moves into the returned ServerProc, whose Drop kills and waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn start(test: &str, addr: &str, opts: &str) -> ServerProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("serve {addr} {opts}").trim())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let status = child.wait();
                panic!("the server child exited before listening: {status:?}");
            }
            if let Some(i) = line.find("ready ") {
                let addr = line[i + 6..].trim().to_string();
                // Keep draining its stdout so it never blocks on a full pipe.
                std::thread::spawn(move || for _ in out.lines() {});
                return ServerProc { child, addr };
            }
        }
    }

    /// SIGKILL, now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The child's resident memory, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The kinds, by the name the test server serves each under.
pub const KINDS: [(&str, Kind); 4] =
    [("rv", Kind::Rendezvous), ("buf", Kind::Buffered), ("conf", Kind::Conflated), ("unl", Kind::Unlimited)];
