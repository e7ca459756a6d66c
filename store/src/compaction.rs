//! Automatic compaction, for any backend: every interval, compact to the
//! revision that was current one interval earlier. This is what the Kubernetes
//! API server does for etcd (every 5 minutes), so a watcher that reconnects
//! within one interval can always resume where it stopped.

use std::sync::Weak;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Revision, Store};

/// The Kubernetes API server's default (`--etcd-compaction-interval`).
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// A running compaction task. It stops when this handle is dropped or when the
/// store is gone.
pub struct AutoCompaction {
    task: JoinHandle<()>,
}

impl AutoCompaction {
    /// Starts compacting `store` every `interval`. Needs a tokio runtime.
    pub fn start<S: Store + ?Sized>(store: Weak<S>, interval: Duration) -> Self {
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: it only records where history stands.
            let mut one_interval_ago: Option<Revision> = None;
            loop {
                ticks.tick().await;
                let Some(store) = store.upgrade() else { return };
                if let Some(revision) = one_interval_ago {
                    if let Err(error) = store.compact(revision).await {
                        tracing::warn!(%error, revision, "automatic compaction failed");
                    }
                }
                match store.current_revision().await {
                    Ok(current) => one_interval_ago = Some(current),
                    Err(error) => {
                        tracing::warn!(%error, "automatic compaction: cannot read the current revision")
                    }
                }
            }
        });
        AutoCompaction { task }
    }
}

impl Drop for AutoCompaction {
    fn drop(&mut self) {
        self.task.abort();
    }
}
