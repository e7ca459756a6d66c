//! Create/delete expectations, as Kubernetes' controllers keep them: after a
//! controller asks for N pods to be created, its cache shows them only when the
//! watch delivers them. Until then the controller must not count again and create
//! N more. It records what it expects here, the informer handlers mark each
//! observation, and the controller only changes counts once all are seen (or after
//! a timeout, in case an event was lost).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Expected {
    creations: i64,
    deletions: HashSet<String>,
    since: Instant,
}

#[derive(Debug, Default)]
pub struct Expectations {
    by_controller: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expected>> {
        self.by_controller.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The controller `key` is about to create `creations` objects and delete the
    /// objects with `deletion_uids`.
    pub fn expect(&self, key: &str, creations: usize, deletion_uids: impl IntoIterator<Item = String>) {
        let expected = Expected {
            creations: creations as i64,
            deletions: deletion_uids.into_iter().collect(),
            since: Instant::now(),
        };
        self.lock().insert(key.to_string(), expected);
    }

    /// One creation expected by `key` was seen (or will never happen: it failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(expected) = self.lock().get_mut(key) {
            expected.creations -= 1;
        }
    }

    /// The deletion of `uid` expected by `key` was seen (or failed).
    pub fn deletion_observed(&self, key: &str, uid: &str) {
        if let Some(expected) = self.lock().get_mut(key) {
            expected.deletions.remove(uid);
        }
    }

    /// Whether `key` may count its objects again.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => (e.creations <= 0 && e.deletions.is_empty()) || e.since.elapsed() > EXPECTATION_TIMEOUT,
        }
    }

    /// Forgets `key` (its controller object is gone).
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_expected_change_is_observed() {
        let expectations = Expectations::new();
        assert!(expectations.satisfied("ns/rs"));
        expectations.expect("ns/rs", 2, ["uid-1".to_string()]);
        assert!(!expectations.satisfied("ns/rs"));
        expectations.creation_observed("ns/rs");
        expectations.creation_observed("ns/rs");
        assert!(!expectations.satisfied("ns/rs"));
        expectations.deletion_observed("ns/rs", "uid-1");
        assert!(expectations.satisfied("ns/rs"));
    }
}
