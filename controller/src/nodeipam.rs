//! The node IPAM controller (kube-controller-manager's `--allocate-node-cidrs`
//! range allocator): every Node without `spec.podCIDR` gets the lowest free
//! subnet of the cluster CIDR (a /24 of 10.244.0.0/16 by default) in
//! `spec.podCIDR` and `spec.podCIDRs`.
//!
//! The Nodes themselves are the ledger: what is in use is read from the node
//! cache on every pass, so a restarted controller never hands out a subnet
//! twice, and a deleted Node's subnet is free again once it is gone. When the
//! cluster CIDR is exhausted the Node keeps no CIDR and gets a
//! `CIDRNotAvailable` event, as in Kubernetes.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use client::events::{reference_to, EventType};

use crate::{Error, Result, SharedContext};

/// The range the controller hands subnets out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `--cluster-cidr` (default 10.244.0.0/16).
    pub cluster_cidr: Ipv4Net,
    /// `--node-cidr-mask-size`: each node's subnet prefix length (default 24).
    pub node_mask: u8,
}

impl Settings {
    /// Checks that a node subnet fits in the cluster CIDR.
    pub fn new(cluster_cidr: Ipv4Net, node_mask: u8) -> Result<Self> {
        if node_mask > 30 || node_mask < cluster_cidr.prefix_len() {
            return Err(Error::Invalid(format!(
                "node CIDR mask size {node_mask} must be between the cluster CIDR's prefix length {} and 30",
                cluster_cidr.prefix_len()
            )));
        }
        Ok(Self { cluster_cidr: cluster_cidr.trunc(), node_mask })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self { cluster_cidr: Ipv4Net::new(Ipv4Addr::new(10, 244, 0, 0), 16).expect("a valid prefix"), node_mask: 24 }
    }
}

/// The lowest node subnet of `settings` that is not in `used`, or `None` when
/// every one is taken. Subnets in `used` outside the cluster CIDR are ignored.
pub fn next_free(settings: &Settings, used: &BTreeSet<Ipv4Net>) -> Option<Ipv4Net> {
    let subnets = settings.cluster_cidr.subnets(settings.node_mask).ok()?;
    subnets.into_iter().find(|subnet| !used.iter().any(|taken| taken.contains(subnet) || subnet.contains(taken)))
}

fn has_cidr(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).is_some_and(|c| !c.is_empty())
}

pub struct NodeIpamController {
    ctx: SharedContext,
    settings: Settings,
    /// Set by node changes; the controller runs a pass when woken.
    wake: Arc<tokio::sync::Notify>,
}

impl NodeIpamController {
    pub fn new(ctx: SharedContext, settings: Settings) -> Arc<Self> {
        let wake = Arc::new(tokio::sync::Notify::new());
        let notify = wake.clone();
        ctx.informers.nodes.on_change(move |_| notify.notify_one());
        Arc::new(Self { ctx, settings, wake })
    }

    /// Allocates on every node change, and every few seconds to retry failures.
    pub async fn run(self: Arc<Self>) {
        tracing::info!(cluster_cidr = %self.settings.cluster_cidr, mask = self.settings.node_mask, "node IPAM started");
        // Subnets patched onto nodes that the cache does not show yet: kept so
        // that the next pass, running before the watch delivers, does not give
        // them out again.
        let mut pending: HashMap<String, Ipv4Net> = HashMap::new();
        let mut exhausted_reported: BTreeSet<String> = BTreeSet::new();
        loop {
            if let Err(error) = self.allocate(&mut pending, &mut exhausted_reported).await {
                tracing::warn!(%error, "node CIDR allocation failed; retrying");
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
        }
    }

    async fn allocate(&self, pending: &mut HashMap<String, Ipv4Net>, exhausted_reported: &mut BTreeSet<String>) -> Result<()> {
        let nodes = self.ctx.informers.nodes.list();
        pending.retain(|name, _| nodes.iter().any(|n| n.name_any() == *name && !has_cidr(n)));
        let mut used: BTreeSet<Ipv4Net> = nodes.iter().flat_map(|n| api::node::pod_cidrs(n)).collect();
        used.extend(pending.values().copied());
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let mut waiting: Vec<&Arc<Node>> = nodes.iter().filter(|n| !has_cidr(n) && !pending.contains_key(&n.name_any())).collect();
        waiting.sort_by_key(|n| n.name_any());
        for node in waiting {
            let name = node.name_any();
            let Some(subnet) = next_free(&self.settings, &used) else {
                if exhausted_reported.insert(name.clone()) {
                    tracing::warn!(node = %name, cluster_cidr = %self.settings.cluster_cidr, "no pod CIDR left for the node");
                    let message = format!("Node {name} status is now: CIDRNotAvailable");
                    self.ctx.recorder.emit(reference_to(node.as_ref()), EventType::Normal, "CIDRNotAvailable", message);
                }
                continue;
            };
            let patch = json!({ "spec": { "podCIDR": subnet.to_string(), "podCIDRs": [subnet.to_string()] } });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {
                    tracing::info!(node = %name, pod_cidr = %subnet, "allocated the node's pod CIDR");
                    exhausted_reported.remove(&name);
                    used.insert(subnet);
                    pending.insert(name, subnet);
                }
                Err(error) if client::is_not_found(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn hands_out_the_lowest_free_subnet() {
        let settings = Settings::default();
        let mut used = BTreeSet::new();
        assert_eq!(next_free(&settings, &used), Some(net("10.244.0.0/24")));
        used.insert(net("10.244.0.0/24"));
        used.insert(net("10.244.2.0/24"));
        assert_eq!(next_free(&settings, &used), Some(net("10.244.1.0/24")));
        used.insert(net("10.244.1.0/24"));
        assert_eq!(next_free(&settings, &used), Some(net("10.244.3.0/24")));
    }

    #[test]
    fn a_released_subnet_is_given_out_again() {
        let settings = Settings::default();
        let mut used: BTreeSet<Ipv4Net> = ["10.244.0.0/24", "10.244.1.0/24"].into_iter().map(net).collect();
        used.remove(&net("10.244.0.0/24"));
        assert_eq!(next_free(&settings, &used), Some(net("10.244.0.0/24")));
    }

    #[test]
    fn exhaustion_is_none_never_a_duplicate() {
        let settings = Settings::new(net("10.9.0.0/23"), 24).unwrap();
        let mut used = BTreeSet::new();
        for expected in ["10.9.0.0/24", "10.9.1.0/24"] {
            let subnet = next_free(&settings, &used).unwrap();
            assert_eq!(subnet, net(expected));
            used.insert(subnet);
        }
        assert_eq!(next_free(&settings, &used), None);
    }

    #[test]
    fn overlapping_cidrs_in_use_are_avoided() {
        let settings = Settings::default();
        // A node that (by hand) holds a larger block covering the first subnets.
        let used: BTreeSet<Ipv4Net> = [net("10.244.0.0/23")].into_iter().collect();
        assert_eq!(next_free(&settings, &used), Some(net("10.244.2.0/24")));
        // And one outside the cluster CIDR changes nothing.
        let outside: BTreeSet<Ipv4Net> = [net("10.88.0.0/16")].into_iter().collect();
        assert_eq!(next_free(&settings, &outside), Some(net("10.244.0.0/24")));
    }

    #[test]
    fn bad_mask_sizes_are_refused() {
        assert!(Settings::new(net("10.244.0.0/16"), 8).is_err());
        assert!(Settings::new(net("10.244.0.0/16"), 31).is_err());
        assert_eq!(Settings::new(net("10.244.7.0/16"), 24).unwrap().cluster_cidr, net("10.244.0.0/16"));
    }

    #[test]
    fn a_node_with_pod_cidr_has_one() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.3.0/24"}})).unwrap();
        assert!(has_cidr(&node));
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"podCIDR": ""}})).unwrap();
        assert!(!has_cidr(&bare));
    }
}
