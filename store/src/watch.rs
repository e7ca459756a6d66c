//! Watch streams handed to callers, and the sending half the store keeps.
//!
//! A watcher gets a bounded buffer. The store never waits for a watcher: when the
//! buffer is full, the watcher is marked too slow and forgotten, and its stream
//! yields [`StoreError::WatcherTooSlow`] and ends. So a stuck reader costs at most
//! one full buffer of memory.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::{Revision, StoreError, WatchEvent};

/// A stream of watch events in revision order. It ends with an error item when
/// the store closes the watch (too slow, shutting down).
pub type WatchStream = futures::stream::BoxStream<'static, crate::Result<crate::WatchEvent>>;

/// How many live events a watcher may have waiting before it counts as too slow.
pub const DEFAULT_WATCH_BUFFER: usize = 4096;

/// The store's end of one watcher.
pub(crate) struct WatchSender {
    prefix: String,
    /// Only events after this revision (a watch may start in the future).
    after: Revision,
    events: mpsc::Sender<WatchEvent>,
    too_slow: Arc<AtomicBool>,
}

impl WatchSender {
    pub(crate) fn wants(&self, key: &str, revision: Revision) -> bool {
        revision > self.after && key.starts_with(&self.prefix)
    }

    /// False once the watcher is gone (its stream was dropped) or has just been
    /// found too slow: either way the store should forget it.
    pub(crate) fn is_open(&self) -> bool {
        !self.events.is_closed()
    }

    /// Hands one event over without waiting. Returns false if the watcher should
    /// be forgotten.
    pub(crate) fn send(&self, event: WatchEvent) -> bool {
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Set before this sender is dropped, so the stream sees the flag
                // at the latest when the channel reports it closed.
                self.too_slow.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Makes a watcher: `replay` (events already in the history) come first, then
/// whatever is sent through the returned sender, at most `buffer` of them waiting.
pub(crate) fn watcher(
    prefix: &str,
    after: Revision,
    replay: Vec<WatchEvent>,
    buffer: usize,
) -> (WatchSender, WatchStream) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let too_slow = Arc::new(AtomicBool::new(false));
    let sender = WatchSender {
        prefix: prefix.to_owned(),
        after,
        events: tx,
        too_slow: too_slow.clone(),
    };
    let live = LiveEvents {
        events: Some(rx),
        too_slow,
    };
    let stream = futures::stream::iter(replay.into_iter().map(Ok))
        .chain(live)
        .boxed();
    (sender, stream)
}

/// The live part of a watch stream.
struct LiveEvents {
    /// None once the stream has ended.
    events: Option<mpsc::Receiver<WatchEvent>>,
    too_slow: Arc<AtomicBool>,
}

impl LiveEvents {
    /// Ends the stream with `error`, freeing whatever was still buffered.
    fn finish(&mut self, error: StoreError) -> Poll<Option<crate::Result<WatchEvent>>> {
        self.events = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for LiveEvents {
    type Item = crate::Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // A too slow watcher gets the error at once: the events still buffered
        // are stale anyway, the reader has to re-list.
        if self.too_slow.load(Ordering::Acquire) && self.events.is_some() {
            return self.finish(StoreError::WatcherTooSlow);
        }
        let Some(events) = self.events.as_mut() else {
            return Poll::Ready(None);
        };
        match events.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) if self.too_slow.load(Ordering::Acquire) => {
                self.finish(StoreError::WatcherTooSlow)
            }
            Poll::Ready(None) => {
                self.finish(StoreError::Unavailable("the store closed the watch".into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
