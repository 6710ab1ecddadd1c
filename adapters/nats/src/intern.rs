//! Subjects that publishes repeat, kept for the life of the process.
//!
//! Every publish hands the client its subject. A `Subject` made from a `String` is
//! reference counted: cloned on the sending coroutine's thread and dropped on the client's
//! after the write, so one counter's cache line crossed between the two threads per
//! message (9% of a fan-out publisher's rate in `kcoro-bench nats`'s `core_64`). A subject
//! made from a `&'static str` is copied by pointer and counts nothing, so the subjects of
//! publishing ends are interned once, here: at most [`MAX_INTERNED`] distinct subjects of
//! at most [`MAX_LEN`] bytes (under 1 MiB, held until the process exits). Past either
//! limit a subject is reference counted as before; nothing else changes.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use async_nats::Subject;

/// Distinct subjects kept at most.
pub(crate) const MAX_INTERNED: usize = 4096;

/// Longest subject kept.
pub(crate) const MAX_LEN: usize = 256;

static INTERNED: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();

/// `subject` as a publishing end keeps it: interned if it fits, else reference counted.
/// Called once per end, not per publish.
pub(crate) fn publish_subject(subject: &str) -> Subject {
    interned(subject).map_or_else(|| Subject::from(subject), Subject::from_static)
}

fn interned(subject: &str) -> Option<&'static str> {
    if subject.len() > MAX_LEN {
        return None;
    }
    // A poisoned lock only means another thread panicked between two plain set
    // operations: the set itself is whole.
    let mut set = INTERNED.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&kept) = set.get(subject) {
        return Some(kept);
    }
    if set.len() >= MAX_INTERNED {
        return None;
    }
    let kept: &'static str = Box::leak(subject.into());
    set.insert(kept);
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test: the set is the process's, so a second test filling it would race this one.
    #[test]
    fn subjects_are_kept_once_within_the_limits_and_counted_past_them() {
        let a = interned("intern.test.a").map(str::as_ptr);
        assert!(a.is_some());
        assert_eq!(interned(&String::from("intern.test.a")).map(str::as_ptr), a, "one copy per subject");
        let long = "y".repeat(MAX_LEN + 1);
        assert_eq!(interned(&long), None);
        assert_eq!(publish_subject(&long).as_str(), long, "a subject not kept is still that subject");
        assert_eq!(publish_subject("intern.test.a").as_str(), "intern.test.a");
        // Fill the set (other subjects of this process count too); one more is not kept.
        for i in 0..MAX_INTERNED {
            let _ = interned(&format!("intern.fill.{i}"));
        }
        assert_eq!(interned("intern.one.more"), None);
        assert_eq!(publish_subject("intern.one.more").as_str(), "intern.one.more");
        assert_eq!(interned("intern.test.a").map(str::as_ptr), a, "kept ones stay");
    }
}
