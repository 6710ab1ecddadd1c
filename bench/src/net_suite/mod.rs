//! Suite `net`: servers on real loopback sockets, kcoro (`kcoro::net`) against tokio and
//! Go, each under load from another process or thread.
//!
//! | case                 | server                                                        | one request |
//! |----------------------|---------------------------------------------------------------|-------------|
//! | `http_<w>_c<n>`      | HTTP/1.1 keep-alive hello, no HTTP library ([`proto`])        | `GET` → 13-byte body |
//! | `https_<w>_c<n>`     | the same hello inside TLS 1.3, one rustls configuration ([`tls`]) | `GET` → 13-byte body |
//! | `echo_<w>_c<n>`      | TCP echo                                                      | 64 bytes there and back |
//! | `proxy_<w>_c<n>`     | TCP proxy to an echo backend in the same process and runtime  | 64 bytes client → proxy → backend and back |
//!
//! `<n>` is the number of connections the load keeps open (10, 100, 1000), each with one
//! request in flight. `<w>` is the setting:
//!
//! - `1w`: one worker (kcoro `workers(1)`, tokio `worker_threads(1)`, Go `GOMAXPROCS=1`),
//!   the server process pinned to the first allowed CPU and the load to the second;
//! - `2w`: two workers (`GOMAXPROCS=2`), nothing pinned.
//!
//! Every server runs one accept loop that spawns one coroutine / task / goroutine per
//! connection; the proxy adds one per connection for the way back. The load is `wrk`
//! (one thread) for the HTTP rows when it is installed ([`wrk`]), otherwise, and for the
//! echo and proxy rows, the built-in generator ([`load`]); the table's `load` column says
//! which. The https rows need `wrk` (`https://` URL; it checks no certificate; the
//! built-in generator speaks no TLS). Their kcoro server runs rustls' blocking
//! `StreamOwned` over `kcoro::net` (handshake and records on the connection's coroutine,
//! no async), the tokio server tokio-rustls; both take the same `ServerConfig`. Go has no
//! https server here (its TLS stack would be a third implementation of the protocol, not
//! a third runtime under the same one). One run is one server process loaded for `n` seconds (see [`server`] for the
//! protocol). It reports:
//!
//! - requests per second (`ns/op` is its inverse, so `x kcoro` compares throughput);
//! - p50 and p99 latency as the load generator saw them;
//! - the server's CPU time (user + system, all threads, from `/proc/<pid>/stat`) per
//!   request: the fairest figure when the load generator saturates its core;
//! - for two-worker Rust servers, the share of the requests the busiest worker thread
//!   served (counted per thread in the server, [`proto::count`]; for the proxy, its
//!   forwarded requests and its backend's echoes together). Go's goroutines move
//!   between threads, so Go has no such figure.

mod kcoro_net;
mod load;
mod proto;
mod server;
pub(crate) mod sys;
mod tls;
mod tokio_net;
mod wrk;

use std::process::Command;
use std::time::Duration;

use crate::harness::{GO, GO_BIN_ENV, KCORO, LoadGen, Measurement, NetStats, Skip, Suite, net};
pub use proto::BODY as HELLO_BODY;
use server::TOKIO;
pub use server::{Server, serve_command};

/// What a server of the suite does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// HTTP/1.1 keep-alive hello.
    Http,
    /// The same hello over TLS.
    Https,
    /// TCP echo.
    Echo,
    /// TCP proxy in front of an echo backend.
    Proxy,
}

impl Service {
    /// From the first part of a case name, and the server's command line.
    fn parse(s: &str) -> Result<Service, String> {
        match s {
            "http" => Ok(Service::Http),
            "https" => Ok(Service::Https),
            "echo" => Ok(Service::Echo),
            "proxy" => Ok(Service::Proxy),
            _ => Err(format!("net: no service {s:?} (http, https, echo, proxy)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Http => "http",
            Service::Https => "https",
            Service::Echo => "echo",
            Service::Proxy => "proxy",
        }
    }
}

/// One case, as its name spells it: `<service>_<workers>w_c<conns>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Setup {
    service: Service,
    /// 1: pinned, server and load on a CPU each; 2: unpinned.
    workers: usize,
    conns: usize,
}

impl Setup {
    fn parse(case: &str) -> Result<Setup, String> {
        let bad = || format!("net: case {case:?} is not <service>_<1w|2w>_c<connections>");
        let mut parts = case.split('_');
        let (Some(service), Some(workers), Some(conns), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let workers = match workers {
            "1w" => 1,
            "2w" => 2,
            _ => return Err(bad()),
        };
        let conns =
            conns.strip_prefix('c').and_then(|c| c.parse().ok()).filter(|&c| c > 0).ok_or_else(bad)?;
        Ok(Setup { service: Service::parse(service)?, workers, conns })
    }

    fn pinned(self) -> bool {
        self.workers == 1
    }
}

/// What one load run measured.
pub struct LoadResult {
    /// Requests answered.
    pub requests: u64,
    /// From the first request sent to the last answer.
    pub elapsed: Duration,
    /// Median latency.
    pub p50_ns: f64,
    /// 99th-percentile latency.
    pub p99_ns: f64,
    /// Who generated it.
    pub load: LoadGen,
}

/// Called once by a server with the address it listens on (the process prints it for
/// the measuring child; tests hand it to their load).
pub type OnListen = Box<dyn FnOnce(std::net::SocketAddr) + Send>;

/// Seconds of load per run (the suite notes repeat both values).
const SECS_FULL: u64 = 3;
/// Seconds of load per run with `--quick` (`wrk` counts whole seconds).
const SECS_QUICK: u64 = 1;

/// Every case: service × setting × connections.
const fn case(name: &'static str) -> crate::harness::Case {
    net(name, SECS_FULL, SECS_QUICK)
}

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "net",
    notes: &[
        "one server process per run, loaded for 3 s (1 s with --quick) over 127.0.0.1; one request in flight per connection",
        "1w: one worker (kcoro workers(1), tokio worker_threads(1), GOMAXPROCS=1), server pinned to one CPU, load to another",
        "2w: two workers (GOMAXPROCS=2), nothing pinned; one accept loop, one coroutine/task/goroutine per connection",
        "http: HTTP/1.1 keep-alive hello, no HTTP library; echo: 64-byte ping-pong; proxy: 64-byte ping-pong",
        "  through a proxy (two coroutines/tasks/goroutines per connection) to an echo backend in the same process",
        "https: the hello over TLS 1.3, one rustls ServerConfig (ring); kcoro: StreamOwned on kcoro::net, tokio: tokio-rustls",
        "req/s = 1e9 / ns/op; p50/p99 as the load saw them; cpu/req = server user+system CPU (/proc) per request",
        "worker = busiest worker thread's share of the requests (2w, Rust servers); load = wrk or the built-in generator",
    ],
    cases: &[
        case("http_1w_c10"),
        case("http_1w_c100"),
        case("http_1w_c1000"),
        case("http_2w_c10"),
        case("http_2w_c100"),
        case("http_2w_c1000"),
        case("https_1w_c10"),
        case("https_1w_c100"),
        case("https_1w_c1000"),
        case("https_2w_c10"),
        case("https_2w_c100"),
        case("https_2w_c1000"),
        case("echo_1w_c10"),
        case("echo_1w_c100"),
        case("echo_1w_c1000"),
        case("echo_2w_c10"),
        case("echo_2w_c100"),
        case("echo_2w_c1000"),
        case("proxy_1w_c10"),
        case("proxy_1w_c100"),
        case("proxy_1w_c1000"),
        case("proxy_2w_c10"),
        case("proxy_2w_c100"),
        case("proxy_2w_c1000"),
    ],
    impls: &[KCORO, TOKIO, GO],
    skips: &[Skip {
        imp: GO,
        cases: &[
            "https_1w_c10",
            "https_1w_c100",
            "https_1w_c1000",
            "https_2w_c10",
            "https_2w_c100",
            "https_2w_c1000",
        ],
        why: "rustls on two runtimes; Go's TLS stack is another protocol implementation",
    }],
    prepare: Some(prepare),
    go_in_child: true,
    child,
};

/// Installs `wrk` if it is missing and says which load generator the HTTP rows get.
fn prepare() -> Result<(), String> {
    println!("note: {}", wrk::ensure());
    Ok(())
}

/// One run of one case on one implementation: start the server, load it, stop it.
fn child(case: &str, imp: &str, secs: u64) -> Result<Measurement, String> {
    let setup = Setup::parse(case)?;
    sys::raise_nofile_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let (server_cpu, load_cpu) = if setup.pinned() {
        match sys::allowed_cpus().map_err(|e| format!("sched_getaffinity: {e}"))?[..] {
            [a, b, ..] => (Some(a), Some(b)),
            _ => {
                return Err(
                    "the 1w setting pins server and load to two CPUs; this process may use one".into()
                );
            }
        }
    } else {
        (None, None)
    };
    let server = Server::start(server_command(imp, setup)?, server_cpu)?;
    let cpu_before = server.cpu_ns()?;
    let result = if matches!(setup.service, Service::Http | Service::Https) && wrk::available() {
        wrk::run(setup.service == Service::Https, server.port, setup.conns, secs, load_cpu)
    } else {
        load::run(server.port, setup.service, setup.conns, secs, load_cpu)
    };
    let cpu_after = server.cpu_ns();
    let report = server.stop();
    let (result, cpu_used, report) = (result?, cpu_after?.saturating_sub(cpu_before), report?);
    let requests = result.requests as f64;
    Ok(Measurement {
        ns_per_op: result.elapsed.as_nanos() as f64 / requests,
        bytes_per_op: None,
        allocs_per_op: None,
        net: Some(NetStats {
            p50_ns: result.p50_ns,
            p99_ns: result.p99_ns,
            cpu_ns_per_op: cpu_used as f64 / requests,
            max_worker_share: report.max_share(setup.workers),
            load: result.load,
        }),
    })
}

/// Starts this binary's kcoro hello server (the `http` service) with `workers` workers
/// in a process of its own, unpinned: the local server another suite's clients load.
pub fn start_hello_server(workers: usize) -> Result<Server, String> {
    let setup = Setup { service: Service::Http, workers, conns: 1 };
    Server::start(server_command(KCORO, setup)?, None)
}

/// The command that starts `imp`'s server for `setup`.
fn server_command(imp: &str, setup: Setup) -> Result<Command, String> {
    let workers = setup.workers.to_string();
    let cmd = match imp {
        GO => {
            let bin = std::env::var_os(GO_BIN_ENV).ok_or_else(|| format!("net: {GO_BIN_ENV} not set"))?;
            let mut cmd = Command::new(bin);
            cmd.args(["serve", setup.service.name()]).env("GOMAXPROCS", &workers);
            cmd
        }
        KCORO | TOKIO => {
            let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
            let mut cmd = Command::new(exe);
            cmd.args(["__serve", setup.service.name(), imp, &workers]);
            cmd
        }
        _ => return Err(format!("net: no implementation {imp:?}")),
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_parse() {
        for case in SUITE.cases {
            Setup::parse(case.name).unwrap();
        }
        assert_eq!(
            Setup::parse("proxy_2w_c1000"),
            Ok(Setup { service: Service::Proxy, workers: 2, conns: 1000 })
        );
        for bad in ["http_3w_c10", "http_1w_10", "http_1w_c0", "ftp_1w_c10", "http_1w", "http_1w_c10_x"] {
            assert!(Setup::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_command_names_the_service_and_workers() {
        let setup = Setup::parse("echo_2w_c10").unwrap();
        let cmd = server_command(KCORO, setup).unwrap();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["__serve", "echo", "kcoro", "2"]);
        assert!(server_command("may", setup).is_err());
    }

    /// A Rust server's entry point.
    type ServeFn = fn(Service, usize, OnListen) -> Result<(), String>;

    /// Starts `serve` on its own thread (its runtime then lives until the test process
    /// ends) and returns the address it listens on.
    fn start(
        serve: fn(Service, usize, OnListen) -> Result<(), String>,
        service: Service,
    ) -> std::net::SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let on_listen: OnListen = Box::new(move |addr| {
                let _ = tx.send(addr);
            });
            serve(service, 2, on_listen)
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("server listening")
    }

    /// Every Rust https server completes a handshake with a client that trusts only the
    /// suite's certificate and answers keep-alive requests inside the session.
    #[test]
    fn rust_servers_answer_over_tls() {
        use std::io::{Read, Write};
        let servers: [(&str, ServeFn); 2] = [(KCORO, kcoro_net::serve), (TOKIO, tokio_net::serve)];
        for (imp, serve) in servers {
            let addr = start(serve, Service::Https);
            let session =
                rustls::ClientConnection::new(tls::client_config().unwrap(), "localhost".try_into().unwrap())
                    .unwrap();
            let mut tls = rustls::StreamOwned::new(session, std::net::TcpStream::connect(addr).unwrap());
            for round in 0..3 {
                tls.write_all(proto::REQUEST).unwrap();
                let mut got = Vec::new();
                let mut chunk = [0u8; 512];
                while proto::response_len(&got).unwrap().is_none() {
                    let n = tls.read(&mut chunk).unwrap_or_else(|e| panic!("{imp} round {round}: {e}"));
                    assert!(n > 0, "{imp} round {round}: closed");
                    got.extend_from_slice(&chunk[..n]);
                }
                assert_eq!(got, proto::RESPONSE, "{imp} round {round}");
            }
        }
    }

    /// Every Rust server answers the built-in load on every service, and counts what it
    /// served on its worker threads.
    #[test]
    fn rust_servers_answer_the_load() {
        let servers: [(&str, ServeFn); 2] = [(KCORO, kcoro_net::serve), (TOKIO, tokio_net::serve)];
        for (imp, serve) in servers {
            for service in [Service::Http, Service::Echo, Service::Proxy] {
                let before: u64 = proto::report().threads.iter().map(|t| t.requests).sum();
                let addr = start(serve, service);
                let result = load::drive(addr, service, 4, Duration::from_millis(100))
                    .unwrap_or_else(|e| panic!("{imp} {service:?}: {e}"));
                assert!(result.requests > 0, "{imp} {service:?}");
                // Counted before each answer is written, so every answered request is in.
                let after: u64 = proto::report().threads.iter().map(|t| t.requests).sum();
                assert!(
                    after - before >= result.requests,
                    "{imp} {service:?}: {after} - {before} < {}",
                    result.requests
                );
            }
        }
    }
}
