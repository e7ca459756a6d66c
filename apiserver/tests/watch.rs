//! Watch over HTTP: initial state, live events, selector transitions,
//! bookmarks, timeouts, expired revisions and tables.

mod common;

use std::time::Duration;

use common::{pod, start, Server};
use futures::StreamExt;
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

/// Reads watch events line by line.
struct Watch {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl Watch {
    async fn open(server: &Server, query: &str, accept: &str) -> Watch {
        let response = server
            .client
            .get(format!("{}{PODS}?watch=true&{query}", server.base))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        Watch { stream: response.bytes_stream().boxed(), buffer: Vec::new() }
    }

    /// The next event, or None when the server ended the stream.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next()).await.expect("watch stalled")?;
            self.buffer.extend_from_slice(&chunk.unwrap());
        }
    }

    /// The next event that is not a bookmark.
    async fn next_change(&mut self) -> Value {
        loop {
            let event = self.next().await.expect("stream ended");
            if event["type"] != "BOOKMARK" {
                return event;
            }
        }
    }
}

fn name(event: &Value) -> &str {
    event["object"]["metadata"]["name"].as_str().unwrap_or("")
}

#[tokio::test]
async fn watch_sends_current_state_then_changes() {
    let server = start().await;
    server.post(PODS, pod("a")).await;
    let mut watch = Watch::open(&server, "", "application/json").await;
    let added = watch.next_change().await;
    assert_eq!((added["type"].as_str().unwrap(), name(&added)), ("ADDED", "a"));

    server.post(PODS, pod("b")).await;
    let added = watch.next_change().await;
    assert_eq!((added["type"].as_str().unwrap(), name(&added)), ("ADDED", "b"));
    server.patch(&format!("{PODS}/b"), "application/merge-patch+json", json!({"metadata": {"labels": {"x": "1"}}})).await;
    let modified = watch.next_change().await;
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(modified["object"]["metadata"]["labels"]["x"], "1");
    server.delete(&format!("{PODS}/a"), None).await;
    let deleted = watch.next_change().await;
    assert_eq!((deleted["type"].as_str().unwrap(), name(&deleted)), ("DELETED", "a"));
}

#[tokio::test]
async fn watch_from_a_resource_version_replays_history() {
    let server = start().await;
    let created = server.post(PODS, pod("a")).await.body;
    let revision = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    server.post(PODS, pod("b")).await;
    let mut watch = Watch::open(&server, &format!("resourceVersion={revision}"), "application/json").await;
    let first = watch.next_change().await;
    assert_eq!((first["type"].as_str().unwrap(), name(&first)), ("ADDED", "b"));
}

#[tokio::test]
async fn selections_turn_modifications_into_adds_and_deletes() {
    let server = start().await;
    server.post(PODS, pod("a")).await;
    let mut watch = Watch::open(&server, "labelSelector=tier%3Dfront", "application/json").await;
    let path = format!("{PODS}/a");
    server.patch(&path, "application/merge-patch+json", json!({"metadata": {"labels": {"tier": "front"}}})).await;
    let entered = watch.next_change().await;
    assert_eq!((entered["type"].as_str().unwrap(), name(&entered)), ("ADDED", "a"));
    server.patch(&path, "application/merge-patch+json", json!({"metadata": {"labels": {"tier": "back"}}})).await;
    let left = watch.next_change().await;
    assert_eq!(left["type"], "DELETED");
    assert_eq!(left["object"]["metadata"]["labels"]["tier"], "back");

    let mut by_name = Watch::open(&server, "fieldSelector=metadata.name%3Db", "application/json").await;
    server.post(PODS, pod("c")).await;
    server.post(PODS, pod("b")).await;
    let only_b = by_name.next_change().await;
    assert_eq!(name(&only_b), "b");
}

#[tokio::test]
async fn bookmarks_and_timeouts() {
    let server = start().await;
    let created = server.post(PODS, pod("a")).await.body;
    let revision = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut watch = Watch::open(&server, &format!("resourceVersion={revision}&allowWatchBookmarks=true&timeoutSeconds=1"), "application/json").await;
    let bookmark = watch.next().await.expect("a bookmark");
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(bookmark["object"]["kind"], "Pod");
    assert_eq!(bookmark["object"]["metadata"]["resourceVersion"], revision.as_str());
    // The server ends the watch at its timeout.
    while let Some(event) = watch.next().await {
        assert_eq!(event["type"], "BOOKMARK");
    }
}

#[tokio::test]
async fn compacted_revisions_are_an_error_event() {
    let server = start().await;
    server.post(PODS, pod("a")).await;
    server.post(PODS, pod("b")).await;
    let current = store::Store::current_revision(server.store.as_ref()).await.unwrap();
    store::Store::compact(server.store.as_ref(), current).await.unwrap();
    let mut watch = Watch::open(&server, "resourceVersion=1", "application/json").await;
    let error = watch.next().await.expect("an error event");
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");
    assert!(watch.next().await.is_none());
}

#[tokio::test]
async fn table_watches_send_one_row_tables() {
    let server = start().await;
    server.post(PODS, pod("a")).await;
    let mut watch = Watch::open(&server, "", "application/json;as=Table;v=v1;g=meta.k8s.io").await;
    let added = watch.next_change().await;
    assert_eq!(added["object"]["kind"], "Table");
    assert_eq!(added["object"]["rows"].as_array().unwrap().len(), 1);
    assert_eq!(added["object"]["rows"][0]["cells"][0], "a");
}

#[tokio::test]
async fn vanished_watchers_are_released() {
    let server = start().await;
    let watch = Watch::open(&server, "", "application/json").await;
    let metrics = server.get("/metrics").await.body;
    assert!(metrics.as_str().unwrap().contains("apiserver_registered_watchers 1"));
    drop(watch);
    // The server notices on its next write to the connection or when it closes.
    server.post(PODS, pod("a")).await;
    let mut released = false;
    for _ in 0..100 {
        let metrics = server.get("/metrics").await.body;
        if metrics.as_str().unwrap().contains("apiserver_registered_watchers 0") && server.store.watcher_count() == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(released, "the watch of a vanished client stayed open");
}

#[tokio::test]
async fn slow_watchers_are_dropped() {
    use tokio::io::AsyncWriteExt;
    let server = start().await;
    // A client that asks for a watch and then never reads.
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!("GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut registered = false;
    for _ in 0..200 {
        if server.get("/metrics").await.body.as_str().unwrap().contains("apiserver_registered_watchers 1") {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(registered, "the watch never started");

    let filler = "x".repeat(256 * 1024);
    let mut dropped = false;
    for i in 0..400 {
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{i}")}, "data": {"filler": filler}});
        assert_eq!(server.post("/api/v1/namespaces/default/configmaps", config_map).await.code, 201);
        let metrics = server.get("/metrics").await.body;
        if metrics.as_str().unwrap().contains("apiserver_registered_watchers 0") {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "a watcher that never reads was kept");
    drop(stalled);
}

#[tokio::test]
async fn watch_lists_end_their_initial_events_with_a_marked_bookmark() {
    let server = start().await;
    server.post(PODS, pod("a")).await;
    server.post(PODS, pod("b")).await;
    let mut watch = Watch::open(
        &server,
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        "application/json",
    )
    .await;
    let first = watch.next().await.unwrap();
    let second = watch.next().await.unwrap();
    assert_eq!((first["type"].as_str().unwrap(), second["type"].as_str().unwrap()), ("ADDED", "ADDED"));
    let end = watch.next().await.unwrap();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    server.post(PODS, pod("c")).await;
    let live = watch.next_change().await;
    assert_eq!((live["type"].as_str().unwrap(), name(&live)), ("ADDED", "c"));
}
