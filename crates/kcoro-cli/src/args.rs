//! The `kcoro` command line, declared with clap: every subcommand documents its flags and
//! shows an example in `--help`; a usage error exits 2 with clap's message and suggestions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kcoro::chan::Kind;
use kcoro_host::Layout;

const MAX_COROUTINES: u64 = 10_000_000;
const MAX_PIPELINE_COROUTINES: u64 = 100_000;
const MAX_CAPACITY: u64 = 1 << 24;
const MAX_PAYLOAD: u64 = 1 << 20;
const MAX_SECONDS: f64 = 3600.0;
const MAX_THREADS: u64 = 4096;

/// kcoro: stackful coroutines, Go/Kotlin channels, plugins, distributed channels.
#[derive(Debug, Parser)]
#[command(
    name = "kcoro",
    version,
    propagate_version = true,
    after_help = "\
Examples:
  kcoro demo --seconds 1                  the channel pipeline for one second
  kcoro plugin info target/debug/libkcoro_plugin_echo.so
  kcoro ipc serve --listen unix:/tmp/k.sock --channel jobs:buffered:1024
  kcoro completions bash > /etc/bash_completion.d/kcoro

With no command, runs `kcoro demo`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the command line asks for.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a channel pipeline with live rates and an exactly-once check (the default)
    Demo(DemoArgs),
    /// Load a plugin library and talk to it
    Plugin(PluginArgs),
    /// Run one local adapter scenario through the whole runtime stack
    #[command(
        name = "localadapter-demo",
        after_help = "\
Examples:
  kcoro localadapter-demo --flows 4 --trace trace.jsonl
  kcoro localadapter-demo --scenario target_error_mapping --seed 7"
    )]
    LocalAdapterDemo(LocalDemoArgs),
    /// Serve channels to other processes, or use a server's channels
    #[command(subcommand)]
    Ipc(IpcCommand),
    /// Watch a process's channels and scheduler live, or export their counters
    #[command(after_help = CHANMON_HELP)]
    Chanmon(ChanmonArgs),
    /// Run a TCP proxy: listeners, backend pools, health checks, reload on SIGHUP
    #[command(after_help = PROXY_HELP)]
    Proxy(ProxyArgs),
    /// Print a shell completion script
    #[command(after_help = "Example:\n  kcoro completions zsh > ~/.zfunc/_kcoro")]
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

const PROXY_HELP: &str = "\
The configuration file is TOML: [[listener]] tables (name, bind, pool, max_connections,
idle_timeout, proxy_protocol) and [[pool]] tables (name, balance, backends,
connect_timeout, [pool.health]); docs/PROXY.md has every key.

Signals: SIGHUP reloads the file (a file with an error is reported and the running
configuration stays); SIGTERM or SIGINT stop accepting, wait up to shutdown_grace for
open connections, close the rest and exit.

Examples:
  kcoro proxy --config proxy.toml
  kcoro proxy --config proxy.toml --check          check the file and exit
  kcoro proxy --config proxy.toml --monitor unix:/tmp/proxy.sock
  kcoro chanmon unix:/tmp/proxy.sock               its runtime and coroutines, live";

/// `kcoro proxy --config FILE`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The configuration file (TOML)
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: std::path::PathBuf,
    /// Check the file and exit: 0 if it is valid, 2 with the error and its line if not
    #[arg(long)]
    pub check: bool,
    /// Make the proxy attachable by `kcoro chanmon` at ADDR (unix:PATH or tcp:HOST:PORT)
    #[arg(long, value_name = "ADDR")]
    pub monitor: Option<String>,
}

/// `kcoro demo [OPTIONS]` or `kcoro demo spawn`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
The pipeline: producers -> stage1 -> workers -> stage2 -> sink, with a live progress
line on stderr, then a report on stdout and a check that every message arrived exactly
once (exit status 1 if not).

Examples:
  kcoro demo
  kcoro demo --seconds 0.5 --stage1 unlimited --stage2 conflated
  kcoro demo --inject-fault lose          the check must fail (exit 1)
  kcoro demo spawn --coroutines 1000000"
)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub spawn: Option<DemoCommand>,
    #[command(flatten)]
    pub pipeline: PipelineFlags,
}

/// Subcommands of `kcoro demo`.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Spawn N coroutines that sleep, yield and join, then pass a token around a ring
    #[command(after_help = "Example:\n  kcoro demo spawn --coroutines 100000 --runtime-workers 2")]
    Spawn(SpawnArgs),
}

/// A deliberate bug for the check to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// A worker drops one message without passing it on.
    Lose,
    /// A worker forwards one message twice.
    Duplicate,
}

/// The four channel kinds, as flags name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Rendezvous,
    Buffered,
    Conflated,
    Unlimited,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Rendezvous => Kind::Rendezvous,
            KindArg::Buffered => Kind::Buffered,
            KindArg::Conflated => Kind::Conflated,
            KindArg::Unlimited => Kind::Unlimited,
        }
    }
}

/// The pipeline demo's flags.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct PipelineFlags {
    /// Producer coroutines
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=MAX_PIPELINE_COROUTINES))]
    pub producers: u64,
    /// Worker coroutines between the two stages
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=MAX_PIPELINE_COROUTINES))]
    pub workers: u64,
    /// Capacity of buffered stages; unlimited stages are paced to about this many queued values
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=MAX_CAPACITY))]
    pub capacity: u64,
    /// Kind of the first stage
    #[arg(long, value_enum, default_value_t = KindArg::Buffered)]
    pub stage1: KindArg,
    /// Kind of the second stage
    #[arg(long, value_enum, default_value_t = KindArg::Rendezvous)]
    pub stage2: KindArg,
    /// Payload bytes per message
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=MAX_PAYLOAD))]
    pub payload: u64,
    /// How long the producers run, in seconds (fractions allowed)
    #[arg(long = "seconds", value_name = "S", default_value = "3", value_parser = parse_seconds)]
    pub duration: Duration,
    /// kcoro worker threads (default: available parallelism)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_THREADS))]
    pub runtime_workers: Option<u64>,
    /// Make one worker mishandle one message, to show that the exactly-once check catches it
    #[arg(long, value_enum)]
    pub inject_fault: Option<Fault>,
}

/// What the pipeline demo runs (the flags, checked and typed).
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

impl PipelineFlags {
    /// The settings these flags ask for (ranges were checked by the parser).
    pub fn to_args(&self) -> PipelineArgs {
        PipelineArgs {
            producers: self.producers as usize,
            workers: self.workers as usize,
            capacity: self.capacity as usize,
            stage1: self.stage1.into(),
            stage2: self.stage2.into(),
            payload: self.payload as usize,
            duration: self.duration,
            runtime_workers: self.runtime_workers.map(|w| w as usize),
            fault: self.inject_fault,
        }
    }
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

/// `kcoro demo spawn`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SpawnArgs {
    /// Coroutines to spawn
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=MAX_COROUTINES))]
    pub coroutines: u64,
    /// kcoro worker threads (default: available parallelism)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_THREADS))]
    pub runtime_workers: Option<u64>,
}

/// `kcoro localadapter-demo`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LocalDemoArgs {
    /// Flows instead of the scenario's default
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub flows: Option<u64>,
    /// One of the eleven scenarios
    #[arg(long, default_value = "many_small_flows", value_parser = scenario_names())]
    pub scenario: String,
    /// Profile seed
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=u64::MAX / 2))]
    pub seed: u64,
    /// Write the run's trace (safe events, JSON lines) to FILE
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

fn scenario_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(kcoro_adapter::Scenario::ALL.map(|s| s.name()))
}

/// `kcoro plugin [--abi LAYOUT] ...`.
#[derive(Debug, Args)]
#[command(after_help = layout_help())]
pub struct PluginArgs {
    /// The plugin's ABI layout; `auto` detects it, and a plain version-1 plugin whose
    /// vtable fits several layouts must be named (kcoro-v1 for what the kcoro SDKs build)
    #[arg(long, global = true, value_name = "LAYOUT", default_value = "auto")]
    pub abi: Layout,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The layouts `--abi` takes, each with its one-line description, and examples.
fn layout_help() -> String {
    let mut help = String::from("Layouts (--abi):\n");
    for layout in Layout::ALL {
        help += &format!("  {:<12} {}\n", layout.name(), layout.describe());
    }
    help + "\nExamples:\n  kcoro plugin info target/debug/libkcoro_plugin_echo.so\n  \
            kcoro plugin --abi kcoro-v1 call libv1_c.so echo --data hi"
}

/// `kcoro plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Its name, version, ABI, capabilities and entries
    #[command(after_help = "Example:\n  kcoro plugin info target/debug/libkcoro_plugin_echo.so")]
    Info {
        /// The plugin library (.so)
        lib: PathBuf,
    },
    /// One unary call: the reply's bytes on stdout, its status on stderr; exit 0 if Ok
    #[command(after_help = "\
Examples:
  kcoro plugin call target/debug/libkcoro_plugin_echo.so echo --data hello --header k=v
  kcoro plugin call LIB echo --data @request.json      # or --data - for stdin
  kcoro plugin call --raw LIB fast_echo --data hi      # no request: the plugin's handle_raw")]
    Call(CallArgs),
    /// A stream: each frame's bytes on stdout, then the terminal status on stderr; exit 0
    /// if it ends with StreamEnd
    #[command(
        after_help = "Example:\n  kcoro plugin stream target/debug/libkcoro_plugin_echo.so stream --data 3"
    )]
    Stream(CallArgs),
    /// A bidirectional stream: each stdin line goes to the plugin as stream data, each frame
    /// comes back on stdout as it arrives; EOF closes our side
    #[command(
        after_help = "Example:\n  printf 'a\\nb\\n' | kcoro plugin bidi target/debug/libkcoro_plugin_echo.so bidi"
    )]
    Bidi(CallArgs),
}

/// A call's library, entry and request.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CallArgs {
    /// The plugin library (.so)
    pub lib: PathBuf,
    /// The entry to call
    pub entry: String,
    /// The payload: @FILE reads a file, - reads stdin, anything else is the text
    #[arg(long, default_value = "", value_parser = parse_data)]
    pub data: Data,
    /// Send the payload alone, with no request: to the plugin's `handle_raw` where it has
    /// one (the 6-slot layout; entries it serves only there), else to `handle` with an
    /// empty request
    #[arg(long, conflicts_with_all = ["headers", "method", "path", "query"])]
    pub raw: bool,
    /// A request header K=V (repeatable)
    #[arg(long = "header", value_name = "K=V", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// The request method
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request path
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The request query string
    #[arg(long, default_value = "")]
    pub query: String,
    /// Seconds to wait for the reply or the whole stream
    #[arg(long, value_name = "S", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// Where a plugin call's payload comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Text(String),
    File(String),
    Stdin,
}

/// `kcoro ipc ...`.
#[derive(Debug, Subcommand)]
pub enum IpcCommand {
    /// Serve channels until interrupted
    #[command(after_help = "\
Examples:
  kcoro ipc serve --listen unix:/tmp/kcoro.sock --channel jobs:buffered:1024 --channel events:unlimited
  kcoro ipc serve --listen tcp:0.0.0.0:7070 --secret-file /etc/kcoro/secret --channel jobs:buffered:64")]
    Serve(ServeArgs),
    /// Send one element (or each stdin line) to a served channel
    #[command(after_help = "\
Examples:
  kcoro ipc send unix:/tmp/kcoro.sock jobs --data hello
  seq 10 | kcoro ipc send unix:/tmp/kcoro.sock jobs --lines")]
    Send(IpcSendArgs),
    /// Receive elements from a served channel and print them, one per line
    #[command(after_help = "Example:\n  kcoro ipc recv unix:/tmp/kcoro.sock jobs --count 10 --timeout 5")]
    Recv(IpcRecvArgs),
    /// List a server's channels with their counters
    #[command(after_help = "Example:\n  kcoro ipc ls unix:/tmp/kcoro.sock")]
    Ls(IpcAddrArgs),
}

/// `kcoro ipc serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where to listen: unix:PATH or tcp:HOST:PORT
    #[arg(long)]
    pub listen: String,
    /// A channel to serve, NAME:KIND[:CAPACITY] (repeatable)
    #[arg(long = "channel", value_name = "NAME:KIND[:CAP]", value_parser = parse_channel_spec)]
    pub channels: Vec<ChannelSpec>,
    /// Read the shared secret clients must prove from FILE (required off loopback)
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Stop after this many seconds (default: until interrupted)
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub seconds: Option<Duration>,
}

/// `NAME:KIND[:CAPACITY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub name: String,
    pub kind: Kind,
    pub capacity: usize,
}

/// An address, plus the secret if the server wants one.
#[derive(Debug, Clone, Args)]
pub struct IpcAddrArgs {
    /// The server: unix:PATH, shm:PATH (the same socket, then shared-memory rings) or tcp:HOST:PORT
    pub addr: String,
    /// Read the shared secret from FILE
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

/// `kcoro ipc send`.
#[derive(Debug, Clone, Args)]
pub struct IpcSendArgs {
    #[command(flatten)]
    pub conn: IpcAddrArgs,
    /// The channel's name
    pub name: String,
    /// The element: @FILE reads a file, - reads stdin, anything else is the text
    #[arg(long, default_value = "", value_parser = parse_data, conflicts_with = "lines")]
    pub data: Data,
    /// Send each line of stdin as one element
    #[arg(long)]
    pub lines: bool,
    /// Seconds to wait for room
    #[arg(long, value_name = "S", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// `kcoro ipc recv`.
#[derive(Debug, Clone, Args)]
pub struct IpcRecvArgs {
    #[command(flatten)]
    pub conn: IpcAddrArgs,
    /// The channel's name
    pub name: String,
    /// How many elements to receive (default: until the channel is closed)
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds to wait for each element
    #[arg(long, value_name = "S", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
}

const CHANMON_HELP: &str = "\
Examples:
  kcoro chanmon --demo                          # monitor an in-process demo pipeline
  kcoro chanmon unix:/run/app/kcoro.sock        # attach (the program called kcoro_ipc::monitor::serve)
  kcoro chanmon --demo --once                   # one NDJSON sample, then exit
  kcoro chanmon ADDR --json samples.ndjson      # record; play back with --replay samples.ndjson
  kcoro chanmon ADDR --check 'fill>0.9 for 5s'  # exit 1 when a threshold is crossed
  kcoro chanmon ADDR --check deadlock           # exit 1 with the report when the process deadlocks
  kcoro chanmon ADDR --prometheus 127.0.0.1:9464

Exit codes: 0 done, 1 a --check crossed, 2 bad usage, 3 cannot attach or the process went away.";

/// `kcoro chanmon ...`.
#[derive(Debug, Args, Clone)]
// Not `required`: `--json ADDR` is resolved to ADDR after parsing ([`ChanmonArgs::resolved`]),
// which then says when no source was given.
#[command(group(clap::ArgGroup::new("from").args(["addr", "demo", "replay"])))]
pub struct ChanmonArgs {
    /// The process to attach to: unix:PATH or tcp:HOST:PORT (it serves kcoro IPC with the
    /// monitor on: kcoro_ipc::monitor::serve)
    pub addr: Option<String>,
    /// Run the demo pipeline in this process and monitor it
    #[arg(long)]
    pub demo: bool,
    /// Play back a recording made with --json
    #[arg(long, value_name = "FILE")]
    pub replay: Option<String>,
    /// Shared secret, for a server that requires one
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<String>,
    /// Time between samples, in seconds
    #[arg(long, default_value = "1", value_parser = parse_seconds, value_name = "SECONDS")]
    pub interval: Duration,
    /// Write one NDJSON sample per interval to FILE (stdout without FILE, or with -)
    /// instead of the screen; a FILE written unix:... or tcp:... is taken as ADDR
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub json: Option<Option<String>>,
    /// Print one NDJSON sample and exit
    #[arg(long)]
    pub once: bool,
    /// Stop after N samples (headless modes)
    #[arg(long, value_name = "N")]
    pub samples: Option<u64>,
    /// Exit 1 when [CHANNEL:]METRIC OP NUMBER [for DURATION] holds (repeatable); metrics:
    /// fill, len, parked, parked_senders, parked_receivers, sends_per_sec, recvs_per_sec,
    /// bytes_per_sec, failures_per_sec, failures, overflow_drops. Or `deadlock [for
    /// DURATION]`: the source reports the same deadlock (in two samples at least); or
    /// `[CHANNEL:]stuck [for DURATION]`: a coroutine parked on a channel that long
    /// (default --stuck-after) while nothing happened on its other side
    #[arg(long, value_name = "EXPR")]
    pub check: Vec<String>,
    /// Flag a coroutine parked on a channel this long with no sender (or receiver) moving
    /// on it: like 5s, 500ms, 2m
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub stuck_after: Duration,
    /// Serve the counters at http://ADDR/metrics (Prometheus text format)
    #[arg(long, value_name = "ADDR")]
    pub prometheus: Option<String>,
    /// Give up on an answer from the monitored process after SECONDS (it is stopped or
    /// wedged); the next sample connects again
    #[arg(long, default_value = "5", value_parser = parse_seconds, value_name = "SECONDS")]
    pub timeout: Duration,
    /// No colours on the screen
    #[arg(long)]
    pub no_color: bool,
    /// ASCII only on the screen (bars and sparklines without block characters)
    #[arg(long)]
    pub ascii: bool,
}

impl ChanmonArgs {
    /// The arguments as meant: `--json unix:/run/app.sock` gave the address to the
    /// optional FILE of `--json` (clap cannot tell them apart), so a FILE written as an
    /// address is taken as ADDR and the samples go to stdout. Errors when no source is
    /// left.
    pub fn resolved(&self) -> Result<ChanmonArgs, String> {
        let mut a = self.clone();
        if let Some(Some(file)) = &a.json
            && ["unix:", "shm:", "tcp:"].iter().any(|scheme| file.starts_with(scheme))
        {
            if a.addr.is_some() || a.demo || a.replay.is_some() {
                return Err(format!(
                    "--json {file}: a file named like an address; write ./{file} for a file"
                ));
            }
            a.addr = Some(file.clone());
            a.json = Some(None);
        }
        if a.addr.is_none() && !a.demo && a.replay.is_none() {
            return Err("give ADDR to attach to, --demo, or --replay FILE".into());
        }
        Ok(a)
    }
}

fn parse_seconds(v: &str) -> Result<Duration, String> {
    let s: f64 = v.parse().map_err(|_| format!("{v:?} is not a number of seconds"))?;
    if !(s > 0.0 && s <= MAX_SECONDS) {
        return Err(format!("must be more than 0 and at most {MAX_SECONDS}"));
    }
    Ok(Duration::from_secs_f64(s))
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    crate::chanmon::humantime_secs(v).ok_or_else(|| format!("{v:?} is not a duration like 5s, 500ms or 2m"))
}

fn parse_data(v: &str) -> Result<Data, String> {
    Ok(match (v, v.strip_prefix('@')) {
        ("-", _) => Data::Stdin,
        (_, Some(file)) => Data::File(file.to_string()),
        _ => Data::Text(v.to_string()),
    })
}

fn parse_header(v: &str) -> Result<(String, String), String> {
    let (k, val) = v.split_once('=').ok_or_else(|| format!("{v:?} is not K=V"))?;
    Ok((k.to_string(), val.to_string()))
}

fn parse_channel_spec(v: &str) -> Result<ChannelSpec, String> {
    let mut it = v.split(':');
    let (Some(name), Some(kind)) = (it.next().filter(|n| !n.is_empty()), it.next()) else {
        return Err(format!("{v:?} is not NAME:KIND[:CAPACITY]"));
    };
    let kind: Kind = KindArg::from_str(kind, true)
        .map_err(|_| format!("{kind:?} is not one of rendezvous, buffered, conflated, unlimited"))?
        .into();
    let capacity = match it.next() {
        None => 0,
        Some(c) => c.parse().map_err(|_| format!("capacity {c:?} is not a whole number"))?,
    };
    if it.next().is_some() {
        return Err(format!("{v:?} is not NAME:KIND[:CAPACITY]"));
    }
    Ok(ChannelSpec { name: name.to_string(), kind, capacity })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kcoro").chain(s.split_whitespace()))
    }

    #[test]
    fn the_declaration_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_flags() {
        assert!(parse("").unwrap().command.is_none(), "no command runs the demo");
        let Some(Command::Demo(d)) = parse("demo").unwrap().command else { panic!("demo") };
        assert_eq!((d.spawn.is_none(), d.pipeline.to_args()), (true, PipelineArgs::default()));
        let Some(Command::Demo(d)) = parse(
            "demo --producers 2 --workers=3 --capacity 8 --stage1 conflated --stage2=unlimited \
             --payload 0 --seconds 0.5 --runtime-workers 2 --inject-fault lose",
        )
        .unwrap()
        .command
        else {
            panic!("did not parse")
        };
        let a = d.pipeline.to_args();
        assert_eq!((a.producers, a.workers, a.capacity, a.payload), (2, 3, 8, 0));
        assert_eq!((a.stage1, a.stage2), (Kind::Conflated, Kind::Unlimited));
        assert_eq!(a.duration, Duration::from_millis(500));
        assert_eq!((a.runtime_workers, a.fault), (Some(2), Some(Fault::Lose)));
        let Some(Command::Demo(d)) = parse("demo spawn --coroutines 10").unwrap().command else {
            panic!("spawn")
        };
        assert_eq!(
            d.spawn.map(|DemoCommand::Spawn(s)| s),
            Some(SpawnArgs { coroutines: 10, runtime_workers: None })
        );
        let Some(Command::Plugin(PluginArgs { abi, command: PluginCommand::Call(c) })) = parse(
            "plugin call lib.so echo --data @in.bin --header a=b=c --method POST --timeout 2 --abi nylon-0.2",
        )
        .unwrap()
        .command
        else {
            panic!("call")
        };
        assert_eq!((c.lib, c.entry.as_str()), (PathBuf::from("lib.so"), "echo"));
        assert_eq!((c.data, c.headers), (Data::File("in.bin".into()), vec![("a".into(), "b=c".into())]));
        assert_eq!((c.method.as_str(), c.timeout, abi), ("POST", Duration::from_secs(2), Layout::Nylon02));
        let Some(Command::Plugin(PluginArgs { abi, command: PluginCommand::Stream(s) })) =
            parse("plugin --abi kcoro-v1 stream lib.so s --data - --path /p --header x=1").unwrap().command
        else {
            panic!("stream")
        };
        assert_eq!((s.data, s.path.as_str(), s.headers.len(), abi), (Data::Stdin, "/p", 1, Layout::KcoroV1));
        assert!(matches!(
            parse("plugin info lib.so").unwrap().command,
            Some(Command::Plugin(PluginArgs { abi: Layout::Auto, command: PluginCommand::Info { .. } }))
        ));
        assert!(parse("plugin --abi nylon-9 info lib.so").is_err());
        let Some(Command::Ipc(IpcCommand::Serve(s))) =
            parse("ipc serve --listen unix:/x --channel a:buffered:8 --channel b:unlimited").unwrap().command
        else {
            panic!("serve")
        };
        assert_eq!(s.channels[0], ChannelSpec { name: "a".into(), kind: Kind::Buffered, capacity: 8 });
        assert_eq!(s.channels[1].kind, Kind::Unlimited);
    }

    #[test]
    fn plugin_raw_calls_take_no_request() {
        let Some(Command::Plugin(PluginArgs { command: PluginCommand::Call(c), .. })) =
            parse("plugin call --raw lib.so fast_echo --data hi").unwrap().command
        else {
            panic!("call --raw")
        };
        assert!(c.raw && c.data == Data::Text("hi".into()));
        let Some(Command::Plugin(PluginArgs { command: PluginCommand::Stream(s), .. })) =
            parse("plugin stream lib.so s").unwrap().command
        else {
            panic!("stream")
        };
        assert!(!s.raw);
        for flags in ["--header k=v", "--method POST", "--path /p", "--query a=1"] {
            assert!(parse(&format!("plugin call --raw lib.so e {flags}")).is_err(), "--raw with {flags}");
        }
    }

    #[test]
    fn json_does_not_swallow_the_address() {
        let chanmon = |s: &str| match parse(s).unwrap().command {
            Some(Command::Chanmon(a)) => a.resolved(),
            other => panic!("{other:?}"),
        };
        let a = chanmon("chanmon --json unix:/run/app.sock --samples 2").unwrap();
        assert_eq!((a.addr.as_deref(), a.json), (Some("unix:/run/app.sock"), Some(None)));
        let a = chanmon("chanmon unix:/run/app.sock --json samples.ndjson").unwrap();
        assert_eq!(
            (a.addr.as_deref(), a.json),
            (Some("unix:/run/app.sock"), Some(Some("samples.ndjson".into())))
        );
        let a = chanmon("chanmon --json tcp:127.0.0.1:7000").unwrap();
        assert_eq!(a.addr.as_deref(), Some("tcp:127.0.0.1:7000"));
        assert!(chanmon("chanmon --json").unwrap_err().contains("give ADDR"));
        assert!(chanmon("chanmon --demo --json unix:x").unwrap_err().contains("./unix:x"));
        assert!(parse("chanmon --demo --replay f").is_err(), "one source at most");
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
            "plugin call lib.so echo --timeout 0",
            "localadapter-demo --flows 65",
            "localadapter-demo --scenario nope",
            "ipc serve --channel a:buffered",
            "ipc serve --listen unix:/x --channel a:fifo",
            "ipc serve --listen unix:/x --channel a:buffered:x",
            "ipc send unix:/x",
            "ipc send unix:/x jobs --lines --data y",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn misspellings_get_suggestions() {
        let e = parse("demo --secnds 1").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--seconds"), "{e}");
    }
}
