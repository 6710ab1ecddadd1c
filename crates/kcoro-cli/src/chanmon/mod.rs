//! `kcoro chanmon`: a live monitor of a kcoro process's channels and scheduler.
//!
//! A [`Source`](source::Source) gives [`Sample`](sample::Sample)s (a process attached over
//! kcoro IPC, the in-process demo, or a recording): channels, scheduler counters,
//! coroutines and the program's own metrics; [`State`](state::State) turns consecutive samples into exact rates and
//! follows each coroutine's park and the reported deadlock across samples (`corostate`);
//! the modes show or export them:
//!
//! - the screen (the default): channels, coroutines (`coroview`) or the program's metrics
//!   (`metricview`),
//! - `--json` / `--once`: NDJSON lines, one sample each,
//! - `--check EXPR`: exit 1 when a threshold is crossed, the source reports the same
//!   deadlock twice, or a coroutine is stuck,
//! - `--prometheus ADDR`: a `/metrics` endpoint.
//!
//! Exit codes: 0 done, 1 a `--check` crossed, 2 bad usage, 3 the source failed (cannot
//! attach, or the monitored process went away).

mod check;
mod corostate;
mod coroview;
mod demo;
mod keys;
mod metricview;
pub mod sample;
mod source;
pub mod state;
mod tick;
mod tui;
mod view;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::args::ChanmonArgs;
use check::Check;
pub use check::humantime_secs;
use sample::Sample;
use source::{Local, Remote, Replay, ReplayError, Source};
use state::State;
use tick::Ticker;

/// Exit code when the source fails.
const SOURCE_FAILED: u8 = 3;
/// Exit code for bad usage: a bad flag, EXPR, ADDR or recording.
const BAD_USAGE: u8 = 2;

fn usage_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("kcoro chanmon: {e}");
    ExitCode::from(BAD_USAGE)
}

pub fn run(a: &ChanmonArgs) -> ExitCode {
    let a = &match a.resolved() {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let checks: Vec<Check> = match a.check.iter().map(|c| c.parse()).collect::<Result<_, String>>() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    if let Some(addr) = &a.addr
        && let Err(e) = kcoro_ipc::Addr::parse(addr)
    {
        return usage_error(e);
    }
    // The demo's runtime must outlive the source reading it.
    let demo = if a.demo {
        match demo::start() {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("kcoro chanmon: cannot start the demo: {e}");
                return ExitCode::from(SOURCE_FAILED);
            }
        }
    } else {
        None
    };
    let source: Result<Box<dyn Source>, String> = match (&demo, &a.replay, &a.addr) {
        (Some(d), _, _) => Ok(Box::new(Local::new(d.runtime.handle(), "demo", d.metrics()))),
        (None, Some(file), _) => match Replay::open(file) {
            Ok(r) => Ok(Box::new(r) as Box<dyn Source>),
            Err(ReplayError::Garbled(e)) => return usage_error(e),
            Err(ReplayError::Io(e)) => Err(e),
        },
        (None, None, Some(addr)) => {
            Remote::connect(addr, a.secret.as_deref(), a.timeout).map(|r| Box::new(r) as Box<dyn Source>)
        }
        (None, None, None) => return usage_error("give ADDR to attach to, --demo, or --replay FILE"),
    };
    let mut source = match source {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kcoro chanmon: {e}");
            return ExitCode::from(SOURCE_FAILED);
        }
    };
    if let Some(listen) = &a.prometheus {
        return prometheus(listen, source, a);
    }
    if a.json.is_some() || a.once || !checks.is_empty() || a.samples.is_some() {
        return headless(&mut *source, checks, a);
    }
    let color = !a.no_color && std::env::var_os("NO_COLOR").is_none();
    let mut app = view::App::new(a.ascii, color);
    app.state.coros.stuck_after = a.stuck_after;
    app.replay = source.replay_of().map(str::to_string);
    match tui::run(source, app, a.interval) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(e)) => {
            eprintln!("kcoro chanmon: {e}");
            ExitCode::from(SOURCE_FAILED)
        }
        Err(e) => {
            eprintln!("kcoro chanmon: {e}");
            ExitCode::from(SOURCE_FAILED)
        }
    }
}

/// `--json`, `--once`, `--check`: samples on a tick, printed and checked.
fn headless(source: &mut dyn Source, mut checks: Vec<Check>, a: &ChanmonArgs) -> ExitCode {
    let mut out: Box<dyn Write> = match &a.json {
        Some(Some(path)) if path != "-" => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => return usage_error(format!("{path}: {e}")),
        },
        _ => Box::new(std::io::stdout().lock()),
    };
    let print = a.json.is_some() || a.once;
    let limit = if a.once { Some(1) } else { a.samples };
    let mut state = State::new();
    state.coros.stuck_after = a.stuck_after;
    let mut ticker = Ticker::new(a.interval, Instant::now());
    let mut taken = 0u64;
    loop {
        let sample: Sample = match source.next_sample() {
            Ok(Some(s)) => s,
            Ok(None) => break, // a recording ended
            Err(e) => {
                let _ = out.flush();
                eprintln!("kcoro chanmon: {e}");
                return ExitCode::from(SOURCE_FAILED);
            }
        };
        if print && writeln!(out, "{}", sample.to_line()).and_then(|()| out.flush()).is_err() {
            return ExitCode::SUCCESS; // the reader went away (`| head`)
        }
        if taken == 0
            && let Some(e) = checks.iter().find_map(|c| c.cannot_judge(&sample))
        {
            let _ = out.flush();
            return usage_error(e);
        }
        state.update(sample);
        taken += 1;
        for c in &mut checks {
            if let Some(msg) = c.evaluate(&state) {
                let _ = out.flush();
                eprintln!("{msg}");
                return ExitCode::from(1);
            }
        }
        if limit.is_some_and(|n| taken >= n) {
            break;
        }
        if a.replay.is_none() {
            ticker.taken(Instant::now());
            std::thread::sleep(ticker.until_due(Instant::now()));
        }
    }
    ExitCode::SUCCESS
}

/// `--prometheus ADDR`: serves the source's latest counters at `/metrics` until killed
/// (or for `--samples` scrapes' worth of intervals, for tests).
fn prometheus(listen: &str, source: Box<dyn Source>, a: &ChanmonArgs) -> ExitCode {
    // kcoro's mutex: a scrape that finds another one sampling parks its coroutine. The
    // sample waits for IPC answers (parking while it holds the lock); with a thread mutex
    // a second scrape blocked the endpoint's one worker, and the first never finished.
    let source = kcoro::sync::Mutex::new(source);
    let render = move || {
        let Ok(mut s) = source.lock() else {
            return format!("# scrape cancelled\n{}", up_gauge(false));
        };
        // A failed sample is reported, and the next scrape tries again (the source
        // connects anew), so the endpoint follows its target through a restart.
        match s.next_sample() {
            Ok(Some(sample)) => up_gauge(true) + &sample.to_prometheus(),
            Ok(None) => up_gauge(true),
            Err(e) => format!("# source failed: {}\n{}", e.replace('\n', " "), up_gauge(false)),
        }
    };
    let rt = match kcoro::Runtime::builder().workers(1).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kcoro chanmon: {e}");
            return ExitCode::from(SOURCE_FAILED);
        }
    };
    let listen = listen.to_string();
    let bound = rt.block_on(move || kcoro::monitor::serve_with(&listen, render));
    match bound {
        Ok(addr) => println!("serving http://{addr}/metrics"),
        Err(e) => {
            eprintln!("kcoro chanmon: --prometheus: {e}");
            return ExitCode::from(2);
        }
    }
    let _ = std::io::stdout().flush();
    match a.samples {
        Some(n) => std::thread::sleep(a.interval * u32::try_from(n).unwrap_or(u32::MAX)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
    ExitCode::SUCCESS
}

/// `kcoro_chanmon_up`: whether the scrape's sample of the monitored process succeeded
/// (Prometheus's own `up` only says whether chanmon answered).
fn up_gauge(up: bool) -> String {
    format!(
        "# HELP kcoro_chanmon_up 1 when chanmon sampled the monitored process for this scrape, 0 when it could not.\n\
         # TYPE kcoro_chanmon_up gauge\nkcoro_chanmon_up {}\n",
        u8::from(up)
    )
}
