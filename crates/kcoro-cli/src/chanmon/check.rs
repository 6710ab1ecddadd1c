//! `--check 'EXPR'`: thresholds for scripts and CI.
//!
//! ```text
//!   EXPR   := [CHANNEL ':'] METRIC OP NUMBER [ 'for' DURATION ]
//!   METRIC := fill | len | parked | parked_senders | parked_receivers | sends_per_sec
//!           | recvs_per_sec | bytes_per_sec | failures_per_sec | failures | overflow_drops
//!   OP     := > | >= | < | <= | == | !=
//! ```
//!
//! Without `CHANNEL:` the check applies to every channel; with it, to the channels of that
//! name. A check *crosses* when its condition has held on one channel for every sample of
//! at least `DURATION` (measured on the samples' clock; without `for`, one sample is
//! enough). Rate metrics need two samples, so they cannot cross on the first.

use std::time::Duration;

use super::state::{State, Tracked};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Fill,
    Len,
    Parked,
    ParkedSenders,
    ParkedReceivers,
    SendsPerSec,
    RecvsPerSec,
    BytesPerSec,
    FailuresPerSec,
    Failures,
    OverflowDrops,
}

const METRICS: [(&str, Metric); 11] = [
    ("fill", Metric::Fill),
    ("len", Metric::Len),
    ("parked", Metric::Parked),
    ("parked_senders", Metric::ParkedSenders),
    ("parked_receivers", Metric::ParkedReceivers),
    ("sends_per_sec", Metric::SendsPerSec),
    ("recvs_per_sec", Metric::RecvsPerSec),
    ("bytes_per_sec", Metric::BytesPerSec),
    ("failures_per_sec", Metric::FailuresPerSec),
    ("failures", Metric::Failures),
    ("overflow_drops", Metric::OverflowDrops),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// One parsed `--check`, with how long its condition has held on each channel.
#[derive(Debug, Clone)]
pub struct Check {
    text: String,
    channel: Option<String>,
    metric: Metric,
    op: Op,
    value: f64,
    hold: Duration,
    /// Channel id → clock (ns) of the first sample of the current run where it held.
    since: Vec<(u64, u64)>,
}

impl std::str::FromStr for Check {
    type Err = String;

    fn from_str(text: &str) -> Result<Check, String> {
        let bad = |why: &str| format!("bad --check {text:?}: {why}");
        let (cond, hold) = match text.split_once(" for ") {
            Some((c, d)) => {
                (c.trim(), humantime_secs(d.trim()).ok_or_else(|| bad("DURATION is like 5s or 500ms"))?)
            }
            None => (text.trim(), Duration::ZERO),
        };
        let ops =
            [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), ("!=", Op::Ne), (">", Op::Gt), ("<", Op::Lt)];
        let (at, op_text, op) = ops
            .iter()
            .filter_map(|(t, o)| cond.find(t).map(|i| (i, *t, *o)))
            .min_by_key(|(i, t, _)| (*i, std::cmp::Reverse(t.len())))
            .ok_or_else(|| bad("no comparison (>, >=, <, <=, ==, !=)"))?;
        let (lhs, rhs) = (cond[..at].trim(), cond[at + op_text.len()..].trim());
        let value: f64 = rhs
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| bad("the right side must be a finite number"))?;
        let (channel, metric_name) = match lhs.rsplit_once(':') {
            Some((c, m)) => (Some(c.trim().to_string()), m.trim()),
            None => (None, lhs),
        };
        let metric = METRICS.iter().find(|(n, _)| *n == metric_name).map(|(_, m)| *m).ok_or_else(|| {
            bad(&format!(
                "unknown metric {metric_name:?}; one of {}",
                METRICS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })?;
        Ok(Check { text: text.to_string(), channel, metric, op, value, hold, since: Vec::new() })
    }
}

/// `5s`, `500ms`, `2m`, or a plain number of seconds.
fn humantime_secs(s: &str) -> Option<Duration> {
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.trim().parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs))
}

fn measure(metric: Metric, t: &Tracked) -> Option<f64> {
    let c = &t.now;
    let rate = |f: fn(&super::state::Rates) -> f64| t.rates.as_ref().map(f);
    Some(match metric {
        Metric::Fill => c.fill()?,
        Metric::Len => c.len as f64,
        Metric::Parked => (c.parked_senders + c.parked_receivers) as f64,
        Metric::ParkedSenders => c.parked_senders as f64,
        Metric::ParkedReceivers => c.parked_receivers as f64,
        Metric::SendsPerSec => rate(|r| r.sends)?,
        Metric::RecvsPerSec => rate(|r| r.recvs)?,
        Metric::BytesPerSec => rate(|r| r.bytes_sent)?,
        Metric::FailuresPerSec => rate(|r| r.failures)?,
        Metric::Failures => (c.send_failures.total() + c.recv_failures.total()) as f64,
        Metric::OverflowDrops => c.overflow_drops as f64,
    })
}

impl Check {
    /// For the first sample: an error when the check names a channel the process does
    /// not have (a typo would otherwise never cross, and a script would wait for ever).
    pub fn names_a_channel_missing_from(&self, sample: &super::sample::Sample) -> Option<String> {
        let name = self.channel.as_deref()?;
        if sample.channels.iter().any(|c| c.name == name) {
            return None;
        }
        let mut have: Vec<&str> = sample.channels.iter().map(|c| c.name.as_str()).collect();
        have.sort_unstable();
        have.dedup();
        Some(format!(
            "--check {:?}: the process has no channel named {name:?} (it has: {})",
            self.text,
            if have.is_empty() { "none".to_string() } else { have.join(", ") }
        ))
    }

    /// Evaluates the latest sample; `Some(message)` if the check crossed.
    pub fn evaluate(&mut self, state: &State) -> Option<String> {
        let now = state.taken_ns;
        let mut still = Vec::new();
        let mut crossed = None;
        for t in state.rows(super::state::SortKey::Name, "") {
            if self.channel.as_ref().is_some_and(|c| *c != t.now.name) {
                continue;
            }
            let Some(v) = measure(self.metric, t) else { continue };
            if !self.op.holds(v, self.value) {
                continue;
            }
            let since = self.since.iter().find(|(id, _)| *id == t.now.id).map_or(now, |(_, s)| *s);
            still.push((t.now.id, since));
            let held = Duration::from_nanos(now.saturating_sub(since));
            if crossed.is_none() && held >= self.hold {
                crossed = Some(format!("check crossed: {} (channel {}: {v:.3})", self.text, t.now.name));
            }
        }
        self.since = still;
        crossed
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample::{ChannelSample, FailureCounts, SCHEMA, Sample};
    use super::*;

    fn chan(len: u64, parked: u64) -> ChannelSample {
        ChannelSample {
            id: 7,
            name: "ingress".into(),
            kind: "buffered".into(),
            capacity: Some(10),
            len,
            closed: false,
            parked_senders: parked,
            parked_receivers: 0,
            sends: 0,
            recvs: 0,
            bytes_sent: 0,
            bytes_recv: 0,
            send_failures: FailureCounts::default(),
            recv_failures: FailureCounts::default(),
            overflow_drops: 0,
            rv_matches: 0,
            rv_cancels: 0,
            zero_copy: None,
        }
    }

    fn feed(state: &mut State, secs: u64, c: ChannelSample) {
        state.update(Sample {
            schema: SCHEMA,
            taken_ns: secs * 1_000_000_000,
            source: "t".into(),
            channels: vec![c],
            sched: None,
        });
    }

    #[test]
    fn parses_and_refuses() {
        let c: Check = "ingress:fill>0.9 for 5s".parse().unwrap();
        assert_eq!(
            (c.channel.as_deref(), c.metric, c.op, c.value),
            (Some("ingress"), Metric::Fill, Op::Gt, 0.9)
        );
        assert_eq!(c.hold, Duration::from_secs(5));
        let c: Check = "parked_senders>=100".parse().unwrap();
        assert_eq!((c.channel, c.op, c.hold), (None, Op::Ge, Duration::ZERO));
        for bad in ["fill", "fill>x", "bogus>1", "fill>1 for ever", "fill>nan", "len<inf", "len>-inf"] {
            assert!(bad.parse::<Check>().is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn crosses_only_after_holding_for_the_duration() {
        let mut c: Check = "fill>0.5 for 2s".parse().unwrap();
        let mut s = State::new();
        feed(&mut s, 0, chan(9, 0));
        assert!(c.evaluate(&s).is_none());
        feed(&mut s, 1, chan(9, 0));
        assert!(c.evaluate(&s).is_none(), "held 1 s of 2");
        feed(&mut s, 2, chan(1, 0));
        assert!(c.evaluate(&s).is_none(), "dropped below: the run restarts");
        feed(&mut s, 3, chan(9, 0));
        assert!(c.evaluate(&s).is_none());
        feed(&mut s, 4, chan(9, 0));
        assert!(c.evaluate(&s).is_none());
        feed(&mut s, 5, chan(9, 0));
        assert!(c.evaluate(&s).unwrap().contains("ingress"));
    }

    #[test]
    fn a_check_on_a_channel_the_process_lacks_is_refused() {
        let sample = |names: &[&str]| Sample {
            schema: SCHEMA,
            taken_ns: 1,
            source: "t".into(),
            channels: names.iter().map(|n| ChannelSample { name: (*n).to_string(), ..chan(0, 0) }).collect(),
            sched: None,
        };
        let typo: Check = "ingres:fill>0.9".parse().unwrap();
        let e = typo.names_a_channel_missing_from(&sample(&["ingress", "egress"])).unwrap();
        assert!(e.contains("\"ingres\"") && e.contains("egress, ingress"), "{e}");
        assert!(typo.names_a_channel_missing_from(&sample(&["ingres"])).is_none());
        let any: Check = "fill>0.9".parse().unwrap();
        assert!(
            any.names_a_channel_missing_from(&sample(&[])).is_none(),
            "no channel named: nothing to miss"
        );
    }

    #[test]
    fn other_channels_and_rates_on_the_first_sample() {
        let mut c: Check = "egress:parked>0".parse().unwrap();
        let mut s = State::new();
        feed(&mut s, 0, chan(0, 3));
        assert!(c.evaluate(&s).is_none(), "only egress is checked");
        let mut r: Check = "sends_per_sec>=0".parse().unwrap();
        assert!(r.evaluate(&s).is_none(), "no rate from one sample");
        feed(&mut s, 1, chan(0, 3));
        assert!(r.evaluate(&s).is_some());
    }
}
