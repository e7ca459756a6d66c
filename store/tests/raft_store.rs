//! A one-server RaftStore on a temp dir: the store conformance suite, restarts
//! (from the log alone and from a snapshot plus the log after it), and damaged
//! log files.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use store::raft::{RaftConfig, RaftStore};
use store::Store;
use tempfile::TempDir;

/// A store and its data dir; dereferences to the store.
struct Fixture {
    store: Arc<RaftStore>,
    _dir: TempDir,
}

impl Deref for Fixture {
    type Target = RaftStore;

    fn deref(&self) -> &RaftStore {
        &self.store
    }
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("r8s-raft-store")
        .tempdir()
        .expect("temp dir")
}

fn config(dir: &Path) -> RaftConfig {
    RaftConfig::new(1, dir, "127.0.0.1:0")
}

async fn single_server() -> Fixture {
    let dir = temp_dir();
    let store = RaftStore::open(config(dir.path()))
        .await
        .expect("open raft store");
    Fixture { store, _dir: dir }
}

mod conformance {
    use super::single_server;

    store::store_conformance_tests!(single_server());
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("value-{i}-").repeat(20))
}

/// Writes `count` keys and returns the revision after the last write.
async fn write_keys(store: &RaftStore, count: usize) -> i64 {
    let mut last = 0;
    for i in 0..count {
        last = store
            .create(&format!("/k/{i:04}"), value(i))
            .await
            .expect("create")
            .mod_revision;
    }
    last
}

async fn assert_keys(store: &RaftStore, count: usize, revision: i64) {
    assert_eq!(
        store.current_revision().await.expect("current revision"),
        revision
    );
    for i in 0..count {
        let kv = store
            .get(&format!("/k/{i:04}"), None)
            .await
            .expect("get")
            .expect("key is there");
        assert_eq!(kv.value, value(i));
    }
}

async fn restart_keeps_every_write(snapshot_every: u64) {
    let dir = temp_dir();
    let mut config = config(dir.path());
    config.snapshot_every = snapshot_every;
    config.logs_to_keep = 5;
    let store = RaftStore::open(config.clone()).await.expect("open");
    let revision = write_keys(&store, 120).await;
    store.shutdown().await.expect("shutdown");
    drop(store);

    let store = RaftStore::open(config).await.expect("reopen");
    assert_keys(&store, 120, revision).await;
    // And it still takes writes.
    store
        .create("/after-restart", Bytes::from_static(b"x"))
        .await
        .expect("write after restart");
    store.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replays_the_log() {
    restart_keeps_every_write(100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loads_the_snapshot_then_replays_the_log_after_it() {
    restart_keeps_every_write(25).await;
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("log").join("segment-000001.log")
}

/// Writes some keys and stops, leaving a log to damage.
async fn stopped_store_with_data(dir: &Path) -> i64 {
    let store = RaftStore::open(config(dir)).await.expect("open");
    let revision = write_keys(&store, 50).await;
    store.shutdown().await.expect("shutdown");
    revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_log_fails_the_start_naming_the_file() {
    let dir = temp_dir();
    stopped_store_with_data(dir.path()).await;
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).expect("read segment");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, bytes).expect("write segment");

    let error = match RaftStore::open(config(dir.path())).await {
        Ok(_) => panic!("a corrupt log was opened"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains(&path.display().to_string()),
        "error does not name the file: {error}"
    );
    assert!(
        error.contains("corrupt"),
        "error does not say what is wrong: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_final_record_is_cut_off_and_the_rest_kept() {
    let dir = temp_dir();
    let revision = stopped_store_with_data(dir.path()).await;
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).expect("read segment");
    // A crash in the middle of appending a record: a header saying 100 bytes,
    // and only 3 of them.
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    std::fs::write(&path, bytes).expect("write segment");

    let store = RaftStore::open(config(dir.path()))
        .await
        .expect("open after a torn write");
    assert_keys(&store, 50, revision).await;
    store.shutdown().await.expect("shutdown");
}
