//! The deterministic heart of every r8s-owned backend: an in-memory multi-version
//! key-value map. Writes come in as [`Command`]s and are applied one at a time;
//! the same commands applied in the same order give the same state and the same
//! revisions on every raft server. No I/O and no clocks here.
//!
//! INTERFACE CONTRACT (filled in by the store work): the raft backend and
//! `MemStore` both drive this type; keep these signatures stable.

use serde::{Deserialize, Serialize};

use crate::{KeyValue, RangeRequest, RangeResponse, Result, Revision, WatchEvent};

/// A write, as it travels through the raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Create { key: String, value: bytes::Bytes },
    Update { key: String, value: bytes::Bytes, expected: Option<Revision> },
    Delete { key: String, expected: Option<Revision> },
    Compact { revision: Revision },
}

/// The result of applying a [`Command`]. Errors (conflicts, ...) are results
/// too: a rejected compare-and-swap is decided by the state machine and must be
/// the same on every server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Put(KeyValue),
    Deleted { prev: KeyValue, revision: Revision },
    Compacted,
    Rejected(crate::StoreError),
}

/// Everything needed to rebuild an [`Mvcc`] elsewhere: the latest value of every
/// key and the revision counters. History older than the snapshot is not kept,
/// so a restored store starts with its compaction point at `revision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
}

pub struct Mvcc {
    _private: (),
}

impl Mvcc {
    pub fn new() -> Self {
        todo!()
    }

    /// Applies one write. Every successful write bumps the revision by one;
    /// rejected ones and compactions do not. Watchers registered with
    /// [`Mvcc::subscribe`] see the resulting event.
    pub fn apply(&mut self, command: Command) -> Applied {
        let _ = command;
        todo!()
    }

    pub fn current_revision(&self) -> Revision {
        todo!()
    }

    pub fn compacted_revision(&self) -> Revision {
        todo!()
    }

    pub fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let _ = (key, revision);
        todo!()
    }

    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse> {
        let _ = request;
        todo!()
    }

    /// Events under `prefix` after revision `after` that are still in the history.
    pub fn history(&self, prefix: &str, after: Revision) -> Result<Vec<WatchEvent>> {
        let _ = (prefix, after);
        todo!()
    }

    /// Registers a watcher: the history after `after` under `prefix` first, then
    /// every event that later `apply` calls produce, with no gap and no repeat.
    /// A watcher whose buffer fills up is closed with `WatcherTooSlow`.
    pub fn watch(&mut self, prefix: &str, after: Revision) -> Result<crate::WatchStream> {
        let _ = (prefix, after);
        todo!()
    }

    pub fn snapshot(&self) -> Snapshot {
        todo!()
    }

    pub fn restore(snapshot: Snapshot) -> Self {
        let _ = snapshot;
        todo!()
    }
}

impl Default for Mvcc {
    fn default() -> Self {
        Self::new()
    }
}
