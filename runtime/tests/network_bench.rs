//! Pod network setup and teardown times, for the runtime's benchmark table.
//! Not a test of behaviour (ignored by default); run it as root with
//!
//! ```text
//! cargo nextest run -p r8s-runtime --test network_bench --run-ignored only --no-capture
//! ```
//!
//! It prints per-pod setup and teardown latencies (p50, p99) for one pod at a
//! time and for 50 pods at once, without and with a hostPort mapping, all in
//! namespaces the run makes (see `network_fixture`).

// Shared with network_bridge.rs; this benchmark uses only part of it.
#[allow(dead_code)]
mod network_fixture;

use std::time::{Duration, Instant};

use futures::future::join_all;
use network_fixture::TestNode;
use runtime::network::{NetNs, PodNetwork, PortMapping, Protocol};

const SEQUENTIAL_ROUNDS: usize = 30;
const CONCURRENT_PODS: usize = 50;
const CONCURRENT_ROUNDS: usize = 3;

struct Figures {
    setup: Vec<Duration>,
    teardown: Vec<Duration>,
    /// Wall time of each round's setups and teardowns (all pods of the round).
    wall_setup: Vec<Duration>,
    wall_teardown: Vec<Duration>,
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Sets up and tears down `pods` pods at once, `rounds` times.
async fn measure(node: &TestNode, pods: &[NetNs], rounds: usize, host_port: bool) -> Figures {
    let mut figures = Figures { setup: vec![], teardown: vec![], wall_setup: vec![], wall_teardown: vec![] };
    for round in 0..rounds {
        let requests: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(n, netns)| {
                let ports = if host_port {
                    let host_port = 20000 + u16::try_from(n).expect("few pods");
                    vec![PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port, host_ip: None }]
                } else {
                    vec![]
                };
                node.request(&format!("bench-{round}-{n}"), netns, ports)
            })
            .collect();

        let started = Instant::now();
        let setups = join_all(requests.iter().map(|request| async move {
            let begun = Instant::now();
            node.network.setup(request).await.expect("setup");
            begun.elapsed()
        }))
        .await;
        figures.wall_setup.push(started.elapsed());
        figures.setup.extend(setups);

        let started = Instant::now();
        let teardowns = join_all(requests.iter().map(|request| async move {
            let begun = Instant::now();
            node.network.teardown(&request.sandbox_id, &request.netns).await.expect("teardown");
            begun.elapsed()
        }))
        .await;
        figures.wall_teardown.push(started.elapsed());
        figures.teardown.extend(teardowns);
    }
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --run-ignored only --no-capture"]
async fn pod_network_setup_and_teardown_times() {
    let mut node = TestNode::start("10.244.0.0/24").await;
    let started = Instant::now();
    let pods: Vec<NetNs> = (0..CONCURRENT_PODS).map(|n| node.pod_netns(&format!("pod{n}"))).collect();
    let netns_each = started.elapsed() / CONCURRENT_PODS as u32;

    println!("pod network (bridge + veth + IPAM + nftables hostPort), node and pods in test namespaces");
    println!("creating a pinned pod netns: {} ms each (not counted below)", ms(netns_each));
    println!(
        "{:<28} {:>5} {:>11} {:>11} {:>14} {:>14} {:>12} {:>15}",
        "case", "pods", "setup p50", "setup p99", "teardown p50", "teardown p99", "wall setup", "wall teardown"
    );
    for host_port in [false, true] {
        for (pods_at_once, rounds) in [(1, SEQUENTIAL_ROUNDS), (CONCURRENT_PODS, CONCURRENT_ROUNDS)] {
            let f = measure(&node, &pods[..pods_at_once], rounds, host_port).await;
            let case = if host_port { "with 1 hostPort each" } else { "no hostPort" };
            println!(
                "{:<28} {:>5} {:>11} {:>11} {:>14} {:>14} {:>12} {:>15}",
                case,
                pods_at_once,
                ms(percentile(&f.setup, 0.5)),
                ms(percentile(&f.setup, 0.99)),
                ms(percentile(&f.teardown, 0.5)),
                ms(percentile(&f.teardown, 0.99)),
                ms(percentile(&f.wall_setup, 0.5)),
                ms(percentile(&f.wall_teardown, 0.5)),
            );
        }
    }
    println!("(ms; p50/p99 over {SEQUENTIAL_ROUNDS} rounds of 1 pod and {CONCURRENT_ROUNDS} rounds of {CONCURRENT_PODS} pods; wall: median per round)");
}
