//! r8s's store: a multi-version key-value store with the semantics of etcd v3's
//! KV and Watch APIs, which is what the Kubernetes API server is built on.
//!
//! * Every write gets a cluster-wide [`Revision`] that only grows; the API server
//!   uses it as `resourceVersion`.
//! * Each key keeps the revision that created it and the one that last changed it,
//!   so writers can compare-and-swap on the mod revision.
//! * Reads can be served at the latest revision or at an older one that has not
//!   been compacted away.
//! * A watch replays every change after a revision and then streams live ones in
//!   order, each with the value the key had before.
//!
//! The [`Store`] trait is the whole contract. It has three implementations:
//! [`mem::MemStore`] (one process, nothing on disk; for tests of the layers above),
//! the embedded raft store (the default), and etcd.

pub mod compaction;
pub mod etcd;
pub mod mem;
pub mod mvcc;
pub mod raft;
pub mod testing;
mod watch;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use watch::WatchStream;

/// A point in the store's history: every successful write takes the next one.
/// Only compare revisions with each other, never with fixed numbers: like etcd,
/// an empty r8s store is at revision 1 (its first write gets 2), so a revision
/// is never 0, which Kubernetes reads as "any resourceVersion"; and a store
/// restored from a snapshot or an etcd with history starts wherever it was.
pub type Revision = i64;

/// One key and its value, with its bookkeeping revisions.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision of the write that created this key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the write that last changed this key.
    pub mod_revision: Revision,
    /// How many times the key was written since it was created (1 after create).
    pub version: i64,
}

impl fmt::Debug for KeyValue {
    // Values can be a MiB: show their length, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .finish()
    }
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For `Put`, the new key-value. For `Delete`, the key with an empty value and
    /// `mod_revision` set to the revision of the delete (as etcd reports it).
    pub kv: KeyValue,
    /// The key-value before this change, if the key existed.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A read of many keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    /// Every key that starts with this prefix ("" is every key).
    pub prefix: String,
    /// Only keys strictly greater than this one (a continue token from a previous
    /// page is the last key it returned).
    pub start_after: Option<String>,
    /// At most this many keys; `None` or 0 is no limit.
    pub limit: Option<usize>,
    /// Read at this revision; `None` is the latest.
    pub revision: Option<Revision>,
}

/// The answer to a [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The keys, in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// True if the limit cut the result short; the next page starts after the
    /// last key of `kvs`.
    pub more: bool,
    /// The revision the read was served at. Later pages should pass it as
    /// `revision` to see one consistent snapshot, as Kubernetes' continue does.
    pub revision: Revision,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreError {
    /// A create found the key already there.
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    /// An update or delete found no such key.
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// A compare-and-swap found another mod revision than the one expected.
    /// `current` is the key as it is now, so the caller can retry without a read.
    #[error("key {key:?} was modified: expected revision {expected}, found {}", current.as_ref().map_or(0, |kv| kv.mod_revision))]
    Conflict {
        key: String,
        expected: Revision,
        current: Option<KeyValue>,
    },
    /// The revision asked for is older than the compaction point.
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The revision asked for is newer than the store's current revision.
    #[error("revision {requested} is in the future; the current revision is {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// A value over the store's size limit.
    #[error("value of {size} bytes for key {key:?} is over the limit of {limit} bytes")]
    TooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    /// A watcher fell so far behind that the store dropped it instead of buffering
    /// without bound. The caller should re-list and watch again.
    #[error("watch fell behind and was closed")]
    WatcherTooSlow,
    /// The store cannot serve the request now (no leader, shutting down, ...).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: I/O, corrupt data, a backend's own error.
    #[error("store error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The largest value a store accepts. etcd's default request limit is 1.5 MiB and
/// Kubernetes objects are capped at about 1.5 MiB as well; r8s allows 2 MiB.
pub const MAX_VALUE_SIZE: usize = 2 * 1024 * 1024;

/// The store contract. All backends pass the same conformance suite
/// ([`testing::conformance`], run with [`store_conformance_tests!`]).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates `key` only if it does not exist. Returns the new key-value.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces the value of an existing `key`. With `expected`, only if its mod
    /// revision is exactly that (compare-and-swap); otherwise `Conflict`.
    /// A missing key is `NotFound`.
    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>) -> Result<KeyValue>;

    /// Deletes an existing `key`, with the same compare-and-swap rule as `update`.
    /// Returns the key-value as it was before, and the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;

    /// Reads one key at the latest revision or at `revision`.
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>>;

    /// Reads the keys under a prefix.
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse>;

    /// Streams every change to keys under `prefix` with a revision greater than
    /// `after`, in revision order: first those already in the history, then live
    /// ones. `after` older than the compaction point is `Compacted`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The latest revision. Cheap: no disk or network round trip beyond what a
    /// linearizable read needs.
    async fn current_revision(&self) -> Result<Revision>;

    /// Forgets history before `revision`: reads at older revisions and watches
    /// after older revisions then fail with `Compacted`; reads at `revision` and
    /// watches after it still work. Compacting to a revision at or before the
    /// current compaction point does nothing; past the current revision it is
    /// `FutureRevision`. Stores also compact by themselves
    /// ([`compaction::AutoCompaction`]).
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Whether the store's machinery still runs (liveness): an embedded raft
    /// core that stopped for good fails it, and only a restart can help.
    async fn check_live(&self) -> Result<()> {
        Ok(())
    }

    /// Whether the store can serve a linearizable read now (readiness): a
    /// leader backed by a quorum, and this server caught up with it.
    async fn check_ready(&self) -> Result<()> {
        self.current_revision().await.map(|_| ())
    }
}
