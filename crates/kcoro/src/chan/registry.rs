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

static CHANNELS: Mutex<Vec<Weak<dyn Named>>> = Mutex::new(Vec::new());

fn channels() -> std::sync::MutexGuard<'static, Vec<Weak<dyn Named>>> {
    // Pushes and retains of whole entries only: a poisoned list is still consistent.
    CHANNELS.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn register<T: Send + 'static>(chan: &Arc<Chan<T>>) {
    let weak: Weak<dyn Named> = Arc::downgrade(chan) as Weak<dyn Named>;
    let mut list = channels();
    list.retain(|w| w.strong_count() > 0);
    list.push(weak);
}

/// Snapshots of every live named channel, in creation order.
pub fn list() -> Vec<Snapshot> {
    let live: Vec<Arc<dyn Named>> = channels().iter().filter_map(Weak::upgrade).collect();
    // Snapshot outside the registry lock: each takes its channel's lock.
    live.iter().map(|c| c.snapshot()).collect()
}

/// Snapshots of the live channels named `name`.
pub fn find(name: &str) -> Vec<Snapshot> {
    list().into_iter().filter(|s| s.name.as_deref() == Some(name)).collect()
}
