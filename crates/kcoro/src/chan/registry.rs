//! The process-wide list of named channels, for monitors and the IPC layer.
//!
//! A channel built with [`Builder::name`](super::Builder::name) is listed while it lives
//! (the registry holds it weakly) and disappears when its last handle is dropped. Names
//! are labels, not keys: two live channels may share one, and both are listed.

use std::sync::{Arc, Mutex, Weak};

use super::core::Chan;
use super::stats::Snapshot;

/// What the registry can ask of a channel of any element type.
trait Named: Send + Sync {
    fn snapshot(&self) -> Snapshot;
}

impl<T: Send> Named for Chan<T> {
    fn snapshot(&self) -> Snapshot {
        Chan::snapshot(self)
    }
}

/// The entries, and how many there were after the last sweep of dropped channels.
struct Entries {
    list: Vec<Weak<dyn Named>>,
    after_sweep: usize,
}

/// Below this many entries a registration does not sweep: a short list costs nothing.
const SWEEP_FLOOR: usize = 64;

static CHANNELS: Mutex<Entries> = Mutex::new(Entries { list: Vec::new(), after_sweep: 0 });

fn channels() -> std::sync::MutexGuard<'static, Entries> {
    // Pushes and retains of whole entries only: a poisoned list is still consistent.
    CHANNELS.lock().unwrap_or_else(|p| p.into_inner())
}

impl Entries {
    fn push(&mut self, weak: Weak<dyn Named>) {
        // Sweeping on every registration made n registrations cost n² looks (16k named
        // channels: 134M). Sweeping once the list has doubled since the last sweep keeps
        // a registration O(1) amortised, and dropped channels' memory is still given back.
        if self.list.len() >= (2 * self.after_sweep).max(SWEEP_FLOOR) {
            self.list.retain(|w| w.strong_count() > 0);
            self.after_sweep = self.list.len();
        }
        self.list.push(weak);
    }
}

pub(crate) fn register<T: Send + 'static>(chan: &Arc<Chan<T>>) {
    channels().push(Arc::downgrade(chan) as Weak<dyn Named>);
}

/// Snapshots of every live named channel, in creation order.
pub fn list() -> Vec<Snapshot> {
    let live: Vec<Arc<dyn Named>> = channels().list.iter().filter_map(Weak::upgrade).collect();
    // Snapshot outside the registry lock: each takes its channel's lock.
    live.iter().map(|c| c.snapshot()).collect()
}

/// Snapshots of the live channels named `name`.
pub fn find(name: &str) -> Vec<Snapshot> {
    list().into_iter().filter(|s| s.name.as_deref() == Some(name)).collect()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn named() -> Arc<dyn Named> {
        let (tx, _rx) = crate::chan::buffered::<u8>(1);
        Arc::clone(&tx.chan) as Arc<dyn Named>
    }

    #[test]
    fn dropped_channels_are_swept_and_live_ones_kept() {
        let mut entries = Entries { list: Vec::new(), after_sweep: 0 };
        let live: Vec<_> = (0..100).map(|_| named()).collect();
        for c in &live {
            entries.push(Arc::downgrade(c));
        }
        for _ in 0..5_000 {
            let gone = named();
            entries.push(Arc::downgrade(&gone));
            drop(gone);
            // Swept each time it doubles: never more than twice the live channels.
            assert!(entries.list.len() <= 2 * live.len() + 1, "{} entries", entries.list.len());
        }
        let listed = entries.list.iter().filter(|w| w.strong_count() > 0).count();
        assert_eq!(listed, live.len(), "every live channel is still listed");
        drop(live);
        for _ in 0..300 {
            entries.push(Arc::downgrade(&named()));
        }
        assert!(
            entries.list.len() <= SWEEP_FLOOR,
            "none live: back to the floor, not {}",
            entries.list.len()
        );
    }

    #[test]
    fn a_short_list_is_not_swept() {
        let mut entries = Entries { list: Vec::new(), after_sweep: 0 };
        for _ in 0..SWEEP_FLOOR {
            entries.push(Arc::downgrade(&named()));
        }
        assert_eq!(entries.list.len(), SWEEP_FLOOR, "no sweep below the floor");
        entries.push(Arc::downgrade(&named()));
        assert_eq!(entries.list.len(), 1, "the floor reached: swept, then pushed");
    }
}
