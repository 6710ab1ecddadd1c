//! The configuration file: TOML, checked whole before anything is bound, every error
//! naming its line.
//!
//! ```toml
//! workers = 2                     # runtime workers (default: the CPUs this process may use)
//! idle_spin = 4                   # rounds an idle worker spins before it sleeps (default 4)
//! metrics = "127.0.0.1:9465"      # optional: Prometheus text at http://ADDR/metrics
//! shutdown_grace = "30s"          # how long a shutdown waits for open connections
//!
//! [[listener]]
//! name = "web"
//! bind = "127.0.0.1:8080"
//! pool = "app"
//! max_connections = 10000         # beyond it a new connection is closed at once
//! idle_timeout = "60s"            # no byte either way for this long closes both sides
//! proxy_protocol = "v2"           # optional: "v1" or "v2", sent to the backend first
//! splice = true                   # large transfers through splice(2) (default false)
//!
//! [[pool]]
//! name = "app"
//! balance = "least-connections"   # or "round-robin" (the default)
//! backends = ["127.0.0.1:9001", "127.0.0.1:9002"]
//! connect_timeout = "2s"
//! [pool.health]                   # optional: without it a backend is up until a connect fails
//! interval = "2s"
//! timeout = "1s"
//! rise = 2                        # consecutive passes that put a backend back
//! fall = 3                        # consecutive failures that take it out
//! send = "PING\r\n"               # optional: written after connecting
//! expect = "PONG"                 # optional: must appear in the answer
//! ```
//!
//! Names are how a reload matches old and new: a listener whose name and address stay
//! keeps its socket; a backend address that stays in a pool keeps its health and its
//! connection count.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;

use crate::error::ConfigError;

/// A whole, checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Runtime workers; `None`: the CPUs this process may use.
    pub workers: Option<usize>,
    /// Rounds an idle worker spins before it sleeps ([`kcoro::Builder::idle_spin`]).
    pub idle_spin: u32,
    /// Where `/metrics` is served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// How long [`shutdown`](crate::Proxy::shutdown) waits for open connections.
    pub shutdown_grace: Duration,
    /// Listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Backend pools, in file order.
    pub pools: Vec<PoolConfig>,
}

/// One listening socket and what it forwards to.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerConfig {
    /// Unique among listeners.
    pub name: String,
    /// The address it binds.
    pub bind: SocketAddr,
    /// The pool its connections go to.
    pub pool: String,
    /// Open connections it allows; one more is accepted and closed at once.
    pub max_connections: usize,
    /// No byte in either direction for this long closes the connection.
    pub idle_timeout: Duration,
    /// The PROXY protocol header sent to the backend before any data, if any.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Whether a direction that fills a whole buffer moves on to `splice(2)`.
    pub splice: bool,
}

/// PROXY protocol versions (HAProxy's specification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// The text header: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// How a pool picks a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each up backend in turn.
    #[default]
    RoundRobin,
    /// The up backend with the fewest open connections (ties in turn).
    LeastConnections,
}

/// A set of backends a listener forwards to.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    /// Unique among pools.
    pub name: String,
    /// How a backend is picked.
    pub balance: Balance,
    /// Backend addresses (host names resolved when the file is read), no duplicates.
    pub backends: Vec<SocketAddr>,
    /// How long a connect to a backend may take.
    pub connect_timeout: Duration,
    /// Active health checks, if configured.
    pub health: Option<HealthConfig>,
}

/// Active health checks of every backend of a pool.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthConfig {
    /// Time between two checks of a backend.
    pub interval: Duration,
    /// How long one check (connect, send, answer) may take.
    pub timeout: Duration,
    /// Consecutive passes that put a backend that is out back in.
    pub rise: u32,
    /// Consecutive failures that take a backend that is in out.
    pub fall: u32,
    /// Written after connecting.
    pub send: Option<Vec<u8>>,
    /// Must appear in what the backend answers (within 4 KiB).
    pub expect: Option<Vec<u8>>,
}

/// The longest `expect` answer a check reads.
pub const EXPECT_LIMIT: usize = 4096;

const DEFAULT_MAX_CONNECTIONS: usize = 65_536;
const DEFAULT_IDLE: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT: Duration = Duration::from_secs(5);
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
const MAX_WORKERS: usize = 1024;
/// Fewer than the runtime's default (16): with one worker at 10 connections, the backend
/// and the load generator on the other CPU, 4 rounds served 89–90k requests/s at 8.5 µs
/// of CPU each against 82k at 10.1–10.2 µs with 16, and the median latency fell from
/// 115 to 95 µs (docs/BENCHMARKS.md). A proxy's next event comes at once or not for a
/// while; spinning for it keeps a CPU busy that its peers need.
const DEFAULT_IDLE_SPIN: u32 = 4;
/// More rounds than this is a busy loop with extra steps.
const MAX_IDLE_SPIN: u32 = 1000;
const DEFAULT_SPLICE: bool = false;

/// Descriptors a connection may hold: its two sockets and, when it splices, a pipe (two
/// descriptors) per direction.
const FDS_PER_CONNECTION: u64 = 2;
const FDS_PER_SPLICED_CONNECTION: u64 = 6;
/// Listening sockets, health checks, the metrics endpoint, the runtime's own, stdio.
const FDS_BESIDE_CONNECTIONS: u64 = 64;

impl Config {
    /// Descriptors the proxy may hold at once with every listener at `max_connections`
    /// (and a health check per backend in flight).
    pub fn descriptors_needed(&self) -> u64 {
        let connections: u64 = self
            .listeners
            .iter()
            .map(|l| {
                let per = if l.splice { FDS_PER_SPLICED_CONNECTION } else { FDS_PER_CONNECTION };
                (l.max_connections as u64).saturating_mul(per)
            })
            .fold(0, u64::saturating_add);
        let checks: u64 = self.pools.iter().map(|p| p.backends.len() as u64).sum();
        connections.saturating_add(checks).saturating_add(FDS_BESIDE_CONNECTIONS)
    }

    /// Reads and checks the file at `path` (host names are resolved now).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), None, format!("cannot read: {e}")))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and checks `text`; errors name `origin` and the line.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let at = |span: Option<Range<usize>>, message: String| {
            ConfigError::new(origin.to_string(), span.map(|s| line_col(text, s.start)), message)
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
        let workers = match raw.workers {
            Some(w) if *w.get_ref() == 0 || *w.get_ref() > MAX_WORKERS => {
                return Err(at(Some(w.span()), format!("workers must be 1 to {MAX_WORKERS}")));
            }
            w => w.map(Spanned::into_inner),
        };
        let idle_spin = match raw.idle_spin {
            Some(r) if *r.get_ref() > MAX_IDLE_SPIN => {
                return Err(at(Some(r.span()), format!("idle_spin must be 0 to {MAX_IDLE_SPIN}")));
            }
            r => r.map_or(DEFAULT_IDLE_SPIN, Spanned::into_inner),
        };

        let mut pools = Vec::with_capacity(raw.pools.len());
        let mut pool_names = HashSet::new();
        for pool in raw.pools {
            let (span, pool) = (pool.span(), pool.into_inner());
            if !pool_names.insert(pool.name.clone()) {
                return Err(at(Some(span), format!("a second pool named {:?}", pool.name)));
            }
            if pool.backends.is_empty() {
                return Err(at(Some(span), format!("pool {:?} has no backends", pool.name)));
            }
            let mut backends: Vec<SocketAddr> = Vec::with_capacity(pool.backends.len());
            for b in pool.backends {
                if backends.contains(&b.get_ref().0) {
                    return Err(at(Some(b.span()), format!("backend {} is listed twice", b.get_ref().0)));
                }
                backends.push(b.into_inner().0);
            }
            let health = match pool.health {
                Some(h) => Some(h.check().map_err(|(span, m)| at(Some(span), m))?),
                None => None,
            };
            pools.push(PoolConfig {
                name: pool.name,
                balance: pool.balance,
                backends,
                connect_timeout: pool.connect_timeout.map_or(DEFAULT_CONNECT, |d| d.0),
                health,
            });
        }

        let mut listeners = Vec::with_capacity(raw.listeners.len());
        let mut names = HashSet::new();
        let mut binds = HashSet::new();
        for l in raw.listeners {
            let (span, l) = (l.span(), l.into_inner());
            if !names.insert(l.name.clone()) {
                return Err(at(Some(span), format!("a second listener named {:?}", l.name)));
            }
            if l.bind.port() != 0 && !binds.insert(l.bind) {
                return Err(at(Some(span), format!("a second listener on {}", l.bind)));
            }
            if !pool_names.contains(l.pool.get_ref()) {
                return Err(at(Some(l.pool.span()), format!("no pool named {:?}", l.pool.get_ref())));
            }
            let max_connections = match l.max_connections {
                Some(m) if *m.get_ref() == 0 => {
                    return Err(at(Some(m.span()), "max_connections must be at least 1".to_string()));
                }
                m => m.map_or(DEFAULT_MAX_CONNECTIONS, Spanned::into_inner),
            };
            listeners.push(ListenerConfig {
                name: l.name,
                bind: l.bind,
                pool: l.pool.into_inner(),
                max_connections,
                idle_timeout: l.idle_timeout.map_or(DEFAULT_IDLE, |d| d.0),
                proxy_protocol: l.proxy_protocol,
                splice: l.splice.unwrap_or(DEFAULT_SPLICE),
            });
        }
        if listeners.is_empty() {
            return Err(at(None, "no [[listener]]: nothing to serve".to_string()));
        }
        Ok(Config {
            workers,
            idle_spin,
            metrics: raw.metrics,
            shutdown_grace: raw.shutdown_grace.map_or(DEFAULT_GRACE, |d| d.0),
            listeners,
            pools,
        })
    }

    /// Whether `new` is served by the socket of `old` across a reload: the same address,
    /// and for port 0 (any free port) also the same name.
    pub(crate) fn same_socket(old: &ListenerConfig, new: &ListenerConfig) -> bool {
        old.bind == new.bind && (new.bind.port() != 0 || old.name == new.name)
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    workers: Option<Spanned<usize>>,
    idle_spin: Option<Spanned<u32>>,
    metrics: Option<SocketAddr>,
    shutdown_grace: Option<Human>,
    #[serde(default, rename = "listener")]
    listeners: Vec<Spanned<RawListener>>,
    #[serde(default, rename = "pool")]
    pools: Vec<Spanned<RawPool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: String,
    bind: SocketAddr,
    pool: Spanned<String>,
    max_connections: Option<Spanned<usize>>,
    idle_timeout: Option<Human>,
    proxy_protocol: Option<ProxyProtocol>,
    splice: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: String,
    #[serde(default)]
    balance: Balance,
    backends: Vec<Spanned<Resolved>>,
    connect_timeout: Option<Human>,
    health: Option<RawHealth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    interval: Option<Human>,
    timeout: Option<Human>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    send: Option<String>,
    expect: Option<Spanned<String>>,
}

impl RawHealth {
    fn check(self) -> Result<HealthConfig, (Range<usize>, String)> {
        let count = |c: Option<Spanned<u32>>, default: u32, what: &str| match c {
            Some(c) if *c.get_ref() == 0 => Err((c.span(), format!("{what} must be at least 1"))),
            c => Ok(c.map_or(default, Spanned::into_inner)),
        };
        let expect = match self.expect {
            Some(e) if e.get_ref().is_empty() || e.get_ref().len() > EXPECT_LIMIT => {
                return Err((e.span(), format!("expect must be 1 to {EXPECT_LIMIT} bytes")));
            }
            e => e.map(|e| e.into_inner().into_bytes()),
        };
        Ok(HealthConfig {
            interval: self.interval.map_or(Duration::from_secs(2), |d| d.0),
            timeout: self.timeout.map_or(Duration::from_secs(1), |d| d.0),
            rise: count(self.rise, 2, "rise")?,
            fall: count(self.fall, 3, "fall")?,
            send: self.send.filter(|s| !s.is_empty()).map(String::into_bytes),
            expect,
        })
    }
}

/// A duration written for people: `"500ms"`, `"2s"`, `"1m 30s"`; zero is refused.
struct Human(Duration);

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() => Err(de::Error::custom("a duration must be more than zero")),
            Ok(d) => Ok(Human(d)),
            Err(e) => Err(de::Error::custom(format!("{text:?} is not a duration (\"500ms\", \"2s\"): {e}"))),
        }
    }
}

/// A `host:port` resolved to its first address.
struct Resolved(SocketAddr);

impl<'de> Deserialize<'de> for Resolved {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if let Ok(addr) = text.parse() {
            return Ok(Resolved(addr));
        }
        match text.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(addr)) => Ok(Resolved(addr)),
            Ok(None) => Err(de::Error::custom(format!("{text:?} resolves to no address"))),
            Err(e) => Err(de::Error::custom(format!("{text:?} is not host:port: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
workers = 2
idle_spin = 12
metrics = "127.0.0.1:9465"
shutdown_grace = "10s"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
max_connections = 100
idle_timeout = "1m 30s"
proxy_protocol = "v2"
splice = true

[[pool]]
name = "app"
balance = "least-connections"
backends = ["127.0.0.1:9001", "localhost:9002"]
connect_timeout = "250ms"
[pool.health]
rise = 1
send = "PING\r\n"
expect = "PONG"
"#;

    #[test]
    fn descriptors_needed_counts_every_listener_and_splice_pipes() {
        let mut c = Config::parse(FULL, "t.toml").unwrap();
        // 100 spliced connections (2 sockets, 2 pipes), 2 backends' checks, 64 beside.
        assert_eq!(c.descriptors_needed(), 100 * 6 + 2 + 64);
        let mut plain = c.listeners[0].clone();
        plain.splice = false;
        plain.max_connections = 1000;
        c.listeners.push(plain);
        assert_eq!(c.descriptors_needed(), 100 * 6 + 1000 * 2 + 2 + 64);
        c.listeners[1].max_connections = usize::MAX;
        assert_eq!(c.descriptors_needed(), u64::MAX, "saturates");
    }

    #[test]
    fn a_full_file_reads_with_every_value() {
        let c = Config::parse(FULL, "t.toml").unwrap();
        assert_eq!(c.workers, Some(2));
        assert_eq!(c.idle_spin, 12);
        assert_eq!(c.metrics, Some("127.0.0.1:9465".parse().unwrap()));
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
        let l = &c.listeners[0];
        assert_eq!((l.name.as_str(), l.pool.as_str(), l.max_connections), ("web", "app", 100));
        assert_eq!(l.idle_timeout, Duration::from_secs(90));
        assert_eq!(l.proxy_protocol, Some(ProxyProtocol::V2));
        assert!(l.splice);
        let p = c.pool("app").unwrap();
        assert_eq!(p.balance, Balance::LeastConnections);
        assert_eq!(p.backends[0], "127.0.0.1:9001".parse().unwrap());
        assert_eq!(p.backends[1].port(), 9002);
        assert_eq!(p.connect_timeout, Duration::from_millis(250));
        let h = p.health.as_ref().unwrap();
        assert_eq!((h.rise, h.fall, h.interval), (1, 3, Duration::from_secs(2)));
        assert_eq!(h.send.as_deref(), Some(&b"PING\r\n"[..]));
        assert_eq!(h.expect.as_deref(), Some(&b"PONG"[..]));
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = Config::parse(
            "[[listener]]\nname='a'\nbind='127.0.0.1:1'\npool='p'\n[[pool]]\nname='p'\nbackends=['127.0.0.1:2']\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.workers, None);
        assert_eq!(c.idle_spin, DEFAULT_IDLE_SPIN);
        assert_eq!(c.listeners[0].max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(c.listeners[0].idle_timeout, DEFAULT_IDLE);
        assert_eq!(c.listeners[0].proxy_protocol, None);
        assert!(!c.listeners[0].splice);
        assert_eq!(c.pools[0].balance, Balance::RoundRobin);
        assert_eq!(c.pools[0].health, None);
    }

    /// Each mistake is reported at its own line, with what is wrong.
    #[test]
    fn errors_name_the_line_and_the_mistake() {
        let base = "[[listener]]\nname = 'a'\nbind = '127.0.0.1:1'\npool = 'p'\n\n[[pool]]\nname = 'p'\nbackends = ['127.0.0.1:2']\n";
        let cases: &[(&str, &str, usize, &str)] = &[
            ("pool = 'p'", "pool = 'q'", 4, "no pool named \"q\""),
            ("bind = '127.0.0.1:1'", "bind = 'nowhere'", 3, "invalid socket address"),
            ("backends = ['127.0.0.1:2']", "backends = []", 6, "has no backends"),
            ("backends = ['127.0.0.1:2']", "backends = ['127.0.0.1:2', '127.0.0.1:2']", 8, "listed twice"),
            ("name = 'a'", "name = 'a'\nidle_timeout = 'soon'", 3, "is not a duration"),
            ("name = 'a'", "name = 'a'\nmax_connections = 0", 3, "at least 1"),
            ("name = 'a'", "name = 'a'\ntypo = 1", 3, "unknown field `typo`"),
            ("name = 'p'", "name = 'p'\nbalance = 'random'", 8, "unknown variant `random`"),
            ("pool = 'p'", "pool = 'p'\nproxy_protocol = 'v3'", 5, "unknown variant `v3`"),
            (
                "backends = ['127.0.0.1:2']",
                "backends = ['127.0.0.1:2']\n[pool.health]\nfall = 0",
                10,
                "fall must be",
            ),
            ("name = 'a'", "name = 'a'\nidle_timeout = '0s'", 3, "more than zero"),
        ];
        for (from, to, line, needle) in cases {
            let text = base.replacen(from, to, 1);
            let e = Config::parse(&text, "p.toml").unwrap_err();
            let shown = e.to_string();
            assert!(shown.starts_with(&format!("p.toml:{line}:")), "{to:?}: {shown}");
            assert!(shown.contains(needle), "{to:?}: {shown}");
        }
        let e = Config::parse("workers = 4\n", "p.toml").unwrap_err();
        assert!(e.to_string().contains("no [[listener]]"), "{e}");
        let e = Config::parse("workers = 0\n", "p.toml").unwrap_err();
        assert!(e.to_string().starts_with("p.toml:1:"), "{e}");
        let e = Config::parse("workers = 1\nidle_spin = 1001\n", "p.toml").unwrap_err();
        assert!(e.to_string().starts_with("p.toml:2:"), "{e}");
        assert!(e.to_string().contains("idle_spin must be 0 to 1000"), "{e}");
        let e = Config::parse("idle_spin = -1\n", "p.toml").unwrap_err();
        assert!(e.to_string().starts_with("p.toml:1:"), "{e}");
    }

    proptest::proptest! {
        /// Whatever the file holds, reading it ends in a configuration or an error with
        /// a line inside the file, never a panic.
        #[test]
        fn any_text_reads_or_fails_cleanly(text in "(\\[\\[?(listener|pool)\\]\\]?\n|[a-z_]{1,16} = (\"[ -~]{0,24}\"|[0-9]{1,6}|true|\\[\"127.0.0.1:[0-9]{1,5}\"\\])\n|[ -~\n]{0,8}){0,24}") {
            if let Err(e) = Config::parse(&text, "f") {
                let lines = text.lines().count().max(1) + 1;
                proptest::prop_assert!(e.line().is_none_or(|l| l <= lines), "{e} in {} lines", lines);
            }
        }
    }

    /// The example in docs/PROXY.md is a working file with every key. Its one host name
    /// is illustrative and names are resolved when the file is read, so it becomes
    /// `localhost` here.
    #[test]
    fn the_documented_example_reads_with_its_values() {
        let doc = include_str!("../../../docs/PROXY.md");
        let start = doc.find("```toml\n").expect("docs/PROXY.md has a toml example") + "```toml\n".len();
        let len = doc[start..].find("```").expect("the example ends");
        let text = doc[start..start + len].replace("db.internal", "localhost");
        let c = Config::parse(&text, "PROXY.md").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.workers, c.idle_spin), (Some(2), 4));
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        let l = &c.listeners[0];
        assert_eq!((l.name.as_str(), l.max_connections, l.splice), ("web", 10000, false));
        assert_eq!(l.proxy_protocol, Some(ProxyProtocol::V2));
        let p = c.pool("app").expect("pool app");
        assert_eq!((p.balance, p.backends.len()), (Balance::LeastConnections, 2));
        let h = p.health.as_ref().expect("health checks");
        assert_eq!((h.rise, h.fall), (2, 3));
        assert_eq!(h.expect.as_deref(), Some(&b"PONG"[..]));
    }

    #[test]
    fn a_missing_file_says_so() {
        let e = Config::load(Path::new("/nonexistent/kcoro-proxy.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/kcoro-proxy.toml: cannot read"), "{e}");
    }
}
