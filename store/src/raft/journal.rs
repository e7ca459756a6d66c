//! The raft log and vote on disk: a journal of framed [`Record`]s in numbered
//! segment files (`segment-000001.log`, ...), replayed at start.
//!
//! Everything that must survive a crash is a record: appended entries, the vote,
//! the committed log id, truncations and purges. Every segment starts with a
//! [`Record::Header`] holding the vote, committed and purged ids as they were
//! when it was opened, so older segments can be deleted once every entry in them
//! is purged.
//!
//! One writer thread owns the files. It takes every job queued since its last
//! flush, writes them with one `write` and one `fdatasync`, then acknowledges all
//! of them: this group commit is what lets many concurrent writers share an fsync.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use openraft::storage::LogFlushed;
use serde::{Deserialize, Serialize};

use super::frame::{self, Decoded, FrameError};
use super::{Entry, LogId, TypeConfig, Vote};

/// A segment is closed and a new one started once it grows past this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("raft log {path} is in use by another process")]
    InUse { path: PathBuf },
    #[error("raft log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("raft log {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: usize,
        reason: String,
    },
}

/// The non-entry state of the log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LogMeta {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub purged: Option<LogId>,
}

/// One journal record. The variant order is part of the file format.
#[derive(Debug, Serialize, Deserialize)]
pub enum Record {
    Header(LogMeta),
    Entry(Entry),
    Vote(Vote),
    Committed(Option<LogId>),
    /// Removes the entries at and after this index.
    Truncate {
        since: u64,
    },
    /// Removes the entries at and before this log id.
    Purge(LogId),
}

/// The log as the records so far describe it, kept in memory: openraft reads
/// entries from here; the files are only read at start.
#[derive(Debug, Default)]
pub struct LogContents {
    pub meta: LogMeta,
    pub entries: BTreeMap<u64, Entry>,
}

impl LogMeta {
    fn apply(&mut self, record: &Record) {
        match record {
            Record::Header(meta) => *self = meta.clone(),
            Record::Vote(vote) => self.vote = Some(*vote),
            Record::Committed(committed) => self.committed = *committed,
            Record::Purge(log_id) => self.purged = Some(*log_id),
            Record::Entry(_) | Record::Truncate { .. } => {}
        }
    }
}

impl LogContents {
    pub fn apply(&mut self, record: Record) {
        self.meta.apply(&record);
        match record {
            Record::Entry(entry) => {
                self.entries.insert(entry.log_id.index, entry);
            }
            Record::Truncate { since } => {
                self.entries.split_off(&since);
            }
            Record::Purge(log_id) => {
                self.entries = self.entries.split_off(&(log_id.index + 1));
            }
            Record::Header(_) | Record::Vote(_) | Record::Committed(_) => {}
        }
    }
}

/// Who to tell when a job is on disk.
pub enum Done {
    /// openraft's callback for an append.
    Flushed(LogFlushed<TypeConfig>),
    Reply(tokio::sync::oneshot::Sender<io::Result<()>>),
    /// Nobody: the record may be lost in a crash without harm.
    Nothing,
}

struct Job {
    records: Vec<Record>,
    done: Done,
}

/// The handle to the writer thread. Dropping it flushes what is queued and
/// stops the thread.
pub struct Journal {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    // Dropped (unlocked) only after the writer thread has finished.
    _lock: DirLock,
}

impl Journal {
    /// Replays the segments in `dir` (created if missing) and starts the writer.
    pub fn open(dir: &Path) -> Result<(Journal, LogContents), JournalError> {
        Journal::open_with_segment_size(dir, SEGMENT_BYTES)
    }

    fn open_with_segment_size(
        dir: &Path,
        segment_bytes: u64,
    ) -> Result<(Journal, LogContents), JournalError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = DirLock::acquire(dir)?;
        let replayed = replay(dir)?;
        let mut writer = SegmentWriter::resume(
            dir,
            replayed.segments,
            &replayed.contents.meta,
            segment_bytes,
        )?;
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("r8s-raft-log".into())
            .spawn(move || writer.run(queue))
            .map_err(io_err(dir))?;
        Ok((
            Journal {
                jobs: Some(jobs),
                thread: Some(thread),
                _lock: lock,
            },
            replayed.contents,
        ))
    }

    /// Queues records; `done` is told once they are on disk (or failed to be).
    pub fn submit(&self, records: Vec<Record>, done: Done) {
        let job = Job { records, done };
        if let Err(mpsc::SendError(job)) = self.jobs.as_ref().expect("open until dropped").send(job)
        {
            job.done
                .complete(Err(io::Error::other("the raft log writer has stopped")));
        }
    }

    /// Writes records and waits until they are on disk.
    pub async fn write(&self, records: Vec<Record>) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(records, Done::Reply(tx));
        rx.await
            .map_err(|_| io::Error::other("the raft log writer has stopped"))?
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Done {
    fn complete(self, result: io::Result<()>) {
        match self {
            Done::Flushed(callback) => callback.log_io_completed(result),
            Done::Reply(tx) => {
                let _ = tx.send(result);
            }
            Done::Nothing => {}
        }
    }
}

/// An exclusive `flock` on the log directory's `LOCK` file, so that two servers
/// never write the same log. The kernel drops it when the process dies.
struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, JournalError> {
        use std::os::fd::AsRawFd;

        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let source = io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::EWOULDBLOCK) => JournalError::InUse {
                    path: dir.to_path_buf(),
                },
                _ => JournalError::Io { path, source },
            });
        }
        Ok(DirLock { _file: file })
    }
}

/// A segment file: its number, its path and the highest entry index in it.
struct Segment {
    number: u64,
    path: PathBuf,
    max_index: Option<u64>,
}

impl Segment {
    fn new(dir: &Path, number: u64) -> Segment {
        Segment {
            number,
            path: dir.join(format!("segment-{number:06}.log")),
            max_index: None,
        }
    }

    /// Every entry in it is purged, so it can go.
    fn is_purged(&self, purged: Option<LogId>) -> bool {
        match (self.max_index, purged) {
            (None, _) => true,
            (Some(max), Some(purged)) => max <= purged.index,
            (Some(_), None) => false,
        }
    }
}

struct Replayed {
    segments: Vec<Segment>,
    contents: LogContents,
}

fn replay(dir: &Path) -> Result<Replayed, JournalError> {
    let mut segments = list_segments(dir)?;
    let mut contents = LogContents::default();
    let count = segments.len();
    for (position, segment) in segments.iter_mut().enumerate() {
        replay_segment(segment, &mut contents, position + 1 == count)?;
    }
    Ok(Replayed { segments, contents })
}

fn list_segments(dir: &Path) -> Result<Vec<Segment>, JournalError> {
    let io_err = |source| JournalError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut numbers = Vec::new();
    for dirent in fs::read_dir(dir).map_err(io_err)? {
        let name = dirent.map_err(io_err)?.file_name();
        let number = name
            .to_str()
            .and_then(|name| name.strip_prefix("segment-"))
            .and_then(|rest| rest.strip_suffix(".log"))
            .and_then(|number| number.parse::<u64>().ok());
        if let Some(number) = number {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers
        .into_iter()
        .map(|number| Segment::new(dir, number))
        .collect())
}

/// Applies one segment's records. Damage is an error, except a torn record at
/// the very end of the last segment (a crash in the middle of a write, never
/// acknowledged): that one is cut off with a warning.
fn replay_segment(
    segment: &mut Segment,
    contents: &mut LogContents,
    is_last: bool,
) -> Result<(), JournalError> {
    let path = &segment.path;
    let bytes = fs::read(path).map_err(|source| JournalError::Io {
        path: path.clone(),
        source,
    })?;
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let damage = match frame::decode::<Record>(rest) {
            Ok(Decoded::Record(record, used)) => {
                if let Record::Entry(entry) = &record {
                    segment.max_index = segment.max_index.max(Some(entry.log_id.index));
                }
                contents.apply(record);
                offset += used;
                continue;
            }
            Ok(Decoded::Incomplete) => "the file ends inside a record".to_string(),
            Err(FrameError::Checksum { .. }) if is_last && is_final_record(rest) => {
                "checksum mismatch".to_string()
            }
            Err(_) if is_last && rest.iter().all(|byte| *byte == 0) => {
                "zeros instead of a record".to_string()
            }
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.clone(),
                    offset,
                    reason: e.to_string(),
                });
            }
        };
        if !is_last {
            return Err(JournalError::Corrupt {
                path: path.clone(),
                offset,
                reason: damage,
            });
        }
        tracing::warn!(
            file = %path.display(),
            offset,
            dropped_bytes = rest.len(),
            "raft log ends with a torn record ({damage}), left by a crash during a write; cutting it off"
        );
        cut_at(path, offset as u64)?;
        break;
    }
    Ok(())
}

/// The damaged record at the start of `rest` reaches the end of the file: a torn
/// final write rather than damage in the middle of the log.
fn is_final_record(rest: &[u8]) -> bool {
    let len = u32::from_le_bytes(rest[..4].try_into().expect("a header was read")) as usize;
    frame::HEADER_LEN + len == rest.len()
}

fn cut_at(path: &Path, len: u64) -> Result<(), JournalError> {
    let io_err = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
    file.set_len(len).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// The writer thread's state: the open segment and the closed ones.
struct SegmentWriter {
    dir: PathBuf,
    file: File,
    current: Segment,
    size: u64,
    closed: VecDeque<Segment>,
    /// The meta as written so far, for the header of the next segment.
    meta: LogMeta,
    /// Start a new segment once the current one is this big.
    segment_bytes: u64,
    buf: Vec<u8>,
    /// Set after a failed write: the file's state is unknown, so every later job fails.
    failed: Option<String>,
}

impl SegmentWriter {
    fn resume(
        dir: &Path,
        mut segments: Vec<Segment>,
        meta: &LogMeta,
        segment_bytes: u64,
    ) -> Result<SegmentWriter, JournalError> {
        let current = segments.pop().unwrap_or_else(|| Segment::new(dir, 1));
        let io_err = |source| JournalError::Io {
            path: current.path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current.path)
            .map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        let mut writer = SegmentWriter {
            dir: dir.to_path_buf(),
            file,
            current,
            size,
            closed: segments.into(),
            meta: meta.clone(),
            segment_bytes,
            buf: Vec::new(),
            failed: None,
        };
        if size == 0 {
            writer.write_header().map_err(|source| JournalError::Io {
                path: writer.current.path.clone(),
                source,
            })?;
            sync_dir(dir).map_err(|source| JournalError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        Ok(writer)
    }

    fn run(&mut self, queue: mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            batch.extend(queue.try_iter());
            let result = self.write_batch(&batch);
            if let Err(e) = &result {
                tracing::error!(file = %self.current.path.display(), "raft log write failed: {e}");
                self.failed = Some(e.to_string());
            }
            for job in batch {
                let outcome = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                job.done.complete(outcome);
            }
        }
    }

    fn write_batch(&mut self, batch: &[Job]) -> io::Result<()> {
        if let Some(failure) = &self.failed {
            return Err(io::Error::other(format!(
                "an earlier write failed: {failure}"
            )));
        }
        self.buf.clear();
        for record in batch.iter().flat_map(|job| &job.records) {
            frame::encode(&mut self.buf, record).map_err(io::Error::other)?;
            self.meta.apply(record);
            if let Record::Entry(entry) = record {
                self.current.max_index = self.current.max_index.max(Some(entry.log_id.index));
            }
        }
        self.file.write_all(&self.buf)?;
        // Records nobody waits for (the committed id) ride along with the next
        // fsync instead of costing one of their own.
        if batch.iter().any(|job| !matches!(job.done, Done::Nothing)) {
            self.file.sync_data()?;
        }
        self.size += self.buf.len() as u64;
        if self.size >= self.segment_bytes {
            self.start_next_segment()?;
        }
        self.delete_purged_segments()
    }

    fn write_header(&mut self) -> io::Result<()> {
        self.buf.clear();
        frame::encode(&mut self.buf, &Record::Header(self.meta.clone()))
            .map_err(io::Error::other)?;
        self.file.write_all(&self.buf)?;
        self.file.sync_data()?;
        self.size = self.buf.len() as u64;
        Ok(())
    }

    fn start_next_segment(&mut self) -> io::Result<()> {
        let next = Segment::new(&self.dir, self.current.number + 1);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&next.path)?;
        self.closed
            .push_back(std::mem::replace(&mut self.current, next));
        self.write_header()?;
        sync_dir(&self.dir)
    }

    fn delete_purged_segments(&mut self) -> io::Result<()> {
        while self
            .closed
            .front()
            .is_some_and(|segment| segment.is_purged(self.meta.purged))
        {
            let segment = self.closed.pop_front().expect("checked above");
            fs::remove_file(&segment.path)?;
            tracing::debug!(file = %segment.path.display(), "deleted a purged raft log segment");
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn segment_count(dir: &Path) -> usize {
        list_segments(dir).unwrap().len()
    }

    #[tokio::test]
    async fn segments_roll_over_and_purged_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let vote = Vote::new_committed(3, 1);
        {
            let (journal, _) = Journal::open_with_segment_size(dir.path(), 200).unwrap();
            journal.write(vec![Record::Vote(vote)]).await.unwrap();
            for index in 0..50 {
                journal
                    .write(vec![Record::Entry(entry(index))])
                    .await
                    .unwrap();
            }
            assert!(
                segment_count(dir.path()) > 3,
                "the journal did not roll over to new segments"
            );
            journal
                .write(vec![Record::Purge(entry(40).log_id)])
                .await
                .unwrap();
        }
        let segments_left = segment_count(dir.path());
        assert!(
            segments_left <= 2,
            "{segments_left} segments left after purging all but 9 entries"
        );

        let (_journal, contents) = Journal::open_with_segment_size(dir.path(), 200).unwrap();
        assert_eq!(
            contents.meta.vote,
            Some(vote),
            "the vote is kept in the header of later segments"
        );
        assert_eq!(contents.meta.purged, Some(entry(40).log_id));
        assert_eq!(
            contents.entries.keys().copied().collect::<Vec<_>>(),
            (41..50).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_second_open_of_the_same_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Journal::open(dir.path()).unwrap();
        assert!(matches!(
            Journal::open(dir.path()),
            Err(JournalError::InUse { .. })
        ));
    }

    #[tokio::test]
    async fn truncation_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (journal, _) = Journal::open(dir.path()).unwrap();
            let entries = (0..10).map(|index| Record::Entry(entry(index))).collect();
            journal.write(entries).await.unwrap();
            journal
                .write(vec![
                    Record::Truncate { since: 6 },
                    Record::Committed(Some(entry(5).log_id)),
                ])
                .await
                .unwrap();
        }
        let (_journal, contents) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            contents.entries.keys().copied().collect::<Vec<_>>(),
            (0..6).collect::<Vec<_>>()
        );
        assert_eq!(contents.meta.committed, Some(entry(5).log_id));
    }
}
