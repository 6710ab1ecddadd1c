//! `kcoro`: the command-line face of the runtime.
//!
//! - `kcoro demo` runs a channel pipeline (producers → stage1 → workers → stage2 → sink)
//!   for a few seconds with a live rate line, then checks every message arrived exactly
//!   once. See [`pipeline`].
//! - `kcoro demo spawn` spawns 100,000 coroutines and reports (the original demo).
//! - `kcoro plugin info | call | stream LIB ...` loads a plugin and talks to it. See
//!   [`plugin`].
//! - `kcoro localadapter-demo` runs one local adapter scenario and prints its summary.
//!   See [`localadapter`].

mod args;
mod flags;
mod localadapter;
mod pipeline;
mod plugin;
mod spawn;

use std::process::ExitCode;

use args::{Command, USAGE};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match args::parse(&argv) {
        Ok(Command::Pipeline(a)) => pipeline::run(&a),
        Ok(Command::Spawn(a)) => spawn::run(&a),
        Ok(Command::Plugin(a)) => plugin::run(&a),
        Ok(Command::LocalAdapterDemo(a)) => localadapter::run(&a),
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kcoro: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
