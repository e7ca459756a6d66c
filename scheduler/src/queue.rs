//! The scheduling queue: pending pods by priority (then first come, first
//! served); pods found unschedulable wait aside until the cluster changes (a node
//! added or updated, a placed pod gone), then come back after a per-pod back-off
//! that doubles with each failed attempt. Nothing retries in a hot loop.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    priority: i32,
    seq: u64,
    key: String,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default)]
struct State {
    active: BinaryHeap<Entry>,
    queued: HashSet<String>,
    /// Unschedulable pods and their priorities.
    parked: HashMap<String, i32>,
    attempts: HashMap<String, u32>,
    seq: u64,
    /// Counts pops; a pod that failed in a cycle during which the cluster changed
    /// is retried at once instead of parked.
    cycle: u64,
    last_move_cycle: u64,
}

/// Cheap to clone.
#[derive(Clone, Default)]
pub struct SchedulingQueue {
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
}

impl SchedulingQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a pending pod (unless it is already queued).
    pub fn add(&self, key: &str, priority: i32) {
        let mut state = self.lock();
        state.parked.remove(key);
        if !state.queued.insert(key.to_string()) {
            return;
        }
        state.seq += 1;
        let seq = state.seq;
        state.active.push(Entry { priority, seq, key: key.to_string() });
        drop(state);
        self.ready.notify_one();
    }

    /// The next pod to schedule, with the cycle it is scheduled in.
    pub async fn pop(&self) -> (String, u64) {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if let Some(entry) = state.active.pop() {
                    state.queued.remove(&entry.key);
                    state.cycle += 1;
                    if !state.active.is_empty() {
                        self.ready.notify_one();
                    }
                    return (entry.key, state.cycle);
                }
            }
            notified.await;
        }
    }

    /// The pod fit nowhere in `cycle`: park it until the cluster changes.
    pub fn park(&self, key: &str, priority: i32, cycle: u64) {
        let mut state = self.lock();
        *state.attempts.entry(key.to_string()).or_default() += 1;
        if state.last_move_cycle >= cycle {
            drop(state);
            self.retry_after_backoff(key, priority);
        } else {
            state.parked.insert(key.to_string(), priority);
        }
    }

    /// Something failed (binding, say): try again after the pod's back-off.
    pub fn retry_after_backoff(&self, key: &str, priority: i32) {
        let attempts = {
            let mut state = self.lock();
            let attempts = state.attempts.entry(key.to_string()).or_default();
            *attempts = (*attempts).max(1);
            *attempts
        };
        let delay = INITIAL_BACKOFF.saturating_mul(1 << (attempts - 1).min(10)).min(MAX_BACKOFF);
        let queue = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(&key, priority);
        });
    }

    /// The cluster changed in a way that may let parked pods fit.
    pub fn move_all_parked(&self) {
        let parked: Vec<(String, i32)> = {
            let mut state = self.lock();
            state.last_move_cycle = state.cycle;
            state.parked.drain().collect()
        };
        for (key, priority) in parked {
            self.retry_after_backoff(&key, priority);
        }
    }

    /// The pod is bound or gone.
    pub fn forget(&self, key: &str) {
        let mut state = self.lock();
        state.parked.remove(key);
        state.attempts.remove(key);
    }

    pub fn parked_len(&self) -> usize {
        self.lock().parked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn higher_priority_first_then_first_come() {
        let queue = SchedulingQueue::new();
        queue.add("low", 0);
        queue.add("high", 100);
        queue.add("low2", 0);
        queue.add("low", 0);
        assert_eq!(queue.pop().await.0, "high");
        assert_eq!(queue.pop().await.0, "low");
        assert_eq!(queue.pop().await.0, "low2");
    }

    #[tokio::test(start_paused = true)]
    async fn parked_pods_return_only_when_the_cluster_changes() {
        let queue = SchedulingQueue::new();
        queue.add("p", 0);
        let (key, cycle) = queue.pop().await;
        queue.park(&key, 0, cycle);
        assert_eq!(queue.parked_len(), 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(queue.parked_len(), 1, "still parked: nothing changed");
        queue.move_all_parked();
        assert_eq!(queue.pop().await.0, "p");
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_the_cycle_means_retry_not_park() {
        let queue = SchedulingQueue::new();
        queue.add("p", 0);
        let (key, cycle) = queue.pop().await;
        queue.move_all_parked();
        queue.park(&key, 0, cycle);
        assert_eq!(queue.parked_len(), 0);
        assert_eq!(queue.pop().await.0, "p");
    }
}
