//! `kcoro`: the command-line face of the runtime.
//!
//! - `kcoro demo` runs a channel pipeline (producers → stage1 → workers → stage2 → sink)
//!   for a few seconds with a live rate line, then checks every message arrived exactly
//!   once. See [`pipeline`].
//! - `kcoro demo spawn` spawns 100,000 coroutines and reports (the original demo).
//! - `kcoro plugin info | call | stream | bidi LIB ...` loads a plugin and talks to it.
//!   See [`plugin`].
//! - `kcoro localadapter-demo` runs one local adapter scenario and prints its summary.
//!   See [`localadapter`].
//! - `kcoro ipc serve | send | recv | ls` serves channels to other processes or uses a
//!   server's channels. See [`ipc`].
//! - `kcoro chanmon ADDR | --demo | --replay FILE` monitors channels and the scheduler.
//!   See [`chanmon`].
//! - `kcoro proxy --config FILE` runs a TCP proxy (kcoro-proxy). See [`proxy`].
//! - `kcoro completions SHELL` prints a completion script.

mod args;
mod chanmon;
mod ipc;
mod localadapter;
mod pipeline;
mod plugin;
mod proxy;
mod signals;
mod spawn;

use std::process::ExitCode;

use args::{Cli, Command, DemoCommand};
use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => pipeline::run(&args::PipelineArgs::default()),
        Some(Command::Demo(d)) => match d.spawn {
            Some(DemoCommand::Spawn(s)) => spawn::run(&s),
            None => pipeline::run(&d.pipeline.to_args()),
        },
        Some(Command::Plugin(p)) => plugin::run(&p),
        Some(Command::LocalAdapterDemo(a)) => localadapter::run(&a),
        Some(Command::Ipc(c)) => ipc::run(&c),
        Some(Command::Chanmon(c)) => chanmon::run(&c),
        Some(Command::Proxy(p)) => proxy::run(&p),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "kcoro", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
