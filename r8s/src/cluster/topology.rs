//! The node network of a cluster: a hub namespace with a bridge, and one
//! namespace per node plugged into it by a veth pair.
//!
//! ```text
//!  r8s-C (hub)                                   r8s-C-n<i> (node i)
//!  lo up, r8sbr0 172.30.0.1/24 (API server)
//!    └── r8sv<i> ════════ veth ═════════════════ eth0 172.30.0.(10+i)/24
//!                                                default via 172.30.0.1
//! ```
//!
//! Nothing is made in the machine's own namespace; every cluster has its own
//! hub, so clusters can use the same addresses side by side.

use std::net::Ipv4Addr;

use anyhow::Context;
use ipnet::Ipv4Net;
use runtime::network::netlink::Netlink;
use runtime::network::NetNs;

use super::{Layout, NodeSlot};
use crate::netns::netns_path;

pub const BRIDGE: &str = "r8sbr0";
pub const HUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
const PREFIX_LEN: u8 = 24;

/// The node network: the hub and every node's eth0.
pub fn node_network() -> Ipv4Net {
    Ipv4Net::new(HUB_ADDRESS, PREFIX_LEN).expect("a valid prefix").trunc()
}
const MTU: u32 = 1500;
/// Node interfaces in their namespaces.
pub const NODE_INTERFACE: &str = "eth0";
/// The most nodes the /24 holds with addresses .11 and up.
pub const MAX_NODES: usize = 200;

/// The address of node `i` (1-based).
pub fn node_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, 10 + i as u8)
}

/// Makes the hub and its bridge. Each namespace is recorded before it is
/// made, so that `r8s down` finds it whatever happens next.
pub async fn create_hub(layout: &Layout) -> anyhow::Result<(NetNs, Netlink, u32)> {
    let name = layout.hub_netns();
    layout.record_netns(&name)?;
    let hub = NetNs::create(netns_path(&name)).with_context(|| format!("creating network namespace {name}"))?;
    let netlink = Netlink::connect(Some(hub.path())).await?;
    netlink.set_up("lo").await?;
    let bridge = netlink.ensure_bridge(BRIDGE, MTU).await?;
    netlink.add_address(bridge, Ipv4Net::new(HUB_ADDRESS, PREFIX_LEN)?).await?;
    Ok((hub, netlink, bridge))
}

/// Makes a node's namespace and plugs it into the hub's bridge.
pub async fn create_node(layout: &Layout, hub: &Netlink, bridge: u32, node: &NodeSlot, index: usize) -> anyhow::Result<()> {
    let name = layout.node_netns(node);
    layout.record_netns(&name)?;
    let netns = NetNs::create(netns_path(&name)).with_context(|| format!("creating network namespace {name}"))?;
    let netns_file = std::fs::File::open(netns.path()).with_context(|| format!("opening {}", netns.path().display()))?;
    hub.add_veth(&format!("r8sv{index}"), Some(bridge), NODE_INTERFACE, &netns_file, MTU).await?;
    let netlink = Netlink::connect(Some(netns.path())).await?;
    netlink.set_up("lo").await?;
    let uplink = netlink.set_up(NODE_INTERFACE).await?;
    netlink.add_address(uplink, Ipv4Net::new(node.address, PREFIX_LEN)?).await?;
    netlink.add_default_route(HUB_ADDRESS, uplink).await?;
    Ok(())
}
