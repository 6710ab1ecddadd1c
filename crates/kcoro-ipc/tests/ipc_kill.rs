//! Processes killed mid-stream, every value counted: 3,000 numbered values from a sender
//! process through a capacity-4 channel (`slow`) of a server process to receiver
//! processes, with the receiver SIGKILLed in one run and the sender in another. Checked
//! against what docs/IPC.md promises: a value acknowledged to its sender is in the channel
//! and is received exactly once, except the one a killed receiver had been sent and not
//! yet read (at most once: a receiver has one receive in flight).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ServerProc, WATCHDOG, sock};

const VALUES: u64 = 3000;
/// Names what a child of this binary does: `send ADDR N` or `recv ADDR`.
const ROLE_ENV: &str = "KCORO_IPC_ROLE";

#[test]
fn child() {
    if common::child_main() {
        return;
    }
    let Ok(role) = std::env::var(ROLE_ENV) else { return };
    let parts: Vec<&str> = role.split(' ').collect();
    let conn = kcoro_ipc::connect(parts[1]).unwrap();
    let out = std::io::stdout();
    match parts[0] {
        "send" => {
            let tx = conn.sender::<Vec<u8>>("slow").unwrap();
            for i in 0..parts[2].parse::<u64>().unwrap() {
                tx.send_acked(i.to_be_bytes().to_vec(), None).unwrap();
                writeln!(out.lock(), "acked {i}").unwrap();
            }
        }
        "recv" => {
            let rx = conn.receiver::<Vec<u8>>("slow").unwrap();
            while let Ok(v) = rx.recv_timeout(Duration::from_secs(2)) {
                let n = u64::from_be_bytes(v.try_into().unwrap());
                writeln!(out.lock(), "got {n}").unwrap();
                // Slow enough that the channel stays full and the kill lands mid-stream.
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// A child in `role`, its stdout lines collected as numbers.
struct Party {
    child: Child,
    seen: Arc<Mutex<Vec<u64>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Party {
    fn start(role: &str) -> Party {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                // The harness may print on the same line first ("test child ... acked 0").
                let value = ["acked ", "got "].iter().find_map(|tag| {
                    let at = line.find(tag)? + tag.len();
                    line[at..].trim().parse().ok()
                });
                if let Some(n) = value {
                    s.lock().unwrap().push(n);
                }
            }
        });
        Party { child, seen, reader: Some(reader) }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until it has printed `n` lines (or fails the test at the watchdog).
    fn until(&self, n: usize) {
        let deadline = Instant::now() + WATCHDOG;
        while self.count() < n {
            assert!(Instant::now() < deadline, "stuck at {} of {n} lines", self.count());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        self.finish();
    }

    /// Waits for the process and its output; the numbers it printed.
    fn finish(&mut self) -> Vec<u64> {
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

/// What arrived, against what was acknowledged.
struct Tally {
    acked: usize,
    received: usize,
    lost: usize,
    duplicated: usize,
    unacked_received: usize,
}

fn tally(acked: &[u64], received: &[u64]) -> Tally {
    let acked_set: HashSet<u64> = acked.iter().copied().collect();
    let received_set: HashSet<u64> = received.iter().copied().collect();
    Tally {
        acked: acked.len(),
        received: received.len(),
        lost: acked_set.difference(&received_set).count(),
        duplicated: received.len() - received_set.len(),
        unacked_received: received_set.difference(&acked_set).count(),
    }
}

fn report(what: &str, t: &Tally) {
    eprintln!(
        "{what}: acknowledged {}, received {}, lost {}, duplicated {}, received unacknowledged {}",
        t.acked, t.received, t.lost, t.duplicated, t.unacked_received
    );
}

/// Over the socket and over the rings (where the server also sees what the receiver read,
/// and gives back the values of replies it never read).
#[test]
fn a_receiver_killed_mid_stream_loses_at_most_the_value_it_was_sent() {
    for scheme in ["unix", "shm"] {
        let (_server, addr) = serve_over(scheme, "kill-recv"); // serves until dropped
        let mut sender = Party::start(&format!("send {addr} {VALUES}"));
        let mut first = Party::start(&format!("recv {addr}"));
        first.until(1000);
        first.kill();
        let mut second = Party::start(&format!("recv {addr}"));
        let acked = sender.finish();
        let mut received = first.finish();
        received.extend(second.finish());
        let t = tally(&acked, &received);
        report(&format!("receiver killed ({scheme})"), &t);
        assert_eq!(t.acked, VALUES as usize, "{scheme}: every send was acknowledged");
        assert_eq!(t.duplicated, 0, "{scheme}: a value was received twice");
        assert_eq!(t.unacked_received, 0, "{scheme}");
        assert!(
            t.lost <= 1,
            "{scheme}: {} acknowledged values lost; at most the one in flight may be",
            t.lost
        );
    }
}

/// Over the socket and over the rings.
#[test]
fn a_sender_killed_mid_stream_loses_nothing_it_was_told_is_delivered() {
    for scheme in ["unix", "shm"] {
        let (_server, addr) = serve_over(scheme, "kill-send"); // serves until dropped
        let mut sender = Party::start(&format!("send {addr} {VALUES}"));
        let mut receiver = Party::start(&format!("recv {addr}"));
        sender.until(1000);
        sender.kill();
        let acked = sender.finish();
        let received = receiver.finish();
        let t = tally(&acked, &received);
        report(&format!("sender killed ({scheme})"), &t);
        assert!(t.acked >= 1000 && t.acked < VALUES as usize, "{scheme}: the kill landed mid-stream");
        assert_eq!(t.lost, 0, "{scheme}: an acknowledged value never arrived");
        assert_eq!(t.duplicated, 0, "{scheme}: a value was received twice");
        // A send the server applied whose acknowledgement died with the sender arrives too.
        assert!(t.unacked_received <= 1, "{scheme}: {} values arrived never sent", t.unacked_received);
    }
}

/// A server child for the test `name`, and its address for `scheme` (`unix` or `shm`).
fn serve_over(scheme: &str, name: &str) -> (ServerProc, String) {
    let s = ServerProc::start("child", &sock(&format!("{name}-{scheme}.sock")), "");
    let addr = s.addr.replacen("unix:", &format!("{scheme}:"), 1);
    (s, addr)
}

/// Sends `sig` to the child process `child`.
fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// SIGSTOP, and waits until every thread of the server has stopped: kill(2) returns before
/// a thread running on another CPU does.
fn stop(s: &ServerProc) {
    signal(&s.child, libc::SIGSTOP);
    let tasks = format!("/proc/{}/task", s.child.id());
    let deadline = Instant::now() + WATCHDOG;
    let stopped = || {
        std::fs::read_dir(&tasks).unwrap().all(|t| {
            let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    };
    while !stopped() {
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A server stopped (SIGSTOP) under a client with a request timeout, over the socket and
/// over the rings: a connect, a waiting receive and an acknowledged send each give up in
/// bounded time instead of hanging, and the stalled connection closes. After SIGCONT a new
/// connection drains the channel: every value acknowledged before the stop arrives exactly
/// once; the send that was in flight may or may not have been applied (docs/IPC.md).
#[test]
fn a_stopped_server_fails_waits_in_bounded_time_and_keeps_every_acknowledged_value() {
    use kcoro::chan::ChanError;
    use kcoro_ipc::{ConnectOptions, Connection, Transport};
    const BEFORE: u64 = 50;
    for (scheme, transport) in [("unix", Transport::Unix), ("shm", Transport::Shm)] {
        let (s, addr) = serve_over(scheme, "stop");
        // Filled through a connection without a request timeout, so that a loaded machine
        // cannot fail these; the patient one only opens its channels before the stop.
        let filler = Connection::connect(&addr, ConnectOptions::new()).unwrap();
        let fill = filler.sender::<Vec<u8>>("unl").unwrap();
        for i in 0..BEFORE {
            fill.send_acked(i.to_be_bytes().to_vec(), None).unwrap();
        }
        let patient = Duration::from_secs(1);
        let conn = Connection::connect(&addr, ConnectOptions::new().request_timeout(patient)).unwrap();
        assert_eq!((filler.transport(), conn.transport()), (transport, transport));
        let tx = conn.sender::<Vec<u8>>("unl").unwrap();
        let rx = conn.receiver::<Vec<u8>>("unl").unwrap();

        stop(&s);
        let t0 = Instant::now();
        let receiving = std::thread::spawn(move || rx.recv());
        let sending = std::thread::spawn(move || tx.send_acked(BEFORE.to_be_bytes().to_vec(), None));
        let late = Connection::connect(&addr, ConnectOptions::new().connect_timeout(patient));
        assert!(late.is_err(), "{scheme}: a connect to a stopped server succeeded");
        let received = receiving.join().unwrap();
        let sent = sending.join().unwrap();
        let waited = t0.elapsed();
        assert_eq!(received, Err(ChanError::Closed), "{scheme}: a receive from a stopped server");
        assert!(sent.is_err(), "{scheme}: an acknowledged send to a stopped server succeeded");
        assert!(waited < WATCHDOG, "{scheme}: the waits took {waited:?}");
        assert!(conn.is_closed(), "{scheme}: the stalled connection stayed open");
        let why = conn.close_reason().unwrap_or_default();
        assert!(why.contains("no answer"), "{scheme}: closed because {why:?}");
        signal(&s.child, libc::SIGCONT);

        let drain = Connection::connect(&addr, ConnectOptions::new()).unwrap();
        let rx = drain.receiver::<Vec<u8>>("unl").unwrap();
        let mut got = Vec::new();
        let mut seen = HashSet::new();
        while seen.len() < BEFORE as usize {
            let v = rx.recv_timeout(WATCHDOG).unwrap_or_else(|e| {
                panic!("{scheme}: {} of {BEFORE} acknowledged values arrived, then {e}", seen.len())
            });
            let n = u64::from_be_bytes(v.try_into().unwrap());
            got.push(n);
            if n < BEFORE {
                seen.insert(n);
            }
        }
        while let Ok(v) = rx.try_recv() {
            got.push(u64::from_be_bytes(v.try_into().unwrap()));
        }
        let acked: Vec<u64> = (0..BEFORE).collect();
        let t = tally(&acked, &got);
        report(&format!("server stopped ({scheme})"), &t);
        assert_eq!((t.lost, t.duplicated), (0, 0), "{scheme}: acknowledged values lost or doubled");
        assert!(t.unacked_received <= 1, "{scheme}: {} values arrived never sent", t.unacked_received);
    }
}

/// A receiver process stopped (SIGSTOP) mid-stream, over the socket and over the rings:
/// the sender and a second receiver carry on through the same server (the stopped peer
/// holds at most the value of its one receive in flight), and after SIGCONT the stopped
/// receiver carries on too. Every acknowledged value is received exactly once.
#[test]
fn a_stopped_receiver_holds_up_nobody_and_loses_nothing() {
    for scheme in ["unix", "shm"] {
        let (_server, addr) = serve_over(scheme, "stop-recv"); // serves until dropped
        let mut sender = Party::start(&format!("send {addr} {VALUES}"));
        let mut first = Party::start(&format!("recv {addr}"));
        first.until(500);
        signal(&first.child, libc::SIGSTOP);
        let mut second = Party::start(&format!("recv {addr}"));
        second.until(1000); // the stream goes on without the stopped receiver
        signal(&first.child, libc::SIGCONT);
        let acked = sender.finish();
        let mut received = first.finish();
        received.extend(second.finish());
        let t = tally(&acked, &received);
        report(&format!("receiver stopped ({scheme})"), &t);
        assert_eq!(t.acked, VALUES as usize, "{scheme}: every send was acknowledged");
        assert_eq!((t.lost, t.duplicated, t.unacked_received), (0, 0, 0), "{scheme}");
    }
}
