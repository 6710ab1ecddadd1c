//! What the monitor knows of the coroutines between samples: the latest list, how long
//! each park has been seen, how long the same deadlock has been reported, and the stuck
//! lint.
//!
//! Times are on the samples' clock (`taken_ns`, the monitored process's). A park is
//! known by its coroutine id and park sequence, so a coroutine that woke and parked again
//! in between is a new park. Its time is the longer of what the source says (counted from
//! the source's first look at it) and what chanmon has seen since its first sample of it.
//!
//! The stuck lint flags a coroutine parked on one channel for longer than a threshold
//! while nothing happened on the other side: waiting to receive, the channel's `sends`
//! have not moved since chanmon first saw the park; waiting to send, its `recvs`. It needs
//! two samples of the park (one interval watched), so a coroutine idle in a pool on a busy
//! channel is not flagged from the source's count alone. It is a hint, not a proof: a
//! coroutine waiting for a shutdown signal is rightly "stuck".

use std::collections::HashMap;
use std::time::Duration;

use super::sample::{ChannelSample, CoroutineSample, CoroutinesSample};

/// The stuck lint's threshold unless `--stuck-after` says otherwise.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(5);

/// One park, as chanmon has followed it.
#[derive(Debug, Clone)]
struct Park {
    /// Clock of the first sample that showed it.
    since_ns: u64,
    /// The channel it waits on: its name, and the counterpart counter (sends for a
    /// receive, recvs for a send) when first seen and now; `None` when the sample did not
    /// list the channel.
    channel: Option<String>,
    first: Option<u64>,
    last: Option<u64>,
    /// Samples that showed it.
    samples: u64,
}

/// The deadlock the source reports, followed across samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldDeadlock {
    /// [`CoroutinesSample::deadlock_key`].
    pub key: Vec<(u64, u32)>,
    /// The source's report.
    pub report: String,
    /// Clock of the first sample that reported this deadlock.
    pub since_ns: u64,
    /// Consecutive samples that reported it.
    pub samples: u64,
}

/// A coroutine the stuck lint flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The channel's name.
    pub channel: String,
    /// Waiting to send (else to receive).
    pub send: bool,
    /// How long it has been parked.
    pub parked_for: Duration,
}

impl Stuck {
    /// `no sender on jobs for 12s`.
    pub fn why(&self) -> String {
        let who = if self.send { "receiver" } else { "sender" };
        format!("no {who} on {} for {}", self.channel, duration(self.parked_for))
    }
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stuck: {}", self.why())
    }
}

/// `850ms`, `1.5s`, `12s`, `3m20s`, `2h05m`: a time in a short fixed form.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if s < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

/// Orders the coroutine table by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CoroSort {
    /// Ascending id: order of spawning.
    #[default]
    Id,
    /// Longest parked first.
    ParkedFor,
    /// Running, runnable, parked.
    State,
    Name,
}

impl CoroSort {
    /// The next key (`s` cycles through them).
    pub fn next(self) -> CoroSort {
        match self {
            CoroSort::Id => CoroSort::ParkedFor,
            CoroSort::ParkedFor => CoroSort::State,
            CoroSort::State => CoroSort::Name,
            CoroSort::Name => CoroSort::Id,
        }
    }

    /// As shown on screen.
    pub fn label(self) -> &'static str {
        match self {
            CoroSort::Id => "id",
            CoroSort::ParkedFor => "parked for",
            CoroSort::State => "state",
            CoroSort::Name => "name",
        }
    }
}

/// The coroutines as the monitor follows them.
#[derive(Debug, Clone)]
pub struct Coroutines {
    /// The latest report; `None` when the source reports no coroutines.
    pub now: Option<CoroutinesSample>,
    /// The stuck lint's threshold (`--stuck-after`).
    pub stuck_after: Duration,
    taken_ns: u64,
    parks: HashMap<(u64, u32), Park>,
    deadlock: Option<HeldDeadlock>,
}

impl Default for Coroutines {
    fn default() -> Self {
        Coroutines {
            now: None,
            stuck_after: DEFAULT_STUCK_AFTER,
            taken_ns: 0,
            parks: HashMap::new(),
            deadlock: None,
        }
    }
}

impl Coroutines {
    /// Takes in a sample's coroutines, with that sample's channels and clock.
    pub fn update(&mut self, now: Option<CoroutinesSample>, channels: &[ChannelSample], taken_ns: u64) {
        self.taken_ns = taken_ns;
        let Some(report) = now else {
            self.now = None;
            self.parks.clear();
            self.deadlock = None;
            return;
        };
        let by_id: HashMap<u64, &ChannelSample> = channels.iter().map(|c| (c.id, c)).collect();
        let mut parks = HashMap::with_capacity(report.list.len());
        for c in report.list.iter().filter(|c| c.state == "parked") {
            let key = (c.id, c.park_seq);
            let chan = c.wait_channel.and_then(|w| by_id.get(&w.id).map(|ch| (w, *ch)));
            let counter = chan.map(|(w, ch)| if w.send { ch.recvs } else { ch.sends });
            let mut park = self.parks.remove(&key).unwrap_or(Park {
                since_ns: taken_ns,
                channel: None,
                first: counter,
                last: None,
                samples: 0,
            });
            park.channel = chan.map(|(_, ch)| ch.name.clone());
            park.last = counter;
            park.samples += 1;
            parks.insert(key, park);
        }
        self.parks = parks;
        self.deadlock = match report.deadlock_key() {
            None => None,
            Some(key) => {
                let text = report.deadlock.clone().unwrap_or_default();
                match self.deadlock.take() {
                    // With no coroutine marked (a source listing too few), the same report
                    // text is the same deadlock.
                    Some(d) if d.key == key && (!key.is_empty() || d.report == text) => {
                        Some(HeldDeadlock { report: text, samples: d.samples + 1, ..d })
                    }
                    _ => Some(HeldDeadlock { key, report: text, since_ns: taken_ns, samples: 1 }),
                }
            }
        };
        self.now = Some(report);
    }

    /// The latest list (empty without a report).
    pub fn list(&self) -> &[CoroutineSample] {
        self.now.as_ref().map_or(&[], |r| &r.list)
    }

    /// A coroutine by id.
    pub fn get(&self, id: u64) -> Option<&CoroutineSample> {
        self.list().iter().find(|c| c.id == id)
    }

    /// How long `c` has been in its current park: the longer of the source's count and
    /// chanmon's own since its first sample of the park. `None` when not parked.
    pub fn parked_for(&self, c: &CoroutineSample) -> Option<Duration> {
        let park = self.parks.get(&(c.id, c.park_seq))?;
        let seen = Duration::from_nanos(self.taken_ns.saturating_sub(park.since_ns));
        Some(seen.max(c.parked_for_ns.map_or(Duration::ZERO, Duration::from_nanos)))
    }

    /// Whether the stuck lint flags `c` at `threshold`.
    pub fn stuck(&self, c: &CoroutineSample, threshold: Duration) -> Option<Stuck> {
        let park = self.parks.get(&(c.id, c.park_seq))?;
        let wait = c.wait_channel?;
        let quiet = park.samples >= 2 && park.first.is_some() && park.first == park.last;
        let parked_for = self.parked_for(c)?;
        (quiet && parked_for >= threshold).then(|| Stuck {
            channel: park.channel.clone().unwrap_or_else(|| format!("#{}", wait.id)),
            send: wait.send,
            parked_for,
        })
    }

    /// Every coroutine the stuck lint flags at `threshold`, in the list's order.
    pub fn all_stuck(&self, threshold: Duration) -> Vec<(&CoroutineSample, Stuck)> {
        self.list().iter().filter_map(|c| self.stuck(c, threshold).map(|s| (c, s))).collect()
    }

    /// The deadlock the source reports now, with since when.
    pub fn deadlock(&self) -> Option<&HeldDeadlock> {
        self.deadlock.as_ref()
    }

    /// How long the current deadlock has been reported, on the samples' clock.
    pub fn deadlock_held(&self) -> Option<Duration> {
        self.deadlock.as_ref().map(|d| Duration::from_nanos(self.taken_ns.saturating_sub(d.since_ns)))
    }

    /// The coroutines whose name or wait contains `filter` (case-insensitive; empty: all),
    /// sorted by `key` (ties by id).
    pub fn rows(&self, key: CoroSort, filter: &str) -> Vec<&CoroutineSample> {
        let filter = filter.to_lowercase();
        let has = |s: &Option<String>| s.as_ref().is_some_and(|s| s.to_lowercase().contains(&filter));
        let mut rows: Vec<&CoroutineSample> =
            self.list().iter().filter(|c| filter.is_empty() || has(&c.name) || has(&c.wait)).collect();
        rows.sort_by_key(|c| c.id);
        match key {
            CoroSort::Id => {}
            CoroSort::ParkedFor => rows.sort_by_key(|c| std::cmp::Reverse(self.parked_for(c))),
            CoroSort::State => rows.sort_by_key(|c| match c.state.as_str() {
                "running" => 0,
                "runnable" => 1,
                _ => 2,
            }),
            // Unnamed last.
            CoroSort::Name => rows.sort_by(|a, b| match (&a.name, &b.name) {
                (Some(x), Some(y)) => x.cmp(y),
                (x, y) => y.is_some().cmp(&x.is_some()),
            }),
        }
        rows
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::sample::WaitChannel;
    use super::*;

    /// A channel with `sends` and `recvs` so far.
    pub(crate) fn chan(id: u64, name: &str, sends: u64, recvs: u64) -> ChannelSample {
        ChannelSample { recvs, ..super::super::state::tests::chan(id, name, sends, 0) }
    }

    /// A coroutine parked in park `seq` on a receive (or send) of channel `chan`.
    pub(crate) fn parked_on(id: u64, seq: u32, chan: u64, send: bool, server_ms: u64) -> CoroutineSample {
        CoroutineSample {
            id,
            name: Some(format!("c{id}")),
            worker: Some(0),
            state: "parked".into(),
            wait: Some(format!("{} on ch{chan}", if send { "send" } else { "recv" })),
            parked_for_ns: Some(server_ms * 1_000_000),
            park_seq: seq,
            spawned_at: "src/main.rs:1:1".into(),
            wait_channel: Some(WaitChannel { id: chan, send }),
            ..CoroutineSample::default()
        }
    }

    pub(crate) fn report(list: Vec<CoroutineSample>, deadlock: Option<&str>) -> CoroutinesSample {
        let count = |state: &str| list.iter().filter(|c| c.state == state).count() as u64;
        CoroutinesSample {
            total: list.len() as u64,
            running: count("running"),
            runnable: count("runnable"),
            parked: count("parked"),
            list,
            deadlock: deadlock.map(str::to_string),
            ..CoroutinesSample::default()
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_receiver_on_a_channel_nobody_sends_on_is_stuck_after_the_threshold() {
        let mut c = Coroutines::default();
        let five = Duration::from_secs(5);
        let idle = || chan(1, "jobs", 3, 3);
        c.update(Some(report(vec![parked_on(7, 1, 1, false, 0)], None)), &[idle()], 10 * S);
        assert!(c.all_stuck(Duration::ZERO).is_empty(), "one sample: nothing watched yet");
        c.update(Some(report(vec![parked_on(7, 1, 1, false, 4000)], None)), &[idle()], 14 * S);
        assert!(c.all_stuck(five).is_empty(), "4 s of 5");
        c.update(Some(report(vec![parked_on(7, 1, 1, false, 6000)], None)), &[idle()], 16 * S);
        let stuck = c.all_stuck(five);
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].1.to_string(), "stuck: no sender on jobs for 6.0s");
        // The same coroutine parked anew: its time starts again.
        c.update(Some(report(vec![parked_on(7, 2, 1, false, 0)], None)), &[idle()], 17 * S);
        assert!(c.all_stuck(Duration::ZERO).is_empty());
    }

    #[test]
    fn activity_on_the_other_side_is_not_stuck() {
        let mut c = Coroutines::default();
        // Receivers idle in a pool: sends go on, served by the others.
        c.update(Some(report(vec![parked_on(7, 1, 1, false, 60_000)], None)), &[chan(1, "work", 10, 10)], S);
        c.update(
            Some(report(vec![parked_on(7, 1, 1, false, 61_000)], None)),
            &[chan(1, "work", 12, 12)],
            2 * S,
        );
        assert!(c.all_stuck(Duration::from_secs(5)).is_empty());
        // A sender on a full channel whose receives go on is not stuck either; one whose
        // receives stopped is (its own sends do not count).
        let mut c = Coroutines::default();
        c.update(Some(report(vec![parked_on(8, 1, 2, true, 0)], None)), &[chan(2, "out", 5, 1)], S);
        c.update(Some(report(vec![parked_on(8, 1, 2, true, 9000)], None)), &[chan(2, "out", 5, 1)], 2 * S);
        let stuck = c.all_stuck(Duration::from_secs(5));
        assert_eq!(stuck[0].1.to_string(), "stuck: no receiver on out for 9.0s", "the source's longer count");
    }

    #[test]
    fn chanmon_counts_the_park_itself_when_the_source_says_less() {
        let mut c = Coroutines::default();
        c.update(Some(report(vec![parked_on(7, 1, 1, false, 0)], None)), &[chan(1, "jobs", 0, 0)], S);
        // A source that restarted its count (no detail of the first look) says 0 again.
        c.update(Some(report(vec![parked_on(7, 1, 1, false, 0)], None)), &[chan(1, "jobs", 0, 0)], 8 * S);
        assert_eq!(c.parked_for(&c.list()[0]), Some(Duration::from_secs(7)));
        assert_eq!(c.all_stuck(Duration::from_secs(5)).len(), 1);
    }

    #[test]
    fn the_same_deadlock_is_followed_and_a_new_one_restarts_the_count() {
        let mut c = Coroutines::default();
        let dl = |seq: u32| {
            let mut l = vec![parked_on(1, seq, 5, false, 0), parked_on(2, 1, 6, false, 0)];
            for x in &mut l {
                x.in_deadlock = true;
            }
            report(l, Some("deadlock: all 2 coroutines are parked"))
        };
        c.update(Some(dl(1)), &[], S);
        assert_eq!(c.deadlock().map(|d| (d.samples, d.key.clone())), Some((1, vec![(1, 1), (2, 1)])));
        c.update(Some(dl(1)), &[], 3 * S);
        assert_eq!(c.deadlock().map(|d| d.samples), Some(2));
        assert_eq!(c.deadlock_held(), Some(Duration::from_secs(2)));
        c.update(Some(dl(2)), &[], 4 * S);
        assert_eq!(c.deadlock().map(|d| d.samples), Some(1), "coroutine 1 moved: another deadlock");
        c.update(Some(report(vec![], None)), &[], 5 * S);
        assert!(c.deadlock().is_none());
        c.update(None, &[], 6 * S);
        assert!(c.now.is_none() && c.list().is_empty());
    }

    #[test]
    fn rows_sort_and_filter() {
        let mut c = Coroutines::default();
        let mut run = parked_on(3, 1, 1, false, 0);
        (run.state, run.wait, run.wait_channel, run.name) = ("running".into(), None, None, None);
        let mut list = vec![parked_on(1, 1, 1, false, 100), parked_on(2, 1, 9, true, 5000), run];
        (list[0].name, list[1].name) = (Some("worker".into()), Some("alpha".into()));
        c.update(Some(report(list, None)), &[chan(1, "jobs", 0, 0)], S);
        let ids = |k: CoroSort, f: &str| c.rows(k, f).iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(CoroSort::Id, ""), [1, 2, 3]);
        assert_eq!(ids(CoroSort::ParkedFor, ""), [2, 1, 3]);
        assert_eq!(ids(CoroSort::State, ""), [3, 1, 2]);
        assert_eq!(ids(CoroSort::Name, ""), [2, 1, 3], "the unnamed one last");
        assert_eq!(ids(CoroSort::Id, "SEND"), [2], "the wait text");
        assert_eq!(ids(CoroSort::Id, "Work"), [1], "the name");
    }

    #[test]
    fn durations_read_short() {
        let d = |ms: u64| duration(Duration::from_millis(ms));
        assert_eq!(
            [d(850), d(1500), d(12_400), d(200_000), d(7_500_000)],
            ["850ms", "1.5s", "12s", "3m20s", "2h05m"]
        );
    }
}
