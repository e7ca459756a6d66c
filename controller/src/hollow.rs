//! Hollow nodes, like Kubernetes' kubemark: simulated node agents that register
//! Node objects, renew their Leases, and act out the lives of the pods bound to
//! them without running containers (a pod turns Running and Ready after a set
//! delay; a pod being deleted is let go at once). They talk only through the API,
//! like real agents, so scheduling and control can be tested and measured with
//! thousands of nodes in one process. Many hollow nodes share one watch of pods.
//!
//! Pods that do not restart (`restartPolicy: Never` or `OnFailure`) run to
//! completion instead: after the delay they end Succeeded, or Failed when the
//! annotation `hollow.r8s.io/exit-code` is not 0 (with `Never`), so Jobs can be
//! exercised too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStatus, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus,
    NodeSystemInfo, Pod, PodCondition, PodIP,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use client::informer::{Change, Informer};
use client::queue::{run_workers, Requeue, WorkQueue};
use client::{is_conflict, is_not_found, object_key, AbortOnDrop};

use crate::context::NODE_LEASE_NAMESPACE;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct HollowSettings {
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    /// From binding to Running and Ready.
    pub ready_delay: Duration,
    /// How often each node renews its Lease (the kubelet's 10 s).
    pub lease_renew_interval: Duration,
    pub labels: BTreeMap<String, String>,
    /// Concurrent pod status writes and deletions.
    pub workers: usize,
}

impl Default for HollowSettings {
    fn default() -> Self {
        Self {
            cpu: "4".into(),
            memory: "16Gi".into(),
            max_pods: 110,
            ready_delay: Duration::from_millis(100),
            lease_renew_interval: Duration::from_secs(10),
            labels: BTreeMap::new(),
            workers: 16,
        }
    }
}

/// A set of hollow nodes run by this process. Dropping it stops them (their Node
/// objects stay, as a stopped kubelet's do).
pub struct HollowNodes {
    shared: Arc<Shared>,
    _tasks: AbortOnDrop,
}

struct Shared {
    client: Client,
    settings: HollowSettings,
    names: Vec<String>,
    /// Nodes that act as if their agent died: no renewals, no pod work.
    stopped: Mutex<HashSet<String>>,
    pods: Informer<Pod>,
    /// When each pod was first seen bound to one of our nodes.
    seen: Mutex<HashMap<String, Instant>>,
    queue: WorkQueue,
}

impl HollowNodes {
    /// Registers `count` nodes named `<prefix>-<i>` and starts acting for them.
    pub async fn start(client: Client, prefix: &str, count: usize, settings: HollowSettings) -> Result<Self> {
        Self::start_named(client, (0..count).map(|i| format!("{prefix}-{i}")).collect(), settings).await
    }

    /// Registers the nodes `names` and starts acting for them.
    pub async fn start_named(client: Client, names: Vec<String>, settings: HollowSettings) -> Result<Self> {
        let shared = Arc::new(Shared {
            client: client.clone(),
            settings,
            names,
            stopped: Mutex::default(),
            pods: Informer::new(),
            seen: Mutex::default(),
            queue: WorkQueue::new(),
        });
        shared.register_all().await?;
        let ours: HashSet<String> = shared.names.iter().cloned().collect();
        let queue = shared.queue.clone();
        shared.pods.on_change(move |change| {
            if let Change::Applied { new, .. } = change {
                if new.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| ours.contains(n)) {
                    queue.add(object_key(new.metadata.namespace.as_deref(), &new.name_any()));
                }
            }
        });
        let mut tasks = vec![shared.pods.start(Api::all(client.clone()), watcher::Config::default())];
        let worker = shared.clone();
        let workers = shared.settings.workers;
        tasks.push(tokio::spawn(run_workers("hollow-node", shared.queue.clone(), workers, move |key| {
            let worker = worker.clone();
            async move { worker.sync_pod(&key).await }
        })));
        let renewer = shared.clone();
        tasks.push(tokio::spawn(async move { renewer.renew_leases_forever().await }));
        let keeper = shared.clone();
        let nodes: Informer<Node> = Informer::new();
        nodes.on_change(move |change| {
            if let Change::Applied { new, .. } = change {
                keeper.keep_ready(new.clone());
            }
        });
        tasks.push(nodes.start(Api::all(client.clone()), watcher::Config::default()));
        shared.pods.wait_synced().await;
        Ok(Self { shared, _tasks: AbortOnDrop(tasks) })
    }

    pub fn names(&self) -> &[String] {
        &self.shared.names
    }

    /// The node's agent "dies": it stops renewing its Lease and handling pods.
    pub fn stop_node(&self, name: &str) {
        lock(&self.shared.stopped).insert(name.to_string());
    }

    /// The node's agent comes back, and reports its node Ready as a restarted
    /// kubelet does.
    pub fn resume_node(&self, name: &str) {
        lock(&self.shared.stopped).remove(name);
        self.shared.clone().report_ready(name.to_string());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ready_condition(status: &str, reason: &str, message: &str) -> NodeCondition {
    let now = client::time::now();
    NodeCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

impl Shared {
    fn is_stopped(&self, node: &str) -> bool {
        lock(&self.stopped).contains(node)
    }

    fn node_status(&self, index: usize) -> NodeStatus {
        let resources = BTreeMap::from([
            ("cpu".to_string(), Quantity(self.settings.cpu.clone())),
            ("memory".to_string(), Quantity(self.settings.memory.clone())),
            ("pods".to_string(), Quantity(self.settings.max_pods.to_string())),
        ]);
        NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![ready_condition("True", "KubeletReady", "kubelet is posting ready status")]),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: fake_ip(10, index) },
                NodeAddress { type_: "Hostname".into(), address: self.names[index].clone() },
            ]),
            node_info: Some(NodeSystemInfo {
                architecture: std::env::consts::ARCH.into(),
                operating_system: "linux".into(),
                kubelet_version: "v1.33.0-r8s-hollow".into(),
                kube_proxy_version: "v1.33.0-r8s-hollow".into(),
                container_runtime_version: "hollow://0".into(),
                os_image: "r8s hollow node".into(),
                kernel_version: "hollow".into(),
                machine_id: format!("hollow-{index}"),
                system_uuid: format!("hollow-{index}"),
                boot_id: format!("hollow-{index}"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Creates (or takes over) every node and its Lease, a few at a time.
    async fn register_all(&self) -> Result<()> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        stream::iter(0..self.names.len())
            .map(|index| self.register(index))
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn register(&self, index: usize) -> Result<()> {
        let name = &self.names[index];
        let mut labels = self.settings.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), std::env::consts::ARCH.into());
        labels.insert("node.r8s.io/hollow".into(), "true".into());
        let node = Node {
            metadata: ObjectMeta { name: Some(name.clone()), labels: Some(labels), ..Default::default() },
            spec: Some(NodeSpec::default()),
            status: Some(self.node_status(index)),
        };
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(error) if is_conflict(&error) => {}
            Err(error) => return Err(error.into()),
        }
        let status = Patch::Merge(json!({ "status": self.node_status(index) }));
        nodes.patch_status(name, &PatchParams::default(), &status).await?;
        let lease = Lease {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(NODE_LEASE_NAMESPACE.into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(client::time::now_micro()),
                ..Default::default()
            }),
        };
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(error) if is_conflict(&error) => self.renew(name).await,
            Err(error) => Err(error.into()),
        }
    }

    async fn renew(&self, name: &str) -> Result<()> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        let patch = Patch::Merge(json!({ "spec": { "renewTime": client::time::now_micro(), "holderIdentity": name } }));
        leases.patch(name, &PatchParams::default(), &patch).await?;
        Ok(())
    }

    /// Renews every running node's Lease once per interval, spread evenly over it.
    async fn renew_leases_forever(&self) {
        let gap = self.settings.lease_renew_interval.div_f64(self.names.len().max(1) as f64);
        let mut tick = tokio::time::interval(gap.max(Duration::from_micros(100)));
        loop {
            for name in &self.names {
                tick.tick().await;
                if self.is_stopped(name) {
                    continue;
                }
                if let Err(error) = self.renew(name).await {
                    tracing::debug!(%error, node = %name, "lease renewal failed");
                }
            }
        }
    }

    /// A running agent reports Ready again when the node lifecycle controller
    /// marked its node otherwise (as the kubelet's next status update would).
    fn keep_ready(self: &Arc<Self>, node: Arc<Node>) {
        let name = node.name_any();
        if !self.names.contains(&name) || self.is_stopped(&name) {
            return;
        }
        let ready = node.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if !ready {
            self.clone().report_ready(name);
        }
    }

    fn report_ready(self: Arc<Self>, name: String) {
        let Some(index) = self.names.iter().position(|n| *n == name) else { return };
        tokio::spawn(async move {
            let nodes: Api<Node> = Api::all(self.client.clone());
            let patch = Patch::Merge(json!({ "status": { "conditions": self.node_status(index).conditions } }));
            if let Err(error) = nodes.patch_status(&name, &PatchParams::default(), &patch).await {
                tracing::debug!(%error, node = %name, "could not report Ready");
            }
        });
    }

    /// Level-triggered pod work: let a deleted pod go, or start a new one once its
    /// delay has passed.
    async fn sync_pod(&self, key: &str) -> Result<Requeue> {
        let Some(pod) = self.pods.get_by_key(key) else {
            lock(&self.seen).remove(key);
            return Ok(Requeue::No);
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { return Ok(Requeue::No) };
        if self.is_stopped(&node) {
            // A dead agent does nothing; look again later in case it comes back.
            return Ok(Requeue::After(Duration::from_secs(1)));
        }
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        if pod.metadata.deletion_timestamp.is_some() {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
                ..Default::default()
            };
            return match api.delete(&pod.name_any(), &params).await {
                Err(error) if !is_not_found(&error) && !is_conflict(&error) => Err(error.into()),
                _ => Ok(Requeue::No),
            };
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Running") | Some("Succeeded") | Some("Failed")) {
            return Ok(Requeue::No);
        }
        let first_seen = *lock(&self.seen).entry(key.to_string()).or_insert_with(Instant::now);
        let waited = first_seen.elapsed();
        if waited < self.settings.ready_delay {
            return Ok(Requeue::After(self.settings.ready_delay - waited));
        }
        let index = self.names.iter().position(|n| *n == node).unwrap_or(0);
        let mut status = running_status(&pod, &fake_ip(10, index), &pod_ip(key));
        if let Some(exit_code) = exit_code(&pod) {
            finish(&mut status, exit_code);
        }
        let patch = Patch::Merge(json!({ "status": status }));
        match api.patch_status(&pod.name_any(), &PatchParams::default(), &patch).await {
            Err(error) if !is_not_found(&error) => Err(Error::from(error)),
            _ => Ok(Requeue::No),
        }
    }
}

/// The status of a pod whose containers all started and are ready.
fn running_status(pod: &Pod, host_ip: &str, pod_ip: &str) -> serde_json::Value {
    let now = client::time::now();
    let condition = |type_: &str| PodCondition {
        type_: type_.into(),
        status: "True".into(),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    };
    let containers: Vec<ContainerStatus> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: format!("hollow://{}", c.image.clone().unwrap_or_default()),
            container_id: Some(format!("hollow://{}/{}", pod.uid().unwrap_or_default(), c.name)),
            ready: true,
            started: Some(true),
            restart_count: 0,
            state: Some(ContainerState { running: Some(ContainerStateRunning { started_at: Some(now.clone()) }), ..Default::default() }),
            ..Default::default()
        })
        .collect();
    let conditions = ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"].map(condition);
    json!({
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{ "ip": host_ip }],
        "podIP": pod_ip,
        "podIPs": [PodIP { ip: pod_ip.to_string() }],
        "startTime": now,
        "containerStatuses": containers,
    })
}

pub const EXIT_CODE_ANNOTATION: &str = "hollow.r8s.io/exit-code";

/// For pods that run to completion, the exit code their containers end with.
fn exit_code(pod: &Pod) -> Option<i32> {
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    if policy == "Always" {
        return None;
    }
    let code = pod.annotations().get(EXIT_CODE_ANNOTATION).and_then(|c| c.parse().ok()).unwrap_or(0);
    // OnFailure would restart a failing container; only Never lets the pod fail.
    Some(if policy == "OnFailure" { 0 } else { code })
}

/// Turns a running status into a finished one.
fn finish(status: &mut serde_json::Value, exit_code: i32) {
    status["phase"] = json!(if exit_code == 0 { "Succeeded" } else { "Failed" });
    let now = client::time::now();
    if let Some(containers) = status["containerStatuses"].as_array_mut() {
        for container in containers {
            container["ready"] = json!(false);
            container["started"] = json!(false);
            container["state"] = json!({ "terminated": { "exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" }, "finishedAt": now } });
        }
    }
    if let Some(conditions) = status["conditions"].as_array_mut() {
        for condition in conditions.iter_mut().filter(|c| c["type"] == "Ready" || c["type"] == "ContainersReady") {
            condition["status"] = json!("False");
            condition["reason"] = json!("PodCompleted");
        }
    }
}

/// `<first>.x.y.z` for the `index`-th node.
fn fake_ip(first: u8, index: usize) -> String {
    format!("{first}.{}.{}.{}", (index >> 16) & 0xff, (index >> 8) & 0xff, index & 0xff)
}

/// A stable made-up pod address in 100.64.0.0/10, from the pod's key.
fn pod_ip(key: &str) -> String {
    let hash = key.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("100.{}.{}.{}", 64 + (hash >> 16 & 0x3f), (hash >> 8) & 0xff, hash & 0xff)
}
