//! Runs every controller of `r8s server` in one process, on shared informers.

use kube::Client;

use crate::context::Context;
use crate::daemonset::DaemonSetController;
use crate::deployment::DeploymentController;
use crate::endpoints::EndpointsController;
use crate::gc::GarbageCollector;
use crate::job::JobController;
use crate::nodeipam::{self, NodeIpamController};
use crate::nodelifecycle::{self, NodeLifecycleController};
use crate::replicaset::ReplicaSetController;

/// Settings of the controller manager.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Workers per controller.
    pub workers: usize,
    pub node_lifecycle: nodelifecycle::Settings,
    /// Pod CIDRs for Nodes (`--allocate-node-cidrs`); `None`: nodes get none.
    pub node_ipam: Option<nodeipam::Settings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self { workers: 8, node_lifecycle: nodelifecycle::Settings::default(), node_ipam: None }
    }
}

/// Runs all controllers until the future is dropped.
pub async fn run(client: Client, settings: Settings) {
    let ctx = Context::new(client.clone(), "controller-manager");
    let replicasets = ReplicaSetController::new(ctx.clone());
    let deployments = DeploymentController::new(ctx.clone());
    let daemonsets = DaemonSetController::new(ctx.clone());
    let collector = GarbageCollector::new(ctx.clone());
    let endpoints = EndpointsController::new(ctx.clone());
    let jobs = JobController::new(ctx.clone());
    let lifecycle = NodeLifecycleController::new(ctx.clone(), settings.node_lifecycle.clone());
    let node_ipam = settings.node_ipam.map(|ipam| NodeIpamController::new(ctx.clone(), ipam));
    let _watches = client::AbortOnDrop(ctx.informers.start(&client));
    ctx.informers.wait_synced().await;
    tracing::info!("controllers started");
    tokio::join!(
        replicasets.run(settings.workers),
        deployments.run(settings.workers),
        daemonsets.run(settings.workers),
        collector.run(settings.workers),
        endpoints.run(settings.workers),
        jobs.run(settings.workers),
        lifecycle.run(),
        async {
            match node_ipam {
                Some(controller) => controller.run().await,
                None => std::future::pending().await,
            }
        },
    );
}
