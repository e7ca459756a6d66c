//! Scheduling and control at scale, through the real API server and store in
//! this process, with hollow nodes: pods scheduled and bound per second for a
//! burst of pods created at once (Kubernetes' scheduler_perf reports about 680
//! pods/s for 10,000 pods on 5,000 nodes), and the time for a big Deployment to
//! be fully available. Each figure over the in-memory store and over the
//! embedded raft store (one server, on disk in a temp dir), side by side.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::stream::{self, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use client::informer::{Change, Informer};
use client::AbortOnDrop;
use node_agent::hollow::{HollowNodes, HollowSettings};

use crate::store::backends::{Backend, Started};

#[derive(Args)]
pub struct SchedulerBenchArgs {
    /// Cluster sizes to measure, in hollow nodes.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    nodes: Vec<usize>,
    /// Pods created at once for the scheduling measurement.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Replicas of the Deployment whose rollout is timed.
    #[arg(long, default_value_t = 1_000)]
    replicas: i32,
    /// Stores the API server runs on; one row per store and cluster size.
    #[arg(long, value_delimiter = ',', default_value = "mem,raft")]
    store: Vec<StoreKind>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StoreKind {
    /// The in-memory store (no persistence).
    Mem,
    /// The embedded raft store, one server, log and state machine on disk.
    Raft,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Mem => "in-memory",
            StoreKind::Raft => "raft, 1 server",
        }
    }
}

pub fn run(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rows = Vec::new();
    let runs = args.nodes.iter().flat_map(|&nodes| args.store.iter().map(move |&store| (nodes, store)));
    for (nodes, store) in runs {
        let scheduling = runtime.block_on(scheduling_throughput(store, nodes, args.pods))?;
        let rollout = runtime.block_on(deployment_rollout(store, nodes, args.replicas))?;
        rows.push(vec![
            store.name().to_string(),
            nodes.to_string(),
            args.pods.to_string(),
            format!("{:.0}", args.pods as f64 / scheduling.as_secs_f64()),
            format!("{:.2}", scheduling.as_secs_f64()),
            args.replicas.to_string(),
            format!("{:.2}", rollout.as_secs_f64()),
        ]);
    }
    println!("\nScheduler and controllers through the real API server and store, hollow nodes, one process\n");
    crate::stats::print_table(
        &["store", "nodes", "pods", "r8s pods scheduled+bound/s", "r8s seconds", "Deployment replicas", "r8s seconds to fully available"],
        &rows,
    );
    println!("\nKubernetes scheduler_perf (reference): about 680 pods/s for 10,000 pods on 5,000 nodes.");
    Ok(())
}

/// An API server and its store; the server stops before the store.
struct ApiServer {
    _server: AbortOnDrop,
    _store: Option<Started>,
}

/// An API server over a fresh store of `kind` on a loopback port.
async fn start_api(kind: StoreKind) -> anyhow::Result<(Client, ApiServer)> {
    let (store, started): (Arc<dyn store::Store>, _) = match kind {
        StoreKind::Mem => (store::mem::MemStore::new(), None),
        StoreKind::Raft => {
            let started = Backend::RaftOne.start().await?;
            (started.store(), Some(started))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        if let Err(error) = apiserver::serve(store, listener, apiserver::Config::default()).await {
            eprintln!("API server failed: {error}");
        }
    });
    Ok((client::connect::from_url(&url)?, ApiServer { _server: AbortOnDrop(vec![server]), _store: started }))
}

/// Hollow nodes (real agents over in-memory runtimes); `run_pods` false:
/// their agents register and renew but never start the pods bound to them.
async fn hollow_nodes(client: &Client, count: usize, run_pods: bool) -> anyhow::Result<HollowNodes> {
    let settings = HollowSettings { cpu: "32".into(), memory: "256Gi".into(), ready_delay: Duration::from_millis(100), run_pods, ..Default::default() };
    HollowNodes::start(client.clone(), "hollow", count, settings).await.context("registering hollow nodes")
}

/// Counts pods bound to a node, as a watch sees them.
fn count_bound(client: &Client) -> (Arc<Mutex<HashSet<String>>>, tokio::task::JoinHandle<()>) {
    let pods: Informer<Pod> = Informer::new();
    let bound = Arc::new(Mutex::new(HashSet::new()));
    let seen = bound.clone();
    pods.on_change(move |change| {
        if let Change::Applied { new, .. } = change {
            if new.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                seen.lock().unwrap_or_else(|p| p.into_inner()).insert(new.name_any());
            }
        }
    });
    let task = pods.start(Api::all(client.clone()), watcher::Config::default());
    (bound, task)
}

/// Creates `count` pods, then starts the scheduler and times until all are bound.
async fn scheduling_throughput(store: StoreKind, nodes: usize, count: usize) -> anyhow::Result<Duration> {
    let (client, _api) = start_api(store).await?;
    // Like scheduler_perf's nodes, these do not start pods during the measurement
    // (their agents would only add status writes that are not scheduling).
    let _nodes = hollow_nodes(&client, nodes, false).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": { "name": format!("pod-{i}"), "namespace": "default" },
                    "spec": { "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10",
                        "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } } }] }
                }))?;
                pods.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    let (bound, counter) = count_bound(&client);
    let _counter = AbortOnDrop(vec![counter]);
    let started = Instant::now();
    let scheduler_client = client.clone();
    let _scheduler = AbortOnDrop(vec![tokio::spawn(async move {
        let _ = scheduler::run(scheduler_client, scheduler::Settings::default()).await;
    })]);
    wait_for(|| bound.lock().unwrap_or_else(|p| p.into_inner()).len() >= count, Duration::from_secs(600)).await?;
    Ok(started.elapsed())
}

/// Times a Deployment of `replicas` from creation to all replicas available.
async fn deployment_rollout(store: StoreKind, nodes: usize, replicas: i32) -> anyhow::Result<Duration> {
    let (client, _api) = start_api(store).await?;
    let _nodes = hollow_nodes(&client, nodes, true).await?;
    let scheduler_client = client.clone();
    let _control = AbortOnDrop(vec![
        tokio::spawn(async move {
            let _ = scheduler::run(scheduler_client, scheduler::Settings::default()).await;
        }),
        tokio::spawn(controller::manager::run(client.clone(), Default::default())),
    ]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "big", "namespace": "default" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "big" } },
            "template": { "metadata": { "labels": { "app": "big" } },
                "spec": { "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10" }] } }
        }
    }))?;
    // Let the controllers and scheduler finish their initial lists first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    deployments.create(&PostParams::default(), &deployment).await?;
    loop {
        let status = deployments.get("big").await?.status.unwrap_or_default();
        if status.available_replicas == Some(replicas) && status.updated_replicas == Some(replicas) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the Deployment did not become available");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for(done: impl Fn() -> bool, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done() {
        anyhow::ensure!(started.elapsed() < limit, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
