//! The cases every [`Store`] backend must pass. Each case gets a fresh store and
//! only compares revisions with each other: backends start counting at different
//! numbers (etcd's empty store is at revision 1).
//!
//! Run them with [`crate::store_conformance_tests!`].

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{
    EventKind, KeyValue, RangeRequest, Revision, Store, StoreError, WatchEvent, WatchStream,
    MAX_VALUE_SIZE,
};

/// Only to turn a hang into a failure; no case depends on how fast a store is.
const PATIENCE: Duration = Duration::from_secs(30);

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("the watch failed: {error}"),
        Ok(None) => panic!("the watch ended"),
        Err(_) => panic!("no watch event within {PATIENCE:?}"),
    }
}

async fn current(store: &dyn Store) -> Revision {
    store.current_revision().await.expect("current revision")
}

fn assert_put(event: &WatchEvent, kv: &KeyValue, prev: Option<&KeyValue>) {
    assert_eq!(event.kind, EventKind::Put, "{event:?}");
    assert_eq!(&event.kv, kv);
    assert_eq!(event.prev.as_ref(), prev);
}

fn assert_delete(event: &WatchEvent, prev: &KeyValue, revision: Revision) {
    assert_eq!(event.kind, EventKind::Delete, "{event:?}");
    assert_eq!(event.kv.key, prev.key);
    assert_eq!(event.revision(), revision);
    assert_eq!(event.prev.as_ref(), Some(prev));
}

pub async fn create_then_already_exists(store: &dyn Store) {
    let key = "/create/a";
    let kv = store.create(key, value("one")).await.expect("create");
    assert_eq!(kv.key, key);
    assert_eq!(kv.value, value("one"));
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(kv.version, 1);
    assert_eq!(current(store).await, kv.mod_revision);

    let error = store
        .create(key, value("two"))
        .await
        .expect_err("second create");
    assert_eq!(error, StoreError::AlreadyExists { key: key.into() });
    assert_eq!(
        current(store).await,
        kv.mod_revision,
        "a rejected write must not take a revision"
    );
    assert_eq!(store.get(key, None).await.expect("get"), Some(kv));
}

pub async fn update_compare_and_swap(store: &dyn Store) {
    let key = "/update/a";
    let created = store.create(key, value("v1")).await.expect("create");
    let updated = store
        .update(key, value("v2"), Some(created.mod_revision))
        .await
        .expect("update");
    assert_eq!(updated.value, value("v2"));
    assert_eq!(updated.create_revision, created.create_revision);
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.version, 2);

    let error = store
        .update(key, value("v3"), Some(created.mod_revision))
        .await
        .expect_err("stale update");
    assert_eq!(
        error,
        StoreError::Conflict {
            key: key.into(),
            expected: created.mod_revision,
            current: Some(updated.clone())
        }
    );
    assert_eq!(current(store).await, updated.mod_revision);

    let unconditional = store
        .update(key, value("v3"), None)
        .await
        .expect("update without a revision");
    assert_eq!(unconditional.version, 3);
    assert_eq!(
        store.get(key, None).await.expect("get"),
        Some(unconditional)
    );
}

pub async fn delete_compare_and_swap(store: &dyn Store) {
    let key = "/delete/a";
    let created = store.create(key, value("v1")).await.expect("create");
    let updated = store.update(key, value("v2"), None).await.expect("update");

    let error = store
        .delete(key, Some(created.mod_revision))
        .await
        .expect_err("stale delete");
    assert_eq!(
        error,
        StoreError::Conflict {
            key: key.into(),
            expected: created.mod_revision,
            current: Some(updated.clone())
        }
    );
    assert_eq!(
        store.get(key, None).await.expect("get"),
        Some(updated.clone())
    );

    let (prev, revision) = store
        .delete(key, Some(updated.mod_revision))
        .await
        .expect("delete");
    assert_eq!(prev, updated);
    assert!(revision > updated.mod_revision);
    assert_eq!(current(store).await, revision);
    assert_eq!(store.get(key, None).await.expect("get"), None);

    store.create("/delete/b", value("b")).await.expect("create");
    let (prev, _) = store
        .delete("/delete/b", None)
        .await
        .expect("delete without a revision");
    assert_eq!(prev.value, value("b"));
}

pub async fn missing_keys_are_not_found(store: &dyn Store) {
    let key = "/missing/a";
    let not_found = StoreError::NotFound { key: key.into() };
    assert_eq!(store.get(key, None).await.expect("get"), None);
    assert_eq!(
        store
            .update(key, value("x"), None)
            .await
            .expect_err("update"),
        not_found
    );
    assert_eq!(
        store
            .update(key, value("x"), Some(1))
            .await
            .expect_err("update"),
        not_found
    );
    assert_eq!(
        store.delete(key, None).await.expect_err("delete"),
        not_found
    );
    assert_eq!(
        store.delete(key, Some(1)).await.expect_err("delete"),
        not_found
    );

    let created = store.create(key, value("x")).await.expect("create");
    store.delete(key, None).await.expect("delete");
    assert_eq!(
        store
            .update(key, value("y"), None)
            .await
            .expect_err("update deleted"),
        not_found
    );
    assert_eq!(
        store
            .delete(key, Some(created.mod_revision))
            .await
            .expect_err("delete deleted"),
        not_found
    );
}

pub async fn revisions_and_versions(store: &dyn Store) {
    let start = current(store).await;
    let a1 = store.create("/rev/a", value("a1")).await.expect("create a");
    let b1 = store.create("/rev/b", value("b1")).await.expect("create b");
    let a2 = store
        .update("/rev/a", value("a2"), None)
        .await
        .expect("update a");
    let (_, b_deleted) = store.delete("/rev/b", None).await.expect("delete b");
    let b2 = store
        .create("/rev/b", value("b2"))
        .await
        .expect("create b again");
    let a3 = store
        .update("/rev/a", value("a3"), Some(a2.mod_revision))
        .await
        .expect("update a");

    let revisions = [
        start,
        a1.mod_revision,
        b1.mod_revision,
        a2.mod_revision,
        b_deleted,
        b2.mod_revision,
        a3.mod_revision,
    ];
    assert!(
        revisions.windows(2).all(|pair| pair[0] < pair[1]),
        "revisions must only grow: {revisions:?}"
    );
    assert_eq!(current(store).await, a3.mod_revision);

    assert_eq!((a3.create_revision, a3.version), (a1.mod_revision, 3));
    // A key created again starts over.
    assert_eq!((b2.create_revision, b2.version), (b2.mod_revision, 1));
}

pub async fn get_at_older_revisions(store: &dyn Store) {
    let key = "/old/a";
    let v1 = store.create(key, value("v1")).await.expect("create");
    let v2 = store.update(key, value("v2"), None).await.expect("update");
    let (_, deleted) = store.delete(key, None).await.expect("delete");
    store
        .create("/old/other", value("later"))
        .await
        .expect("create");

    assert_eq!(
        store
            .get(key, Some(v1.mod_revision - 1))
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        store.get(key, Some(v1.mod_revision)).await.expect("get"),
        Some(v1)
    );
    assert_eq!(
        store.get(key, Some(v2.mod_revision)).await.expect("get"),
        Some(v2.clone())
    );
    assert_eq!(
        store.get(key, Some(deleted - 1)).await.expect("get"),
        Some(v2)
    );
    assert_eq!(store.get(key, Some(deleted)).await.expect("get"), None);

    let now = current(store).await;
    let error = store
        .get(key, Some(now + 100))
        .await
        .expect_err("get in the future");
    assert!(
        matches!(error, StoreError::FutureRevision { requested, .. } if requested == now + 100),
        "{error:?}"
    );
    let error = store
        .range(RangeRequest {
            prefix: "/old/".into(),
            revision: Some(now + 100),
            ..Default::default()
        })
        .await
        .expect_err("range in the future");
    assert!(
        matches!(error, StoreError::FutureRevision { .. }),
        "{error:?}"
    );
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn range_pages_over_one_revision(store: &dyn Store) {
    for key in [
        "/range/a/1",
        "/range/a/2",
        "/range/a/3",
        "/range/a/4",
        "/range/a/5",
        "/range/ab",
        "/range/b",
    ] {
        store.create(key, value(key)).await.expect("create");
    }
    let prefix = "/range/a/";
    let page = |start_after: Option<&str>, limit, revision| RangeRequest {
        prefix: prefix.into(),
        start_after: start_after.map(Into::into),
        limit,
        revision,
    };

    let first = store
        .range(page(None, Some(2), None))
        .await
        .expect("first page");
    assert_eq!(keys(&first.kvs), ["/range/a/1", "/range/a/2"]);
    assert!(first.more);
    let snapshot = first.revision;
    assert_eq!(snapshot, current(store).await);

    // Writes between pages must not show in later pages read at the same revision.
    let old_three = store
        .get("/range/a/3", None)
        .await
        .expect("get")
        .expect("present");
    store
        .update("/range/a/3", value("new"), None)
        .await
        .expect("update");
    store
        .create("/range/a/0", value("new"))
        .await
        .expect("create");
    store
        .create("/range/a/25", value("new"))
        .await
        .expect("create");
    store.delete("/range/a/5", None).await.expect("delete");

    let second = store
        .range(page(Some("/range/a/2"), Some(2), Some(snapshot)))
        .await
        .expect("second page");
    assert_eq!(keys(&second.kvs), ["/range/a/3", "/range/a/4"]);
    assert_eq!(second.kvs[0], old_three);
    assert!(second.more);
    assert_eq!(second.revision, snapshot);

    let third = store
        .range(page(Some("/range/a/4"), Some(2), Some(snapshot)))
        .await
        .expect("third page");
    assert_eq!(keys(&third.kvs), ["/range/a/5"]);
    assert!(!third.more);

    let latest = store.range(page(None, None, None)).await.expect("latest");
    assert_eq!(
        keys(&latest.kvs),
        [
            "/range/a/0",
            "/range/a/1",
            "/range/a/2",
            "/range/a/25",
            "/range/a/3",
            "/range/a/4"
        ]
    );
    assert_eq!(latest.kvs[4].value, value("new"));
    assert!(!latest.more);
    assert!(latest.revision > snapshot);

    // A limit of 0 is no limit; an exact limit has nothing more.
    assert_eq!(
        store
            .range(page(None, Some(0), None))
            .await
            .expect("range")
            .kvs
            .len(),
        6
    );
    let exact = store.range(page(None, Some(6), None)).await.expect("range");
    assert_eq!((exact.kvs.len(), exact.more), (6, false));

    // A start key before the prefix does not leak keys outside it.
    let from_before = store
        .range(page(Some("/range/"), None, None))
        .await
        .expect("range");
    assert_eq!(keys(&from_before.kvs), keys(&latest.kvs));
}

pub async fn watch_replays_history_then_live(store: &dyn Store) {
    let start = current(store).await;
    let a1 = store.create("/watch/a", value("1")).await.expect("create");
    let a2 = store
        .update("/watch/a", value("2"), None)
        .await
        .expect("update");
    store
        .create("/watched-not/x", value("outside the prefix"))
        .await
        .expect("create");

    let mut events = store.watch("/watch/", start).await.expect("watch");
    assert_put(&next_event(&mut events).await, &a1, None);
    assert_put(&next_event(&mut events).await, &a2, Some(&a1));

    store
        .create("/watched-not/y", value("outside the prefix"))
        .await
        .expect("create");
    let b = store.create("/watch/b", value("b")).await.expect("create");
    let (_, deleted) = store.delete("/watch/a", None).await.expect("delete");
    assert_put(&next_event(&mut events).await, &b, None);
    assert_delete(&next_event(&mut events).await, &a2, deleted);
}

pub async fn watch_from_now_sees_only_later_writes(store: &dyn Store) {
    store
        .create("/now/old", value("old"))
        .await
        .expect("create");
    let mut events = store
        .watch("/now/", current(store).await)
        .await
        .expect("watch");
    let new = store
        .create("/now/new", value("new"))
        .await
        .expect("create");
    assert_put(&next_event(&mut events).await, &new, None);
}

pub async fn watch_resumes_without_gap_or_duplicate(store: &dyn Store) {
    let prefix = "/resume/";
    let start = current(store).await;
    let mut written = Vec::new();
    for i in 0..3 {
        written.push(
            store
                .create(&format!("{prefix}{i}"), value("v1"))
                .await
                .expect("create")
                .mod_revision,
        );
    }
    for i in 0..3 {
        written.push(
            store
                .update(&format!("{prefix}{i}"), value("v2"), None)
                .await
                .expect("update")
                .mod_revision,
        );
    }

    let mut first = store.watch(prefix, start).await.expect("watch");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut first).await.revision());
    }
    drop(first);

    for i in 0..3 {
        let kv = store
            .update(&format!("{prefix}{i}"), value("after the drop"), None)
            .await
            .expect("update");
        written.push(kv.mod_revision);
    }
    let mut resumed = store
        .watch(prefix, *seen.last().expect("three events"))
        .await
        .expect("watch again");
    while seen.len() < written.len() {
        seen.push(next_event(&mut resumed).await.revision());
    }
    assert_eq!(seen, written);

    // Nothing after the last write but the next one.
    let sentinel = store
        .create(&format!("{prefix}sentinel"), value("end"))
        .await
        .expect("create");
    assert_put(&next_event(&mut resumed).await, &sentinel, None);
}

pub async fn deletes_are_watched_with_prev(store: &dyn Store) {
    let start = current(store).await;
    let mut live = store.watch("/deletes/", start).await.expect("watch");
    let created = store
        .create("/deletes/a", value("v1"))
        .await
        .expect("create");
    let updated = store
        .update("/deletes/a", value("v2"), None)
        .await
        .expect("update");
    let (_, deleted) = store
        .delete("/deletes/a", Some(updated.mod_revision))
        .await
        .expect("delete");

    assert_put(&next_event(&mut live).await, &created, None);
    assert_put(&next_event(&mut live).await, &updated, Some(&created));
    assert_delete(&next_event(&mut live).await, &updated, deleted);

    // The same, replayed from history.
    let mut replay = store.watch("/deletes/", start).await.expect("watch");
    assert_put(&next_event(&mut replay).await, &created, None);
    assert_put(&next_event(&mut replay).await, &updated, Some(&created));
    assert_delete(&next_event(&mut replay).await, &updated, deleted);
}

pub async fn compacted_revisions_are_refused(store: &dyn Store) {
    let key = "/compact/a";
    let v1 = store.create(key, value("v1")).await.expect("create");
    let v2 = store.update(key, value("v2"), None).await.expect("update");
    let v3 = store.update(key, value("v3"), None).await.expect("update");
    let point = v2.mod_revision;
    store.compact(point).await.expect("compact");

    let error = store
        .get(key, Some(v1.mod_revision))
        .await
        .expect_err("get before the compaction point");
    assert!(
        matches!(error, StoreError::Compacted { requested, .. } if requested == v1.mod_revision),
        "{error:?}"
    );
    let before = RangeRequest {
        prefix: "/compact/".into(),
        revision: Some(v1.mod_revision),
        ..Default::default()
    };
    let error = store
        .range(before)
        .await
        .expect_err("range before the compaction point");
    assert!(matches!(error, StoreError::Compacted { .. }), "{error:?}");
    match store.watch("/compact/", v1.mod_revision - 1).await {
        Err(StoreError::Compacted { .. }) => {}
        Err(error) => panic!("watch before the compaction point: {error:?}"),
        Ok(_) => panic!("watch before the compaction point was accepted"),
    }

    // At and after the compaction point, everything is still there.
    assert_eq!(
        store
            .get(key, Some(point))
            .await
            .expect("get at the compaction point"),
        Some(v2.clone())
    );
    assert_eq!(store.get(key, None).await.expect("get"), Some(v3.clone()));
    let mut events = store
        .watch("/compact/", point)
        .await
        .expect("watch from the compaction point");
    assert_put(&next_event(&mut events).await, &v3, Some(&v2));

    // Compacting again to the same point is harmless; into the future is refused.
    store.compact(point).await.expect("compact again");
    let error = store
        .compact(current(store).await + 100)
        .await
        .expect_err("compact in the future");
    assert!(
        matches!(error, StoreError::FutureRevision { .. }),
        "{error:?}"
    );
}

pub async fn large_values_round_trip(store: &dyn Store) {
    let mebibyte = |seed: usize| {
        Bytes::from(
            (0..1 << 20)
                .map(|i| ((i + seed) % 251) as u8)
                .collect::<Vec<u8>>(),
        )
    };
    let key = "/large/a";
    let start = current(store).await;
    let first = store.create(key, mebibyte(0)).await.expect("create 1 MiB");
    assert_eq!(first.value, mebibyte(0));
    let second = store
        .update(key, mebibyte(1), Some(first.mod_revision))
        .await
        .expect("update 1 MiB");
    assert_eq!(
        store.get(key, None).await.expect("get"),
        Some(second.clone())
    );
    assert_eq!(
        store.get(key, Some(first.mod_revision)).await.expect("get"),
        Some(first.clone())
    );

    let mut events = store.watch("/large/", start).await.expect("watch");
    assert_put(&next_event(&mut events).await, &first, None);
    assert_put(&next_event(&mut events).await, &second, Some(&first));

    let too_large = Bytes::from(vec![7u8; MAX_VALUE_SIZE + 1]);
    let expected = StoreError::TooLarge {
        key: key.into(),
        size: MAX_VALUE_SIZE + 1,
        limit: MAX_VALUE_SIZE,
    };
    assert_eq!(
        store
            .update(key, too_large.clone(), None)
            .await
            .expect_err("update too large"),
        expected
    );
    let expected = StoreError::TooLarge {
        key: "/large/b".into(),
        size: MAX_VALUE_SIZE + 1,
        limit: MAX_VALUE_SIZE,
    };
    assert_eq!(
        store
            .create("/large/b", too_large)
            .await
            .expect_err("create too large"),
        expected
    );
    assert_eq!(current(store).await, second.mod_revision);

    // The limit itself is allowed.
    let largest = Bytes::from(vec![7u8; MAX_VALUE_SIZE]);
    store
        .create("/large/largest", largest.clone())
        .await
        .expect("create a value of the largest allowed size");
    let read = store.get("/large/largest", None).await.expect("get");
    assert_eq!(read.map(|kv| kv.value), Some(largest));
}

pub async fn concurrent_writers_get_distinct_revisions(store: &dyn Store) {
    const WRITERS: usize = 8;
    const WRITES: usize = 10;
    let start = current(store).await;
    let writer = |writer: usize| async move {
        let mut revisions = Vec::new();
        for write in 0..WRITES {
            let kv = store
                .create(&format!("/concurrent/{writer}/{write}"), value("x"))
                .await
                .expect("create");
            revisions.push(kv.mod_revision);
        }
        revisions
    };
    let revisions: Vec<Revision> = futures::future::join_all((0..WRITERS).map(writer))
        .await
        .concat();
    let distinct: HashSet<Revision> = revisions.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        WRITERS * WRITES,
        "two writes got the same revision"
    );

    let mut events = store.watch("/concurrent/", start).await.expect("watch");
    let mut seen = Vec::new();
    while seen.len() < WRITERS * WRITES {
        seen.push(next_event(&mut events).await.revision());
    }
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "events out of order"
    );
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), distinct);
}

pub async fn compare_and_swap_under_contention(store: &dyn Store) {
    const WRITERS: usize = 4;
    const INCREMENTS: usize = 5;
    let key = "/contention/counter";
    let initial = store.create(key, value("0")).await.expect("create");
    let writer = |initial: KeyValue| async move {
        let mut seen = initial;
        for _ in 0..INCREMENTS {
            loop {
                let count: usize = std::str::from_utf8(&seen.value)
                    .expect("utf-8")
                    .parse()
                    .expect("a number");
                match store
                    .update(
                        key,
                        value(&(count + 1).to_string()),
                        Some(seen.mod_revision),
                    )
                    .await
                {
                    Ok(kv) => {
                        seen = kv;
                        break;
                    }
                    Err(StoreError::Conflict {
                        current: Some(current),
                        ..
                    }) => seen = current,
                    Err(error) => panic!("update: {error}"),
                }
            }
        }
    };
    futures::future::join_all((0..WRITERS).map(|_| writer(initial.clone()))).await;

    let last = store.get(key, None).await.expect("get").expect("present");
    assert_eq!(
        last.value,
        value(&(WRITERS * INCREMENTS).to_string()),
        "an increment was lost"
    );
    assert_eq!(last.version, 1 + (WRITERS * INCREMENTS) as i64);
}
