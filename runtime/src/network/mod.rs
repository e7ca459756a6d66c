//! Pod networking: the [`PodNetwork`] trait the CRI sandbox code calls, and
//! its built-in implementation [`BridgeNetwork`].
//!
//! The trait is the seam for later work: routing between nodes (issue 8) can
//! wrap or extend the bridge, and an implementation that runs standard CNI
//! plugins maps one-to-one onto it (`setup` = ADD, `teardown` = DEL,
//! `status` = CHECK/STATUS, `garbage_collect` = GC).
//!
//! - [`netns`]: create, remove and enter named network namespaces.
//! - [`bridge`]: a node bridge, one veth pair per pod, addresses from
//!   [`ipam`], hostPort DNAT from [`hostport`].
//! - [`netlink`]: the rtnetlink requests the bridge makes.
//!
//! How a runtime uses it: `BridgeNetwork::new(BridgeConfig::new(pod_cidr,
//! state_dir))` once at start (idempotent: bridge, gateway address,
//! forwarding, nftables table), then `garbage_collect` with the sandboxes
//! it knows; per sandbox `NetNs::create` a pinned namespace, `setup`, and on
//! stop/removal `teardown` then `NetNs::remove`. Setups for different
//! sandboxes may run concurrently; the caller serialises calls for one sandbox.
//!
//! A node that is itself a namespace (tests, `r8s up`): create it with
//! `NetNs::create`, bring its `lo` up (`Netlink::connect(Some(path))` then
//! `set_up("lo")`), and set `BridgeConfig::node_netns`. Nothing then touches
//! the machine's own network; removing the node namespace removes the
//! bridge, every veth and the nftables table with it.
//!
//! A pod reaches its own hostPort through the node (hairpin), as with
//! Kubernetes' portmap plugin: with br_netfilter the DNAT happens as the
//! packet crosses the bridge, which then sends it back out the veth it came
//! in on (the veth's bridge port is in hairpin mode), and the DNATed packet
//! is masqueraded to the node's address so that the pod's answer goes back
//! through the node instead of straight to itself.
//!
//! Known limits: IPv4 only; no masquerade toward the outside (by design:
//! pods reach pods and their node only).

pub mod bridge;
pub mod hostport;
pub mod ipam;
pub mod netlink;
pub mod netns;

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ipnet::Ipv4Net;

pub use bridge::{BridgeConfig, BridgeNetwork};
pub use hostport::HostPortError;
pub use ipam::{IpAllocator, IpamError, Lease};
pub use netlink::NetlinkError;
pub use netns::{NetNs, NetnsError};

/// Connects pod sandboxes to the node's network.
///
/// Async because its callers (the CRI service) are, and because the work is
/// I/O — netlink round trips, a file lock, `nft` or CNI plugin processes —
/// which implementations run off the async workers. `Send + Sync` so one
/// instance can be shared as `Arc<dyn PodNetwork>`.
///
/// Every method is idempotent, and a failed `setup` leaves nothing behind.
#[async_trait]
pub trait PodNetwork: Send + Sync {
    /// Gives the sandbox's namespace an interface, an address, routes and its
    /// host port mappings. Called again for a sandbox that is set up, it
    /// rebuilds the same network with the same address.
    async fn setup(&self, request: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError>;

    /// Removes everything `setup` made for the sandbox and frees its address.
    /// Succeeds if nothing (or only part) is there, and when `netns` is gone.
    async fn teardown(&self, sandbox_id: &str, netns: &Path) -> Result<(), NetworkError>;

    /// The sandbox's network as set up, or `None` if it has none.
    async fn status(&self, sandbox_id: &str, netns: &Path) -> Result<Option<PodNetworkStatus>, NetworkError>;

    /// Frees whatever belongs to sandboxes not in `live_sandboxes`: what a
    /// crash between `setup` and the sandbox's record, or a lost `teardown`,
    /// left behind. The runtime calls it at start with the sandboxes it knows.
    async fn garbage_collect(&self, live_sandboxes: &HashSet<String>) -> Result<GcReport, NetworkError>;
}

/// What `setup` needs to know about a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkRequest {
    /// The sandbox (CRI pod sandbox id): the key everything is kept under.
    pub sandbox_id: String,
    /// The sandbox's network namespace, pinned by the runtime (a bind mount).
    pub netns: PathBuf,
    /// For logs (and CNI's `K8S_POD_NAMESPACE`).
    pub pod_namespace: String,
    /// For logs (and CNI's `K8S_POD_NAME`).
    pub pod_name: String,
    /// The pod's ports; those with a `host_port` of 0 are not mapped.
    pub port_mappings: Vec<PortMapping>,
}

/// A pod's port, as CRI's `PortMapping` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    /// 0: the port is not mapped on the node.
    pub host_port: u16,
    /// The node address to listen on; `None`: all of the node's addresses.
    pub host_ip: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for Protocol {
    /// As nftables spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

/// A sandbox's network, as CRI's `PodSandboxNetworkStatus` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkStatus {
    /// The pod's address with the pod CIDR's prefix length.
    pub address: Ipv4Net,
    /// The default route's next hop: the node's bridge.
    pub gateway: Ipv4Addr,
    /// The pod's interface inside its namespace.
    pub interface: String,
    pub mtu: u32,
}

/// What [`PodNetwork::garbage_collect`] freed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Addresses freed, with the sandbox that had held them.
    pub released_addresses: Vec<(Ipv4Addr, String)>,
    /// Host-side links deleted.
    pub removed_links: Vec<String>,
    /// hostPort mappings deleted.
    pub removed_port_mappings: usize,
}

/// Why pod network setup, teardown or status failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid pod network request: {0}")]
    InvalidRequest(String),
    #[error("invalid pod network configuration: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    HostPort(#[from] HostPortError),
    #[error("a background task of pod networking failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl PodNetworkRequest {
    /// Checks what the caller sent: an id, and port mappings that can be made.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let invalid = |message: String| Err(NetworkError::InvalidRequest(message));
        if self.sandbox_id.is_empty() {
            return invalid("the sandbox id is empty".into());
        }
        let mut seen = HashSet::new();
        for mapping in self.mapped_ports() {
            if mapping.container_port == 0 {
                return invalid(format!("host port {} maps to container port 0", mapping.host_port));
            }
            if !seen.insert((mapping.protocol, mapping.host_ip, mapping.host_port)) {
                return invalid(format!("host port {}/{} is mapped twice", mapping.protocol, mapping.host_port));
            }
        }
        Ok(())
    }

    /// The port mappings that expose a port on the node.
    pub fn mapped_ports(&self) -> impl Iterator<Item = &PortMapping> {
        self.port_mappings.iter().filter(|mapping| mapping.host_port != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(port_mappings: Vec<PortMapping>) -> PodNetworkRequest {
        PodNetworkRequest {
            sandbox_id: "sandbox".into(),
            netns: "/run/netns/r8s-x".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            port_mappings,
        }
    }

    const WEB: PortMapping = PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port: 8080, host_ip: None };

    #[test]
    fn unmapped_ports_are_skipped() {
        let request = request(vec![PortMapping { host_port: 0, container_port: 0, ..WEB }, WEB]);
        assert!(request.validate().is_ok());
        assert_eq!(request.mapped_ports().count(), 1);
    }

    #[test]
    fn contradictory_mappings_are_refused() {
        let twice = request(vec![WEB, PortMapping { container_port: 81, ..WEB }]);
        assert!(matches!(twice.validate(), Err(NetworkError::InvalidRequest(m)) if m.contains("twice")));
        let to_zero = request(vec![PortMapping { container_port: 0, ..WEB }]);
        assert!(matches!(to_zero.validate(), Err(NetworkError::InvalidRequest(_))));
        let other_protocol = request(vec![WEB, PortMapping { protocol: Protocol::Udp, ..WEB }]);
        assert!(other_protocol.validate().is_ok());
        let no_id = PodNetworkRequest { sandbox_id: String::new(), ..request(vec![]) };
        assert!(no_id.validate().is_err());
    }
}
