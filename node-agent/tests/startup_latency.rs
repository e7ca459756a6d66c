//! Pod startup latency, create → Running as seen by a watch, for 1 pod and a
//! burst of 100, on one test node (see `support`). A measurement, not a check:
//! it is ignored by default and prints its figures.
//! `cargo build -p r8s && cargo test -p r8s-node-agent --test startup_latency -- --ignored --nocapture`

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use client::kube::runtime::watcher;
use futures::StreamExt;
use serde_json::json;
use support::{phase, Cluster, TestNode, IMAGE};

/// Creates `count` pods at once; returns each one's create → Running time.
async fn burst(cluster: &Cluster, prefix: &str, count: usize) -> Vec<Duration> {
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let pods = cluster.pods();
    let watch = tokio::spawn(async move {
        let mut events = watcher(pods, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event {
                if phase(&pod) == "Running" {
                    let _ = seen_tx.send((pod.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut created: HashMap<String, Instant> = HashMap::new();
    let creations = (0..count).map(|i| {
        let name = format!("{prefix}-{i}");
        async move {
            let started = Instant::now();
            cluster.create_pod(&name, json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]})).await;
            (name, started)
        }
    });
    for (name, started) in futures::future::join_all(creations).await {
        created.insert(name, started);
    }
    let mut latencies = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while latencies.len() < count && Instant::now() < deadline {
        if let Ok(Some((name, at))) = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv()).await {
            if let Some(started) = created.get(&name) {
                latencies.entry(name).or_insert_with(|| at.duration_since(*started));
            }
        }
    }
    watch.abort();
    let mut latencies: Vec<Duration> = latencies.into_values().collect();
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

#[test]
#[ignore = "a measurement; run with --ignored --nocapture"]
fn measure_pod_startup_latency() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        let mut singles = Vec::new();
        for i in 0..10 {
            singles.extend(burst(&cluster, &format!("single{i}"), 1).await);
        }
        singles.sort();
        let many = burst(&cluster, "burst", 100).await;
        println!("| case | pods Running | p50 | p99 |");
        println!("|---|---|---|---|");
        println!("| 1 pod (10 runs) | {} | {:?} | {:?} |", singles.len(), percentile(&singles, 0.5), percentile(&singles, 0.99));
        println!("| burst of 100 | {} | {:?} | {:?} |", many.len(), percentile(&many, 0.5), percentile(&many, 0.99));
    });
}
