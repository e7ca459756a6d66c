//! The deterministic heart of every r8s-owned backend: an in-memory multi-version
//! key-value map. Writes come in as [`Command`]s and are applied one at a time;
//! the same commands applied in the same order give the same state and the same
//! revisions on every raft server. No I/O and no clocks here.
//!
//! The layout: every key has its versions in revision order, a deleted key ends
//! in a tombstone; an event log names the key each revision wrote, so watches
//! can replay history without storing every value twice. Compaction drops both
//! down to what is needed to answer reads at and after the compaction point.
//!
//! Like etcd, an empty store is at revision 1 and its first write gets revision 2:
//! a revision (a Kubernetes `resourceVersion`) is never 0, which Kubernetes reads
//! as "any".

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::watch::{self, WatchSender};
use crate::{
    EventKind, KeyValue, RangeRequest, RangeResponse, Result, Revision, StoreError, WatchEvent,
    MAX_VALUE_SIZE,
};

/// A write, as it travels through the raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    /// Forget history before `revision` (see [`Mvcc::compacted_revision`]).
    /// Compacting to a revision at or before the current compaction point does
    /// nothing; past the current revision it is rejected.
    Compact {
        revision: Revision,
    },
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

impl Applied {
    /// The outcome of a `Create` or `Update` as the [`crate::Store`] trait returns it.
    pub fn into_put(self) -> Result<KeyValue> {
        match self {
            Applied::Put(kv) => Ok(kv),
            Applied::Rejected(error) => Err(error),
            other => Err(unexpected(other)),
        }
    }

    /// The outcome of a `Delete` as the [`crate::Store`] trait returns it.
    pub fn into_deleted(self) -> Result<(KeyValue, Revision)> {
        match self {
            Applied::Deleted { prev, revision } => Ok((prev, revision)),
            Applied::Rejected(error) => Err(error),
            other => Err(unexpected(other)),
        }
    }

    /// The outcome of a `Compact` as the [`crate::Store`] trait returns it.
    pub fn into_compacted(self) -> Result<()> {
        match self {
            Applied::Compacted => Ok(()),
            Applied::Rejected(error) => Err(error),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(applied: Applied) -> StoreError {
    StoreError::Internal(format!("unexpected outcome for this command: {applied:?}"))
}

/// Everything needed to rebuild an [`Mvcc`] elsewhere: the latest value of every
/// key and the revision counters. History older than the snapshot is not kept,
/// so a restored store starts with its compaction point at `revision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
}

/// The revision of an empty store (etcd's too).
const EMPTY_STORE_REVISION: Revision = 1;

/// One version of a key: its value from `revision` on, or `None` if the key was
/// deleted at `revision`.
#[derive(Clone, Debug)]
struct Version {
    revision: Revision,
    kv: Option<KeyValue>,
}

/// The versions of one key, oldest first; never empty.
type Versions = Vec<Version>;

/// The version of `versions` that was current at `revision`, if any.
fn version_at(versions: &Versions, revision: Revision) -> Option<&Version> {
    let newer = versions.partition_point(|version| version.revision <= revision);
    newer.checked_sub(1).map(|index| &versions[index])
}

pub struct Mvcc {
    keys: BTreeMap<String, Versions>,
    /// Which key each revision after the compaction point wrote, oldest first.
    history: VecDeque<(Revision, String)>,
    revision: Revision,
    /// Reads before this revision and watches from before it are refused.
    compacted: Revision,
    watchers: Vec<WatchSender>,
    watch_buffer: usize,
}

impl Mvcc {
    pub fn new() -> Self {
        Self::with_watch_buffer(watch::DEFAULT_WATCH_BUFFER)
    }

    /// A store whose watchers may have at most `watch_buffer` live events waiting
    /// before they are closed as too slow.
    pub fn with_watch_buffer(watch_buffer: usize) -> Self {
        Mvcc {
            keys: BTreeMap::new(),
            history: VecDeque::new(),
            revision: EMPTY_STORE_REVISION,
            compacted: 0,
            watchers: Vec::new(),
            watch_buffer,
        }
    }

    /// Applies one write. Every successful write bumps the revision by one;
    /// rejected ones and compactions do not. Watchers registered with
    /// [`Mvcc::watch`] see the resulting event.
    pub fn apply(&mut self, command: Command) -> Applied {
        let outcome = match command {
            Command::Create { key, value } => self.create(key, value),
            Command::Update {
                key,
                value,
                expected,
            } => self.update(key, value, expected),
            Command::Delete { key, expected } => self.delete(key, expected),
            Command::Compact { revision } => self.compact(revision),
        };
        outcome.unwrap_or_else(Applied::Rejected)
    }

    pub fn current_revision(&self) -> Revision {
        self.revision
    }

    /// The oldest revision that can still be read; 0 if nothing was compacted yet.
    /// Watches need `after >= compacted_revision()`.
    pub fn compacted_revision(&self) -> Revision {
        self.compacted
    }

    pub fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let revision = self.readable(revision)?;
        Ok(self
            .keys
            .get(key)
            .and_then(|versions| live_at(versions, revision))
            .cloned())
    }

    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse> {
        let revision = self.readable(request.revision)?;
        let prefix = request.prefix.as_str();
        let start = match &request.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix),
        };
        let limit = request
            .limit
            .filter(|&limit| limit > 0)
            .unwrap_or(usize::MAX);
        let mut matching = self
            .keys
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(_, versions)| live_at(versions, revision));
        let kvs: Vec<KeyValue> = matching.by_ref().take(limit).cloned().collect();
        let more = matching.next().is_some();
        Ok(RangeResponse {
            kvs,
            more,
            revision,
        })
    }

    /// Events under `prefix` after revision `after` that are still in the history.
    pub fn history(&self, prefix: &str, after: Revision) -> Result<Vec<WatchEvent>> {
        if after < self.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.compacted,
            });
        }
        let first = self
            .history
            .partition_point(|(revision, _)| *revision <= after);
        Ok(self
            .history
            .range(first..)
            .filter(|(_, key)| key.starts_with(prefix))
            .map(|(revision, key)| self.event_at(key, *revision))
            .collect())
    }

    /// Registers a watcher: the history after `after` under `prefix` first, then
    /// every event that later `apply` calls produce, with no gap and no repeat.
    /// A watcher whose buffer fills up is closed with `WatcherTooSlow`.
    /// `after` may be in the future: the watcher then sees the events after it.
    pub fn watch(&mut self, prefix: &str, after: Revision) -> Result<crate::WatchStream> {
        let replay = self.history(prefix, after)?;
        let (sender, stream) = watch::watcher(prefix, after, replay, self.watch_buffer);
        self.watchers.push(sender);
        Ok(stream)
    }

    /// How many watchers are registered and still read. A dropped stream stops
    /// counting at once; its sender is freed by the next write.
    pub fn watcher_count(&self) -> usize {
        self.watchers
            .iter()
            .filter(|watcher| watcher.is_open())
            .count()
    }

    pub fn snapshot(&self) -> Snapshot {
        let kvs = self
            .keys
            .values()
            .filter_map(|versions| live_at(versions, self.revision))
            .cloned()
            .collect();
        Snapshot {
            revision: self.revision,
            kvs,
        }
    }

    pub fn restore(snapshot: Snapshot) -> Self {
        let mut mvcc = Mvcc::new();
        mvcc.revision = snapshot.revision;
        mvcc.compacted = snapshot.revision;
        mvcc.keys = snapshot
            .kvs
            .into_iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    vec![Version {
                        revision: kv.mod_revision,
                        kv: Some(kv),
                    }],
                )
            })
            .collect();
        mvcc
    }

    /// Checks that `revision` (latest if `None`) can be read and returns it.
    fn readable(&self, revision: Option<Revision>) -> Result<Revision> {
        match revision {
            None => Ok(self.revision),
            Some(requested) if requested < self.compacted => Err(StoreError::Compacted {
                requested,
                compacted: self.compacted,
            }),
            Some(requested) if requested > self.revision => Err(StoreError::FutureRevision {
                requested,
                current: self.revision,
            }),
            Some(requested) => Ok(requested),
        }
    }

    fn latest(&self, key: &str) -> Option<&KeyValue> {
        self.keys
            .get(key)
            .and_then(|versions| live_at(versions, self.revision))
    }

    fn create(&mut self, key: String, value: Bytes) -> Result<Applied> {
        check_value_size(&key, &value)?;
        if self.latest(&key).is_some() {
            return Err(StoreError::AlreadyExists { key });
        }
        let revision = self.revision + 1;
        let kv = KeyValue {
            key,
            value,
            create_revision: revision,
            mod_revision: revision,
            version: 1,
        };
        self.write(&kv.key, Some(kv.clone()), None);
        Ok(Applied::Put(kv))
    }

    fn update(&mut self, key: String, value: Bytes, expected: Option<Revision>) -> Result<Applied> {
        check_value_size(&key, &value)?;
        let prev = self.expect(&key, expected)?.clone();
        let kv = KeyValue {
            key,
            value,
            create_revision: prev.create_revision,
            mod_revision: self.revision + 1,
            version: prev.version + 1,
        };
        self.write(&kv.key, Some(kv.clone()), Some(prev));
        Ok(Applied::Put(kv))
    }

    fn delete(&mut self, key: String, expected: Option<Revision>) -> Result<Applied> {
        let prev = self.expect(&key, expected)?.clone();
        let revision = self.write(&key, None, Some(prev.clone()));
        Ok(Applied::Deleted { prev, revision })
    }

    /// The latest value of `key`, if it exists and has the `expected` mod revision.
    fn expect(&self, key: &str, expected: Option<Revision>) -> Result<&KeyValue> {
        let current = self.latest(key).ok_or_else(|| StoreError::NotFound {
            key: key.to_owned(),
        })?;
        match expected {
            Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current: Some(current.clone()),
            }),
            _ => Ok(current),
        }
    }

    /// Records a new version of `key` (`None`: deleted) at the next revision,
    /// tells the watchers, and returns the revision.
    fn write(&mut self, key: &str, kv: Option<KeyValue>, prev: Option<KeyValue>) -> Revision {
        self.revision += 1;
        let revision = self.revision;
        self.history.push_back((revision, key.to_owned()));
        let versions = match self.keys.get_mut(key) {
            Some(versions) => versions,
            None => self.keys.entry(key.to_owned()).or_default(),
        };
        versions.push(Version {
            revision,
            kv: kv.clone(),
        });
        self.notify(key, revision, kv, prev);
        revision
    }

    /// Hands the event of a write to the watchers that want it, and forgets the
    /// watchers that are gone or too slow. Every write looks at every watcher,
    /// so dropped ones are freed even if nothing they watched changes again.
    fn notify(
        &mut self,
        key: &str,
        revision: Revision,
        kv: Option<KeyValue>,
        prev: Option<KeyValue>,
    ) {
        let wanted = self
            .watchers
            .iter()
            .any(|watcher| watcher.wants(key, revision));
        let event = wanted.then(|| event(key, revision, kv, prev));
        self.watchers.retain(|watcher| match &event {
            _ if !watcher.is_open() => false,
            Some(event) if watcher.wants(key, revision) => watcher.send(event.clone()),
            _ => true,
        });
    }

    fn compact(&mut self, revision: Revision) -> Result<Applied> {
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision <= self.compacted {
            return Ok(Applied::Compacted);
        }
        // Only keys written since the last compaction can have versions to drop.
        let forgotten = self
            .history
            .partition_point(|(written, _)| *written <= revision);
        for (_, key) in self.history.drain(..forgotten) {
            if let Some(versions) = self.keys.get_mut(&key) {
                prune(versions, revision);
                if versions.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
        self.compacted = revision;
        Ok(Applied::Compacted)
    }

    /// Rebuilds the event of the write of `key` at `revision` from its versions.
    fn event_at(&self, key: &str, revision: Revision) -> WatchEvent {
        let versions = &self.keys[key];
        let index = versions.partition_point(|version| version.revision < revision);
        let prev = index
            .checked_sub(1)
            .and_then(|before| versions[before].kv.clone());
        event(key, revision, versions[index].kv.clone(), prev)
    }
}

impl Default for Mvcc {
    fn default() -> Self {
        Self::new()
    }
}

/// The value of a key at `revision`, unless it did not exist then.
fn live_at(versions: &Versions, revision: Revision) -> Option<&KeyValue> {
    version_at(versions, revision).and_then(|version| version.kv.as_ref())
}

/// Drops the versions nobody can read after compacting to `revision`: all but
/// the one current at `revision`, and that one too if it is a tombstone.
fn prune(versions: &mut Versions, revision: Revision) {
    let newer = versions.partition_point(|version| version.revision <= revision);
    let mut keep_from = newer.saturating_sub(1);
    if versions
        .get(keep_from)
        .is_some_and(|version| version.revision <= revision && version.kv.is_none())
    {
        keep_from += 1;
    }
    versions.drain(..keep_from);
}

/// The event for a write of `key` at `revision`: `kv` is the new value, `None`
/// for a delete, reported as etcd does (empty value, only the mod revision set).
fn event(
    key: &str,
    revision: Revision,
    kv: Option<KeyValue>,
    prev: Option<KeyValue>,
) -> WatchEvent {
    match kv {
        Some(kv) => WatchEvent {
            kind: EventKind::Put,
            kv,
            prev,
        },
        None => WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_owned(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: revision,
                version: 0,
            },
            prev,
        },
    }
}

/// `TooLarge` for a value over [`MAX_VALUE_SIZE`]. Backends check before they
/// send a value anywhere; `apply` checks again.
pub fn check_value_size(key: &str, value: &Bytes) -> Result<()> {
    if value.len() > MAX_VALUE_SIZE {
        return Err(StoreError::TooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_SIZE,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn put(key: &str, value: &str) -> Command {
        Command::Create {
            key: key.into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    fn update(key: &str, value: &str) -> Command {
        Command::Update {
            key: key.into(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            expected: None,
        }
    }

    fn delete(key: &str) -> Command {
        Command::Delete {
            key: key.into(),
            expected: None,
        }
    }

    fn all(mvcc: &Mvcc) -> Vec<KeyValue> {
        mvcc.range(&RangeRequest::default()).expect("range").kvs
    }

    #[test]
    fn an_empty_store_is_at_revision_one_like_etcd() {
        let mut mvcc = Mvcc::new();
        assert_eq!(mvcc.current_revision(), 1);
        assert_eq!(
            mvcc.apply(put("/a", "1"))
                .into_put()
                .expect("create")
                .mod_revision,
            2
        );
    }

    #[test]
    fn the_same_commands_give_the_same_outcomes_and_state() {
        let commands = [
            put("/a", "1"),
            put("/a", "again"),
            update("/a", "2"),
            Command::Update {
                key: "/a".into(),
                value: Bytes::new(),
                expected: Some(1),
            },
            delete("/b"),
            put("/b", "1"),
            delete("/b"),
            Command::Compact { revision: 3 },
            put("/c", "1"),
        ];
        let (mut first, mut second) = (Mvcc::new(), Mvcc::new());
        for command in commands {
            assert_eq!(first.apply(command.clone()), second.apply(command));
        }
        assert_eq!(first.snapshot(), second.snapshot());
    }

    #[test]
    fn compaction_drops_superseded_versions_and_deleted_keys() {
        let mut mvcc = Mvcc::new();
        mvcc.apply(put("/a", "1"));
        mvcc.apply(update("/a", "2"));
        mvcc.apply(put("/gone", "1"));
        mvcc.apply(delete("/gone"));
        let point = mvcc.current_revision();
        let later = mvcc.apply(update("/a", "3")).into_put().expect("update");

        mvcc.apply(Command::Compact { revision: point })
            .into_compacted()
            .expect("compact");
        assert_eq!(mvcc.compacted_revision(), point);
        // What reads at the compaction point and after need, and nothing more.
        assert_eq!(mvcc.keys.len(), 1);
        assert_eq!(mvcc.keys["/a"].len(), 2);
        assert_eq!(mvcc.history.len(), 1);
        assert_eq!(
            mvcc.get("/a", Some(point))
                .expect("get")
                .expect("present")
                .value,
            "2"
        );
        assert_eq!(mvcc.get("/gone", Some(point)).expect("get"), None);
        let replay = mvcc.history("/", point).expect("history");
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].kv, later);
        assert_eq!(
            replay[0].prev.as_ref().map(|prev| prev.value.clone()),
            Some(Bytes::from_static(b"2"))
        );
    }

    #[test]
    fn a_restored_snapshot_reads_and_continues_like_the_original() {
        let mut original = Mvcc::new();
        original.apply(put("/a", "1"));
        original.apply(put("/b", "1"));
        original.apply(update("/a", "2"));
        original.apply(delete("/b"));

        let mut restored = Mvcc::restore(original.snapshot());
        assert_eq!(restored.current_revision(), original.current_revision());
        assert_eq!(restored.compacted_revision(), original.current_revision());
        assert_eq!(all(&restored), all(&original));
        assert!(matches!(
            restored.get("/a", Some(2)),
            Err(StoreError::Compacted { .. })
        ));

        for command in [update("/a", "3"), put("/b", "2"), delete("/a")] {
            assert_eq!(restored.apply(command.clone()), original.apply(command));
        }
        assert_eq!(restored.snapshot(), original.snapshot());
    }

    #[tokio::test]
    async fn a_watch_from_the_future_starts_after_that_revision() {
        let mut mvcc = Mvcc::new();
        let from = mvcc.current_revision() + 1;
        let mut events = mvcc.watch("/", from).expect("watch");
        mvcc.apply(put("/skipped", "1"));
        mvcc.apply(put("/seen", "1"));
        let event = events.next().await.expect("an event").expect("no error");
        assert_eq!(event.kv.key, "/seen");
    }

    #[test]
    fn a_dropped_watch_is_freed_by_the_next_write_anywhere() {
        let mut mvcc = Mvcc::new();
        drop(mvcc.watch("/watched/", 0).expect("watch"));
        assert_eq!(mvcc.watcher_count(), 0);
        mvcc.apply(put("/elsewhere", "1"));
        assert!(mvcc.watchers.is_empty());
    }

    #[tokio::test]
    async fn replaced_state_closes_its_watches() {
        let mut mvcc = Mvcc::new();
        let mut events = mvcc.watch("/", 0).expect("watch");
        drop(mvcc);
        assert!(matches!(
            events.next().await,
            Some(Err(StoreError::Unavailable(_)))
        ));
        assert!(events.next().await.is_none());
    }
}
