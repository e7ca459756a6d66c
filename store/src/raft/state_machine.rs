//! openraft's state machine: the [`Mvcc`] in memory, plus the snapshot file
//! (`snapshot.bin`, one framed record with a checksum) it is restored from at
//! start. openraft then re-applies the committed log after the snapshot.

use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::frame::{self, Decoded};
use super::{Entry, LogId, NodeId, TypeConfig};
use crate::mvcc::{self, Applied, Mvcc};

const SNAPSHOT_FILE: &str = "snapshot.bin";

#[derive(Debug, thiserror::Error)]
#[error("raft snapshot {path}: {reason}")]
pub struct SnapshotError {
    path: PathBuf,
    reason: String,
}

/// The state machine's state: the key-value data and how far the log has been applied.
pub struct SmState {
    pub mvcc: Mvcc,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, BasicNode>,
}

/// What the snapshot file holds and what followers are sent.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: mvcc::Snapshot,
}

/// Shared by openraft (which applies) and the store (which reads and watches).
#[derive(Clone)]
pub struct StateMachineStore {
    state: Arc<RwLock<SmState>>,
    dir: PathBuf,
}

impl StateMachineStore {
    /// Loads the last snapshot kept in `dir`, if any.
    pub fn open(dir: &Path) -> Result<StateMachineStore, SnapshotError> {
        let path = dir.join(SNAPSHOT_FILE);
        let error = |reason: String| SnapshotError {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let file = decode(&bytes).map_err(error)?;
                tracing::info!(snapshot = %file.meta, "loaded the raft snapshot");
                SmState {
                    mvcc: Mvcc::restore(file.data),
                    last_applied: file.meta.last_log_id,
                    membership: file.meta.last_membership,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => SmState {
                mvcc: Mvcc::new(),
                last_applied: None,
                membership: StoredMembership::default(),
            },
            Err(e) => return Err(error(e.to_string())),
        };
        Ok(StateMachineStore {
            state: Arc::new(RwLock::new(state)),
            dir: dir.to_path_buf(),
        })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, SmState> {
        // Applying does not panic halfway through a command, so a poisoned lock
        // still guards a consistent state.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, SmState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }
}

fn decode(bytes: &[u8]) -> Result<SnapshotFile, String> {
    match frame::decode::<SnapshotFile>(bytes) {
        Ok(Decoded::Record(file, used)) if used == bytes.len() => Ok(file),
        Ok(Decoded::Record(..)) => Err("trailing bytes after the snapshot".into()),
        Ok(Decoded::Incomplete) => Err("the snapshot is truncated".into()),
        Err(e) => Err(format!("the snapshot is corrupt: {e}")),
    }
}

/// Writes the snapshot through a temporary file, so a crash leaves the old one whole.
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

fn snapshot_error(
    meta: &SnapshotMeta<NodeId, BasicNode>,
    reason: impl std::fmt::Display,
) -> StorageError<NodeId> {
    let e = io::Error::other(reason.to_string());
    StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let file = {
            let state = self.read();
            let last_applied = state.last_applied;
            let snapshot_id = last_applied.map_or("empty".to_string(), |id| {
                format!("{}-{}", id.leader_id, id.index)
            });
            SnapshotFile {
                meta: SnapshotMeta {
                    last_log_id: last_applied,
                    last_membership: state.membership.clone(),
                    snapshot_id,
                },
                data: state.mvcc.snapshot(),
            }
        };
        let meta = file.meta.clone();
        let path = self.snapshot_path();
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let mut bytes = Vec::new();
            frame::encode(&mut bytes, &file).map_err(|e| e.to_string())?;
            write_file(&path, &bytes).map_err(|e| e.to_string())?;
            Ok(bytes)
        })
        .await
        .map_err(|e| snapshot_error(&meta, e))?
        .map_err(|e| snapshot_error(&meta, e))?;
        tracing::info!(snapshot = %meta, bytes = bytes.len(), "built a raft snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let state = self.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Applied>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.write();
        let mut results = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            results.push(match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(commands) => commands
                    .into_iter()
                    .map(|command| state.mvcc.apply(command))
                    .collect(),
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            });
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> StateMachineStore {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let file = decode(&bytes).map_err(|e| snapshot_error(meta, e))?;
        let path = self.snapshot_path();
        tokio::task::spawn_blocking(move || write_file(&path, &bytes))
            .await
            .map_err(|e| snapshot_error(meta, e))?
            .map_err(|e| snapshot_error(meta, e))?;
        let mut state = self.write();
        state.mvcc = Mvcc::restore(file.data);
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        tracing::info!(snapshot = %meta, "installed a raft snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let path = self.snapshot_path();
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageIOError::read_snapshot(None, AnyError::new(&e)).into()),
        };
        let file = decode(&bytes).map_err(|reason| {
            let e = io::Error::other(format!("{}: {reason}", path.display()));
            StorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e)))
        })?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
