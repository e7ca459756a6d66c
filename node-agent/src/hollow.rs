//! Hollow nodes, as Kubernetes' kubemark has them: the real agent over an
//! in-memory runtime ([`crate::cri::fake`]), many in one process, for testing
//! and measuring scheduling and control at scale. Each registers its Node,
//! renews its Lease and runs the pods bound to it through the same workers
//! as a real node; the containers exist only as records (they start after
//! a delay, and exit only when their pod says so with the annotation
//! [`EXIT_CODE_ANNOTATION`], so Jobs complete). They share one client and
//! one watch of every pod. Logs, exec, the Service proxy and routes are off.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::kube::api::PostParams;
use client::kube::{Api, Client};
use client::k8s_openapi::api::core::v1::Node;

use crate::cri::fake::{FakeConfig, FakeRuntime};
pub use crate::cri::fake::EXIT_CODE_ANNOTATION;
use crate::cri::Cri;
use crate::pods::feed::PodFeeds;
use crate::{host, node, Config, Parts};

#[derive(Debug, Clone)]
pub struct HollowSettings {
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    /// From StartContainer to the container running.
    pub ready_delay: Duration,
    /// How often each node renews its Lease (the kubelet's 10 s).
    pub lease_renew_interval: Duration,
    pub labels: BTreeMap<String, String>,
    /// Run the pods bound to the nodes (off: nodes that take pods and never
    /// start them, for measuring scheduling alone).
    pub run_pods: bool,
}

impl Default for HollowSettings {
    fn default() -> Self {
        Self {
            cpu: "4".into(),
            memory: "16Gi".into(),
            max_pods: 110,
            ready_delay: Duration::from_millis(100),
            lease_renew_interval: node::LEASE_RENEW,
            labels: BTreeMap::new(),
            run_pods: true,
        }
    }
}

/// Every hollow node is labelled so.
pub const HOLLOW_LABEL: &str = "node.r8s.io/hollow";

/// One node's agent and runtime.
struct Member {
    runtime: Arc<FakeRuntime>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A set of hollow nodes run by this process. Dropping it stops them (their
/// Node objects stay, as a stopped kubelet's do).
pub struct HollowNodes {
    client: Client,
    settings: HollowSettings,
    names: Vec<String>,
    feeds: Arc<PodFeeds>,
    members: Mutex<HashMap<String, Member>>,
    /// Pod volumes and (unused) logs of every node.
    dir: tempfile::TempDir,
}

/// `10.x.y.z` for the `index`-th node.
fn node_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (index >> 16) as u8, (index >> 8) as u8, index as u8))
}

/// Each node's pods get their own /24 of 100.64.0.0/10.
fn pod_network(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + ((index as u32 % (1 << 14)) << 8))
}

#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    #[error("hollow node settings: {0}")]
    Settings(String),
    #[error("registering the hollow nodes: {0}")]
    Register(#[from] client::kube::Error),
    #[error("hollow nodes' files: {0}")]
    Io(#[from] std::io::Error),
}

impl HollowNodes {
    /// Registers `count` nodes named `<prefix>-<i>` and starts their agents.
    pub async fn start(client: Client, prefix: &str, count: usize, settings: HollowSettings) -> Result<Self, HollowError> {
        Self::start_named(client, (0..count).map(|i| format!("{prefix}-{i}")).collect(), settings).await
    }

    /// Registers the nodes `names` and starts their agents; returns once every Node exists.
    pub async fn start_named(client: Client, names: Vec<String>, settings: HollowSettings) -> Result<Self, HollowError> {
        let feeds = Arc::new(PodFeeds::start(&client, None));
        let fleet = Self { dir: tempfile::Builder::new().prefix("r8s-hollow-").tempdir()?, client, settings, names, feeds, members: Mutex::default() };
        fleet.register_all().await?;
        fleet.feeds.wait_synced().await;
        for (index, name) in fleet.names.iter().enumerate() {
            let runtime = FakeRuntime::new(FakeConfig { name: "hollow".into(), pod_network: pod_network(index), start_delay: fleet.settings.ready_delay, ..Default::default() });
            let task = fleet.spawn_agent(index, name, runtime.clone())?;
            fleet.lock().insert(name.clone(), Member { runtime, task: Some(task) });
        }
        Ok(fleet)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Member>> {
        self.members.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn identity(&self, index: usize, name: &str) -> Result<node::NodeIdentity, HollowError> {
        let quantity = |text: &str| api::Quantity::parse(text).map_err(|e| HollowError::Settings(format!("{text:?}: {e}")));
        let cpus = quantity(&self.settings.cpu)?.value().max(1) as usize;
        let memory = quantity(&self.settings.memory)?.value().max(0) as u64;
        let mut labels = self.settings.labels.clone();
        labels.insert(HOLLOW_LABEL.into(), "true".into());
        Ok(node::NodeIdentity {
            name: name.to_string(),
            ip: node_ip(index).to_string(),
            agent_port: 10250,
            host: host::Host::simulated(index, cpus, memory, i64::from(self.settings.max_pods)),
            labels,
        })
    }

    /// The Nodes, 32 at a time, so that the agents find them there.
    async fn register_all(&self) -> Result<(), HollowError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut identities = Vec::new();
        for (index, name) in self.names.iter().enumerate() {
            identities.push(self.identity(index, name)?);
        }
        for chunk in identities.chunks(32) {
            let creates = chunk.iter().map(|identity| {
                let nodes = nodes.clone();
                async move {
                    match nodes.create(&PostParams::default(), &node::node_object(identity)).await {
                        Err(error) if client::is_conflict(&error) => Ok(()),
                        other => other.map(drop),
                    }
                }
            });
            for created in futures::future::join_all(creates).await {
                created?;
            }
        }
        Ok(())
    }

    fn spawn_agent(&self, index: usize, name: &str, runtime: Arc<FakeRuntime>) -> Result<tokio::task::JoinHandle<()>, HollowError> {
        let node_dir: PathBuf = self.dir.path().join(name);
        let mut config = Config::new("hollow://", name);
        config.root_dir = node_dir.join("agent");
        config.log_dir = node_dir.join("logs");
        config.node_ip = Some(node_ip(index));
        config.service_proxy = false;
        config.serve = false;
        let interval = self.settings.lease_renew_interval;
        config.timing = node::NodeTiming {
            lease_renew: interval,
            // Thousands of nodes renew spread over the interval, not all at once.
            first_lease_after: interval.mul_f64(index as f64 / self.names.len().max(1) as f64),
            status_check: interval.max(Duration::from_secs(60)),
            status_refresh: interval.max(Duration::from_secs(60)),
        };
        let parts = Parts { client: self.client.clone(), cri: Cri::new(runtime), identity: self.identity(index, name)?, pods: self.feeds.subscribe(name) };
        let run_pods = self.settings.run_pods;
        Ok(tokio::spawn(async move {
            let ran = if run_pods { crate::run_with(config, parts).await } else { crate::run_node_only(config, parts).await };
            if let Err(error) = ran {
                tracing::warn!(%error, "hollow node agent stopped");
            }
        }))
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The runtime of one node (to make its containers crash, say).
    pub fn runtime(&self, name: &str) -> Option<Arc<FakeRuntime>> {
        self.lock().get(name).map(|m| m.runtime.clone())
    }

    /// The node's agent dies: it stops renewing its Lease and handling pods
    /// (its containers, in the fake runtime, keep running).
    pub fn stop_node(&self, name: &str) {
        if let Some(task) = self.lock().get_mut(name).and_then(|m| m.task.take()) {
            task.abort();
        }
    }

    /// The node's agent comes back over the same runtime, and adopts its pods
    /// as a restarted kubelet does.
    pub fn resume_node(&self, name: &str) {
        let Some(index) = self.names.iter().position(|n| n == name) else { return };
        let Some(runtime) = self.lock().get(name).filter(|m| m.task.is_none()).map(|m| m.runtime.clone()) else { return };
        match self.spawn_agent(index, name, runtime) {
            Ok(task) => {
                if let Some(member) = self.lock().get_mut(name) {
                    member.task = Some(task);
                }
            }
            Err(error) => tracing::warn!(%error, node = name, "could not resume a hollow node"),
        }
    }
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        for member in self.lock().values_mut() {
            if let Some(task) = member.task.take() {
                task.abort();
            }
        }
    }
}
