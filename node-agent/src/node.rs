//! The Node object: registration, status (conditions with heartbeats, updated
//! when they change and at least every minute) and the Lease in
//! `kube-node-lease` that says the agent is alive.

use std::collections::BTreeMap;
use std::time::Duration;

use client::k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use client::k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSystemInfo, NodeStatus, DaemonEndpoint};
use client::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use client::kube::api::{Patch, PatchParams, PostParams};
use client::kube::{Api, Client};

use crate::cri::Cri;
use crate::host::Host;

/// The version the agent reports, as a kubelet of the Kubernetes it follows.
pub const AGENT_VERSION: &str = "v1.32.0-r8s";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Lease is renewed (the kubelet's 10 s).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const MAX_PODS: i64 = 110;

/// How often the agent renews and reports.
#[derive(Debug, Clone, Copy)]
pub struct NodeTiming {
    pub lease_renew: Duration,
    /// The first renewal waits this long (a fleet of hollow nodes spreads its renewals).
    pub first_lease_after: Duration,
    /// How often conditions are checked for a change (reading the Node).
    pub status_check: Duration,
    /// How often the status is written even when nothing changed.
    pub status_refresh: Duration,
}

impl Default for NodeTiming {
    fn default() -> Self {
        Self { lease_renew: LEASE_RENEW, first_lease_after: Duration::ZERO, status_check: Duration::from_secs(10), status_refresh: Duration::from_secs(60) }
    }
}

/// What the node says about itself.
#[derive(Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub ip: String,
    pub agent_port: u16,
    pub host: Host,
    /// Labels beyond the well-known ones (hostname, os, arch).
    pub labels: BTreeMap<String, String>,
}

fn quantity(value: impl ToString) -> Quantity {
    Quantity(value.to_string())
}

/// Capacity (and, with no reservations, allocatable) of the node.
pub fn capacity(host: &Host) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), quantity(host.cpus)),
        ("memory".to_string(), quantity(format!("{}Ki", host.memory_bytes / 1024))),
        ("ephemeral-storage".to_string(), quantity(format!("{}Ki", host.storage_bytes / 1024))),
        ("pods".to_string(), quantity(host.max_pods)),
    ])
}

/// The four conditions, with Kubernetes' reasons and messages. `runtime_ready`
/// false makes the node NotReady, as the kubelet does when its runtime is down.
pub fn conditions(runtime_ready: bool) -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    let ready = if runtime_ready {
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status")
    } else {
        ("Ready", "False", "KubeletNotReady", "container runtime is down")
    };
    vec![
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ready,
    ]
}

/// The node status: `old` supplies transition times for unchanged conditions.
pub fn node_status(identity: &NodeIdentity, runtime_version: &str, runtime_ready: bool, old: Option<&NodeStatus>, now: &Time) -> NodeStatus {
    let host = &identity.host;
    let conditions = conditions(runtime_ready)
        .into_iter()
        .map(|(kind, status, reason, message)| {
            let transition = old
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .find(|c| c.type_ == kind && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            NodeCondition {
                type_: kind.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(transition),
            }
        })
        .collect();
    NodeStatus {
        capacity: Some(capacity(host)),
        allocatable: Some(capacity(host)),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: identity.ip.clone() },
            NodeAddress { type_: "Hostname".into(), address: identity.name.clone() },
        ]),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(identity.agent_port) }) }),
        node_info: Some(NodeSystemInfo {
            architecture: host.architecture.into(),
            boot_id: host.boot_id.clone(),
            container_runtime_version: runtime_version.into(),
            kernel_version: host.kernel.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: AGENT_VERSION.into(),
            machine_id: host.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: host.os_image.clone(),
            system_uuid: host.machine_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Node as first registered.
pub fn node_object(identity: &NodeIdentity) -> Node {
    let mut labels = identity.labels.clone();
    labels.extend([
        ("kubernetes.io/hostname".to_string(), identity.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), identity.host.architecture.to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), identity.host.architecture.to_string()),
    ]);
    Node { metadata: ObjectMeta { name: Some(identity.name.clone()), labels: Some(labels), ..Default::default() }, ..Default::default() }
}

/// Registers the Node if needed, then waits until it has `spec.podCIDR` and
/// returns it. API errors are logged and retried.
pub async fn wait_for_pod_cidr(client: Client, identity: &NodeIdentity) -> String {
    let nodes: Api<Node> = Api::all(client);
    let mut announced = false;
    loop {
        let node = match nodes.get_opt(&identity.name).await {
            Ok(Some(node)) => Some(node),
            Ok(None) => {
                tracing::info!(node = %identity.name, "registering the node");
                nodes.create(&PostParams::default(), &node_object(identity)).await.map_err(|e| tracing::warn!(error = %e, "could not register the node")).ok()
            }
            Err(error) => {
                tracing::warn!(%error, node = %identity.name, "could not read the node");
                None
            }
        };
        if let Some(cidr) = node.and_then(|n| n.spec).and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
            return cidr;
        }
        if !announced {
            tracing::info!(node = %identity.name, "waiting for the node's pod CIDR (given by a controller manager run with --allocate-node-cidrs)");
            announced = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Keeps the Node registered and its status current, and the Lease renewed.
/// Runs until cancelled; API errors are logged and retried.
pub async fn maintain(client: Client, cri: Cri, identity: NodeIdentity, timing: NodeTiming) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let mut last_status: Option<(NodeStatus, tokio::time::Instant)> = None;
    let mut next_lease = tokio::time::Instant::now() + timing.first_lease_after;
    let mut lease: Option<Lease> = None;
    let mut tick = tokio::time::interval(timing.lease_renew.min(Duration::from_secs(1)));
    loop {
        tick.tick().await;
        let now = tokio::time::Instant::now();
        let due = last_status.as_ref().is_none_or(|(_, at)| now.duration_since(*at) >= timing.status_check);
        if due {
            match sync_status(&nodes, &cri, &identity, last_status.as_ref().map(|(s, _)| s), timing.status_refresh).await {
                Ok(Some(status)) => last_status = Some((status, now)),
                Ok(None) => {
                    if let Some((_, at)) = last_status.as_mut() {
                        *at = now;
                    }
                }
                Err(error) => tracing::warn!(%error, node = %identity.name, "could not update the node status"),
            }
        }
        if now >= next_lease && last_status.is_some() {
            match renew_lease(&leases, &nodes, &identity.name, lease.take()).await {
                Ok(renewed) => {
                    lease = Some(renewed);
                    next_lease = now + timing.lease_renew;
                }
                Err(error) => tracing::warn!(%error, node = %identity.name, "could not renew the node lease"),
            }
        }
    }
}

/// Registers the node if needed and writes its status when it changed or when
/// the last write is a minute old. Returns the status written, if any.
async fn sync_status(nodes: &Api<Node>, cri: &Cri, identity: &NodeIdentity, last: Option<&NodeStatus>, refresh: Duration) -> Result<Option<NodeStatus>, client::kube::Error> {
    let runtime_ready = cri.ready().await.unwrap_or(false);
    let runtime_version = cri.version().await.unwrap_or_default();
    let node = match nodes.get_opt(&identity.name).await? {
        Some(node) => node,
        None => {
            tracing::info!(node = %identity.name, "registering the node");
            nodes.create(&PostParams::default(), &node_object(identity)).await?
        }
    };
    let current = node.status.as_ref();
    let now = client::time::now();
    let status = node_status(identity, &runtime_version, runtime_ready, current, &now);
    let stale = current
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .is_none_or(|beat| client::time::seconds_between(&beat.0, &now.0) >= refresh.as_secs_f64());
    if !stale && last.is_some_and(|last| same_ignoring_heartbeats(last, &status)) && current.is_some_and(|c| same_ignoring_heartbeats(c, &status)) {
        return Ok(None);
    }
    let patch = serde_json::json!({ "status": status });
    nodes.patch_status(&identity.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(Some(status))
}

fn same_ignoring_heartbeats(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for condition in s.conditions.iter_mut().flatten() {
            condition.last_heartbeat_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

/// Creates or renews the node's Lease (owned by the Node, as the kubelet
/// does); returns it as written. The last written one is renewed without
/// reading it first, as the kubelet does; it is read again only when
/// someone else changed it meanwhile (a conflict).
async fn renew_lease(leases: &Api<Lease>, nodes: &Api<Node>, name: &str, last: Option<Lease>) -> Result<Lease, client::kube::Error> {
    let now = client::time::now_micro();
    let renew = |mut lease: Lease| {
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.renew_time = Some(now.clone());
        spec.holder_identity = Some(name.to_string());
        spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
        lease
    };
    if let Some(last) = last {
        match leases.replace(name, &PostParams::default(), &renew(last)).await {
            Err(error) if client::is_conflict(&error) || client::is_not_found(&error) => {}
            written => return written,
        }
    }
    match leases.get_opt(name).await? {
        Some(lease) => leases.replace(name, &PostParams::default(), &renew(lease)).await,
        None => {
            let owner = nodes.get(name).await?;
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(LEASE_NAMESPACE.to_string()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: name.to_string(),
                        uid: owner.metadata.uid.unwrap_or_default(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.to_string()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await
        }
    }
}
