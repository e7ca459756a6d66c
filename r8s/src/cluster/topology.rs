//! The node network of a cluster of `--nodes N`: a hub namespace with a
//! bridge, and one namespace per node plugged into it by a veth pair.
//!
//! ```text
//!  hub                                           node i
//!  lo up, r8sbr0 172.30.0.1/24 (server 1)
//!               172.30.0.2/24 (server 2), ...
//!    └── r8sv<i> ════════ veth ═════════════════ eth0 172.30.0.(10+i)/24
//!                                                default via 172.30.0.1
//! ```
//!
//! Nothing is made in the machine's own namespace; every cluster has its own
//! hub, so clusters can use the same addresses side by side. The namespaces
//! are pinned in the cluster's run directory, and linked from `/run/netns`
//! so that `ip netns exec r8s-C-n1 ...` works; a link that something hides
//! later (a bind mount of `/run/netns`) costs nothing, unlike a pin.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context;
use ipnet::Ipv4Net;
use runtime::network::netlink::Netlink;
use runtime::network::NetNs;

use super::{Layout, NodeSlot, ServerSlot};
use crate::netns::netns_path;

pub const BRIDGE: &str = "r8sbr0";
pub const HUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
const PREFIX_LEN: u8 = 24;
/// The most API servers: addresses .1 to .9, below the nodes'.
pub const MAX_SERVERS: usize = 9;

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

/// The address of server `i` (1-based): the first is the hub's gateway.
pub fn server_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, i as u8)
}

/// Whether every namespace of the network is pinned and alive: then a
/// cluster resumed after a crash keeps it (and the pods in it).
pub fn is_complete(layout: &Layout, nodes: &[NodeSlot]) -> bool {
    std::iter::once(layout.hub_netns_path()).chain(nodes.iter().map(|n| layout.node_netns_path(n))).all(|path| is_pinned_namespace(&path))
}

/// Whether `path` is a mounted network namespace (nsfs), not a plain file
/// left where one was.
pub fn is_pinned_namespace(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: an all-zero statfs is a valid value of that plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a buffer of the type statfs(2) fills.
    let found = unsafe { libc::statfs(path.as_ptr(), &mut fs) } == 0;
    found && fs.f_type as i64 == NSFS_MAGIC
}

/// Pins a new namespace at `pin` and links `/run/netns/<name>` to it. Both
/// are recorded first, so that `r8s down` finds them whatever happens next.
fn create_namespace(layout: &Layout, pin: &Path, name: &str) -> anyhow::Result<NetNs> {
    layout.record_netns(name)?;
    let netns = NetNs::create(pin).with_context(|| format!("creating network namespace {}", pin.display()))?;
    let link = netns_path(name);
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&link);
    if let Err(error) = std::os::unix::fs::symlink(pin, &link) {
        // Only a convenience for `ip netns`: the cluster works without it.
        tracing::warn!(link = %link.display(), %error, "cannot link the namespace under /run/netns");
    }
    Ok(netns)
}

/// Makes the hub, its bridge and the servers' addresses on it.
pub async fn create_hub(layout: &Layout, servers: &[ServerSlot]) -> anyhow::Result<(Netlink, u32)> {
    let hub = create_namespace(layout, &layout.hub_netns_path(), &layout.hub_netns())?;
    let netlink = Netlink::connect(Some(hub.path())).await?;
    netlink.set_up("lo").await?;
    let bridge = netlink.ensure_bridge(BRIDGE, MTU).await?;
    netlink.add_address(bridge, Ipv4Net::new(HUB_ADDRESS, PREFIX_LEN)?).await?;
    for server in servers.iter().filter(|s| s.address != HUB_ADDRESS) {
        netlink.add_address(bridge, Ipv4Net::new(server.address, PREFIX_LEN)?).await?;
    }
    Ok((netlink, bridge))
}

/// Makes a node's namespace and plugs it into the hub's bridge.
pub async fn create_node(layout: &Layout, hub: &Netlink, bridge: u32, node: &NodeSlot, index: usize) -> anyhow::Result<()> {
    let netns = create_namespace(layout, &layout.node_netns_path(node), &layout.node_netns(node))?;
    let netns_file = std::fs::File::open(netns.path()).with_context(|| format!("opening {}", netns.path().display()))?;
    hub.add_veth(&format!("r8sv{index}"), Some(bridge), NODE_INTERFACE, &netns_file, MTU).await?;
    let netlink = Netlink::connect(Some(netns.path())).await?;
    netlink.set_up("lo").await?;
    let uplink = netlink.set_up(NODE_INTERFACE).await?;
    netlink.add_address(uplink, Ipv4Net::new(node.address, PREFIX_LEN)?).await?;
    netlink.add_default_route(HUB_ADDRESS, uplink).await?;
    Ok(())
}
