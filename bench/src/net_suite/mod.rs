//! Suite `net`: servers on real loopback sockets, kcoro (`kcoro::net`) against tokio and
//! Go, each under load from another process or thread.
//!
//! | case                 | server                                                        | one request |
//! |----------------------|---------------------------------------------------------------|-------------|
//! | `http_<w>_c<n>`      | HTTP/1.1 keep-alive hello, no HTTP library ([`proto`])        | `GET` → 13-byte body |
//! | `https_<w>_c<n>`     | the same hello inside TLS 1.3, one rustls configuration ([`tls`]) | `GET` → 13-byte body |
//! | `echo_<w>_c<n>`      | TCP echo                                                      | 64 bytes there and back |
//! | `proxy_<w>_c<n>`     | TCP proxy to an echo backend in the same process and runtime  | 64 bytes client → proxy → backend and back |
//! | `lb_<w>_c<n>`        | a load balancer (kcoro proxy, HAProxy, nginx) in front of a kcoro http server ([`lb`]) | `GET` → 13-byte body |
//! | `lb1m_<w>_c<n>`      | the same in front of a kcoro server answering 1 MiB (`big`)   | `GET` → 1 MiB body |
//!
//! `<n>` is the number of connections the load keeps open (10, 100, 1000), each with one
//! request in flight. `<w>` is the setting:
//!
//! - `1w`: one worker (kcoro `workers(1)`, tokio `worker_threads(1)`, Go `GOMAXPROCS=1`),
//!   the server process pinned to the first allowed CPU and the load to the second;
//! - `2w`: two workers (`GOMAXPROCS=2`), nothing pinned.
//!
//! In the lb rows the server is the load balancer (`haproxy` and `nginx` are rows of
//! their own, and run only these cases); its backend always has one worker and, in the
//! `1w` setting, shares the load's CPU.
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
//! - the server's CPU time (user + system, all threads, from `/proc/<pid>/stat`; for a
//!   load balancer, of its every process) per request: the fairest figure when the load
//!   generator saturates its core;
//! - for the 1 MiB rows, the bodies' throughput in GB/s;
//! - for two-worker Rust servers, the share of the requests the busiest worker thread
//!   served (counted per thread in the server, [`proto::count`]; for the proxy, its
//!   forwarded requests and its backend's echoes together). Go's goroutines move
//!   between threads, so Go has no such figure.

mod balancer;
mod kcoro_net;
mod lb;
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
    /// HTTP/1.1 keep-alive with a 1 MiB body (kcoro only: the lb rows' backend).
    Big,
}

impl Service {
    /// From the first part of a case name, and the server's command line.
    fn parse(s: &str) -> Result<Service, String> {
        match s {
            "http" => Ok(Service::Http),
            "https" => Ok(Service::Https),
            "echo" => Ok(Service::Echo),
            "proxy" => Ok(Service::Proxy),
            "big" => Ok(Service::Big),
            _ => Err(format!("net: no service {s:?} (http, https, echo, proxy, big)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Http => "http",
            Service::Https => "https",
            Service::Echo => "echo",
            Service::Proxy => "proxy",
            Service::Big => "big",
        }
    }
}

/// One case, as its name spells it: `<service>_<workers>w_c<conns>`, or
/// `lb_<workers>w_c<conns>` (http behind a load balancer) and `lb1m_…` (big behind one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Setup {
    /// What the measured server serves; behind a load balancer, what its backend serves.
    service: Service,
    /// The load goes through a load balancer ([`lb`]), the row's implementation.
    lb: bool,
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
        let (service, lb) = match service {
            "lb" => (Service::Http, true),
            "lb1m" => (Service::Big, true),
            s => (Service::parse(s)?, false),
        };
        Ok(Setup { service, lb, workers, conns })
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
        "lb: wrk -> load balancer -> kcoro http server (lb1m: 1 MiB answers, GB/s of bodies under the row) in its own process",
        "  kcoro proxy / HAProxy / nginx stream, alike: round robin over one backend, connect timeout 2 s, idle 30 s,",
        "  no health checks, no logs; 1w: proxy with 1 worker (workers = 1, nbthread 1, worker_processes 1) pinned to",
        "  one CPU, backend and wrk to the other; 2w: 2 workers/threads/processes, unpinned; the backend has 1 worker",
        "  in both; cpu/req counts every process of the proxy (nginx master and workers); each proxy keeps its own",
        "  defaults otherwise (kcoro proxy: idle_spin = 4; HAProxy: no busy polling; nginx: epoll, no multi_accept)",
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
        case("lb_1w_c10"),
        case("lb_1w_c100"),
        case("lb_1w_c1000"),
        case("lb_2w_c10"),
        case("lb_2w_c100"),
        case("lb_2w_c1000"),
        case("lb1m_1w_c10"),
        case("lb1m_2w_c10"),
    ],
    impls: &[KCORO, TOKIO, GO, lb::HAPROXY, lb::NGINX],
    skips: &[
        Skip {
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
        },
        Skip { imp: TOKIO, cases: LB_CASES, why: LB_ONLY },
        Skip { imp: GO, cases: LB_CASES, why: LB_ONLY },
        Skip { imp: lb::HAPROXY, cases: SERVER_CASES, why: NOT_LB },
        Skip { imp: lb::NGINX, cases: SERVER_CASES, why: NOT_LB },
    ],
    prepare: Some(prepare),
    go_in_child: true,
    child,
};

/// The cases through a load balancer: the only ones the `haproxy` and `nginx` rows run.
const LB_CASES: &[&str] = &[
    "lb_1w_c10",
    "lb_1w_c100",
    "lb_1w_c1000",
    "lb_2w_c10",
    "lb_2w_c100",
    "lb_2w_c1000",
    "lb1m_1w_c10",
    "lb1m_2w_c10",
];

/// Every other case: a server of each runtime loaded directly.
const SERVER_CASES: &[&str] = &[
    "http_1w_c10",
    "http_1w_c100",
    "http_1w_c1000",
    "http_2w_c10",
    "http_2w_c100",
    "http_2w_c1000",
    "https_1w_c10",
    "https_1w_c100",
    "https_1w_c1000",
    "https_2w_c10",
    "https_2w_c100",
    "https_2w_c1000",
    "echo_1w_c10",
    "echo_1w_c100",
    "echo_1w_c1000",
    "echo_2w_c10",
    "echo_2w_c100",
    "echo_2w_c1000",
    "proxy_1w_c10",
    "proxy_1w_c100",
    "proxy_1w_c1000",
    "proxy_2w_c10",
    "proxy_2w_c100",
    "proxy_2w_c1000",
];

/// Why tokio and Go have no lb rows.
const LB_ONLY: &str = "the lb rows compare proxies: kcoro proxy, HAProxy, nginx";

/// Why HAProxy and nginx have no other rows.
const NOT_LB: &str = "a load balancer: it runs the lb rows only";

/// Installs `wrk` if it is missing and says which load generator the HTTP rows get;
/// readies the proxies of the lb rows that run ([`lb::prepare`]).
fn prepare(rows: &crate::harness::Selection) -> Result<(), String> {
    println!("note: {}", wrk::ensure());
    for note in lb::prepare(rows) {
        println!("note: {note}");
    }
    Ok(())
}

/// One run of one case on one implementation: start the server, load it, stop it.
fn child(case: &str, imp: &str, secs: u64) -> Result<Measurement, String> {
    let setup = Setup::parse(case)?;
    sys::raise_nofile_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let cpus = if setup.pinned() {
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
    if setup.lb {
        return lb::run(setup, imp, secs, cpus);
    }
    let (server_cpu, load_cpu) = cpus;
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
        latency: None,
    })
}

/// Starts this binary's kcoro hello server (the `http` service) with `workers` workers
/// in a process of its own, unpinned: the local server another suite's clients load.
pub fn start_hello_server(workers: usize) -> Result<Server, String> {
    let setup = Setup { service: Service::Http, lb: false, workers, conns: 1 };
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
            Ok(Setup { service: Service::Proxy, lb: false, workers: 2, conns: 1000 })
        );
        assert_eq!(
            Setup::parse("lb_1w_c100"),
            Ok(Setup { service: Service::Http, lb: true, workers: 1, conns: 100 })
        );
        assert_eq!(
            Setup::parse("lb1m_2w_c10"),
            Ok(Setup { service: Service::Big, lb: true, workers: 2, conns: 10 })
        );
        for bad in [
            "http_3w_c10",
            "http_1w_10",
            "http_1w_c0",
            "ftp_1w_c10",
            "http_1w",
            "http_1w_c10_x",
            "lb2m_1w_c10",
        ] {
            assert!(Setup::parse(bad).is_err(), "{bad}");
        }
    }

    /// Every case is either a load balancer's or a server's, and each list names it once.
    #[test]
    fn lb_rows_and_server_rows_split_the_cases() {
        for case in SUITE.cases {
            let lb = Setup::parse(case.name).unwrap().lb;
            assert_eq!(LB_CASES.contains(&case.name), lb, "{}", case.name);
            assert_eq!(SERVER_CASES.contains(&case.name), !lb, "{}", case.name);
        }
        assert_eq!(LB_CASES.len() + SERVER_CASES.len(), SUITE.cases.len());
        for (imp, runs_lb) in
            [(KCORO, true), (TOKIO, false), (GO, false), (lb::HAPROXY, true), (lb::NGINX, true)]
        {
            assert_eq!(SUITE.skip("lb1m_2w_c10", imp).is_none(), runs_lb, "{imp}");
            let runs_http = imp == KCORO || imp == TOKIO || imp == GO;
            assert_eq!(SUITE.skip("http_1w_c10", imp).is_none(), runs_http, "{imp}");
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
