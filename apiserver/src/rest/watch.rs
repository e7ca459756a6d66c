//! watch: a chunked stream of `{"type":..,"object":..}` lines, fed by a store
//! watch, with selector transitions, bookmarks and timeouts.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use store::{EventKind, Revision, StoreError, WatchEvent, WatchStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::read::{list_page, Selection};
use super::{store_error, ApiRequest, Params};
use crate::resources::ResourceType;
use crate::status::{ApiError, ApiResult};
use crate::{objects, table};

/// How a watch renders the objects it sends.
struct Encoder {
    resource: ResourceType,
    selection: Selection,
    table: bool,
    params: Params,
}

impl Encoder {
    fn line(&self, event_type: &str, object: Value) -> Option<bytes::Bytes> {
        let object = if self.table && event_type != "BOOKMARK" && event_type != "ERROR" {
            table::render(&self.resource, &object, &self.params).ok()?
        } else {
            object
        };
        let mut line = json!({"type": event_type, "object": object}).to_string();
        line.push('\n');
        Some(line.into())
    }

    /// The watch event a store event is for this watch, if any: objects
    /// entering the selection are ADDED, leaving it DELETED, as in Kubernetes.
    fn translate(&self, event: &WatchEvent) -> ApiResult<Option<(&'static str, Value)>> {
        if self.selection.is_everything() && event.kind != EventKind::Delete {
            // Without a selector, the previous object only tells ADDED from
            // MODIFIED, and its presence says that: no need to parse it.
            let event_type = if event.prev.is_some() { "MODIFIED" } else { "ADDED" };
            return Ok(Some((event_type, objects::from_kv(&event.kv)?)));
        }
        let previous = match &event.prev {
            Some(prev) => Some(objects::from_bytes_at(&prev.value, event.revision())?),
            None => None,
        };
        let was_selected = previous.as_ref().is_some_and(|object| self.selection.matches(object));
        if event.kind == EventKind::Delete {
            return Ok(previous.filter(|_| was_selected).map(|object| ("DELETED", object)));
        }
        let current = objects::from_kv(&event.kv)?;
        let selected = self.selection.matches(&current);
        Ok(match (was_selected, selected) {
            (false, true) => Some(("ADDED", current)),
            (true, true) => Some(("MODIFIED", current)),
            (true, false) => Some(("DELETED", current)),
            (false, false) => None,
        })
    }

    fn bookmark(&self, revision: Revision) -> Option<bytes::Bytes> {
        let object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
        });
        self.line("BOOKMARK", object)
    }

    /// The bookmark that ends the initial events of a watch list.
    fn initial_events_end(&self, revision: Revision) -> Option<bytes::Bytes> {
        let object = json!({
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": {
                "resourceVersion": revision.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        });
        self.line("BOOKMARK", object)
    }
}

pub async fn watch(mut request: ApiRequest) -> ApiResult<Response> {
    let selection = Selection::from_request(&request)?;
    let state = request.state.clone();
    let prefix = request.target.resource.key_prefix(request.target.namespace.as_deref());
    let requested = match request.params.resource_version.as_deref() {
        None | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<Revision>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        ),
    };

    // Without a resourceVersion, or with sendInitialEvents (a "watch list"), a
    // watch starts with the current state as ADDED.
    let send_initial = request.params.send_initial_events;
    let (initial, start) = match requested {
        Some(revision) if !send_initial => (Vec::new(), revision),
        _ => {
            let params = request.params.clone();
            request.params.limit = None;
            request.params.continue_token = None;
            request.params.resource_version_match = None;
            let page = list_page(&request).await?;
            request.params = params;
            (page.items, page.revision)
        }
    };

    let encoder = Encoder { resource: request.target.resource.clone(), selection, table: request.wants_table(), params: request.params.clone() };
    let (sender, receiver) = mpsc::channel::<bytes::Bytes>(state.config.watch_queue.max(1));
    let stream = match state.store.watch(&prefix, start).await {
        Ok(stream) => Ok(stream),
        Err(StoreError::Compacted { requested, compacted }) => {
            Err(ApiError::expired(format!("too old resource version: {requested} ({compacted})")))
        }
        Err(other) => return Err(store_error(other)),
    };
    let timeout = request.params.timeout_seconds.map(Duration::from_secs);
    let bookmarks = request.params.allow_watch_bookmarks.then_some(state.config.bookmark_interval);
    let guard = state.metrics.watch_opened();
    tokio::spawn(async move {
        let _guard = guard;
        let pump = Pump { encoder, sender, last_revision: start, grace: state.config.slow_watcher_grace };
        pump.run(Initial { objects: initial, end_marker: send_initial }, stream, timeout, bookmarks).await;
    });

    let body = Body::from_stream(ReceiverStream::new(receiver).map(Ok::<_, Infallible>));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// What a watch sends before live events.
struct Initial {
    objects: Vec<Value>,
    /// Ends them with the bookmark a "watch list" client waits for.
    end_marker: bool,
}

/// Moves events from the store to one client.
struct Pump {
    encoder: Encoder,
    sender: mpsc::Sender<bytes::Bytes>,
    last_revision: Revision,
    grace: Duration,
}

impl Pump {
    /// Sends a line; false once the client is gone or has not made room in its
    /// queue within the grace period: a slow watcher is dropped, never buffered
    /// without end.
    async fn send(&self, line: Option<bytes::Bytes>) -> bool {
        match line {
            Some(line) => matches!(self.sender.send_timeout(line, self.grace).await, Ok(())),
            None => true,
        }
    }

    async fn run(
        mut self,
        initial: Initial,
        stream: Result<WatchStream, ApiError>,
        timeout: Option<Duration>,
        bookmarks: Option<Duration>,
    ) {
        for object in initial.objects {
            if !self.send(self.encoder.line("ADDED", object)).await {
                return;
            }
        }
        if initial.end_marker && !self.send(self.encoder.initial_events_end(self.last_revision)).await {
            return;
        }
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                self.send(self.encoder.line("ERROR", error.to_status())).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::MAX / 4));
        tokio::pin!(deadline);
        let period = bookmarks.unwrap_or(Duration::from_secs(3600)).max(Duration::from_millis(10));
        let mut bookmark_timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = self.sender.closed() => return,
                _ = bookmark_timer.tick(), if bookmarks.is_some() => {
                    if !self.send(self.encoder.bookmark(self.last_revision)).await {
                        return;
                    }
                }
                event = stream.next() => {
                    let Some(Ok(event)) = event else {
                        // The store closed the watch (too slow, shutting down): the
                        // client re-lists and watches again.
                        return;
                    };
                    self.last_revision = event.revision();
                    match self.encoder.translate(&event) {
                        Ok(Some((event_type, object))) => {
                            if !self.send(self.encoder.line(event_type, object)).await {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(error) => {
                            self.send(self.encoder.line("ERROR", error.to_status())).await;
                            return;
                        }
                    }
                }
            }
        }
    }
}
