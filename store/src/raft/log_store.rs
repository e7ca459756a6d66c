//! openraft's log storage on top of the [`Journal`]: entries are served from
//! memory, every change is also queued to the journal, and appends are
//! acknowledged to openraft only once the journal has them on disk.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageError, StorageIOError};

use super::journal::{Done, Journal, JournalError, LogContents, Record};
use super::{Entry, LogId, NodeId, TypeConfig, Vote};

pub struct LogStore {
    contents: Arc<Mutex<LogContents>>,
    journal: Journal,
}

/// Reads entries for openraft's replication, alongside the [`LogStore`].
#[derive(Clone)]
pub struct LogReader {
    contents: Arc<Mutex<LogContents>>,
}

impl LogStore {
    /// Opens the log kept in `dir`, replaying what is there.
    pub fn open(dir: &Path) -> Result<LogStore, JournalError> {
        let (journal, contents) = Journal::open(dir)?;
        Ok(LogStore {
            contents: Arc::new(Mutex::new(contents)),
            journal,
        })
    }

    /// True if nothing was ever written: no vote and no entry.
    pub fn is_empty(&self) -> bool {
        let contents = lock(&self.contents);
        contents.meta.vote.is_none()
            && contents.entries.is_empty()
            && contents.meta.purged.is_none()
    }

    fn apply(&self, record: Record) {
        lock(&self.contents).apply(record);
    }
}

fn lock(contents: &Mutex<LogContents>) -> MutexGuard<'_, LogContents> {
    // A panic while holding the lock leaves no half-applied record: `apply` does
    // not panic between its steps, so the contents are still usable.
    contents
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_error(e: std::io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        Ok(lock(&self.contents)
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        LogReader {
            contents: self.contents.clone(),
        }
        .try_get_log_entries(range)
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let contents = lock(&self.contents);
        let last_purged_log_id = contents.meta.purged;
        let last_log_id = contents
            .entries
            .values()
            .next_back()
            .map(|entry| entry.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            contents: self.contents.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        self.apply(Record::Vote(*vote));
        self.journal
            .write(vec![Record::Vote(*vote)])
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        Ok(lock(&self.contents).meta.vote)
    }

    /// Not waited for: losing the latest committed id in a crash only means
    /// replaying less at start; openraft learns the rest from the leader.
    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        self.apply(Record::Committed(committed));
        self.journal
            .submit(vec![Record::Committed(committed)], Done::Nothing);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(lock(&self.contents).meta.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<Record> = {
            let mut contents = lock(&self.contents);
            entries
                .into_iter()
                .map(|entry| {
                    contents.apply(Record::Entry(entry.clone()));
                    Record::Entry(entry)
                })
                .collect()
        };
        self.journal.submit(records, Done::Flushed(callback));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let since = log_id.index;
        self.apply(Record::Truncate { since });
        self.journal
            .write(vec![Record::Truncate { since }])
            .await
            .map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.apply(Record::Purge(log_id));
        self.journal
            .write(vec![Record::Purge(log_id)])
            .await
            .map_err(write_error)
    }
}
