//! The conformance suite and MemStore's own behaviour: watchers that fall behind,
//! dropped watchers, automatic compaction.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use store::mem::{MemStore, MemStoreConfig};
use store::{Store, StoreError};

store::store_conformance_tests!(async { MemStore::new() });

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_watcher_that_falls_behind_is_closed_as_too_slow() {
    let store = MemStore::with_config(MemStoreConfig {
        compaction_interval: None,
        watch_buffer: 4,
    });
    let start = store.current_revision().await.expect("revision");
    let mut events = store.watch("/slow/", start).await.expect("watch");
    for i in 0..5 {
        store
            .create(&format!("/slow/{i}"), Bytes::from_static(b"x"))
            .await
            .expect("create");
    }
    // The buffer held 4; the fifth write found it full.
    let first = tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("an item");
    assert!(
        matches!(first, Some(Err(StoreError::WatcherTooSlow))),
        "{first:?}"
    );
    assert!(
        events.next().await.is_none(),
        "the watch must end after the error"
    );
    assert_eq!(store.watcher_count(), 0);
}

#[tokio::test]
async fn a_dropped_watch_is_unregistered() {
    let store = MemStore::new();
    let events = store.watch("/", 0).await.expect("watch");
    assert_eq!(store.watcher_count(), 1);
    drop(events);
    assert_eq!(store.watcher_count(), 0);
    store
        .create("/a", Bytes::from_static(b"x"))
        .await
        .expect("create");
    assert_eq!(store.watcher_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn automatic_compaction_keeps_one_interval_of_history() {
    let interval = Duration::from_secs(60);
    let store = MemStore::with_config(MemStoreConfig {
        compaction_interval: Some(interval),
        ..Default::default()
    });
    let first = store
        .create("/auto/a", Bytes::from_static(b"1"))
        .await
        .expect("create");
    // Let the first tick record the current revision.
    tokio::time::sleep(interval / 2).await;
    let second = store
        .update("/auto/a", Bytes::from_static(b"2"), None)
        .await
        .expect("update");

    tokio::time::sleep(interval).await;
    // Compacted to the revision one interval ago: `first` is still readable.
    assert_eq!(
        store
            .get("/auto/a", Some(first.mod_revision))
            .await
            .expect("get"),
        Some(first.clone())
    );
    let error = store
        .get("/auto/a", Some(first.mod_revision - 1))
        .await
        .expect_err("compacted");
    assert!(matches!(error, StoreError::Compacted { .. }), "{error:?}");

    tokio::time::sleep(interval).await;
    let error = store
        .get("/auto/a", Some(first.mod_revision))
        .await
        .expect_err("compacted");
    assert!(matches!(error, StoreError::Compacted { .. }), "{error:?}");
    assert_eq!(
        store
            .get("/auto/a", Some(second.mod_revision))
            .await
            .expect("get"),
        Some(second)
    );
}
