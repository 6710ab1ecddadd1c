//! The proxy's counters as [`Metric`] samples: what the `metrics` endpoint renders (in the
//! Prometheus text format, beside the runtime's own families) and what `kcoro chanmon`
//! shows when it attaches to the proxy's monitor.

use kcoro::monitor::{Metric, MetricKind};

use crate::stats::{ErrorKind, Stats};

/// One family: a sample per `(labels, value)`.
fn family<'a>(
    out: &mut Vec<Metric>,
    name: &str,
    kind: MetricKind,
    help: &str,
    samples: impl IntoIterator<Item = (Vec<(&'a str, String)>, u64)>,
) {
    for (labels, value) in samples {
        out.push(Metric {
            name: name.into(),
            help: help.into(),
            kind,
            labels: labels.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            value: value as f64,
        });
    }
}

/// The samples of `stats`, family by family.
pub(crate) fn collect(stats: &Stats) -> Vec<Metric> {
    use MetricKind::{Counter, Gauge};
    let mut out = Vec::with_capacity(16 * stats.listeners.len() + 8 * stats.pools.len());
    let l = |f: fn(&crate::ListenerStats) -> u64| {
        stats.listeners.iter().map(move |s| (vec![("listener", s.name.clone())], f(s)))
    };
    family(&mut out, "kcoro_proxy_connections_total", Counter, "Connections accepted.", l(|s| s.accepted));
    family(&mut out, "kcoro_proxy_connections_open", Gauge, "Connections open now.", l(|s| s.active));
    family(
        &mut out,
        "kcoro_proxy_received_bytes_total",
        Counter,
        "Bytes from clients to backends.",
        l(|s| s.bytes_in),
    );
    family(
        &mut out,
        "kcoro_proxy_sent_bytes_total",
        Counter,
        "Bytes from backends to clients.",
        l(|s| s.bytes_out),
    );
    family(
        &mut out,
        "kcoro_proxy_errors_total",
        Counter,
        "Connections that failed or were refused, by kind.",
        stats.listeners.iter().flat_map(|s| {
            ErrorKind::ALL.into_iter().map(move |k| {
                (vec![("listener", s.name.clone()), ("kind", k.name().to_string())], s.errors.get(k))
            })
        }),
    );
    let p = |f: fn(&crate::PoolStats) -> u64| {
        stats.pools.iter().map(move |s| (vec![("pool", s.name.clone())], f(s)))
    };
    family(
        &mut out,
        "kcoro_proxy_pending_connects",
        Gauge,
        "Connections waiting for a backend connect.",
        p(|s| s.pending),
    );
    let b = |f: fn(&crate::BackendStats) -> u64| {
        stats.pools.iter().flat_map(move |p| {
            p.backends
                .iter()
                .map(move |b| (vec![("pool", p.name.clone()), ("backend", b.addr.to_string())], f(b)))
        })
    };
    family(
        &mut out,
        "kcoro_proxy_backend_up",
        Gauge,
        "1 if the backend takes new connections.",
        b(|b| u64::from(b.up)),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_connections_open",
        Gauge,
        "Connections open to the backend.",
        b(|b| b.active),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_connections_total",
        Counter,
        "Connections forwarded to the backend.",
        b(|b| b.connections),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_connect_errors_total",
        Counter,
        "Failed connects to the backend.",
        b(|b| b.connect_errors),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_check_failures_total",
        Counter,
        "Failed health checks.",
        b(|b| b.checks_failed),
    );
    family(
        &mut out,
        "kcoro_proxy_backend_downs_total",
        Counter,
        "Times a health check took the backend out.",
        b(|b| b.downs),
    );
    out
}

/// Renders `stats` in the Prometheus text format.
pub(crate) fn render(stats: &Stats) -> String {
    kcoro::monitor::prometheus_metrics(&collect(stats))
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
