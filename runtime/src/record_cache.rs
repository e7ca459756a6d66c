//! Records the CRI service keeps one JSON file each for (containers,
//! sandboxes), also held in memory.
//!
//! The kubelet lists containers and sandboxes every second and at every pod
//! sync. Read from their files each time, a list cost a file read and a JSON
//! parse per record, so 100 pods cost 10,000 parses for one round of syncs,
//! and a burst of pods slowed down with the square of its size. The files stay
//! the truth across restarts: a record is written to its file first and then
//! to memory, and the memory is filled from the files when the store opens.

use std::collections::HashMap;
use std::sync::RwLock;

pub struct RecordCache<T> {
    records: RwLock<HashMap<String, T>>,
}

impl<T: Clone> RecordCache<T> {
    pub fn new(records: impl IntoIterator<Item = (String, T)>) -> Self {
        Self { records: RwLock::new(records.into_iter().collect()) }
    }

    pub fn get(&self, id: &str) -> Option<T> {
        self.records.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Every record, in no particular order.
    pub fn all(&self) -> Vec<T> {
        self.records.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Records for which `keep` holds, in no particular order.
    pub fn filtered(&self, keep: impl Fn(&T) -> bool) -> Vec<T> {
        self.records.read().unwrap_or_else(|e| e.into_inner()).values().filter(|r| keep(r)).cloned().collect()
    }

    pub fn insert(&self, id: String, record: T) {
        self.records.write().unwrap_or_else(|e| e.into_inner()).insert(id, record);
    }

    pub fn remove(&self, id: &str) {
        self.records.write().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}
