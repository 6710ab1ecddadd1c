//! `kcoro chanmon` end to end: NDJSON samples, replay, `--check` exit codes, attaching to
//! another process over kcoro IPC (and surviving its exit), the Prometheus endpoint, the
//! live screen in a real terminal (tmux), and the coroutines of monitored programs (this
//! test binary re-executed as one: see [`child`]), deadlocked or waiting.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// The program `cargo run --example deadlock` runs (docs/CHANMON.md), run here as a child.
#[path = "../examples/deadlock.rs"]
#[allow(dead_code)] // its `main` is the example's
mod deadlock_example;

const KCORO: &str = env!("CARGO_BIN_EXE_kcoro");

fn kcoro(args: &[&str]) -> Output {
    Command::new(KCORO).args(args).output().expect("kcoro runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chanmon");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}", std::process::id()))
}

#[test]
fn once_prints_one_sample_with_the_schema() {
    let out = kcoro(&["chanmon", "--demo", "--once"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let samples = lines(&out);
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0]["schema"], 1);
    let names: Vec<&str> =
        samples[0]["channels"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in ["demo.ingress", "demo.work", "demo.results", "demo.ticks", "demo.audit"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(samples[0]["sched"]["workers"].as_u64().unwrap() >= 1);
    // The demo is running when it is sampled: every channel has carried values.
    for c in samples[0]["channels"].as_array().unwrap() {
        assert!(c["sends"].as_u64().unwrap() > 0 && c["recvs"].as_u64().unwrap() > 0, "{c}");
    }
    // Its coroutines are named; the supervisor waits on the control channel, by its id.
    let coros = &samples[0]["coroutines"];
    let list = coros["list"].as_array().unwrap();
    assert_eq!(coros["total"].as_u64(), Some(list.len() as u64));
    let supervisor = list.iter().find(|c| c["name"] == "supervisor").expect("the supervisor");
    assert_eq!(supervisor["wait"], "recv on demo.control", "{supervisor}");
    let control =
        samples[0]["channels"].as_array().unwrap().iter().find(|c| c["name"] == "demo.control").unwrap();
    assert_eq!(supervisor["wait_channel"]["id"], control["id"]);
    assert!(supervisor["spawned_at"].as_str().unwrap().contains("demo.rs:"), "{supervisor}");
    assert!(coros.get("deadlock").is_none(), "the demo runs: {coros}");
}

#[test]
fn json_records_and_replay_plays_back() {
    let file = tmp("rec.ndjson");
    let f = file.to_str().unwrap();
    let out = kcoro(&["chanmon", "--demo", "--json", f, "--samples", "3", "--interval", "0.1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let recorded = std::fs::read_to_string(&file).unwrap();
    assert_eq!(recorded.lines().count(), 3);
    let clocks: Vec<u64> = recorded
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["taken_ns"].as_u64().unwrap())
        .collect();
    assert!(clocks.windows(2).all(|w| w[1] > w[0]), "sample clocks increase: {clocks:?}");
    // Played back, the same lines come out, and a check over them sees the same counters.
    let out = kcoro(&["chanmon", "--replay", f, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), recorded);
    let bad = tmp("bad.ndjson");
    std::fs::write(&bad, "{\"schema\": 99}\n").unwrap();
    let out = kcoro(&["chanmon", "--replay", bad.to_str().unwrap(), "--once"]);
    assert_eq!(out.status.code(), Some(2), "a garbled recording is bad input");
    assert!(text(&out.stderr).contains(":1:"), "names the line: {}", text(&out.stderr));
    let out = kcoro(&["chanmon", "--replay", tmp("no-such.ndjson").to_str().unwrap(), "--once"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // A check on a channel the recording does not have is refused, not silently passed.
    let out = kcoro(&["chanmon", "--replay", f, "--check", "demo.ingres:fill>0.5"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no channel named \"demo.ingres\""), "{}", text(&out.stderr));
    // `--json -` is stdout, not a file named `-`.
    let out = kcoro(&["chanmon", "--replay", f, "--json", "-"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), recorded);
    assert!(!std::path::Path::new("-").exists());
    // A recording made before samples carried coroutines still replays, as it was...
    let old = tmp("old.ndjson");
    let line = r#"{"schema":1,"taken_ns":7,"source":"demo","channels":[],"sched":null}"#;
    std::fs::write(&old, format!("{line}\n")).unwrap();
    let out = kcoro(&["chanmon", "--replay", old.to_str().unwrap(), "--once"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim_end(), line);
    // ...and a coroutine check on it is refused: it could never cross.
    let out = kcoro(&["chanmon", "--replay", old.to_str().unwrap(), "--check", "deadlock"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("reports no coroutines"), "{}", text(&out.stderr));
}

#[test]
fn check_exit_codes() {
    // demo.results is kept full by a slow sink.
    let out = kcoro(&["chanmon", "--demo", "--check", "demo.results:fill>0.5 for 0.2s", "--interval", "0.1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("check crossed: demo.results:fill>0.5"));
    let out = kcoro(&[
        "chanmon",
        "--demo",
        "--check",
        "demo.ingress:failures>1000000000",
        "--samples",
        "2",
        "--interval",
        "0.05",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The program's own metrics: the demo counts what its sink finished.
    let out =
        kcoro(&["chanmon", "--demo", "--check", r#"demo_items_total{stage="sink"}>0"#, "--interval", "0.1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(r#"(demo_items_total{stage="sink"}: "#), "{}", text(&out.stderr));
    let out = kcoro(&["chanmon", "--demo", "--check", "demo_items_totl{}>0", "--interval", "0.1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unknown metric demo_items_totl"), "{}", text(&out.stderr));
    let out = kcoro(&["chanmon", "--demo", "--check", "fill>>2"]);
    assert_eq!(out.status.code(), Some(2));
    let out = kcoro(&["chanmon", "--demo", "--check", "nosuchmetric>1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown metric"));
    let out = kcoro(&["chanmon"]);
    assert_eq!(out.status.code(), Some(2), "ADDR, --demo or --replay is required");
    let out = kcoro(&["chanmon", "--demo", "--check", "fill>nan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = kcoro(&["chanmon", "--demo", "--check", "demo.result:fill>0.5", "--samples", "1"]);
    assert_eq!(out.status.code(), Some(2), "a misspelled channel: {}", text(&out.stderr));
    for bad in ["nowhere", "unix:", "tcp:nohost"] {
        let out = kcoro(&["chanmon", bad, "--once"]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
    }
}

/// Waits for `child` at most `limit`; kills it and fails if it is still running.
fn exits_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_silent_target_is_an_error_not_a_hang() {
    // Accepts, then never says a word (a wedged or stopped process).
    let sock = tmp("silent").with_extension("sock");
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let addr = format!("unix:{}", sock.display());
    let mut mon = Command::new(KCORO)
        .args(["chanmon", &addr, "--once", "--timeout", "0.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exits_within(&mut mon, Duration::from_secs(30), "chanmon --once on a silent socket");
    let mut err = String::new();
    mon.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("no answer within 500ms"), "{err}");
    drop(held.join().unwrap());
}

#[test]
fn json_before_the_address_records_that_process() {
    let server = serve("json-addr");
    let out = kcoro(&["chanmon", "--json", &server.1, "--samples", "2", "--interval", "0.05"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let samples = lines(&out);
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0]["source"], server.1.as_str());
}

/// `kcoro ipc serve` in a child process, killed on drop.
struct Served(Child, String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(name: &str) -> Served {
    let sock = tmp(name).with_extension("sock");
    let _ = std::fs::remove_file(&sock);
    let addr = format!("unix:{}", sock.display());
    let mut child = Command::new(KCORO)
        .args(["ipc", "serve", "--listen", &addr, "--channel", "jobs:buffered:8"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("serving"), "{first}");
    Served(child, addr)
}

#[test]
fn attaches_to_another_process_and_survives_its_exit() {
    let mut server = serve("attach");
    let addr = server.1.clone();
    for i in 0..5 {
        let out = kcoro(&["ipc", "send", &addr, "jobs", "--data", &format!("job-{i}")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = kcoro(&["chanmon", &addr, "--once"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sample = &lines(&out)[0];
    let jobs =
        sample["channels"].as_array().unwrap().iter().find(|c| c["name"] == "jobs").expect("jobs listed");
    assert_eq!(
        (jobs["len"].as_u64(), jobs["sends"].as_u64(), jobs["capacity"].as_u64()),
        (Some(5), Some(5), Some(8))
    );
    assert_eq!(sample["channels"].as_array().unwrap().len(), 1, "a served named channel is listed once");
    assert!(sample["sched"]["workers"].as_u64().unwrap() >= 1);

    // The monitored process dies mid-run: a clear message and exit code 3, not a hang.
    let mut mon = Command::new(KCORO)
        .args(["chanmon", &addr, "--json", "--interval", "0.05", "--samples", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(mon.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"jobs\""), "{first}");
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = mon.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "chanmon did not notice the process exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    mon.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("may have exited"), "{err}");
    let out = kcoro(&["chanmon", &addr, "--once"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("cannot attach"), "{}", text(&out.stderr));
}

#[test]
fn prometheus_endpoint_serves_the_counters() {
    let mut child = Command::new(KCORO)
        .args(["chanmon", "--demo", "--prometheus", "127.0.0.1:0", "--samples", "100", "--interval", "0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url =
        first.trim().strip_prefix("serving http://").expect(&first).trim_end_matches("/metrics").to_string();
    let mut s = std::net::TcpStream::connect(&url).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let metrics = &body[body.find("\r\n\r\n").unwrap() + 4..];
    assert!(metrics.contains("# TYPE kcoro_channel_sends_total counter"));
    assert!(metrics.contains("kcoro_channel_capacity{channel=\"demo.results\""), "{metrics}");
    assert!(metrics.contains("kcoro_sched_workers 2"), "{metrics}");
    assert!(
        metrics.contains("# TYPE kcoro_coroutines gauge\nkcoro_coroutines{state=\"running\"} "),
        "{metrics}"
    );
    assert!(metrics.contains("\nkcoro_deadlock 0\n"), "the demo runs: {metrics}");
    // promtool, when installed, is the format's own validator.
    let file = tmp("metrics.txt");
    std::fs::write(&file, metrics).unwrap();
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
    {
        Ok(out) => assert!(out.status.success(), "promtool: {}{}", text(&out.stdout), text(&out.stderr)),
        Err(_) => {
            eprintln!("note: promtool not installed; the format is checked by kcoro's parser test only")
        }
    }
}

/// One scrape of `url`'s /metrics: the body.
fn scrape(url: &str) -> String {
    let mut s = std::net::TcpStream::connect(url).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    body[body.find("\r\n\r\n").unwrap() + 4..].to_string()
}

#[test]
fn prometheus_says_when_the_target_is_down_and_follows_it_back() {
    let mut server = serve("prom-restart");
    let addr = server.1.clone();
    let mut child = Command::new(KCORO)
        .args(["chanmon", &addr, "--prometheus", "127.0.0.1:0", "--timeout", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let _child = KillOnDrop(child);
    let url =
        first.trim().strip_prefix("serving http://").expect(&first).trim_end_matches("/metrics").to_string();
    let up = scrape(&url);
    assert!(up.contains("\nkcoro_chanmon_up 1\n") && up.contains("channel=\"jobs\""), "{up}");

    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let down = scrape(&url);
    assert!(down.contains("\nkcoro_chanmon_up 0\n"), "{down}");
    assert!(!down.contains("kcoro_channel_"), "no stale counters while down: {down}");

    let _back = serve("prom-restart");
    let again = scrape(&url);
    assert!(again.contains("\nkcoro_chanmon_up 1\n") && again.contains("channel=\"jobs\""), "{again}");

    // Scrapes at once (two Prometheus servers, or one and a curl): each is answered. A
    // sample waits for the target's answers while it holds the source; the second scrape
    // used to block the endpoint's only worker on a thread mutex, and none answered again.
    let at_once: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(&url).unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                let mut body = String::new();
                let _ = s.read_to_string(&mut body);
                body
            })
        })
        .collect();
    for t in at_once {
        let body = t.join().unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK") && body.contains("\nkcoro_chanmon_up 1\n"), "{body}");
    }
}

/// Runs tmux on this test process's own server. tmux ends a server when its last session
/// goes, and a session started while it is ending fails ("server exited unexpectedly"):
/// the screen tests run side by side, each killing its session at the end, so one could
/// start as another ended the server. A session that waits for this process keeps the
/// server alive until it exits (and then removes the socket).
fn tmux(args: &[&str]) -> Option<Output> {
    static KEEP: std::sync::Once = std::sync::Once::new();
    let pid = std::process::id();
    let socket = std::env::temp_dir().join(format!("kcoro-chanmon-tmux-{pid}"));
    let on_server = || {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&socket);
        c
    };
    KEEP.call_once(|| {
        let wait = format!("while kill -0 {pid} 2>/dev/null; do sleep 1; done; rm -f {}", socket.display());
        let _ = on_server().args(["new-session", "-d", "-s", "keep", &wait]).output();
    });
    on_server().args(args).output().ok()
}

/// Waits until the pane shows `what`; returns the screen.
fn wait_for(session: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = tmux(&["capture-pane", "-p", "-t", session]).expect("tmux");
        let screen = text(&out.stdout);
        if screen.contains(what) {
            return screen;
        }
        assert!(Instant::now() < deadline, "never showed {what:?}; screen:\n{screen}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn live_screen_in_a_real_terminal() {
    let cmd = format!("{KCORO} chanmon --demo --interval 0.2");
    let Some(screen) = Screen::start("chanmon", &cmd, 120, 40) else { return };
    let shown = wait_for(&screen.session, "demo.results");
    assert!(shown.contains("scheduler") && shown.contains("? help"), "{shown}");
    wait_for(&screen.session, "kB/s"); // a second sample gave rates
    screen.keys(&["s"]);
    wait_for(&screen.session, "sort: sends/s");
    screen.keys(&["?"]);
    wait_for(&screen.session, "pause or resume sampling");
    screen.keys(&["Escape"]);
    screen.keys(&["/", "t", "i", "c", "k", "Enter"]);
    let shown = wait_for(&screen.session, "filter: tick");
    assert!(shown.contains("demo.ticks") && !shown.contains("demo.ingress"), "{shown}");
    screen.keys(&["Enter"]);
    wait_for(&screen.session, "demo.ticks (id");
    screen.keys(&["q"]);
    assert_eq!(screen.exit_code(), "0");
}

/// A tmux session running `cmd` (then writing its exit code to a file); killed on drop.
struct Screen {
    session: String,
    done: std::path::PathBuf,
}

impl Screen {
    /// `None` (with a note) when tmux is not installed.
    fn start(name: &str, cmd: &str, width: u16, height: u16) -> Option<Screen> {
        if tmux(&["-V"]).is_none_or(|o| !o.status.success()) {
            eprintln!("note: tmux is not installed; skipping the real-terminal test");
            return None;
        }
        let session = format!("{name}-{}", std::process::id());
        let done = tmp(&format!("{name}-exit"));
        let _ = std::fs::remove_file(&done);
        // Written aside and renamed: `echo > done` creates the file before it writes the
        // code, and a poll between the two read an empty exit code.
        let cmd = format!("{cmd}; echo $? > {0}.part && mv {0}.part {0}; sleep 30", done.display());
        let (w, h) = (width.to_string(), height.to_string());
        let started = tmux(&["new-session", "-d", "-s", &session, "-x", &w, "-y", &h, &cmd]).unwrap();
        assert!(started.status.success(), "{}", text(&started.stderr));
        Some(Screen { session, done })
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        tmux(&args);
    }

    /// The exit code, after `q`.
    fn exit_code(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.done.exists() {
            assert!(Instant::now() < deadline, "q did not quit; screen:\n{}", wait_for(&self.session, ""));
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&self.done).unwrap().trim().to_string()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.session]);
    }
}

#[test]
fn a_stopped_target_leaves_the_screen_warning_and_answering_q() {
    let server = serve("stopped");
    let cmd = format!("{KCORO} chanmon {} --interval 0.2 --timeout 30", server.1);
    let Some(screen) = Screen::start("chanmon-stopped", &cmd, 120, 30) else { return };
    wait_for(&screen.session, "jobs");
    let pid = server.0.id().to_string();
    let stop = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(stop.success());
    struct Cont(String);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-CONT", &self.0]).status();
        }
    }
    let _cont = Cont(pid);
    // The sample in flight waits for its 30 s timeout; the screen says so meanwhile...
    wait_for(&screen.session, "NO ANSWER for");
    // ...and quits at once on q, with the source-failed code.
    screen.keys(&["q"]);
    assert_eq!(screen.exit_code(), "3");
}

#[test]
fn a_replay_on_screen_says_so_and_ends_cleanly() {
    let file = tmp("screen-rec.ndjson");
    let f = file.to_str().unwrap();
    let out = kcoro(&["chanmon", "--demo", "--json", f, "--samples", "3", "--interval", "0.05"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cmd = format!("{KCORO} chanmon --replay {f} --interval 0.1");
    let Some(screen) = Screen::start("chanmon-replay", &cmd, 160, 30) else { return };
    let shown = wait_for(&screen.session, "the replay ended after 3 samples");
    assert!(shown.contains(&format!("replay of {f} (recorded from demo)")), "{shown}");
    screen.keys(&["q"]);
    assert_eq!(screen.exit_code(), "0", "a replay played to its end is a success");
}

const CHILD: &str = "KCORO_CHANMON_TEST_CHILD";

/// Not a test: the monitored program when this binary is re-executed with `CHILD` set
/// (`deadlock ADDR` or `waits ADDR`; see [`Program::start`]). Without it, returns at once.
#[test]
fn child() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let Some((what, addr)) = spec.split_once(' ') else { panic!("bad child spec {spec:?}") };
    let failed = match what {
        "deadlock" => deadlock_example::run(addr).map(|never| match never {}),
        "waits" => waits(addr),
        _ => panic!("bad child spec {spec:?}"),
    };
    panic!("the child could not start: {failed:?}");
}

/// A program with a coroutine waiting on `jobs`, which nobody sends on, and a channel
/// `flowing` that a ticker sends on every 10 ms to a reader. Waits for ever. The coroutine
/// on `jobs` starts (and parks) when a line arrives on stdin ([`Program::go`]), so that a
/// test can start its park after a monitor's first look: how long it has been parked is
/// then time the monitor watched, however long the monitor took to start.
fn waits(addr: &str) -> Result<(), String> {
    use kcoro::SpawnOptions;
    use kcoro::chan::Builder;
    let rt = kcoro::Runtime::builder().workers(2).build().map_err(|e| e.to_string())?;
    let at = addr.to_string();
    let monitor = rt
        .try_block_on(move || kcoro_ipc::monitor::serve(&at))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let (_jobs_tx, jobs_rx) = Builder::<u32>::buffered(8).name("jobs").build();
    let (flow_tx, flow_rx) = Builder::<u32>::buffered(4).name("flowing").build();
    let h = rt.handle();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        h.spawn_with(SpawnOptions::new().name(name), f).map_err(|e| e.to_string())
    };
    let _ticker = spawn(
        "ticker",
        Box::new(move || {
            for i in 0.. {
                if flow_tx.send(i).is_err() {
                    return;
                }
                kcoro::sleep(Duration::from_millis(10));
            }
        }),
    )?;
    let _reader = spawn("flow-reader", Box::new(move || while flow_rx.recv().is_ok() {}))?;
    println!("serving the monitor on {}", monitor.addr());
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).map_err(|e| e.to_string())?;
    let _worker = spawn("jobs-worker", Box::new(move || while jobs_rx.recv().is_ok() {}))?;
    loop {
        std::thread::park();
    }
}

/// A monitored program: this test binary re-executed as [`child`]; killed on drop. Its
/// stderr is collected as it comes.
struct Program {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Program {
    /// Starts `what` (`deadlock` or `waits`) serving the monitor on a fresh socket, and
    /// waits until it says it does.
    fn start(what: &str, name: &str) -> Program {
        let sock = tmp(name).with_extension("sock");
        let _ = std::fs::remove_file(&sock);
        let addr = format!("unix:{}", sock.display());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(CHILD, format!("{what} {addr}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut err, collected) = (child.stderr.take().unwrap(), Arc::clone(&stderr));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let stdin = child.stdin.take();
        let program = Program { child, stdin, addr, stderr };
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("the {what} program ended before serving: {}", program.stderr.lock().unwrap());
            }
            // The test harness may print `test child ... ` on the same line first.
            if line.contains("serving the monitor on ") {
                // Keep draining its stdout so it never blocks on a full pipe.
                std::thread::spawn(move || for _ in out.lines() {});
                return program;
            }
        }
    }

    /// Tells a `waits` program to start its coroutine on `jobs`.
    fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("the program's stdin");
        stdin.write_all(b"go\n").and_then(|()| stdin.flush()).expect("tell the program to go");
    }

    /// Its stderr, once `done` holds of it (fails after 20 s).
    fn stderr_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let err = self.stderr.lock().unwrap().clone();
            if done(&err) {
                return err;
            }
            assert!(Instant::now() < deadline, "the program's stderr never showed {what}: {err}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_deadlocked_program_is_reported_by_chanmon_and_by_its_own_runtime() {
    let program = Program::start("deadlock", "deadlock");
    let names_both =
        |s: &str| s.contains("\"a\" waits on recv on left") && s.contains("\"b\" waits on recv on right");
    // Bounded: without a deadlock the check would watch for ever.
    let out =
        kcoro(&["chanmon", &program.addr, "--check", "deadlock", "--interval", "0.1", "--samples", "300"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("check crossed: deadlock (the same deadlock in 2 samples"), "{err}");
    assert!(names_both(&err), "the report names both coroutines and both channels: {err}");
    // The program's runtime saw it too (Builder::on_deadlock(OnDeadlock::Report, ..)).
    let own = program.stderr_until("the deadlock report", names_both);
    assert!(own.contains("kcoro: deadlock: all 2 coroutines are parked"), "{own}");

    // A sample carries the report and marks the two, with the channels they wait on.
    let out = kcoro(&["chanmon", &program.addr, "--once"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sample = &lines(&out)[0];
    assert!(names_both(sample["coroutines"]["deadlock"].as_str().unwrap()), "{sample}");
    let channel_id = |name: &str| {
        sample["channels"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["id"].clone()
    };
    for (coroutine, channel) in [("a", "left"), ("b", "right")] {
        let c =
            sample["coroutines"]["list"].as_array().unwrap().iter().find(|c| c["name"] == coroutine).unwrap();
        assert_eq!((c["in_deadlock"].as_bool(), c["state"].as_str()), (Some(true), Some("parked")), "{c}");
        assert_eq!(c["wait_channel"]["id"], channel_id(channel), "{c}");
    }

    // And the Prometheus endpoint says so.
    let mut mon = Command::new(KCORO)
        .args(["chanmon", &program.addr, "--prometheus", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(mon.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first.trim().strip_prefix("serving http://").unwrap_or_default().trim_end_matches("/metrics");
    let metrics = if url.is_empty() { String::new() } else { scrape(url) };
    let _ = mon.kill();
    let _ = mon.wait();
    assert!(metrics.contains("\nkcoro_deadlock 1\n"), "{first}{metrics}");
    assert!(metrics.contains("kcoro_coroutines{state=\"parked\"} "), "{metrics}");
}

#[test]
fn stuck_flags_a_receiver_nobody_sends_to_and_not_a_flowing_channel() {
    let mut program = Program::start("waits", "stuck");
    // Checked in this order on every sample: `flowing` for 1 s first, then any channel
    // for 2 s; so by the time the second crosses, the first had its chance for 1 s more.
    let mut mon = Command::new(KCORO)
        .args(["chanmon", &program.addr, "--json", "--check", "flowing:stuck for 1s"])
        .args(["--check", "stuck for 2s", "--interval", "0.1", "--samples", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcoro runs");
    // The park on `jobs` starts after chanmon's first sample (it once started long
    // before, on a busy machine: the check crossed on the second sample, 0.1 s in).
    let mut stdout = BufReader::new(mon.stdout.take().expect("chanmon's stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("chanmon's first sample");
    program.go();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("chanmon's samples");
    let mut out = mon.wait_with_output().expect("chanmon ends");
    out.stdout = format!("{first}{rest}").into_bytes();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("check crossed: stuck for 2s\n"), "{err}");
    assert!(err.contains("\"jobs-worker\" waits on recv on jobs: stuck: no sender on jobs for"), "{err}");
    assert!(!err.contains("flowing"), "{err}");
    // Not vacuous: the samples watched the reader parked on `flowing`, for longer than the
    // flowing check's second.
    let samples = lines(&out);
    let clock = |s: &serde_json::Value| s["taken_ns"].as_u64().unwrap();
    assert!(clock(&samples[samples.len() - 1]) - clock(&samples[0]) >= 2_000_000_000);
    let reader_parked = samples.iter().any(|s| {
        s["coroutines"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "flow-reader" && c["wait"] == "recv on flowing")
    });
    assert!(reader_parked, "the reader never showed parked on flowing");
}

#[test]
fn the_coroutine_view_shows_what_a_real_process_waits_on() {
    let mut program = Program::start("waits", "coro-view");
    program.go();
    // A long --stuck-after: the table shows the wait itself, not the lint's mark.
    let cmd = format!("{KCORO} chanmon {} --interval 0.2 --stuck-after 10m", program.addr);
    let Some(screen) = Screen::start("chanmon-coros", &cmd, 120, 30) else { return };
    wait_for(&screen.session, "flowing");
    screen.keys(&["c"]);
    let shown = wait_for(&screen.session, "recv on jobs");
    assert!(shown.contains("jobs-worker") && shown.contains("sort: id"), "{shown}");
    assert!(shown.contains("runnable"), "the scheduler panel counts by state: {shown}");
    // Filter down to the worker and open it.
    screen.keys(&["/", "w", "o", "r", "k", "e", "r", "Enter"]);
    wait_for(&screen.session, "filter: worker");
    screen.keys(&["Enter"]);
    let detail = wait_for(&screen.session, "\"jobs-worker\"");
    assert!(detail.contains("waits on      recv on jobs"), "{detail}");
    assert!(detail.contains("counted from the first look at this park"), "{detail}");
    assert!(detail.contains("spawned at    ") && detail.contains("chanmon.rs:"), "{detail}");
    screen.keys(&["Escape", "c"]);
    wait_for(&screen.session, "c coroutines");
    screen.keys(&["q"]);
    assert_eq!(screen.exit_code(), "0");
}
