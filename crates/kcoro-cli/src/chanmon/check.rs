//! `--check 'EXPR'`: thresholds for scripts and CI.
//!
//! ```text
//!   EXPR   := [CHANNEL ':'] METRIC OP NUMBER [ 'for' DURATION ]
//!           | NAME '{' [ LABEL '=' VALUE { ',' LABEL '=' VALUE } ] '}' OP NUMBER
//!             [ 'for' DURATION ]
//!           | 'deadlock' [ 'for' DURATION ]
//!           | [CHANNEL ':'] 'stuck' [ 'for' DURATION ]
//!   METRIC := fill | len | parked | parked_senders | parked_receivers | sends_per_sec
//!           | recvs_per_sec | bytes_per_sec | failures_per_sec | failures | overflow_drops
//!   OP     := > | >= | < | <= | == | !=
//! ```
//!
//! `NAME{..}` (braces even without labels) is one of the program's own metrics, the
//! metrics view's, such as `kcoro_proxy_backend_up{pool="app"} == 0`: the check applies
//! to every sample of that name whose labels include the given ones (a `VALUE` quoted or
//! not), and a program without such a sample is refused at the first sample, as a typo.
//!
//! Without `CHANNEL:` the check applies to every channel; with it, to the channels of that
//! name. A check *crosses* when its condition has held on one channel for every sample of
//! at least `DURATION` (measured on the samples' clock; without `for`, one sample is
//! enough). Rate metrics need two samples, so they cannot cross on the first.
//!
//! `deadlock` crosses when the source has reported the same deadlock (the same parks) for
//! `DURATION`, and at least in two consecutive samples (without `for`: two samples are
//! enough); the report is part of the message. `stuck` crosses when the stuck lint flags
//! a coroutine (on `CHANNEL`, if named): parked on a channel for `DURATION` (without
//! `for`: `--stuck-after`) while nothing happened on its other side (see
//! [`super::corostate`]). Both need a source that reports coroutines.

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

/// What a check looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Condition {
    /// A channel's metric against a number.
    Metric { metric: Metric, op: Op, value: f64 },
    /// The program's own metric ([`Check::program`] selects its samples) against a number.
    Program { op: Op, value: f64 },
    /// The source reports the same deadlock.
    Deadlock,
    /// The stuck lint flags a coroutine.
    Stuck,
}

/// One parsed `--check`, with how long its condition has held on each channel.
#[derive(Debug, Clone)]
pub struct Check {
    text: String,
    channel: Option<String>,
    condition: Condition,
    /// `for DURATION`, if given.
    hold: Option<Duration>,
    /// For [`Condition::Program`]: which samples it looks at.
    program: Option<Selector>,
    /// Channel id (or the program metric sample's position) → clock (ns) of the first
    /// sample of the current run where it held.
    since: Vec<(u64, u64)>,
}

impl std::str::FromStr for Check {
    type Err = String;

    fn from_str(text: &str) -> Result<Check, String> {
        let bad = |why: &str| format!("bad --check {text:?}: {why}");
        let (cond, hold) = match text.split_once(" for ") {
            Some((c, d)) => {
                (c.trim(), Some(humantime_secs(d.trim()).ok_or_else(|| bad("DURATION is like 5s or 500ms"))?))
            }
            None => (text.trim(), None),
        };
        let check = |channel: Option<&str>, condition| Check {
            text: text.to_string(),
            channel: channel.map(str::to_string),
            condition,
            hold,
            program: None,
            since: Vec::new(),
        };
        let ops =
            [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), ("!=", Op::Ne), (">", Op::Gt), ("<", Op::Lt)];
        let found = ops
            .iter()
            .filter_map(|(t, o)| cond.find(t).map(|i| (i, *t, *o)))
            .min_by_key(|(i, t, _)| (*i, std::cmp::Reverse(t.len())));
        let lhs = found.map_or(cond, |(at, _, _)| cond[..at].trim());
        if let Some(selector) = program_selector(lhs) {
            let (at, op_text, op) = found.ok_or_else(|| bad("no comparison (>, >=, <, <=, ==, !=)"))?;
            let value = number(&cond[at + op_text.len()..])
                .ok_or_else(|| bad("the right side must be a finite number"))?;
            let selector = selector.map_err(|why| bad(&why))?;
            return Ok(Check { program: Some(selector), ..check(None, Condition::Program { op, value }) });
        }
        let (channel, metric_name) = match lhs.rsplit_once(':') {
            Some((c, m)) => (Some(c.trim()), m.trim()),
            None => (None, lhs),
        };
        match (metric_name, found, channel) {
            ("deadlock", None, None) => return Ok(check(None, Condition::Deadlock)),
            ("deadlock", None, Some(_)) => return Err(bad("a deadlock is the whole process's: no CHANNEL:")),
            ("stuck", None, channel) => return Ok(check(channel, Condition::Stuck)),
            ("deadlock" | "stuck", Some(_), _) => {
                return Err(bad(&format!("{metric_name} takes no comparison")));
            }
            _ => {}
        }
        let (at, op_text, op) = found.ok_or_else(|| bad("no comparison (>, >=, <, <=, ==, !=)"))?;
        let value = number(&cond[at + op_text.len()..])
            .ok_or_else(|| bad("the right side must be a finite number"))?;
        let metric = METRICS.iter().find(|(n, _)| *n == metric_name).map(|(_, m)| *m).ok_or_else(|| {
            bad(&format!(
                "unknown metric {metric_name:?}; one of {}, or deadlock, stuck",
                METRICS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })?;
        Ok(check(channel, Condition::Metric { metric, op, value }))
    }
}

/// A finite number.
fn number(text: &str) -> Option<f64> {
    text.trim().parse().ok().filter(|v: &f64| v.is_finite())
}

/// A program metric's name and the labels its samples must have.
type Selector = (String, Vec<(String, String)>);

/// The left side of a comparison as a program metric, when it is one (`name{k="v",..}`,
/// or `name{}`). `Some(Err)` for a selector that is malformed.
fn program_selector(lhs: &str) -> Option<Result<Selector, String>> {
    let plain_name = |n: &str| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    let (name, rest) = lhs.split_once('{')?;
    let name = name.trim();
    let Some(body) = rest.trim_end().strip_suffix('}') else {
        return Some(Err(format!("{lhs:?} has no closing }}")));
    };
    if !plain_name(name) {
        return Some(Err(format!("{name:?} is not a metric name (letters, digits, _)")));
    }
    let mut labels = Vec::new();
    for pair in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Some(Err(format!("label {pair:?} is not NAME=VALUE")));
        };
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        labels.push((k.trim().to_string(), v.to_string()));
    }
    Some(Ok((name.to_string(), labels)))
}

/// Whether a program metric sample is one `selector` picks.
fn selects(selector: &Selector, m: &super::sample::MetricSample) -> bool {
    m.name == selector.0 && selector.1.iter().all(|l| m.labels.contains(l))
}

/// `name{k="v",..}` as a selector is written.
fn describe(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", pairs.join(","))
}

/// `5s`, `500ms`, `2m`, or a plain number of seconds.
pub fn humantime_secs(s: &str) -> Option<Duration> {
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
    /// For the first sample: why the check could never cross on this source, if so. A
    /// check naming a channel the process does not have (a typo), or looking at
    /// coroutines of a source that reports none, would never cross, and a script would
    /// wait for ever.
    pub fn cannot_judge(&self, sample: &super::sample::Sample) -> Option<String> {
        let on_coroutines = matches!(self.condition, Condition::Stuck | Condition::Deadlock);
        if on_coroutines && sample.coroutines.is_none() {
            return Some(format!(
                "--check {:?}: the source reports no coroutines (a server without the monitor, or a \
                 recording made before chanmon read them)",
                self.text
            ));
        }
        if let Some(selector) = &self.program {
            if sample.metrics.iter().any(|m| selects(selector, m)) {
                return None;
            }
            let mut have: Vec<&str> = sample.metrics.iter().map(|m| m.name.as_str()).collect();
            have.dedup();
            return Some(format!(
                "--check {:?}: unknown metric {}: not a channel metric ({}), and the program reports \
                 no such metric (it has: {})",
                self.text,
                describe(&selector.0, &selector.1),
                METRICS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            ));
        }
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
        match self.condition {
            Condition::Metric { metric, op, value } => self.evaluate_metric(state, metric, op, value),
            Condition::Program { op, value } => self.evaluate_program(state, op, value),
            Condition::Deadlock => {
                let d = state.coros.deadlock()?;
                let held = state.coros.deadlock_held()?;
                (d.samples >= 2 && self.hold.is_none_or(|h| held >= h)).then(|| {
                    format!(
                        "check crossed: {} (the same deadlock in {} samples over {:.1}s)\n{}",
                        self.text,
                        d.samples,
                        held.as_secs_f64(),
                        d.report.trim_end()
                    )
                })
            }
            Condition::Stuck => {
                let threshold = self.hold.unwrap_or(state.coros.stuck_after);
                let stuck: Vec<String> = state
                    .coros
                    .all_stuck(threshold)
                    .into_iter()
                    .filter(|(_, s)| self.channel.as_ref().is_none_or(|c| *c == s.channel))
                    .map(|(c, s)| {
                        let name = c.name.as_deref().map(|n| format!(" {n:?}")).unwrap_or_default();
                        let wait = c.wait.as_deref().unwrap_or("?");
                        format!(
                            "  coroutine {}{name} waits on {wait}: {s} (spawned at {})",
                            c.id, c.spawned_at
                        )
                    })
                    .collect();
                (!stuck.is_empty()).then(|| format!("check crossed: {}\n{}", self.text, stuck.join("\n")))
            }
        }
    }

    fn evaluate_program(&mut self, state: &State, op: Op, value: f64) -> Option<String> {
        let selector = self.program.as_ref()?;
        let now = state.taken_ns;
        let hold = self.hold.unwrap_or(Duration::ZERO);
        let mut still = Vec::new();
        let mut crossed = None;
        // A sample's position among the program's: the program lists them in a stable order.
        for (i, m) in state.metrics.rows("").into_iter().enumerate() {
            let Some(v) = m.now.value.filter(|&v| selects(selector, &m.now) && op.holds(v, value)) else {
                continue;
            };
            let since = self.since.iter().find(|(at, _)| *at == i as u64).map_or(now, |(_, s)| *s);
            still.push((i as u64, since));
            if crossed.is_none() && Duration::from_nanos(now.saturating_sub(since)) >= hold {
                let at = describe(&m.now.name, &m.now.labels);
                crossed = Some(format!("check crossed: {} ({at}: {v})", self.text));
            }
        }
        self.since = still;
        crossed
    }

    fn evaluate_metric(&mut self, state: &State, metric: Metric, op: Op, value: f64) -> Option<String> {
        let now = state.taken_ns;
        let hold = self.hold.unwrap_or(Duration::ZERO);
        let mut still = Vec::new();
        let mut crossed = None;
        for t in state.rows(super::state::SortKey::Name, "") {
            if self.channel.as_ref().is_some_and(|c| *c != t.now.name) {
                continue;
            }
            let Some(v) = measure(metric, t) else { continue };
            if !op.holds(v, value) {
                continue;
            }
            let since = self.since.iter().find(|(id, _)| *id == t.now.id).map_or(now, |(_, s)| *s);
            still.push((t.now.id, since));
            let held = Duration::from_nanos(now.saturating_sub(since));
            if crossed.is_none() && held >= hold {
                crossed = Some(format!("check crossed: {} (channel {}: {v:.3})", self.text, t.now.name));
            }
        }
        self.since = still;
        crossed
    }
}

#[cfg(test)]
mod tests {
    use super::super::corostate::tests::{parked_on, report};
    use super::super::sample::{ChannelSample, CoroutinesSample, FailureCounts, SCHEMA, Sample};
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
            coroutines: None,
            metrics: vec![],
        });
    }

    /// A program metric sample: name, labels, value.
    type Given<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

    /// A sample with the program's metrics.
    fn program(secs: u64, metrics: &[Given<'_>]) -> Sample {
        let metrics = metrics
            .iter()
            .map(|(name, labels, value)| {
                let m = labels
                    .iter()
                    .fold(kcoro::monitor::Metric::gauge(name, "", *value), |m, (k, v)| m.label(k, v));
                super::super::sample::MetricSample::from_metric(&m)
            })
            .collect();
        Sample {
            schema: SCHEMA,
            taken_ns: secs * 1_000_000_000,
            source: "t".into(),
            channels: vec![],
            sched: None,
            coroutines: None,
            metrics,
        }
    }

    #[test]
    fn a_program_metric_check_crosses_on_its_labelled_sample_once_it_held() {
        let mut c: Check = r#"app_up{pool="a"}==0 for 2s"#.parse().unwrap();
        let up = |a: f64, b: f64| {
            [("app_up", &[("pool", "a"), ("backend", "x")][..], a), ("app_up", &[("pool", "b")][..], b)]
        };
        let mut state = State::new();
        let first = program(1, &up(1.0, 0.0));
        assert_eq!(c.cannot_judge(&first), None);
        state.update(first);
        assert_eq!(c.evaluate(&state), None, "pool b is down, not a");
        state.update(program(2, &up(0.0, 0.0)));
        assert_eq!(c.evaluate(&state), None, "down for 0 s");
        state.update(program(3, &up(0.0, 0.0)));
        assert_eq!(c.evaluate(&state), None, "1 s");
        state.update(program(4, &up(0.0, 0.0)));
        let msg = c.evaluate(&state).unwrap_or_default();
        assert!(msg.contains(r#"app_up{pool="a",backend="x"}: 0"#), "{msg}");
        state.update(program(5, &up(1.0, 0.0)));
        assert_eq!(c.evaluate(&state), None, "back up");
        state.update(program(6, &up(0.0, 0.0)));
        assert_eq!(c.evaluate(&state), None, "down again: the hold starts again");

        let typo: Check = "app_upp{}>0".parse().unwrap();
        let why = typo.cannot_judge(&program(1, &up(1.0, 1.0))).unwrap_or_default();
        assert!(why.contains("unknown metric app_upp") && why.contains("it has: app_up"), "{why}");
        let other_pool: Check = r#"app_up{pool="c"}>0"#.parse().unwrap();
        assert!(other_pool.cannot_judge(&program(1, &up(1.0, 1.0))).is_some());
    }

    #[test]
    fn parses_and_refuses() {
        let c: Check = "ingress:fill>0.9 for 5s".parse().unwrap();
        assert_eq!(
            (c.channel.as_deref(), c.condition),
            (Some("ingress"), Condition::Metric { metric: Metric::Fill, op: Op::Gt, value: 0.9 })
        );
        assert_eq!(c.hold, Some(Duration::from_secs(5)));
        let c: Check = "parked_senders>=100".parse().unwrap();
        assert_eq!(
            (c.channel, c.condition, c.hold),
            (None, Condition::Metric { metric: Metric::ParkedSenders, op: Op::Ge, value: 100.0 }, None)
        );
        let c: Check = "deadlock".parse().unwrap();
        assert_eq!((c.condition, c.hold), (Condition::Deadlock, None));
        let c: Check = "deadlock for 2s".parse().unwrap();
        assert_eq!((c.condition, c.hold), (Condition::Deadlock, Some(Duration::from_secs(2))));
        let c: Check = "jobs:stuck for 500ms".parse().unwrap();
        assert_eq!(
            (c.channel.as_deref(), c.condition, c.hold),
            (Some("jobs"), Condition::Stuck, Some(Duration::from_millis(500)))
        );
        let c: Check =
            r#"kcoro_proxy_backend_up{pool="app", backend=127.0.0.1:8081} == 0 for 2s"#.parse().unwrap();
        assert_eq!(
            (c.condition, c.hold),
            (Condition::Program { op: Op::Eq, value: 0.0 }, Some(Duration::from_secs(2)))
        );
        let labels = vec![("pool".into(), "app".into()), ("backend".into(), "127.0.0.1:8081".into())];
        assert_eq!(c.program, Some(("kcoro_proxy_backend_up".to_string(), labels)));
        let c: Check = "demo_items_total{}>0".parse().unwrap();
        assert_eq!(c.program, Some(("demo_items_total".to_string(), vec![])));
        for bad in ["app_up{", "app_up{pool}>0", "app up{}>0", "9lives{}>0", "app_up{}", "app_up{}>x"] {
            assert!(bad.parse::<Check>().is_err(), "{bad} must be refused");
        }
        for bad in [
            "fill",
            "fill>x",
            "bogus>1",
            "fill>1 for ever",
            "fill>nan",
            "len<inf",
            "len>-inf",
            "deadlock>0",
            "jobs:deadlock",
            "stuck==1",
            "stuck for ever",
            "deadlocked",
        ] {
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
            coroutines: None,
            metrics: vec![],
        };
        let typo: Check = "ingres:fill>0.9".parse().unwrap();
        let e = typo.cannot_judge(&sample(&["ingress", "egress"])).unwrap();
        assert!(e.contains("\"ingres\"") && e.contains("egress, ingress"), "{e}");
        assert!(typo.cannot_judge(&sample(&["ingres"])).is_none());
        let any: Check = "fill>0.9".parse().unwrap();
        assert!(any.cannot_judge(&sample(&[])).is_none(), "no channel named: nothing to miss");
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

    fn with_coroutines(
        secs: u64,
        channels: Vec<ChannelSample>,
        coroutines: Option<CoroutinesSample>,
    ) -> Sample {
        Sample {
            schema: SCHEMA,
            taken_ns: secs * 1_000_000_000,
            source: "t".into(),
            channels,
            sched: None,
            coroutines,
            metrics: vec![],
        }
    }

    /// Coroutines 1 and 2 deadlocked, coroutine 1 in park `seq`.
    fn deadlocked(seq: u32) -> CoroutinesSample {
        let mut list = vec![parked_on(1, seq, 5, false, 0), parked_on(2, 1, 6, false, 0)];
        for c in &mut list {
            c.in_deadlock = true;
        }
        report(
            list,
            Some("deadlock: all 2 coroutines are parked\n  coroutine 1 \"c1\" waits on recv on ch5\n"),
        )
    }

    #[test]
    fn deadlock_crosses_on_the_same_deadlock_in_two_samples_or_for_its_duration() {
        let mut bare: Check = "deadlock".parse().unwrap();
        let mut long: Check = "deadlock for 3s".parse().unwrap();
        let mut s = State::new();
        s.update(with_coroutines(0, vec![], Some(report(vec![], None))));
        assert!(bare.evaluate(&s).is_none(), "no deadlock");
        s.update(with_coroutines(1, vec![], Some(deadlocked(1))));
        assert!(bare.evaluate(&s).is_none(), "one sample of it: it may be a moment's");
        s.update(with_coroutines(2, vec![], Some(deadlocked(2))));
        assert!(bare.evaluate(&s).is_none(), "coroutine 1 moved: a new one");
        s.update(with_coroutines(3, vec![], Some(deadlocked(2))));
        let msg = bare.evaluate(&s).unwrap();
        assert!(
            msg.starts_with("check crossed: deadlock (the same deadlock in 2 samples over 1.0s)"),
            "{msg}"
        );
        assert!(msg.contains("coroutine 1 \"c1\" waits on recv on ch5"), "the report follows: {msg}");
        assert!(long.evaluate(&s).is_none(), "1 s of 3");
        s.update(with_coroutines(5, vec![], Some(deadlocked(2))));
        assert!(long.evaluate(&s).unwrap().contains("3 samples over 3.0s"));
    }

    #[test]
    fn stuck_crosses_on_the_lint_with_its_own_threshold_or_stuck_after() {
        let idle = || chan_named(1, "jobs", 4);
        let busy = |n: u64| chan_named(2, "flowing", n);
        let both = |secs: u64, flow: u64| {
            let list = vec![parked_on(7, 1, 1, false, 0), parked_on(8, secs as u32, 2, false, 0)];
            with_coroutines(secs, vec![idle(), busy(flow)], Some(report(list, None)))
        };
        let mut any: Check = "stuck for 2s".parse().unwrap();
        let mut flowing: Check = "flowing:stuck for 1s".parse().unwrap();
        let mut default: Check = "stuck".parse().unwrap();
        let mut s = State::new();
        for secs in 0..2 {
            s.update(both(secs, secs * 10));
            assert!(any.evaluate(&s).is_none() && flowing.evaluate(&s).is_none(), "at {secs} s");
        }
        s.update(both(2, 20));
        let msg = any.evaluate(&s).unwrap();
        assert!(
            msg.contains("coroutine 7 \"c7\" waits on recv on ch1: stuck: no sender on jobs for 2.0s"),
            "{msg}"
        );
        assert!(!msg.contains("flowing"), "{msg}");
        assert!(flowing.evaluate(&s).is_none(), "flowing keeps flowing");
        assert!(default.evaluate(&s).is_none(), "--stuck-after is 5 s");
        s.coros.stuck_after = Duration::from_secs(1);
        assert!(default.evaluate(&s).is_some());
    }

    #[test]
    fn coroutine_checks_need_a_source_that_reports_coroutines() {
        let old = with_coroutines(1, vec![chan_named(1, "jobs", 0)], None);
        for text in ["deadlock", "stuck for 1s", "jobs:stuck"] {
            let c: Check = text.parse().unwrap();
            let e = c.cannot_judge(&old).unwrap();
            assert!(e.contains("reports no coroutines"), "{e}");
        }
        let new = with_coroutines(1, vec![chan_named(1, "jobs", 0)], Some(report(vec![], None)));
        assert!("jobs:stuck".parse::<Check>().unwrap().cannot_judge(&new).is_none());
        let e = "job:stuck".parse::<Check>().unwrap().cannot_judge(&new).unwrap();
        assert!(e.contains("no channel named \"job\""), "{e}");
    }

    fn chan_named(id: u64, name: &str, sends: u64) -> ChannelSample {
        super::super::state::tests::chan(id, name, sends, 0)
    }
}
