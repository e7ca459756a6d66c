//! `MemStore`: the [`Mvcc`] behind a lock, in one process, nothing on disk.
//! Handy for tests of the layers above, and the reference the conformance suite
//! is checked against.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::compaction::{AutoCompaction, DEFAULT_COMPACTION_INTERVAL};
use crate::mvcc::{Command, Mvcc};
use crate::watch::DEFAULT_WATCH_BUFFER;
use crate::{KeyValue, RangeRequest, RangeResponse, Result, Revision, Store, WatchStream};

#[derive(Clone, Debug)]
pub struct MemStoreConfig {
    /// Compact automatically at this interval; `None` never does.
    pub compaction_interval: Option<Duration>,
    /// Live events a watcher may have waiting before it is closed as too slow.
    pub watch_buffer: usize,
}

impl Default for MemStoreConfig {
    fn default() -> Self {
        MemStoreConfig {
            compaction_interval: Some(DEFAULT_COMPACTION_INTERVAL),
            watch_buffer: DEFAULT_WATCH_BUFFER,
        }
    }
}

pub struct MemStore {
    // A plain mutex: it is never held across an await, and every operation
    // under it is short.
    mvcc: Mutex<Mvcc>,
    _compaction: Option<AutoCompaction>,
}

impl MemStore {
    /// A store that compacts every 5 minutes. Needs a tokio runtime.
    pub fn new() -> Arc<Self> {
        Self::with_config(MemStoreConfig::default())
    }

    /// Needs a tokio runtime if `config.compaction_interval` is set.
    pub fn with_config(config: MemStoreConfig) -> Arc<Self> {
        Arc::new_cyclic(|this| MemStore {
            mvcc: Mutex::new(Mvcc::with_watch_buffer(config.watch_buffer)),
            _compaction: config
                .compaction_interval
                .map(|interval| AutoCompaction::start(this.clone(), interval)),
        })
    }

    /// How many watchers are still registered (for tests).
    pub fn watcher_count(&self) -> usize {
        self.lock().watcher_count()
    }

    fn lock(&self) -> MutexGuard<'_, Mvcc> {
        // Mvcc's methods do not panic half-way through a change, so the state
        // behind a poisoned lock is still whole.
        self.mvcc
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Store for MemStore {
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.lock()
            .apply(Command::Create {
                key: key.to_owned(),
                value,
            })
            .into_put()
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.lock()
            .apply(Command::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .into_put()
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        self.lock()
            .apply(Command::Delete {
                key: key.to_owned(),
                expected,
            })
            .into_deleted()
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        self.lock().get(key, revision)
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        self.lock().range(&request)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.lock().watch(prefix, after)
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().current_revision())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.lock()
            .apply(Command::Compact { revision })
            .into_compacted()
    }
}
