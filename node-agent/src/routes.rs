//! Pod networking between nodes, host-gateway style: the agent keeps, in its
//! node's network namespace, one route per other node to that node's
//! `spec.podCIDR` through the node's InternalIP, in step with the Node
//! objects (a node that goes away takes its route with it).
//!
//! The routes carry a route protocol of r8s's own ([`ROUTE_PROTOCOL`]), so the
//! agent finds the routes it made and never touches any other, and only pod
//! CIDRs inside the cluster CIDR are routed.
//!
//! When the node is a network namespace of `r8s up --nodes`, the agent also
//! masquerades pod traffic that leaves through the node's uplink toward
//! anything outside the cluster CIDR (the hub, the API server), so that the
//! hub needs no routes to pods; pod-to-pod traffic keeps its addresses.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use client::informer::Informer;
use client::k8s_openapi::api::core::v1::Node;
use client::kube::{Api, Client, ResourceExt};
use ipnet::Ipv4Net;
use runtime::network::netlink::Netlink;

/// The route protocol number on the routes the agent makes (`ip route`
/// shows `proto 82`); unused by the kernel and by routing daemons.
pub const ROUTE_PROTOCOL: u8 = 82;
/// The nftables table shared with the runtime's hostPort rules and the proxy.
const NFT_TABLE: &str = "r8s";
const EGRESS_CHAIN: &str = "pod_egress";

/// What the agent routes and masquerades.
#[derive(Debug, Clone)]
pub struct PodRoutes {
    /// Only pod CIDRs inside it are routed.
    pub cluster_cidr: Ipv4Net,
    /// Masquerade pods' traffic leaving through this interface toward
    /// addresses outside the cluster CIDR (only for nodes that are namespaces).
    pub masquerade_interface: Option<String>,
}

/// The routes this node should have: every other node's pod CIDRs inside the
/// cluster CIDR, through that node's InternalIP.
pub fn desired_routes(nodes: &[Node], me: &str, cluster_cidr: Ipv4Net) -> BTreeMap<Ipv4Net, Ipv4Addr> {
    let mut routes = BTreeMap::new();
    for node in nodes.iter().filter(|n| n.name_any() != me) {
        let Some(ip) = internal_ip(node) else { continue };
        for cidr in api::node::pod_cidrs(node).into_iter().filter(|c| cluster_cidr.contains(c)) {
            routes.insert(cidr, ip);
        }
    }
    routes
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses.iter().find(|a| a.type_ == "InternalIP").and_then(|a| a.address.parse().ok())
}

/// Keeps the routes (and the masquerade rule) in step with the Nodes until cancelled.
pub async fn maintain(client: Client, me: String, config: PodRoutes) {
    let nodes: Informer<Node> = Informer::new();
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = wake.clone();
    nodes.on_change(move |_| notify.notify_one());
    let _watch = client::AbortOnDrop(vec![nodes.start(Api::all(client), Default::default())]);
    nodes.wait_synced().await;
    let netlink = loop {
        match Netlink::connect(None).await {
            Ok(netlink) => break netlink,
            Err(error) => tracing::warn!(%error, "cannot open netlink for pod routes; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    let mut masquerading: Option<Ipv4Net> = None;
    loop {
        let all: Vec<Node> = nodes.list().iter().map(|n| n.as_ref().clone()).collect();
        if let Err(error) = sync_routes(&netlink, &desired_routes(&all, &me, config.cluster_cidr)).await {
            tracing::warn!(%error, "could not update the routes to other nodes' pods");
        }
        let own = all.iter().find(|n| n.name_any() == me).and_then(|n| api::node::pod_cidrs(n).into_iter().next());
        if let (Some(interface), Some(pod_cidr)) = (&config.masquerade_interface, own) {
            if masquerading != Some(pod_cidr) {
                match install_masquerade(pod_cidr, config.cluster_cidr, interface) {
                    Ok(()) => masquerading = Some(pod_cidr),
                    Err(error) => tracing::warn!(%error, "could not install the pod egress masquerade"),
                }
            }
        }
        // Woken by node changes; the period repairs routes removed by hand.
        let _ = tokio::time::timeout(Duration::from_secs(10), wake.notified()).await;
    }
}

/// Adds missing or changed routes and deletes the agent's routes that are no
/// longer wanted.
async fn sync_routes(netlink: &Netlink, wanted: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<(), runtime::network::NetlinkError> {
    let present: BTreeMap<Ipv4Net, Option<Ipv4Addr>> = netlink.routes_with_protocol(ROUTE_PROTOCOL).await?.into_iter().collect();
    for (destination, gateway) in wanted {
        if present.get(destination) != Some(&Some(*gateway)) {
            netlink.replace_route(*destination, *gateway, ROUTE_PROTOCOL).await?;
            tracing::info!(%destination, %gateway, "route to another node's pods");
        }
    }
    for destination in present.keys().filter(|d| !wanted.contains_key(d)) {
        netlink.delete_route(*destination, ROUTE_PROTOCOL).await?;
        tracing::info!(%destination, "removed the route of a node that left");
    }
    Ok(())
}

/// The rules of the agent's own chain in the `ip r8s` table; the chain is
/// flushed and refilled, nothing else in the table is touched.
pub fn masquerade_script(pod_cidr: Ipv4Net, cluster_cidr: Ipv4Net, interface: &str) -> String {
    format!(
        "add table ip {NFT_TABLE}
add chain ip {NFT_TABLE} {EGRESS_CHAIN} {{ type nat hook postrouting priority 100; }}
flush chain ip {NFT_TABLE} {EGRESS_CHAIN}
add rule ip {NFT_TABLE} {EGRESS_CHAIN} ip saddr {pod_cidr} ip daddr != {cluster_cidr} oifname \"{interface}\" masquerade
"
    )
}

fn install_masquerade(pod_cidr: Ipv4Net, cluster_cidr: Ipv4Net, interface: &str) -> std::io::Result<()> {
    let mut child = Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().expect("piped stdin").write_all(masquerade_script(pod_cidr, cluster_cidr, interface).as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!("nft: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    tracing::info!(%pod_cidr, %interface, "pods' traffic to outside the cluster is masqueraded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        let mut value = serde_json::json!({"metadata": {"name": name}, "spec": {}, "status": {}});
        if let Some(cidr) = cidr {
            value["spec"] = serde_json::json!({"podCIDR": cidr, "podCIDRs": [cidr]});
        }
        if let Some(ip) = ip {
            value["status"] = serde_json::json!({"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]});
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn routes_go_to_other_nodes_pod_cidrs_inside_the_cluster_cidr() {
        let cluster: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        let nodes = vec![
            node("n1", Some("10.244.0.0/24"), Some("172.30.0.11")),
            node("n2", Some("10.244.1.0/24"), Some("172.30.0.12")),
            node("no-cidr", None, Some("172.30.0.13")),
            node("no-ip", Some("10.244.3.0/24"), None),
            node("outside", Some("192.168.5.0/24"), Some("172.30.0.15")),
        ];
        let routes = desired_routes(&nodes, "n1", cluster);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[&"10.244.1.0/24".parse().unwrap()], "172.30.0.12".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn masquerade_spares_traffic_inside_the_cluster() {
        let script = masquerade_script("10.244.1.0/24".parse().unwrap(), "10.244.0.0/16".parse().unwrap(), "eth0");
        assert!(script.contains("ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 oifname \"eth0\" masquerade"));
        assert!(!script.contains("delete table") && !script.contains("flush table"));
    }
}
