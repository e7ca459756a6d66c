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
//! - [`host`]: facts about the machine.

pub mod container_logs;
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
use client::informer::Informer;

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

/// Runs the agent until the returned future is dropped (or the log/exec
/// server fails).
pub async fn run(config: Config) -> Result<(), Error> {
    for dir in [&config.root_dir, &config.log_dir] {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
    }
    let client = client::connect::from_url(&config.server)?;
    let cri = cri::Cri::connect(&config.cri_endpoint)?;
    let identity = identity(&config);
    let context = Arc::new(pods::Context {
        client: client.clone(),
        cri: cri.clone(),
        cache: Arc::default(),
        recorder: EventRecorder::new(client.clone(), "kubelet").with_host(config.node_name.clone()),
        pods: Informer::new(),
        node: identity.clone(),
        root_dir: config.root_dir.clone(),
        log_dir: config.log_dir.clone(),
        dns: config.cluster_dns.clone(),
    });
    tracing::info!(node = %config.node_name, server = %config.server, runtime = %config.cri_endpoint, "node agent starting");
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
    tokio::select! {
        () = service_proxy => Ok(()),
        () = routes => Ok(()),
        () = node::maintain(client, cri.clone(), identity) => Ok(()),
        () = pods::run(context) => Ok(()),
        () = container_logs::maintain(cri.clone(), config.log_dir.clone(), config.container_logs) => Ok(()),
        served = server::serve(address, cri, config.log_dir.clone()) => served.map_err(|source| Error::Serve { address, source }),
    }
}

fn identity(config: &Config) -> node::NodeIdentity {
    node::NodeIdentity {
        name: config.node_name.clone(),
        ip: config.node_ip.unwrap_or_else(host::node_ip).to_string(),
        agent_port: config.listen.port(),
        host: host::Host::probe(&config.root_dir),
    }
}

/// Registers the Node (if it is not yet) and waits until the controller gives
/// it `spec.podCIDR`, which the agent's runtime then needs to start.
pub async fn wait_for_pod_cidr(config: &Config) -> Result<String, Error> {
    std::fs::create_dir_all(&config.root_dir).map_err(|source| Error::Io { path: config.root_dir.display().to_string(), source })?;
    let client = client::connect::from_url(&config.server)?;
    Ok(node::wait_for_pod_cidr(client, &identity(config)).await)
}
