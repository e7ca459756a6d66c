//! The scheduler's view of the cluster: per node, the pods bound (or assumed) to
//! it and what they add up to. Assumed pods are those the scheduler has picked a
//! node for but whose binding the watch has not confirmed yet; counting them is
//! what keeps fast scheduling from double-booking a node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::resources::{pod_nonzero_requests, pod_requests, Resources};

/// A host port a pod takes on its node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub port: i32,
    pub ip: String,
}

impl HostPort {
    /// Ports conflict on the same protocol and number when either binds all
    /// addresses or both bind the same one.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.protocol == other.protocol && self.port == other.port && (wildcard(&self.ip) || wildcard(&other.ip) || self.ip == other.ip)
    }
}

/// A pod with what the scheduler computes about it once.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub key: String,
    pub namespace: String,
    pub requests: Resources,
    /// CPU and memory with defaults for containers that request none (for scores).
    pub nonzero: (i64, i64),
    pub host_ports: Vec<HostPort>,
    /// The uid of the pod's controller (its ReplicaSet, Job, ...), for spreading.
    pub owner_uid: Option<String>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let key = client::object_key(Some(&namespace), pod.metadata.name.as_deref().unwrap_or_default());
        let host_ports = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|port| *port > 0)?;
                Some(HostPort {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port,
                    ip: p.host_ip.clone().unwrap_or_default(),
                })
            })
            .collect();
        Self {
            key,
            namespace,
            requests: pod_requests(&pod),
            nonzero: pod_nonzero_requests(&pod),
            host_ports,
            owner_uid: api::owner::controller_of(&pod.metadata).map(|o| o.uid.clone()),
            pod,
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    pub fn has_required_anti_affinity(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .is_some_and(|terms| !terms.is_empty())
    }
}

/// One node and what is placed on it.
#[derive(Debug, Default, Clone)]
pub struct NodeInfo {
    pub name: String,
    /// `None` while pods point at a node the cache has not seen (yet, or any more).
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    pub nonzero_requested: (i64, i64),
    pub pods: HashMap<String, Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// `spec.unschedulable` (cordoned) and `spec.taints`, kept here because
    /// filters read them for every node and pod, and the Node object is a
    /// pointer (and a cache miss) away.
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    /// Pods per controller uid, for spreading the pods of one owner.
    pub owner_counts: HashMap<String, usize>,
}

static NO_NODE_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl NodeInfo {
    fn new(name: &str) -> Self {
        Self { name: name.to_string(), ..Default::default() }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref()).unwrap_or(&NO_NODE_LABELS)
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.clone()).unwrap_or_default();
        self.allowed_pods = allocatable.get("pods").and_then(|q| api::quantity::Quantity::parse(&q.0).ok()).map_or(110, |q| q.value());
        self.allocatable = Resources::from_map(&allocatable);
        self.unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        self.taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        self.node = Some(node);
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.nonzero_requested.0 += pod.nonzero.0;
        self.nonzero_requested.1 += pod.nonzero.1;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner_uid {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
        if let Some(old) = self.pods.insert(pod.key.clone(), pod) {
            self.forget_totals(&old);
        }
    }

    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let pod = self.pods.remove(key)?;
        self.forget_totals(&pod);
        Some(pod)
    }

    fn forget_totals(&mut self, pod: &PodInfo) {
        self.requested.sub(&pod.requests);
        self.nonzero_requested.0 -= pod.nonzero.0;
        self.nonzero_requested.1 -= pod.nonzero.1;
        for port in &pod.host_ports {
            if let Some(index) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(index);
            }
        }
        if let Some(owner) = &pod.owner_uid {
            if let Some(count) = self.owner_counts.get_mut(owner) {
                *count -= 1;
                if *count == 0 {
                    self.owner_counts.remove(owner);
                }
            }
        }
    }
}

#[derive(Debug)]
struct Placement {
    node: String,
    /// Set while only the scheduler knows: when it assumed the pod.
    assumed_at: Option<Instant>,
}

/// All nodes and placed pods.
#[derive(Debug, Default)]
pub struct Cache {
    /// Every node known: those that exist, and those only named by placed pods.
    /// A vector, so that filtering thousands of nodes per pod walks memory in
    /// order instead of hashing a name per node.
    nodes: Vec<NodeInfo>,
    /// Where each node's entry is in `nodes`.
    slots: HashMap<String, usize>,
    /// Entries of nodes that exist, in a stable order for round-robin search.
    order: Vec<usize>,
    placements: HashMap<String, Placement>,
    /// Keys of placed pods with required anti-affinity (they constrain every pod).
    anti_affinity_pods: HashMap<String, String>,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let slot = self.slot_for(&name);
        if self.nodes[slot].node.is_none() {
            self.order.push(slot);
        }
        self.nodes[slot].set_node(node);
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(&slot) = self.slots.get(name) else { return };
        self.order.retain(|&s| s != slot);
        self.nodes[slot].node = None;
        self.forget_if_unused(slot);
    }

    /// The entry for `name`, made empty if there is none.
    fn slot_for(&mut self, name: &str) -> usize {
        if let Some(&slot) = self.slots.get(name) {
            return slot;
        }
        self.nodes.push(NodeInfo::new(name));
        self.slots.insert(name.to_string(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Drops the entry of a node that neither exists nor has pods; the last
    /// entry moves into its place.
    fn forget_if_unused(&mut self, slot: usize) {
        if self.nodes[slot].node.is_some() || !self.nodes[slot].pods.is_empty() {
            return;
        }
        let last = self.nodes.len() - 1;
        let gone = self.nodes.swap_remove(slot);
        self.slots.remove(&gone.name);
        if slot != last {
            self.slots.insert(self.nodes[slot].name.clone(), slot);
            if let Some(entry) = self.order.iter_mut().find(|s| **s == last) {
                *entry = slot;
            }
        }
    }

    /// How many nodes exist.
    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// The existing node at `position` in search order (`position < node_count()`).
    pub fn node_at(&self, position: usize) -> &NodeInfo {
        &self.nodes[self.order[position]]
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.slots.get(name).map(|&slot| &self.nodes[slot]).filter(|n| n.node.is_some())
    }

    /// Nodes that exist, in search order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.order.iter().map(|&slot| &self.nodes[slot])
    }

    /// A pod the watch shows bound to `node` (confirming it if it was assumed).
    pub fn add_bound_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.key);
        self.place(pod, node, None);
    }

    /// A pod the scheduler chose `node` for, before the binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.key);
        self.place(pod, node, Some(Instant::now()));
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed_at: Option<Instant>) {
        if pod.has_required_anti_affinity() {
            self.anti_affinity_pods.insert(pod.key.clone(), node.to_string());
        }
        self.placements.insert(pod.key.clone(), Placement { node: node.to_string(), assumed_at });
        let slot = self.slot_for(node);
        self.nodes[slot].add_pod(pod);
    }

    pub fn is_placed(&self, key: &str) -> bool {
        self.placements.contains_key(key)
    }

    /// Removes a pod (deleted, finished, or a binding that failed).
    pub fn remove_pod(&mut self, key: &str) {
        let Some(placement) = self.placements.remove(key) else { return };
        self.anti_affinity_pods.remove(key);
        if let Some(&slot) = self.slots.get(&placement.node) {
            self.nodes[slot].remove_pod(key);
            self.forget_if_unused(slot);
        }
    }

    /// Drops assumed pods whose binding was never confirmed within `ttl`.
    pub fn expire_assumed(&mut self, ttl: Duration) {
        let expired: Vec<String> = self
            .placements
            .iter()
            .filter(|(_, p)| p.assumed_at.is_some_and(|at| at.elapsed() > ttl))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.remove_pod(&key);
        }
    }

    /// Placed pods with required anti-affinity, with their nodes.
    pub fn pods_with_anti_affinity(&self) -> impl Iterator<Item = (&PodInfo, &NodeInfo)> {
        self.anti_affinity_pods.iter().filter_map(|(key, node)| {
            let info = &self.nodes[*self.slots.get(node)?];
            Some((info.pods.get(key)?.as_ref(), info))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    fn names(cache: &Cache) -> Vec<&str> {
        cache.nodes().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn removed_nodes_leave_the_search_and_keep_their_pods_until_those_go() {
        let mut cache = cache_with(vec![node("a", "1", "1Gi", &[]), node("b", "1", "1Gi", &[]), node("c", "1", "1Gi", &[])]);
        let pod = Arc::new(info(pod("p", "100m", "10Mi")));
        cache.add_bound_pod(pod.clone(), "a");

        cache.remove_node("a");
        assert_eq!(names(&cache), ["b", "c"]);
        assert!(cache.node("a").is_none(), "a node that is gone is not offered");
        assert!(cache.is_placed(&pod.key), "its pod is still counted until the watch says it went");

        // The pod goes: the entry goes, and the others are still found by name.
        cache.remove_pod(&pod.key);
        cache.remove_node("b");
        assert_eq!(names(&cache), ["c"]);
        assert_eq!(cache.node_count(), 1);
        assert_eq!(cache.node_at(0).name, "c");
        assert_eq!(cache.node("c").map(|n| n.name.as_str()), Some("c"));

        // A node that comes back is searched again, with what was placed on it.
        cache.add_bound_pod(pod.clone(), "b");
        cache.set_node(Arc::new(node("b", "1", "1Gi", &[])));
        assert_eq!(names(&cache), ["c", "b"]);
        assert_eq!(cache.node("b").map(|n| n.pods.len()), Some(1));
    }
}
