//! The r8s node agent (r8s's kubelet). It registers its Node and keeps a Lease,
//! runs the pods bound to its node through CRI, probes and restarts their
//! containers, reports their status and events, and serves their logs and exec.
//! It reaches the cluster only through the Kubernetes API and the runtime only
//! through CRI gRPC.
//!
//! - [`node`]: the Node object, its status and its Lease;
//! - [`pods`]: one worker per pod, and what it is built from (container specs,
//!   env, volumes, probes, back-off, status);
//! - [`cri`]: the runtime, behind CRI's traits; [`server`] and [`logs`]: logs and exec over HTTP;
//! - [`host`]: facts about the machine; [`hollow`]: many agents over an
//!   in-memory runtime in one process, for tests and benchmarks at scale.

pub mod container_logs;
pub mod hollow;
pub mod host;
pub mod logs;
pub mod node;
pub mod pods;
pub mod routes;
pub mod server;

pub use cri;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use client::events::EventRecorder;

/// How an agent is started.
#[derive(Debug, Clone)]
pub struct Config {
    /// The API server, e.g. `http://127.0.0.1:6443`.
    pub server: String,
    pub node_name: String,
    /// `unix:///run/r8s/cri.sock`.
    pub cri_endpoint: String,
    /// Pod volumes go under `<root_dir>/pods/<uid>`.
    pub root_dir: PathBuf,
    /// Container logs go under `<log_dir>/<namespace>_<name>_<uid>`.
    pub log_dir: PathBuf,
    /// Where logs and exec are served (the kubelet's port 10250 by default).
    pub listen: SocketAddr,
    /// The node's InternalIP (found from the default route when `None`).
    pub node_ip: Option<std::net::IpAddr>,
    /// Run the Service proxy (kube-proxy: nftables rules for Services) in the
    /// agent's network namespace (default on).
    pub service_proxy: bool,
    /// Cluster DNS for pods' resolv.conf (the kubelet's --cluster-dns, --cluster-domain).
    pub cluster_dns: pods::dns::ClusterDns,
    /// Routes to other nodes' pod CIDRs (and the egress masquerade); `None`: none.
    pub pod_routes: Option<routes::PodRoutes>,
    /// When container logs rotate and how many files of each are kept.
    pub container_logs: container_logs::LogPolicy,
    /// Serve logs, exec and attach on `listen` (hollow nodes do not).
    pub serve: bool,
    /// How often the Lease is renewed and the status reported.
    pub timing: node::NodeTiming,
}

impl Config {
    pub fn new(server: impl Into<String>, node_name: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            node_name: node_name.into(),
            cri_endpoint: "unix:///run/r8s/cri.sock".into(),
            root_dir: PathBuf::from("/var/lib/r8s/agent"),
            log_dir: PathBuf::from("/var/log/pods"),
            listen: SocketAddr::from(([0, 0, 0, 0], 10250)),
            node_ip: None,
            service_proxy: true,
            cluster_dns: pods::dns::ClusterDns::default(),
            pod_routes: None,
            container_logs: container_logs::LogPolicy::default(),
            serve: true,
            timing: node::NodeTiming::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Cri(#[from] cri::CriError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("serving logs and exec on {address}: {source}")]
    Serve { address: SocketAddr, source: std::io::Error },
}

/// What an agent runs on: how it reaches the API and its runtime, who it is,
/// and where its pods come from. [`run`] makes them for a node of its own; a
/// fleet of hollow nodes ([`hollow`]) shares one client and one pod watch.
pub struct Parts {
    pub client: client::kube::Client,
    pub cri: cri::Cri,
    pub identity: node::NodeIdentity,
    pub pods: pods::feed::PodFeed,
}

/// Runs the agent until the returned future is dropped (or the log/exec
/// server fails).
pub async fn run(config: Config) -> Result<(), Error> {
    for dir in [&config.root_dir, &config.log_dir] {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
    }
    let client = client::connect::from_url(&config.server)?;
    let cri = cri::Cri::connect(&config.cri_endpoint)?;
    let feeds = pods::feed::PodFeeds::start(&client, Some(&format!("spec.nodeName={}", config.node_name)));
    let parts = Parts { pods: feeds.subscribe(&config.node_name), identity: identity(&config), client, cri };
    tracing::info!(node = %config.node_name, server = %config.server, runtime = %config.cri_endpoint, "node agent starting");
    run_with(config, parts).await
}

/// Runs the agent over `parts` until the returned future is dropped (or the
/// log/exec server fails).
pub async fn run_with(config: Config, parts: Parts) -> Result<(), Error> {
    let Parts { client, cri, identity, pods } = parts;
    let context = Arc::new(pods::Context {
        client: client.clone(),
        cri: cri.clone(),
        cache: Arc::default(),
        recorder: EventRecorder::new(client.clone(), "kubelet").with_host(config.node_name.clone()),
        pods: pods.informer.clone(),
        node: identity.clone(),
        root_dir: config.root_dir.clone(),
        log_dir: config.log_dir.clone(),
        dns: config.cluster_dns.clone(),
    });
    let address = config.listen;
    let routes = {
        let (client, me, pod_routes) = (client.clone(), config.node_name.clone(), config.pod_routes.clone());
        async move {
            match pod_routes {
                Some(pod_routes) => routes::maintain(client, me, pod_routes).await,
                None => std::future::pending().await,
            }
        }
    };
    let service_proxy = {
        let (client, enabled) = (client.clone(), config.service_proxy);
        async move {
            match enabled {
                true => proxy::ServiceProxy::new(proxy::Config::default()).run(client).await,
                false => std::future::pending().await,
            }
        }
    };
    let served = {
        let (cri, log_dir) = (cri.clone(), config.log_dir.clone());
        async move {
            match config.serve {
                true => server::serve(address, cri.clone(), log_dir.clone()).await.map_err(|source| Error::Serve { address, source }),
                false => std::future::pending().await,
            }
        }
    };
    let rotated = async {
        match config.serve {
            true => container_logs::maintain(cri.clone(), config.log_dir.clone(), config.container_logs).await,
            false => std::future::pending().await,
        }
    };
    tokio::select! {
        () = service_proxy => Ok(()),
        () = routes => Ok(()),
        () = node::maintain(client, cri.clone(), identity, config.timing) => Ok(()),
        () = pods::run(context, pods) => Ok(()),
        () = rotated => Ok(()),
        served = served => served,
    }
}

/// Keeps only the Node and its Lease, for a node that takes pods and never
/// starts them (hollow nodes that measure scheduling alone).
pub async fn run_node_only(config: Config, parts: Parts) -> Result<(), Error> {
    node::maintain(parts.client, parts.cri, parts.identity, config.timing).await;
    Ok(())
}

fn identity(config: &Config) -> node::NodeIdentity {
    node::NodeIdentity {
        name: config.node_name.clone(),
        ip: config.node_ip.unwrap_or_else(host::node_ip).to_string(),
        agent_port: config.listen.port(),
        host: host::Host::probe(&config.root_dir),
        labels: Default::default(),
    }
}

/// Registers the Node (if it is not yet) and waits until the controller gives
/// it `spec.podCIDR`, which the agent's runtime then needs to start.
pub async fn wait_for_pod_cidr(config: &Config) -> Result<String, Error> {
    std::fs::create_dir_all(&config.root_dir).map_err(|source| Error::Io { path: config.root_dir.display().to_string(), source })?;
    let client = client::connect::from_url(&config.server)?;
    Ok(node::wait_for_pod_cidr(client, &identity(config)).await)
}
