//! CRI container events (`GetContainerEvents`): what a runtime publishes on
//! every change of a container or sandbox, to every subscriber, in order.
//! Subscribers relist when their stream ends or fell behind (the CRI
//! contract: events hasten what a relist would find, they do not replace it).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::api;

/// How many events a subscriber may fall behind before its stream ends
/// (it then relists, as the CRI contract has it).
const EVENT_BACKLOG: usize = 1024;

/// The container events, for every subscriber of `GetContainerEvents`.
pub struct EventHub {
    sender: broadcast::Sender<Arc<api::ContainerEventResponse>>,
    last: AtomicI64,
    /// Set when the service stops: every stream ends.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self { sender: broadcast::channel(EVENT_BACKLOG).0, last: AtomicI64::new(0), closed: tokio::sync::watch::channel(false).0 }
    }
}

impl EventHub {
    /// Sends an event, stamped with a time later than every earlier one's
    /// (subscribers order what they learn by it).
    pub fn publish(&self, mut event: api::ContainerEventResponse) {
        let now = now_nanos();
        let next = |last: i64| now.max(last + 1);
        let previous = self.last.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(next(last))).unwrap_or_else(|last| last);
        event.created_at = next(previous);
        // No subscriber is fine: nobody is listening.
        let _ = self.sender.send(Arc::new(event));
    }

    /// A subscriber's stream of events. It ends when the service stops, and
    /// with a `DataLoss` error when the subscriber fell more than the
    /// backlog behind (it must relist).
    pub fn stream(&self) -> impl futures::Stream<Item = Result<api::ContainerEventResponse, tonic::Status>> + Send + 'static {
        let state = (self.sender.subscribe(), self.closed.subscribe(), false);
        futures::stream::unfold(state, |(mut events, mut closed, ended)| async move {
            if ended || *closed.borrow() {
                return None;
            }
            let next = tokio::select! {
                received = events.recv() => received,
                _ = closed.changed() => return None,
            };
            match next {
                Ok(event) => Some((Ok((*event).clone()), (events, closed, false))),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let error = tonic::Status::data_loss(format!("{missed} container events were dropped for a slow subscriber; relist"));
                    Some((Err(error), (events, closed, true)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }

    /// Ends every stream (the service is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// Nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_stamped_in_order_and_streams_end_with_the_service() {
        use futures::StreamExt;
        let hub = EventHub::default();
        let mut events = Box::pin(hub.stream());
        for _ in 0..100 {
            hub.publish(api::ContainerEventResponse::default());
        }
        let mut last = 0;
        for _ in 0..100 {
            let event = events.next().await.unwrap().unwrap();
            assert!(event.created_at > last, "{} after {last}", event.created_at);
            last = event.created_at;
        }
        hub.close();
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_relist() {
        use futures::StreamExt;
        let hub = EventHub::default();
        let mut events = Box::pin(hub.stream());
        for _ in 0..EVENT_BACKLOG + 10 {
            hub.publish(api::ContainerEventResponse::default());
        }
        let error = events.next().await.unwrap().unwrap_err();
        assert_eq!(error.code(), tonic::Code::DataLoss);
        assert!(events.next().await.is_none());
    }
}
