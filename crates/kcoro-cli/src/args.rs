//! Command-line parsing, by hand: clap (the intended parser) is not in the offline
//! registry cache, and the grammar is small. Accepts `--flag value` and `--flag=value`.

use std::time::Duration;

use kcoro::chan::Kind;

use crate::flags::Flags;

pub const USAGE: &str = "\
usage: kcoro demo [OPTIONS]
       kcoro demo spawn [--coroutines N] [--runtime-workers W]
       kcoro plugin info LIB
       kcoro plugin call LIB ENTRY [--data @FILE|-|TEXT] [--header K=V]... [--method M]
                                   [--path P] [--query Q] [--timeout S]
       kcoro plugin stream LIB ENTRY [--data @FILE|-|TEXT] [--timeout S]
       kcoro localadapter-demo [--flows N] [--scenario NAME] [--seed N] [--trace FILE]

kcoro demo (the default command) runs a channel pipeline for a few seconds:
  producers -> stage1 -> workers -> stage2 -> sink
with a live progress line on stderr, then prints a report on stdout and checks that
every message arrived exactly once (exit status 1 if not).

options:
  --producers N          producer coroutines (default 4)
  --workers M            worker coroutines between the two stages (default 4)
  --capacity C           capacity of buffered stages; unlimited stages are paced to
                         about C queued values (default 1024)
  --stage1 KIND          rendezvous | buffered | conflated | unlimited (default buffered)
  --stage2 KIND          same kinds (default rendezvous)
  --payload BYTES        payload bytes per message (default 256)
  --seconds S            how long the producers run; fractions allowed (default 3)
  --runtime-workers W    kcoro worker threads (default: available parallelism)
  --inject-fault F       lose | duplicate: one worker mishandles one message, to show
                         that the exactly-once check catches it
  -h, --help             this text

kcoro demo spawn: spawns N coroutines (default 100000) that sleep, yield and join,
then passes a token around a ring of 1000 coroutines.

kcoro plugin loads a plugin library (kcoro / nylon-ring ABI version 1):
  info     its name, version, ABI, capabilities and entries
  call     one unary call: the reply's bytes on stdout, its status on stderr; exit 0
           if the status is Ok, 1 otherwise
  stream   a stream: each frame's bytes on stdout followed by a newline, the terminal
           status on stderr; exit 0 if it ends with StreamEnd
  --data   the payload: @FILE reads a file, - reads stdin, anything else is the text
  --header a request header, repeatable (call only)
  --timeout seconds to wait for the reply or the whole stream (default 30)

kcoro localadapter-demo runs one local adapter scenario (default many_small_flows)
through the whole runtime stack on a deterministic runtime and prints its summary
(counts only); exit 0 if every flow ended as planned and the sink saw exactly the plan.
  --flows N      flows instead of the scenario's default (1..=64)
  --scenario S   one of the eleven scenarios (see kcheck localadapter)
  --seed N       profile seed (default 1)
  --trace FILE   write the run's trace (safe events, JSON lines) to FILE";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Pipeline(PipelineArgs),
    Spawn(SpawnArgs),
    Plugin(PluginArgs),
    LocalAdapterDemo(LocalDemoArgs),
    Help,
}

/// What `kcoro localadapter-demo` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDemoArgs {
    pub flows: Option<usize>,
    pub scenario: String,
    pub seed: u64,
    pub trace: Option<std::path::PathBuf>,
}

/// What `kcoro plugin` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginAction {
    Info,
    Call { entry: String },
    Stream { entry: String },
}

/// Where a plugin call's payload comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Text(String),
    File(String),
    Stdin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginArgs {
    pub lib: String,
    pub action: PluginAction,
    pub data: Data,
    pub headers: Vec<(String, String)>,
    pub method: String,
    pub path: String,
    pub query: String,
    pub timeout: Duration,
}

/// A deliberate bug for the check to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A worker drops one message without passing it on.
    Lose,
    /// A worker forwards one message twice.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PipelineArgs {
    pub producers: usize,
    pub workers: usize,
    pub capacity: usize,
    pub stage1: Kind,
    pub stage2: Kind,
    pub payload: usize,
    pub duration: Duration,
    pub runtime_workers: Option<usize>,
    pub fault: Option<Fault>,
}

impl Default for PipelineArgs {
    fn default() -> Self {
        PipelineArgs {
            producers: 4,
            workers: 4,
            capacity: 1024,
            stage1: Kind::Buffered,
            stage2: Kind::Rendezvous,
            payload: 256,
            duration: Duration::from_secs(3),
            runtime_workers: None,
            fault: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnArgs {
    pub coroutines: u64,
    pub runtime_workers: Option<usize>,
}

const MAX_COROUTINES: u64 = 10_000_000;
const MAX_PIPELINE_COROUTINES: u64 = 100_000;
const MAX_CAPACITY: u64 = 1 << 24;
const MAX_PAYLOAD: u64 = 1 << 20;
const MAX_SECONDS: f64 = 3600.0;
const MAX_THREADS: u64 = 4096;

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        None => Ok(Command::Pipeline(PipelineArgs::default())),
        Some("demo") => match args.get(1).map(String::as_str) {
            Some("spawn") => parse_spawn(&args[2..]),
            _ => parse_pipeline(&args[1..]),
        },
        Some("plugin") => parse_plugin(&args[1..]),
        Some("localadapter-demo") => parse_local_demo(&args[1..]),
        Some("-h" | "--help" | "help") => Ok(Command::Help),
        Some(other) => Err(format!("unknown command {other:?}")),
    }
}

fn parse_pipeline(args: &[String]) -> Result<Command, String> {
    let mut out = PipelineArgs::default();
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag()? {
        match flag.as_str() {
            "-h" | "--help" => {
                flags.switch(&flag)?;
                return Ok(Command::Help);
            }
            "--producers" => out.producers = flags.number(&flag, 1, MAX_PIPELINE_COROUTINES)? as usize,
            "--workers" => out.workers = flags.number(&flag, 1, MAX_PIPELINE_COROUTINES)? as usize,
            "--capacity" => out.capacity = flags.number(&flag, 1, MAX_CAPACITY)? as usize,
            "--stage1" => out.stage1 = parse_kind(&flag, &flags.value(&flag)?)?,
            "--stage2" => out.stage2 = parse_kind(&flag, &flags.value(&flag)?)?,
            "--payload" => out.payload = flags.number(&flag, 0, MAX_PAYLOAD)? as usize,
            "--seconds" => out.duration = parse_seconds(&flag, &flags.value(&flag)?)?,
            "--runtime-workers" => out.runtime_workers = Some(flags.number(&flag, 1, MAX_THREADS)? as usize),
            "--inject-fault" => {
                out.fault = Some(match flags.value(&flag)?.as_str() {
                    "lose" => Fault::Lose,
                    "duplicate" => Fault::Duplicate,
                    v => return Err(format!("{flag}: {v:?} is not one of lose, duplicate")),
                })
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Command::Pipeline(out))
}

fn parse_local_demo(args: &[String]) -> Result<Command, String> {
    let mut out = LocalDemoArgs { flows: None, scenario: "many_small_flows".into(), seed: 1, trace: None };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag()? {
        match flag.as_str() {
            "-h" | "--help" => {
                flags.switch(&flag)?;
                return Ok(Command::Help);
            }
            "--flows" => out.flows = Some(flags.number(&flag, 1, 64)? as usize),
            "--scenario" => out.scenario = flags.value(&flag)?,
            "--seed" => out.seed = flags.number(&flag, 0, u64::MAX / 2)?,
            "--trace" => out.trace = Some(flags.value(&flag)?.into()),
            _ => return Err(format!("unknown option {flag} for localadapter-demo")),
        }
    }
    Ok(Command::LocalAdapterDemo(out))
}

fn parse_spawn(args: &[String]) -> Result<Command, String> {
    let mut out = SpawnArgs { coroutines: 100_000, runtime_workers: None };
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag()? {
        match flag.as_str() {
            "-h" | "--help" => {
                flags.switch(&flag)?;
                return Ok(Command::Help);
            }
            "--coroutines" => out.coroutines = flags.number(&flag, 1, MAX_COROUTINES)?,
            "--runtime-workers" => out.runtime_workers = Some(flags.number(&flag, 1, MAX_THREADS)? as usize),
            _ => return Err(format!("unknown option {flag} for demo spawn")),
        }
    }
    Ok(Command::Spawn(out))
}

fn parse_plugin(args: &[String]) -> Result<Command, String> {
    let positional = |i: usize, what: &str| {
        args.get(i).filter(|a| !a.starts_with('-')).cloned().ok_or_else(|| format!("plugin: missing {what}"))
    };
    let (action, rest) = match args.first().map(String::as_str) {
        Some("-h" | "--help") => return Ok(Command::Help),
        Some("info") => (PluginAction::Info, 2),
        Some("call") => (PluginAction::Call { entry: positional(2, "ENTRY")? }, 3),
        Some("stream") => (PluginAction::Stream { entry: positional(2, "ENTRY")? }, 3),
        Some(other) => return Err(format!("plugin: unknown action {other:?} (info, call, stream)")),
        None => return Err("plugin: missing action (info, call, stream)".into()),
    };
    let mut out = PluginArgs {
        lib: positional(1, "LIB")?,
        action,
        data: Data::Text(String::new()),
        headers: Vec::new(),
        method: "GET".into(),
        path: "/".into(),
        query: String::new(),
        timeout: Duration::from_secs(30),
    };
    let is_call = matches!(out.action, PluginAction::Call { .. });
    let mut flags = Flags::new(&args[rest.min(args.len())..]);
    while let Some(flag) = flags.next_flag()? {
        match flag.as_str() {
            "-h" | "--help" => {
                flags.switch(&flag)?;
                return Ok(Command::Help);
            }
            "--data" if out.action != PluginAction::Info => {
                let v = flags.value(&flag)?;
                out.data = match (v.as_str(), v.strip_prefix('@')) {
                    ("-", _) => Data::Stdin,
                    (_, Some(file)) => Data::File(file.to_string()),
                    _ => Data::Text(v),
                };
            }
            "--header" if is_call => {
                let v = flags.value(&flag)?;
                let (k, val) = v.split_once('=').ok_or_else(|| format!("{flag}: {v:?} is not K=V"))?;
                out.headers.push((k.to_string(), val.to_string()));
            }
            "--method" if is_call => out.method = flags.value(&flag)?,
            "--path" if is_call => out.path = flags.value(&flag)?,
            "--query" if is_call => out.query = flags.value(&flag)?,
            "--timeout" if out.action != PluginAction::Info => {
                out.timeout = parse_seconds(&flag, &flags.value(&flag)?)?
            }
            _ => return Err(format!("unknown option {flag} for plugin")),
        }
    }
    Ok(Command::Plugin(out))
}

fn parse_kind(flag: &str, v: &str) -> Result<Kind, String> {
    match v {
        "rendezvous" => Ok(Kind::Rendezvous),
        "buffered" => Ok(Kind::Buffered),
        "conflated" => Ok(Kind::Conflated),
        "unlimited" => Ok(Kind::Unlimited),
        _ => Err(format!("{flag}: {v:?} is not one of rendezvous, buffered, conflated, unlimited")),
    }
}

fn parse_seconds(flag: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = v.parse().map_err(|_| format!("{flag}: {v:?} is not a number of seconds"))?;
    if !(s > 0.0 && s <= MAX_SECONDS) {
        return Err(format!("{flag}: must be more than 0 and at most {MAX_SECONDS}"));
    }
    Ok(Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_and_flags() {
        assert_eq!(parse(&[]), Ok(Command::Pipeline(PipelineArgs::default())));
        assert_eq!(parse(&args("demo")), Ok(Command::Pipeline(PipelineArgs::default())));
        let Ok(Command::Pipeline(a)) = parse(&args(
            "demo --producers 2 --workers=3 --capacity 8 --stage1 conflated --stage2=unlimited \
             --payload 0 --seconds 0.5 --runtime-workers 2 --inject-fault lose",
        )) else {
            panic!("did not parse")
        };
        assert_eq!((a.producers, a.workers, a.capacity, a.payload), (2, 3, 8, 0));
        assert_eq!((a.stage1, a.stage2), (Kind::Conflated, Kind::Unlimited));
        assert_eq!(a.duration, Duration::from_millis(500));
        assert_eq!((a.runtime_workers, a.fault), (Some(2), Some(Fault::Lose)));
        assert_eq!(
            parse(&args("demo spawn --coroutines 10")),
            Ok(Command::Spawn(SpawnArgs { coroutines: 10, runtime_workers: None }))
        );
        assert_eq!(parse(&args("demo --help")), Ok(Command::Help));
        let Ok(Command::Plugin(p)) =
            parse(&args("plugin call lib.so echo --data @in.bin --header a=b=c --method POST --timeout 2"))
        else {
            panic!("did not parse")
        };
        assert_eq!((p.lib.as_str(), &p.action), ("lib.so", &PluginAction::Call { entry: "echo".into() }));
        assert_eq!((p.data, p.headers), (Data::File("in.bin".into()), vec![("a".into(), "b=c".into())]));
        assert_eq!((p.method.as_str(), p.timeout), ("POST", Duration::from_secs(2)));
        let Ok(Command::Plugin(p)) = parse(&args("plugin stream lib.so s --data -")) else {
            panic!("stream")
        };
        assert_eq!((p.action, p.data), (PluginAction::Stream { entry: "s".into() }, Data::Stdin));
        assert!(matches!(parse(&args("plugin info lib.so")), Ok(Command::Plugin(_))));
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "demo --producers",
            "demo --producers 0",
            "demo --producers x",
            "demo --stage1 fifo",
            "demo --seconds 0",
            "demo --seconds nan",
            "demo --frobnicate 1",
            "demo stray",
            "demo --help=1",
            "demo spawn --workers 2",
            "frob",
            "plugin",
            "plugin info",
            "plugin frob lib.so",
            "plugin call lib.so",
            "plugin call lib.so echo --header novalue",
            "plugin info lib.so --data x",
            "plugin stream lib.so s --header a=b",
            "plugin call lib.so echo --timeout 0",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad} parsed");
        }
    }
}
