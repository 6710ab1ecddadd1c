//! The proxy's counters in the Prometheus text exposition format (0.0.4), beside the
//! runtime's own families (`kcoro::monitor`).

use std::fmt::Write as _;

use crate::stats::{ErrorKind, Stats};

/// Label values are escaped as the format asks (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One family: its header, then a sample per `(labels, value)`.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Renders `stats`.
pub(crate) fn render(stats: &Stats) -> String {
    let mut out = String::with_capacity(1024 + 512 * stats.listeners.len() + 512 * stats.pools.len());
    let l = |f: fn(&crate::ListenerStats) -> u64| {
        stats.listeners.iter().map(move |s| (format!("listener=\"{}\"", escape(&s.name)), f(s)))
    };
    family(&mut out, "kcoro_proxy_connections_total", "counter", "Connections accepted.", l(|s| s.accepted));
    family(&mut out, "kcoro_proxy_connections_open", "gauge", "Connections open now.", l(|s| s.active));
    family(
        &mut out,
        "kcoro_proxy_received_bytes_total",
        "counter",
        "Bytes from clients to backends.",
        l(|s| s.bytes_in),
    );
    family(
        &mut out,
        "kcoro_proxy_sent_bytes_total",
        "counter",
        "Bytes from backends to clients.",
        l(|s| s.bytes_out),
    );
    family(
        &mut out,
        "kcoro_proxy_errors_total",
        "counter",
        "Connections that failed or were refused, by kind.",
        stats.listeners.iter().flat_map(|s| {
            ErrorKind::ALL.into_iter().map(move |k| {
                (format!("listener=\"{}\",kind=\"{}\"", escape(&s.name), k.name()), s.errors.get(k))
            })
        }),
    );
    let p = |f: fn(&crate::PoolStats) -> u64| {
        stats.pools.iter().map(move |s| (format!("pool=\"{}\"", escape(&s.name)), f(s)))
    };
    family(
        &mut out,
        "kcoro_proxy_pending_connects",
        "gauge",
        "Connections waiting for a backend connect.",
        p(|s| s.pending),
    );
    let b = |f: fn(&crate::BackendStats) -> u64| {
        stats.pools.iter().flat_map(move |p| {
            p.backends
                .iter()
                .map(move |b| (format!("pool=\"{}\",backend=\"{}\"", escape(&p.name), b.addr), f(b)))
        })
    };
    family(
        &mut out,
        "kcoro_proxy_backend_up",
        "gauge",
        "1 if the backend takes new connections.",
        b(|b| u64::from(b.up)),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_connections_open",
        "gauge",
        "Connections open to the backend.",
        b(|b| b.active),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_connections_total",
        "counter",
        "Connections forwarded to the backend.",
        b(|b| b.connections),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_connect_errors_total",
        "counter",
        "Failed connects to the backend.",
        b(|b| b.connect_errors),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_check_failures_total",
        "counter",
        "Failed health checks.",
        b(|b| b.checks_failed),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_downs_total",
        "counter",
        "Times a health check took the backend out.",
        b(|b| b.downs),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{BackendStats, ErrorCounts, ListenerStats, PoolStats};

    #[test]
    fn every_family_has_its_header_and_labelled_samples() {
        let stats = Stats {
            listeners: vec![ListenerStats {
                name: "we\"b".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
                pool: "app".into(),
                accepted: 7,
                active: 2,
                closed: 5,
                bytes_in: 100,
                bytes_out: 200,
                errors: ErrorCounts::default(),
            }],
            pools: vec![PoolStats {
                name: "app".into(),
                pending: 1,
                no_backend: 0,
                backends: vec![BackendStats {
                    addr: "127.0.0.1:2".parse().unwrap(),
                    up: true,
                    active: 2,
                    connections: 7,
                    connect_errors: 1,
                    checks_failed: 0,
                    downs: 0,
                }],
            }],
        };
        let text = render(&stats);
        assert!(text.contains("kcoro_proxy_connections_total{listener=\"we\\\"b\"} 7\n"), "{text}");
        assert!(
            text.contains("kcoro_proxy_errors_total{listener=\"we\\\"b\",kind=\"no_backend\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("kcoro_proxy_backend_up{pool=\"app\",backend=\"127.0.0.1:2\"} 1\n"), "{text}");
        assert!(text.contains("kcoro_proxy_pending_connects{pool=\"app\"} 1\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} has no TYPE");
        }
    }
}
