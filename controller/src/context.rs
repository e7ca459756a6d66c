//! What every controller of one process shares: the client, the event recorder
//! and one informer per resource type (so ten controllers cost one watch of pods,
//! not ten).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::task::JoinHandle;

use client::events::EventRecorder;
use client::informer::Informer;

/// The namespace node agents keep their Leases in.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

#[derive(Clone, Default)]
pub struct Informers {
    pub pods: Informer<Pod>,
    pub replicasets: Informer<ReplicaSet>,
    pub deployments: Informer<Deployment>,
    pub daemonsets: Informer<DaemonSet>,
    pub nodes: Informer<Node>,
    pub node_leases: Informer<Lease>,
    pub services: Informer<Service>,
    pub endpoints: Informer<Endpoints>,
    pub namespaces: Informer<Namespace>,
}

impl Informers {
    /// Starts every watch; call after the controllers registered their handlers.
    pub fn start(&self, client: &Client) -> Vec<JoinHandle<()>> {
        let config = watcher::Config::default;
        vec![
            self.pods.start(Api::all(client.clone()), config()),
            self.replicasets.start(Api::all(client.clone()), config()),
            self.deployments.start(Api::all(client.clone()), config()),
            self.daemonsets.start(Api::all(client.clone()), config()),
            self.nodes.start(Api::all(client.clone()), config()),
            self.node_leases.start(Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE), config()),
            self.services.start(Api::all(client.clone()), config()),
            self.endpoints.start(Api::all(client.clone()), config()),
            self.namespaces.start(Api::all(client.clone()), config()),
        ]
    }

    pub async fn wait_synced(&self) {
        self.pods.wait_synced().await;
        self.replicasets.wait_synced().await;
        self.deployments.wait_synced().await;
        self.daemonsets.wait_synced().await;
        self.nodes.wait_synced().await;
        self.node_leases.wait_synced().await;
        self.services.wait_synced().await;
        self.endpoints.wait_synced().await;
        self.namespaces.wait_synced().await;
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: EventRecorder,
    pub informers: Informers,
}

pub type SharedContext = Arc<Context>;

impl Context {
    pub fn new(client: Client, component: &str) -> SharedContext {
        Arc::new(Self {
            recorder: EventRecorder::new(client.clone(), component),
            client,
            informers: Informers::default(),
        })
    }
}
