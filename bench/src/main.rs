//! `kcoro-bench`: kcoro side by side with its peers (Go, may, tokio, kanal, crossbeam,
//! flume; nylon-ring-host for the plugin host; `Vec` copies and `bytes::Bytes` for zero
//! copy; a raw Unix socket and ipc-channel for kcoro-ipc), in one run.
//!
//! ```text
//! kcoro-bench <suite> [--quick] [--json FILE] [--case NAME]... [--impl NAME]...
//! kcoro-bench list
//! ```
//!
//! Each suite is a module holding a [`harness::Suite`] table; adding a suite means
//! adding its module and one line to [`SUITES`]. The harness runs every measurement in
//! a child process of this same binary (`__child`, hidden) or of the Go peer; see
//! [`harness`] for the protocol. The `ipc` suite's children start their serving peer as
//! another process of this binary (`__ipc_peer`, hidden).

mod adapter_suite;
mod alloc_count;
mod capi_suite;
mod chan_suite;
mod compat_suite;
mod core_probe;
mod go;
mod harness;
mod ipc_suite;
mod nats_suite;
mod net_suite;
mod plugin_suite;
mod runtime_suite;
mod select_suite;
mod zcopy_suite;

use std::process::ExitCode;

use harness::{Options, Suite};

/// Every suite, in `list` order.
static SUITES: &[&Suite] = &[
    &runtime_suite::SUITE,
    &chan_suite::SUITE,
    &select_suite::SUITE,
    &plugin_suite::SUITE,
    &adapter_suite::SUITE,
    &zcopy_suite::SUITE,
    &ipc_suite::SUITE,
    &capi_suite::SUITE,
    &net_suite::SUITE,
    &nats_suite::SUITE,
    &compat_suite::SUITE,
];

/// Counts heap allocations while a suite asks it to (see [`alloc_count`]).
#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

const USAGE: &str = "\
usage: kcoro-bench <suite> [--quick] [--json FILE] [--case NAME]... [--impl NAME]...
       kcoro-bench list

  --quick       fewer operations and runs
  --json FILE   also write the rows as JSON:
                [{\"suite\",\"case\",\"impl\",\"ns_per_op\",\"min_ns_per_op\",
                  \"max_ns_per_op\",\"ops_per_sec\",\"runs\"
                  [,\"bytes_per_op\"][,\"allocs_per_op\"][,\"bytes_per_sec\"]
                  [,\"net\":{\"p50_ns\",\"p99_ns\",\"cpu_ns_per_op\",
                             [\"max_worker_share\",]\"load\"}]}]
  --case NAME   run only this case (repeatable)
  --impl NAME   run only this implementation (repeatable)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("kcoro-bench: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("list") => {
            for suite in SUITES {
                let cases: Vec<&str> = suite.cases.iter().map(|c| c.name).collect();
                println!("{:<10} {}", suite.name, cases.join(" "));
            }
            Ok(())
        }
        Some("__ipc_peer") => ipc_suite::peer(&args[1..]),
        Some("__child") => match &args[1..] {
            [suite, case, imp, n] => {
                let n = n.parse().map_err(|e| format!("bad count {n:?}: {e}"))?;
                harness::run_child_command(find_suite(suite)?, case, imp, n)
            }
            _ => Err("usage: kcoro-bench __child <suite> <case> <impl> <n>".to_string()),
        },
        // A server of the `net` suite, started by that suite's child.
        Some("__serve") => match &args[1..] {
            [service, imp, workers] => net_suite::serve_command(service, imp, workers),
            _ => Err("usage: kcoro-bench __serve <service> <impl> <workers>".to_string()),
        },
        Some("nats") if !nats_suite::available() => {
            println!("note: nats-server not found; skipping the nats suite");
            Ok(())
        }
        Some(name) => {
            let suite = find_suite(name)?;
            let opts = parse_options(&args[1..])?;
            harness::run_suite(suite, &opts)
        }
    }
}

fn find_suite(name: &str) -> Result<&'static Suite, String> {
    SUITES.iter().copied().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
        format!("unknown suite {name:?} (suites: {})", names.join(", "))
    })
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value =
            |flag: &str| it.next().cloned().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--json" => opts.json = Some(value("--json")?.into()),
            "--case" => opts.cases.push(value("--case")?),
            "--impl" => opts.impls.push(value("--impl")?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suite tables agree with themselves and with the printed table's columns.
    #[test]
    fn suite_tables_are_consistent() {
        for suite in SUITES {
            assert_eq!(suite.impls.first(), Some(&harness::KCORO), "{}: kcoro must come first", suite.name);
            for case in suite.cases {
                assert!(case.name.len() <= harness::CASE_COL, "{}: case {} too wide", suite.name, case.name);
            }
            for imp in suite.impls {
                assert!(imp.len() <= harness::IMPL_COL, "{}: impl {imp} too wide", suite.name);
            }
            for skip in suite.skips {
                assert!(
                    suite.impls.contains(&skip.imp),
                    "{}: skip names unknown impl {}",
                    suite.name,
                    skip.imp
                );
                for name in skip.cases {
                    assert!(
                        suite.cases.iter().any(|c| c.name == *name),
                        "{}: skip names unknown case {name}",
                        suite.name
                    );
                }
            }
        }
    }
}
