//! Prometheus metrics: requests by verb, resource and code with latencies,
//! open watches, and store latency per operation.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use store::{KeyValue, RangeRequest, RangeResponse, Revision, Store, WatchStream};

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.25, 1.0, 5.0, 30.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (count, bound) in self.counts.iter_mut().zip(BUCKETS) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (count, bound) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
pub struct Metrics {
    /// (verb, resource, code) → latency histogram (its count is the request count).
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    /// store operation → latency histogram.
    store: Mutex<BTreeMap<&'static str, Histogram>>,
    watches: AtomicI64,
}

impl Metrics {
    pub fn observe_request(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.entry((verb.to_string(), resource.to_string(), code)).or_default().observe(elapsed);
        }
    }

    fn observe_store(&self, operation: &'static str, elapsed: Duration) {
        if let Ok(mut store) = self.store.lock() {
            store.entry(operation).or_default().observe(elapsed);
        }
    }

    /// Counts a watch as open until the guard is dropped.
    pub fn watch_opened(self: &Arc<Self>) -> WatchGuard {
        self.watches.fetch_add(1, Ordering::Relaxed);
        WatchGuard(self.clone())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_duration_seconds Request latency by verb, resource and code.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        let requests = self.requests.lock().map(|r| r.clone()).unwrap_or_default();
        for ((verb, resource, code), histogram) in &requests {
            let labels = format!("verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"");
            histogram.render(&mut out, "apiserver_request_duration_seconds", &labels);
        }
        out.push_str("# HELP apiserver_request_total Requests by verb, resource and code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, resource, code), histogram) in &requests {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {}",
                histogram.count
            );
        }
        out.push_str("# HELP apiserver_registered_watchers Watches open now.\n");
        out.push_str("# TYPE apiserver_registered_watchers gauge\n");
        let _ = writeln!(out, "apiserver_registered_watchers {}", self.watches.load(Ordering::Relaxed));
        out.push_str("# HELP apiserver_store_request_duration_seconds Store latency by operation.\n");
        out.push_str("# TYPE apiserver_store_request_duration_seconds histogram\n");
        let store = self.store.lock().map(|s| s.clone()).unwrap_or_default();
        for (operation, histogram) in &store {
            histogram.render(&mut out, "apiserver_store_request_duration_seconds", &format!("operation=\"{operation}\""));
        }
        out
    }
}

pub struct WatchGuard(Arc<Metrics>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.watches.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A store that times every operation into [`Metrics`].
pub struct TimedStore {
    pub inner: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
}

impl TimedStore {
    async fn timed<T>(&self, operation: &'static str, call: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let result = call.await;
        self.metrics.observe_store(operation, start.elapsed());
        result
    }
}

#[async_trait]
impl Store for TimedStore {
    async fn create(&self, key: &str, value: Bytes) -> store::Result<KeyValue> {
        self.timed("create", self.inner.create(key, value)).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>) -> store::Result<KeyValue> {
        self.timed("update", self.inner.update(key, value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> store::Result<(KeyValue, Revision)> {
        self.timed("delete", self.inner.delete(key, expected)).await
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> store::Result<Option<KeyValue>> {
        self.timed("get", self.inner.get(key, revision)).await
    }

    async fn range(&self, request: RangeRequest) -> store::Result<RangeResponse> {
        self.timed("range", self.inner.range(request)).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> store::Result<WatchStream> {
        self.timed("watch", self.inner.watch(prefix, after)).await
    }

    async fn current_revision(&self) -> store::Result<Revision> {
        self.timed("current_revision", self.inner.current_revision()).await
    }

    async fn compact(&self, revision: Revision) -> store::Result<()> {
        self.timed("compact", self.inner.compact(revision)).await
    }

    async fn check_live(&self) -> store::Result<()> {
        self.inner.check_live().await
    }

    async fn check_ready(&self) -> store::Result<()> {
        self.inner.check_ready().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_and_watches() {
        let metrics = Arc::new(Metrics::default());
        metrics.observe_request("get", "pods", 200, Duration::from_millis(3));
        metrics.observe_request("get", "pods", 200, Duration::from_millis(300));
        let guard = metrics.watch_opened();
        let text = metrics.render();
        assert!(text.contains("apiserver_request_total{verb=\"get\",resource=\"pods\",code=\"200\"} 2"));
        assert!(text.contains("apiserver_request_duration_seconds_bucket{verb=\"get\",resource=\"pods\",code=\"200\",le=\"0.005\"} 1"));
        assert!(text.contains("apiserver_registered_watchers 1"));
        drop(guard);
        assert!(metrics.render().contains("apiserver_registered_watchers 0"));
    }
}
