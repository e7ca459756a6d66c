//! The pods bound to this node: a watch (`spec.nodeName=<node>`) feeds one
//! worker per pod, each woken by its pod's changes in the API and in the
//! runtime (the pod cache, [`pleg`]); sandboxes that belong to no pod are
//! removed.

pub mod actions;
pub mod backoff;
pub mod command;
pub mod dns;
pub mod env;
mod events;
pub mod feed;
mod hooks;
mod pull_secrets;
pub mod labels;
pub mod pleg;
pub mod probe;
pub mod sources;
pub mod spec;
pub mod status;
pub mod volumes;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use client::events::EventRecorder;
use client::informer::Informer;
use client::k8s_openapi::api::core::v1::Pod;
use client::kube::Client;
use tokio::sync::{mpsc, Notify};

use crate::cri::Cri;
use crate::node::NodeIdentity;

/// How often sandboxes without a pod are looked for.
const ORPHAN_SWEEP: Duration = Duration::from_secs(30);

/// What every pod worker shares.
pub struct Context {
    pub client: Client,
    pub cri: Cri,
    /// What the runtime has for each pod, kept by its events.
    pub cache: Arc<pleg::PodCache>,
    pub recorder: EventRecorder,
    pub pods: Informer<Pod>,
    pub node: NodeIdentity,
    /// Pod volumes live under `<root_dir>/pods/<uid>`.
    pub root_dir: PathBuf,
    /// Container logs live under `<log_dir>/<namespace>_<name>_<uid>`.
    pub log_dir: PathBuf,
    /// What pods' resolv.conf is made from.
    pub dns: dns::ClusterDns,
}

impl Context {
    /// The node's allocatable resources, for resource fields without limits.
    pub fn allocatable(&self) -> BTreeMap<String, api::Quantity> {
        crate::node::capacity(&self.node.host).into_iter().filter_map(|(name, q)| Some((name, api::Quantity::parse(&q.0).ok()?))).collect()
    }
}

/// A running pod worker; its task ends when this is dropped.
struct WorkerHandle {
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a worker for each pod of the feed until it is gone.
pub async fn run(ctx: Arc<Context>, mut feed: feed::PodFeed) {
    feed.informer.wait_synced().await;
    tracing::info!(node = %ctx.node.name, pods = feed.bound().len(), "watching the node's pods");

    let _pleg = client::AbortOnDrop(vec![tokio::spawn(ctx.cache.clone().run(ctx.cri.clone()))]);

    let (finished, mut done) = mpsc::unbounded_channel::<String>();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut sweep = tokio::time::interval(ORPHAN_SWEEP);
    loop {
        tokio::select! {
            Some((key, uid)) = feed.changes.recv() => match workers.get(&uid) {
                Some(worker) => worker.wake.notify_one(),
                None => {
                    let wake = Arc::new(Notify::new());
                    ctx.cache.watch(&uid, wake.clone());
                    let worker = worker::PodWorker::new(ctx.clone(), key, uid.clone(), wake.clone());
                    let finished = finished.clone();
                    let id = uid.clone();
                    let task = tokio::spawn(async move {
                        worker.run().await;
                        let _ = finished.send(id);
                    });
                    workers.insert(uid, WorkerHandle { wake, task });
                }
            },
            Some(uid) = done.recv() => {
                ctx.cache.unwatch(&uid);
                workers.remove(&uid);
            }
            _ = sweep.tick() => {
                let known: HashSet<String> = workers.keys().cloned().chain(feed.bound()).collect();
                if let Err(error) = remove_orphans(&ctx, &known).await {
                    tracing::warn!(%error, "could not remove orphaned sandboxes");
                }
                crate::container_logs::remove_stale_pod_dirs(&ctx.log_dir, &known);
            }
        }
    }
}

/// Removes sandboxes (with their containers and volumes) of pods this node no
/// longer has, and containers whose sandbox is gone.
async fn remove_orphans(ctx: &Context, known: &HashSet<String>) -> Result<(), tonic::Status> {
    let runtime = &ctx.cri.runtime;
    let sandboxes = runtime.list_pod_sandbox(None).await?;
    let mut remaining = HashSet::new();
    for sandbox in sandboxes {
        let uid = sandbox.labels.get(labels::POD_UID).cloned().unwrap_or_default();
        if known.contains(&uid) {
            remaining.insert(sandbox.id);
            continue;
        }
        tracing::info!(sandbox = %sandbox.id, pod_uid = %uid, "removing a sandbox that belongs to no pod");
        runtime.stop_pod_sandbox(&sandbox.id).await?;
        runtime.remove_pod_sandbox(&sandbox.id).await?;
        if !uid.is_empty() {
            if let Err(error) = volumes::tear_down(&ctx.root_dir, &uid) {
                tracing::warn!(%error, pod_uid = %uid, "could not remove an orphaned pod's volumes");
            }
        }
    }
    let containers = runtime.list_containers(None).await?;
    for container in containers.into_iter().filter(|c| !remaining.contains(&c.pod_sandbox_id)) {
        runtime.remove_container(&container.id).await?;
    }
    Ok(())
}
