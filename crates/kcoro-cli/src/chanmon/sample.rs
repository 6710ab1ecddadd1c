//! One sample: every channel's counters and the scheduler's, taken at one instant of the
//! monitored process's monotonic clock. This is the NDJSON line format (`--json`,
//! `--replay`) and what every view is computed from.
//!
//! Counters are cumulative, exactly as the channel keeps them; rates are never stored,
//! only computed from two samples ([`super::state`]), so a recording replays exactly.

use std::time::Duration;

use kcoro::chan::{Kind, Snapshot};
use kcoro::monitor::{Metric, MetricKind};
use kcoro_ipc::ChannelStats;
use kcoro_ipc::coros::CoroutineReport;
use serde::{Deserialize, Serialize};

/// The `schema` field of every line; bumped when a field changes meaning.
pub const SCHEMA: u32 = 1;

/// Every channel and the scheduler at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The monitored process's monotonic clock when the sample was taken, ns.
    pub taken_ns: u64,
    /// Where it came from (`unix:/run/app.sock`, `demo`, a replayed file).
    pub source: String,
    /// Every named channel, in the order the process lists them.
    pub channels: Vec<ChannelSample>,
    /// The scheduler's counters, when the source reports them.
    pub sched: Option<SchedSample>,
    /// The coroutines and the deadlock the source sees, when it reports them (absent
    /// from recordings made before chanmon read them, which still replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coroutines: Option<CoroutinesSample>,
    /// The program's own counters and gauges (a proxy's connections per listener, say),
    /// when it serves them; absent from older recordings, which still replay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSample>,
}

/// One of the program's own metric samples (`kcoro::monitor::Metric`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// The family name (`kcoro_proxy_connections_total`).
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub help: String,
    /// `counter` (the view shows its rate) or `gauge`.
    pub kind: String,
    /// Label names and values, in the program's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    /// `None` when the program reported a value that is not a finite number (JSON has
    /// none of those).
    pub value: Option<f64>,
}

impl MetricSample {
    pub fn from_metric(m: &Metric) -> MetricSample {
        MetricSample {
            name: m.name.clone(),
            help: m.help.clone(),
            kind: m.kind.name().to_string(),
            labels: m.labels.clone(),
            value: Some(m.value).filter(|v| v.is_finite()),
        }
    }

    /// A counter only grows: the view shows its rate.
    pub fn is_counter(&self) -> bool {
        self.kind == "counter"
    }

    /// As a metric again (`None` without a finite value).
    pub fn to_metric(&self) -> Option<Metric> {
        Some(Metric {
            name: self.name.clone(),
            help: self.help.clone(),
            kind: if self.is_counter() { MetricKind::Counter } else { MetricKind::Gauge },
            labels: self.labels.clone(),
            value: self.value?,
        })
    }
}

/// The monitored runtime's coroutines at the sample's instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoroutinesSample {
    /// Live coroutines, and of them running, runnable and parked.
    pub total: u64,
    pub running: u64,
    pub runnable: u64,
    pub parked: u64,
    /// The coroutines listed (the source may list fewer than `total`: the longest parked
    /// first).
    pub list: Vec<CoroutineSample>,
    /// The source's deadlock report, when it sees one now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadlock: Option<String>,
    /// Threads outside the runtime waiting in kcoro primitives (`name: what`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<String>,
}

/// One coroutine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoroutineSample {
    pub id: u64,
    pub name: Option<String>,
    /// The worker it runs on, once started.
    pub worker: Option<u64>,
    /// `running`, `runnable` or `parked`.
    pub state: String,
    /// What it waits on (`recv on jobs`), when parked.
    pub wait: Option<String>,
    /// Time left before its park's deadline.
    pub deadline_in_ns: Option<u64>,
    /// How long it has been in this park, counted by the source from its first look at
    /// the park.
    pub parked_for_ns: Option<u64>,
    /// Changes with every park.
    pub park_seq: u32,
    /// `file:line:column` of its spawn.
    pub spawned_at: String,
    /// Left out of deadlock detection.
    pub daemon: bool,
    /// The channel a send or receive waits on (a [`ChannelSample::id`]).
    pub wait_channel: Option<WaitChannel>,
    /// Part of the deadlock the source reports.
    pub in_deadlock: bool,
}

/// The channel a parked send or receive waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitChannel {
    /// The channel's [`ChannelSample::id`].
    pub id: u64,
    /// A send (else a receive).
    pub send: bool,
}

impl CoroutinesSample {
    /// From a coroutine report (GET_COROS, or built in this process).
    pub fn from_report(r: &CoroutineReport) -> CoroutinesSample {
        let ns = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        CoroutinesSample {
            total: r.total,
            running: r.running,
            runnable: r.runnable,
            parked: r.parked,
            list: r
                .coroutines
                .iter()
                .map(|c| CoroutineSample {
                    id: c.id,
                    name: c.name.clone(),
                    worker: c.worker,
                    state: c.state.clone(),
                    wait: c.wait.clone(),
                    deadline_in_ns: ns(c.deadline_in),
                    parked_for_ns: ns(c.parked_for),
                    park_seq: c.park_seq,
                    spawned_at: c.spawned_at.clone(),
                    daemon: c.daemon,
                    wait_channel: c.wait_channel.map(|(id, send)| WaitChannel { id, send }),
                    in_deadlock: c.in_deadlock,
                })
                .collect(),
            deadlock: r.deadlock.clone(),
            threads: r.threads.clone(),
        }
    }

    /// The identity of the reported deadlock: its coroutines' (id, park sequence), sorted
    /// (the same in two samples: nothing moved in between). `None` without a deadlock.
    pub fn deadlock_key(&self) -> Option<Vec<(u64, u32)>> {
        self.deadlock.as_ref()?;
        let mut key: Vec<(u64, u32)> =
            self.list.iter().filter(|c| c.in_deadlock).map(|c| (c.id, c.park_seq)).collect();
        key.sort_unstable();
        Some(key)
    }
}

/// Failed operations of one direction, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCounts {
    pub would_block: u64,
    pub timeout: u64,
    pub closed: u64,
    pub canceled: u64,
}

impl FailureCounts {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.would_block + self.timeout + self.closed + self.canceled
    }
}

impl From<kcoro::chan::Failures> for FailureCounts {
    fn from(f: kcoro::chan::Failures) -> Self {
        FailureCounts {
            would_block: f.would_block,
            timeout: f.timeout,
            closed: f.closed,
            canceled: f.canceled,
        }
    }
}

/// One channel's shape and cumulative counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelSample {
    /// Unique for the channel's life in its process (tells two of one name apart).
    pub id: u64,
    pub name: String,
    /// `rendezvous`, `buffered`, `conflated` or `unlimited`.
    pub kind: String,
    /// `None`: unbounded.
    pub capacity: Option<u64>,
    /// Values buffered now.
    pub len: u64,
    pub closed: bool,
    /// Senders and receivers parked on the channel now.
    pub parked_senders: u64,
    pub parked_receivers: u64,
    pub sends: u64,
    pub recvs: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub send_failures: FailureCounts,
    pub recv_failures: FailureCounts,
    /// Values dropped by an overflow policy or by conflation.
    pub overflow_drops: u64,
    /// Rendezvous hand-offs and rendezvous sends given up.
    pub rv_matches: u64,
    pub rv_cancels: u64,
    /// Zero-copy descriptors sent and received (zero-copy channels only).
    pub zero_copy: Option<ZeroCopyCounts>,
}

/// A zero-copy channel's descriptor counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeroCopyCounts {
    pub sent: u64,
    pub received: u64,
    pub canceled: u64,
    pub aborted_close: u64,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Rendezvous => "rendezvous",
        Kind::Buffered => "buffered",
        Kind::Conflated => "conflated",
        Kind::Unlimited => "unlimited",
    }
}

impl ChannelSample {
    /// From a snapshot of a channel in this process (or one rebuilt from a server's).
    pub fn from_snapshot(s: &Snapshot) -> ChannelSample {
        ChannelSample {
            id: s.id,
            name: s.name.clone().unwrap_or_else(|| format!("#{}", s.id)),
            kind: kind_name(s.kind).to_string(),
            capacity: s.capacity.map(|c| c as u64),
            len: s.len as u64,
            closed: s.closed,
            parked_senders: s.parked_senders as u64,
            parked_receivers: s.parked_receivers as u64,
            sends: s.sends,
            recvs: s.recvs,
            bytes_sent: s.bytes_sent,
            bytes_recv: s.bytes_recv,
            send_failures: s.send_failures.into(),
            recv_failures: s.recv_failures.into(),
            overflow_drops: s.overflow_drops,
            rv_matches: s.rv_matches,
            rv_cancels: s.rv_cancels,
            zero_copy: s.zero_copy.map(|z| ZeroCopyCounts {
                sent: z.sent,
                received: z.received,
                canceled: z.canceled,
                aborted_close: z.aborted_close,
            }),
        }
    }

    /// From a server's `STATS`.
    pub fn from_stats(s: &ChannelStats) -> ChannelSample {
        ChannelSample::from_snapshot(&s.to_snapshot())
    }

    /// Depth over capacity, 0..=1; `None` for an unbounded or zero-capacity channel.
    pub fn fill(&self) -> Option<f64> {
        self.capacity.filter(|&c| c > 0).map(|c| (self.len as f64 / c as f64).min(1.0))
    }
}

/// The scheduler's counters (cumulative unless noted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedSample {
    pub workers: u64,
    pub spawned: u64,
    pub completed: u64,
    /// Now: running or runnable.
    pub running: u64,
    /// Now: parked.
    pub parked: u64,
    pub steals: u64,
    pub inject_pulls: u64,
    pub timer_fires: u64,
    /// Now.
    pub stacks_live: u64,
    /// Now.
    pub stacks_pooled: u64,
}

impl From<&kcoro::Stats> for SchedSample {
    fn from(s: &kcoro::Stats) -> Self {
        SchedSample {
            workers: s.workers as u64,
            spawned: s.spawned,
            completed: s.completed,
            running: s.running,
            parked: s.parked,
            steals: s.steals,
            inject_pulls: s.inject_pulls,
            timer_fires: s.timer_fires,
            stacks_live: s.stacks_live as u64,
            stacks_pooled: s.stacks_pooled as u64,
        }
    }
}

impl Sample {
    /// One NDJSON line (no newline).
    pub fn to_line(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one NDJSON line, checking the schema.
    pub fn from_line(line: &str) -> Result<Sample, String> {
        let s: Sample = serde_json::from_str(line).map_err(|e| format!("not a chanmon sample: {e}"))?;
        if s.schema != SCHEMA {
            return Err(format!("sample schema {} (this chanmon reads {SCHEMA})", s.schema));
        }
        Ok(s)
    }
}

impl ChannelSample {
    /// Back to a [`Snapshot`] (for the Prometheus renderer).
    pub fn to_snapshot(&self) -> Snapshot {
        let f = |c: &FailureCounts| kcoro::chan::Failures {
            would_block: c.would_block,
            timeout: c.timeout,
            closed: c.closed,
            canceled: c.canceled,
        };
        let kind = match self.kind.as_str() {
            "rendezvous" => Kind::Rendezvous,
            "conflated" => Kind::Conflated,
            "unlimited" => Kind::Unlimited,
            _ => Kind::Buffered,
        };
        Snapshot {
            id: self.id,
            name: Some(self.name.clone()),
            kind,
            capacity: self.capacity.map(|c| usize::try_from(c).unwrap_or(usize::MAX)),
            len: usize::try_from(self.len).unwrap_or(usize::MAX),
            closed: self.closed,
            parked_senders: usize::try_from(self.parked_senders).unwrap_or(usize::MAX),
            parked_receivers: usize::try_from(self.parked_receivers).unwrap_or(usize::MAX),
            sends: self.sends,
            recvs: self.recvs,
            bytes_sent: self.bytes_sent,
            bytes_recv: self.bytes_recv,
            send_failures: f(&self.send_failures),
            recv_failures: f(&self.recv_failures),
            overflow_drops: self.overflow_drops,
            rv_matches: self.rv_matches,
            rv_cancels: self.rv_cancels,
            zero_copy: self.zero_copy.map(|z| kcoro::chan::ZeroCopyStats {
                sent: z.sent,
                received: z.received,
                canceled: z.canceled,
                aborted_close: z.aborted_close,
                ..Default::default()
            }),
            ..Snapshot::default()
        }
    }
}

impl SchedSample {
    /// As the runtime's counters (the fields a sample carries; the rest 0).
    pub fn to_stats(self) -> kcoro::Stats {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        kcoro::Stats {
            workers: size(self.workers),
            spawned: self.spawned,
            completed: self.completed,
            running: self.running,
            parked: self.parked,
            steals: self.steals,
            inject_pulls: self.inject_pulls,
            timer_fires: self.timer_fires,
            stacks_live: size(self.stacks_live),
            stacks_pooled: size(self.stacks_pooled),
            ..kcoro::Stats::default()
        }
    }
}

impl Sample {
    /// The Prometheus text exposition of this sample (with the coroutine gauges when the
    /// source reports coroutines).
    pub fn to_prometheus(&self) -> String {
        let snaps: Vec<Snapshot> = self.channels.iter().map(ChannelSample::to_snapshot).collect();
        let mut out = kcoro::monitor::prometheus(&snaps, self.sched.map(|s| s.to_stats()).as_ref());
        if let Some(c) = &self.coroutines {
            out +=
                &kcoro::monitor::prometheus_coroutines(c.running, c.runnable, c.parked, c.deadlock.is_some());
        }
        let metrics: Vec<Metric> = self.metrics.iter().filter_map(MetricSample::to_metric).collect();
        out += &kcoro::monitor::prometheus_metrics(&metrics);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample of nothing, at 1 ns, from `t`.
    fn empty() -> Sample {
        Sample {
            schema: SCHEMA,
            taken_ns: 1,
            source: "t".into(),
            channels: vec![],
            sched: None,
            coroutines: None,
            metrics: vec![],
        }
    }

    #[test]
    fn a_recording_from_before_the_coroutines_still_replays() {
        let old = r#"{"schema":1,"taken_ns":5,"source":"demo","channels":[],"sched":null}"#;
        let s = Sample::from_line(old).unwrap();
        assert_eq!((s.taken_ns, &s.coroutines), (5, &None));
        assert_eq!(s.to_line(), old, "and a sample without them is written as before");
    }

    #[test]
    fn metrics_survive_a_line_and_export_as_their_families() {
        let metrics = [
            Metric::counter("kcoro_proxy_connections_total", "Connections accepted.", 7.0)
                .label("listener", "web"),
            Metric::gauge("app_nan", "", f64::NAN),
        ];
        let s = Sample { metrics: metrics.iter().map(MetricSample::from_metric).collect(), ..empty() };
        assert_eq!(s.metrics[1].value, None, "NaN has no JSON form");
        assert_eq!(Sample::from_line(&s.to_line()), Ok(s.clone()));
        let text = s.to_prometheus();
        assert!(text.contains("kcoro_proxy_connections_total{listener=\"web\"} 7\n"), "{text}");
        assert!(!text.contains("app_nan"), "{text}");
    }

    #[test]
    fn coroutines_survive_a_line_and_export_their_gauges() {
        let report = CoroutineReport {
            total: 2,
            running: 0,
            runnable: 0,
            parked: 2,
            deadlock: Some("deadlock: all 2 coroutines are parked".into()),
            coroutines: vec![kcoro_ipc::CoroutineInfo {
                id: 3,
                name: Some("a".into()),
                state: "parked".into(),
                wait: Some("recv on left".into()),
                parked_for: Some(Duration::from_millis(1500)),
                park_seq: 4,
                spawned_at: "src/main.rs:9:5".into(),
                wait_channel: Some((11, false)),
                in_deadlock: true,
                ..kcoro_ipc::CoroutineInfo::default()
            }],
            threads: vec!["main: join of coroutine 1".into()],
        };
        let coros = CoroutinesSample::from_report(&report);
        assert_eq!(coros.list[0].parked_for_ns, Some(1_500_000_000));
        assert_eq!(coros.list[0].wait_channel, Some(WaitChannel { id: 11, send: false }));
        assert_eq!(coros.deadlock_key(), Some(vec![(3, 4)]));
        let s = Sample { coroutines: Some(coros), ..empty() };
        assert_eq!(Sample::from_line(&s.to_line()), Ok(s.clone()));
        let text = s.to_prometheus();
        assert!(text.contains("kcoro_coroutines{state=\"parked\"} 2\n"), "{text}");
        assert!(text.contains("\nkcoro_deadlock 1\n"), "{text}");
    }
}
