//! When to take the next sample.
//!
//! A sample that comes late (a stopped target answering at last, a slow terminal) moves
//! the schedule instead of being caught up: missed ticks are skipped, so consecutive
//! samples start at least one interval apart. Catching up would take several samples
//! within a millisecond after a stall, whose tiny intervals turn a few counts into huge
//! rates (and peaks), and would use up `--samples` on them.

use std::time::{Duration, Instant};

/// The sampling schedule.
#[derive(Debug, Clone, Copy)]
pub struct Ticker {
    next: Instant,
    interval: Duration,
}

impl Ticker {
    /// A schedule whose first tick is `now`.
    pub fn new(interval: Duration, now: Instant) -> Ticker {
        Ticker { next: now, interval }
    }

    /// How long until the next tick (zero when it is due).
    pub fn until_due(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// The sample of the current tick is done at `now`: the next tick is one interval
    /// after this one, or one interval from `now` when that has already passed.
    pub fn taken(&mut self, now: Instant) {
        self.next += self.interval;
        if self.next < now {
            self.next = now + self.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_time_samples_keep_the_grid() {
        let t0 = Instant::now();
        let mut t = Ticker::new(Duration::from_millis(500), t0);
        assert_eq!(t.until_due(t0), Duration::ZERO);
        t.taken(t0 + Duration::from_millis(10));
        assert_eq!(t.until_due(t0 + Duration::from_millis(10)), Duration::from_millis(490));
    }

    #[test]
    fn a_stall_skips_the_missed_ticks_instead_of_bursting() {
        let t0 = Instant::now();
        let interval = Duration::from_millis(500);
        let mut t = Ticker::new(interval, t0);
        // The first sample's request hung for 3.2 s (the target was stopped).
        let late = t0 + Duration::from_millis(3200);
        t.taken(late);
        // The next sample is a whole interval later, not at once (six missed ticks).
        assert_eq!(t.until_due(late), interval);
        t.taken(late + interval);
        assert_eq!(t.until_due(late + interval), interval);
    }
}
