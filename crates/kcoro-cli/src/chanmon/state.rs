//! What the monitor knows between samples: the last two samples of each channel, a short
//! history of its rates, its peaks; and the rows a view shows, sorted and filtered.
//!
//! Rates are exact: counter deltas divided by the difference of the two samples' clocks
//! (the monitored process's monotonic clock), never by when the monitor received them.
//! A channel that appears has no rate until its second sample; one that disappears
//! leaves the table at the next sample.

use std::collections::{HashMap, VecDeque};

use super::corostate::Coroutines;
use super::metricview::Metrics;
use super::sample::{ChannelSample, Sample, SchedSample};

/// Rate samples kept per channel for sparklines and the detail graph.
pub const HISTORY: usize = 120;

/// Per-second rates of one channel between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub sends: f64,
    pub recvs: f64,
    pub bytes_sent: f64,
    pub bytes_recv: f64,
    /// Failed operations (both directions).
    pub failures: f64,
}

impl Rates {
    /// `curr - prev` over `seconds`; `None` if the interval is not positive or a counter
    /// went backwards (a different channel, or a restarted process).
    pub fn between(prev: &ChannelSample, curr: &ChannelSample, seconds: f64) -> Option<Rates> {
        if seconds <= 0.0 {
            return None;
        }
        let d = |a: u64, b: u64| b.checked_sub(a).map(|v| v as f64 / seconds);
        let failures = |c: &ChannelSample| c.send_failures.total() + c.recv_failures.total();
        Some(Rates {
            sends: d(prev.sends, curr.sends)?,
            recvs: d(prev.recvs, curr.recvs)?,
            bytes_sent: d(prev.bytes_sent, curr.bytes_sent)?,
            bytes_recv: d(prev.bytes_recv, curr.bytes_recv)?,
            failures: d(failures(prev), failures(curr))?,
        })
    }
}

/// One channel as the monitor tracks it.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// The latest sample.
    pub now: ChannelSample,
    /// The one before it, if any.
    pub prev: Option<ChannelSample>,
    /// Rates over the latest interval.
    pub rates: Option<Rates>,
    /// Highest send rate seen since the start or the last reset.
    pub peak_sends: f64,
    /// Highest byte rate (sent) seen since the start or the last reset.
    pub peak_bytes: f64,
    /// Recent send rates, oldest first, at most [`HISTORY`].
    pub history: VecDeque<f64>,
}

impl Tracked {
    /// Change of a counter over the latest interval (0 without a previous sample).
    pub fn delta(&self, counter: impl Fn(&ChannelSample) -> u64) -> u64 {
        self.prev.as_ref().map_or(0, |p| counter(&self.now).saturating_sub(counter(p)))
    }
}

/// The scheduler's latest sample and its rates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sched {
    pub now: SchedSample,
    pub spawned_per_sec: f64,
    pub completed_per_sec: f64,
    pub steals_per_sec: f64,
    pub inject_pulls_per_sec: f64,
    pub timer_fires_per_sec: f64,
}

/// Orders the table by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Order of appearance.
    #[default]
    Name,
    SendRate,
    ByteRate,
    Fill,
    Parked,
    Failures,
}

impl SortKey {
    /// The next key (`s` cycles through them).
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Name => SortKey::SendRate,
            SortKey::SendRate => SortKey::ByteRate,
            SortKey::ByteRate => SortKey::Fill,
            SortKey::Fill => SortKey::Parked,
            SortKey::Parked => SortKey::Failures,
            SortKey::Failures => SortKey::Name,
        }
    }

    /// As shown on screen.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::SendRate => "sends/s",
            SortKey::ByteRate => "bytes/s",
            SortKey::Fill => "fill",
            SortKey::Parked => "parked",
            SortKey::Failures => "failures",
        }
    }
}

/// Everything the monitor shows.
#[derive(Debug, Default)]
pub struct State {
    /// By channel id, in order of first appearance (`order`).
    channels: HashMap<u64, Tracked>,
    order: Vec<u64>,
    pub sched: Option<Sched>,
    prev_sched: Option<SchedSample>,
    /// Clock of the latest sample, ns, and of the one before.
    pub taken_ns: u64,
    prev_taken_ns: u64,
    /// Where samples come from.
    pub source: String,
    /// Samples taken so far.
    pub samples: u64,
    /// The coroutines, when the source reports them.
    pub coros: Coroutines,
    /// The program's own metrics, when the source reports them.
    pub metrics: Metrics,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Takes in the next sample.
    pub fn update(&mut self, sample: Sample) {
        let seconds = sample.taken_ns.saturating_sub(self.taken_ns) as f64 / 1e9;
        let first = self.samples == 0;
        self.prev_taken_ns = self.taken_ns;
        self.taken_ns = sample.taken_ns;
        self.source = sample.source;
        self.samples += 1;
        self.coros.update(sample.coroutines, &sample.channels, sample.taken_ns);
        self.metrics.update(sample.metrics, if first { 0.0 } else { seconds });
        let mut seen = Vec::with_capacity(sample.channels.len());
        for c in sample.channels {
            seen.push(c.id);
            match self.channels.get_mut(&c.id) {
                Some(t) => {
                    let rates = if first { None } else { Rates::between(&t.now, &c, seconds) };
                    if let Some(r) = rates {
                        t.peak_sends = t.peak_sends.max(r.sends);
                        t.peak_bytes = t.peak_bytes.max(r.bytes_sent);
                        if t.history.len() == HISTORY {
                            t.history.pop_front();
                        }
                        t.history.push_back(r.sends);
                    }
                    t.rates = rates;
                    t.prev = Some(std::mem::replace(&mut t.now, c));
                }
                None => {
                    self.order.push(c.id);
                    let tracked = Tracked {
                        now: c,
                        prev: None,
                        rates: None,
                        peak_sends: 0.0,
                        peak_bytes: 0.0,
                        history: VecDeque::new(),
                    };
                    self.channels.insert(tracked.now.id, tracked);
                }
            }
        }
        // Channels not in this sample are gone.
        self.order.retain(|id| seen.contains(id));
        self.channels.retain(|id, _| seen.contains(id));
        self.update_sched(sample.sched, if first { 0.0 } else { seconds });
    }

    fn update_sched(&mut self, now: Option<SchedSample>, seconds: f64) {
        let Some(now) = now else {
            self.sched = None;
            return;
        };
        let per_sec = |a: u64, b: u64| if seconds > 0.0 { b.saturating_sub(a) as f64 / seconds } else { 0.0 };
        let p = self.prev_sched.unwrap_or(now);
        self.sched = Some(Sched {
            now,
            spawned_per_sec: per_sec(p.spawned, now.spawned),
            completed_per_sec: per_sec(p.completed, now.completed),
            steals_per_sec: per_sec(p.steals, now.steals),
            inject_pulls_per_sec: per_sec(p.inject_pulls, now.inject_pulls),
            timer_fires_per_sec: per_sec(p.timer_fires, now.timer_fires),
        });
        self.prev_sched = Some(now);
    }

    /// Seconds between the last two samples (0 before the second).
    pub fn interval(&self) -> f64 {
        if self.samples < 2 { 0.0 } else { self.taken_ns.saturating_sub(self.prev_taken_ns) as f64 / 1e9 }
    }

    /// Forgets every peak (`r`).
    pub fn reset_peaks(&mut self) {
        for t in self.channels.values_mut() {
            t.peak_sends = 0.0;
            t.peak_bytes = 0.0;
        }
    }

    /// A channel by id.
    pub fn channel(&self, id: u64) -> Option<&Tracked> {
        self.channels.get(&id)
    }

    /// Channels tracked now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The channels whose name contains `filter` (case-insensitive; empty: all), sorted by
    /// `key` (rates, fill, parked and failures descending; ties in order of appearance).
    pub fn rows(&self, key: SortKey, filter: &str) -> Vec<&Tracked> {
        let filter = filter.to_lowercase();
        let mut rows: Vec<&Tracked> = self
            .order
            .iter()
            .filter_map(|id| self.channels.get(id))
            .filter(|t| filter.is_empty() || t.now.name.to_lowercase().contains(&filter))
            .collect();
        let rate = |t: &Tracked, f: fn(&Rates) -> f64| t.rates.as_ref().map_or(0.0, f);
        let score = |t: &Tracked| -> f64 {
            match key {
                SortKey::Name => 0.0,
                SortKey::SendRate => rate(t, |r| r.sends),
                SortKey::ByteRate => rate(t, |r| r.bytes_sent),
                SortKey::Fill => t.now.fill().unwrap_or(0.0),
                SortKey::Parked => (t.now.parked_senders + t.now.parked_receivers) as f64,
                SortKey::Failures => (t.now.send_failures.total() + t.now.recv_failures.total()) as f64,
            }
        };
        if key == SortKey::Name {
            rows.sort_by(|a, b| a.now.name.cmp(&b.now.name));
        } else {
            // Stable: equal scores keep their order of appearance.
            rows.sort_by(|a, b| score(b).total_cmp(&score(a)));
        }
        rows
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::sample::{FailureCounts, SCHEMA};
    use super::*;

    /// A buffered channel of capacity 100 with 10 values in it; as many receives as sends.
    pub(crate) fn chan(id: u64, name: &str, sends: u64, bytes: u64) -> ChannelSample {
        ChannelSample {
            id,
            name: name.into(),
            kind: "buffered".into(),
            capacity: Some(100),
            len: 10,
            closed: false,
            parked_senders: 0,
            parked_receivers: 0,
            sends,
            recvs: sends,
            bytes_sent: bytes,
            bytes_recv: bytes,
            send_failures: FailureCounts::default(),
            recv_failures: FailureCounts::default(),
            overflow_drops: 0,
            rv_matches: 0,
            rv_cancels: 0,
            zero_copy: None,
        }
    }

    fn sample(taken_ns: u64, channels: Vec<ChannelSample>) -> Sample {
        Sample {
            schema: SCHEMA,
            taken_ns,
            source: "test".into(),
            channels,
            sched: None,
            coroutines: None,
            metrics: vec![],
        }
    }

    #[test]
    fn rates_are_counter_deltas_over_the_sample_clock() {
        let mut s = State::new();
        s.update(sample(1_000_000_000, vec![chan(1, "a", 100, 6400)]));
        assert!(s.channel(1).unwrap().rates.is_none(), "no rate from one sample");
        s.update(sample(1_500_000_000, vec![chan(1, "a", 600, 38_400)]));
        let r = s.channel(1).unwrap().rates.unwrap();
        assert_eq!((r.sends, r.bytes_sent), (1000.0, 64_000.0));
        assert_eq!(s.channel(1).unwrap().delta(|c| c.sends), 500);
        assert_eq!(s.interval(), 0.5);
    }

    #[test]
    fn channels_appear_and_disappear() {
        let mut s = State::new();
        s.update(sample(1, vec![chan(1, "a", 0, 0), chan(2, "b", 0, 0)]));
        s.update(sample(2, vec![chan(2, "b", 0, 0), chan(3, "c", 0, 0)]));
        let names: Vec<_> = s.rows(SortKey::Name, "").iter().map(|t| t.now.name.clone()).collect();
        assert_eq!(names, ["b", "c"]);
        assert!(s.channel(3).unwrap().rates.is_none(), "a new channel has no rate yet");
    }

    #[test]
    fn sorting_filtering_and_peaks() {
        let mut s = State::new();
        s.update(sample(0, vec![chan(1, "ingress", 0, 0), chan(2, "egress", 0, 0)]));
        s.update(sample(1_000_000_000, vec![chan(1, "ingress", 10, 10), chan(2, "egress", 50, 5000)]));
        s.update(sample(2_000_000_000, vec![chan(1, "ingress", 30, 20), chan(2, "egress", 60, 5100)]));
        let by_rate: Vec<u64> = s.rows(SortKey::SendRate, "").iter().map(|t| t.now.id).collect();
        assert_eq!(by_rate, [1, 2], "20/s beats 10/s");
        assert_eq!(s.channel(2).unwrap().peak_sends, 50.0);
        assert_eq!(s.channel(2).unwrap().history, [50.0, 10.0]);
        assert_eq!(s.rows(SortKey::Name, "GRE").len(), 2);
        assert_eq!(s.rows(SortKey::Name, "ingr").len(), 1);
        s.reset_peaks();
        assert_eq!(s.channel(2).unwrap().peak_sends, 0.0);
    }

    #[test]
    fn a_counter_going_backwards_gives_no_rate() {
        let mut s = State::new();
        s.update(sample(0, vec![chan(1, "a", 100, 0)]));
        s.update(sample(1_000_000_000, vec![chan(1, "a", 5, 0)]));
        assert!(s.channel(1).unwrap().rates.is_none());
    }
}
