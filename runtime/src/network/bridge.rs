//! The built-in pod network: one bridge per node, one veth pair per pod.
//!
//! ```text
//!  node namespace                                  pod namespace
//!  r8s0 (bridge, gateway = first address of the pod CIDR)
//!   ├── r8s<hash of sandbox id>  ═══ veth ═══  eth0 (pod address, default route via gateway)
//!   └── ...                                    lo up
//!  nft table r8s: hostPort DNAT (see hostport)
//! ```
//!
//! Setup order makes failures cheap to undo: address first (so an exhausted
//! range fails before any link exists), then the veth pair, the pod side's
//! address and route, the port mappings. Teardown goes the other way and
//! frees the address last, so a teardown cut short is finished by the next.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};
use tracing::{debug, info_span, warn, Instrument};

use super::hostport::HostPorts;
use super::ipam::{IpAllocator, IpamError, Lease};
use super::netlink::Netlink;
use super::netns::run_in_netns;
use super::{GcReport, NetworkError, PodNetwork, PodNetworkRequest, PodNetworkStatus, PortMapping};

/// Host-side veth names: this prefix and 12 hex digits of the sandbox id's
/// SHA-256, 15 characters, the kernel's limit.
const HOST_VETH_PREFIX: &str = "r8s";
const HOST_VETH_HASH_DIGITS: usize = 12;
/// The pod's interface, inside its namespace.
const POD_INTERFACE: &str = "eth0";
/// The longest interface name Linux takes (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME: usize = 15;

/// How the node's pod network looks.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The node's pod CIDR; its first address is the gateway on the bridge.
    pub pod_cidr: Ipv4Net,
    /// The bridge's name (default `r8s0`).
    pub bridge: String,
    /// MTU of the bridge and both ends of every veth pair (default 1500).
    pub mtu: u32,
    /// Where the address ledger lives (one directory per node network).
    pub state_dir: PathBuf,
    /// The node's network namespace; `None`: the process's own (a real node).
    /// Tests and `r8s up` make each node a namespace.
    pub node_netns: Option<PathBuf>,
    /// The nftables table (family `ip`) for hostPort rules (default `r8s`).
    pub nft_table: String,
    /// Turn on IPv4 forwarding in the node's namespace, which hostPorts
    /// reached from other hosts and routing between nodes need (default on).
    pub enable_ip_forward: bool,
}

impl BridgeConfig {
    /// The defaults, for a pod CIDR and a state directory.
    pub fn new(pod_cidr: Ipv4Net, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            pod_cidr,
            bridge: "r8s0".into(),
            mtu: 1500,
            state_dir: state_dir.into(),
            node_netns: None,
            nft_table: "r8s".into(),
            enable_ip_forward: true,
        }
    }

    fn validate(&self) -> Result<(), NetworkError> {
        let invalid = |message: String| Err(NetworkError::InvalidConfig(message));
        if self.bridge.is_empty() || self.bridge.len() > MAX_INTERFACE_NAME || self.bridge.contains(['/', ' ']) {
            return invalid(format!("bridge name {:?} is not a valid interface name", self.bridge));
        }
        if is_host_veth_name(&self.bridge) {
            return invalid(format!("bridge name {:?} looks like a pod's veth name", self.bridge));
        }
        if !(68..=65535).contains(&self.mtu) {
            return invalid(format!("MTU {} is out of range (68–65535)", self.mtu));
        }
        if self.nft_table.is_empty() || !self.nft_table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return invalid(format!("nftables table name {:?} must be letters, digits, - and _", self.nft_table));
        }
        Ok(())
    }
}

/// The bridge pod network of one node.
///
/// Cheap to share (`Arc` inside); holds a netlink connection in the node's
/// namespace. Creating it sets up the node side (bridge, gateway address,
/// forwarding, nftables table) and is idempotent, so a restarted runtime
/// just creates it again.
#[derive(Clone)]
pub struct BridgeNetwork {
    inner: Arc<Inner>,
}

struct Inner {
    config: BridgeConfig,
    node: Netlink,
    bridge_index: u32,
    addresses: IpAllocator,
    host_ports: HostPorts,
}

impl BridgeNetwork {
    /// Sets up the node side of the network and returns the pod network.
    pub async fn new(config: BridgeConfig) -> Result<Self, NetworkError> {
        config.validate()?;
        let addresses = IpAllocator::new(config.pod_cidr, &config.state_dir)?;
        let node_netns = config.node_netns.as_deref();
        let node = Netlink::connect(node_netns).await?;
        let bridge_index = node.ensure_bridge(&config.bridge, config.mtu).await?;
        let gateway = Ipv4Net::new(addresses.gateway(), addresses.subnet().prefix_len())
            .map_err(|e| NetworkError::InvalidConfig(e.to_string()))?;
        node.add_address(bridge_index, gateway).await?;
        if config.enable_ip_forward {
            enable_ip_forward(node_netns).await?;
        }
        let host_ports = HostPorts::new(node_netns, &config.nft_table, addresses.subnet());
        host_ports.install().await?;
        Ok(Self { inner: Arc::new(Inner { config, node, bridge_index, addresses, host_ports }) })
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.inner.config
    }

    /// The node's address on the pod network (on the bridge).
    pub fn gateway(&self) -> Ipv4Addr {
        self.inner.addresses.gateway()
    }

    /// Runs an address-ledger operation (file lock, fsync) off the async workers.
    async fn ledger<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&IpAllocator) -> Result<T, IpamError> + Send + 'static,
    ) -> Result<T, NetworkError> {
        let addresses = self.inner.addresses.clone();
        Ok(tokio::task::spawn_blocking(move || operation(&addresses)).await??)
    }

    fn status_for(&self, address: Ipv4Addr) -> PodNetworkStatus {
        let subnet = self.inner.addresses.subnet();
        PodNetworkStatus {
            address: Ipv4Net::new(address, subnet.prefix_len()).unwrap_or(subnet),
            gateway: self.gateway(),
            interface: POD_INTERFACE.into(),
            mtu: self.inner.config.mtu,
        }
    }

    /// Everything after the address: links, address, route, port mappings.
    async fn connect(
        &self,
        request: &PodNetworkRequest,
        pod_netns: &File,
        address: Ipv4Addr,
    ) -> Result<PodNetworkStatus, NetworkError> {
        let inner = &self.inner;
        let host_veth = host_veth_name(&request.sandbox_id);
        // A leftover pair from an earlier attempt: start clean.
        inner.node.delete_link(&host_veth).await?;
        inner.node.add_veth(&host_veth, Some(inner.bridge_index), POD_INTERFACE, pod_netns, inner.config.mtu).await?;

        let pod = Netlink::connect(Some(&request.netns)).await?;
        pod.set_up("lo").await?;
        let interface = pod.set_up(POD_INTERFACE).await?;
        let status = self.status_for(address);
        pod.add_address(interface, status.address).await?;
        pod.add_default_route(status.gateway, interface).await?;

        let mapped: Vec<PortMapping> = request.mapped_ports().copied().collect();
        inner.host_ports.add(address, &mapped).await?;
        Ok(status)
    }
}

#[async_trait]
impl PodNetwork for BridgeNetwork {
    async fn setup(&self, request: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError> {
        let span = info_span!("pod network setup", sandbox = %request.sandbox_id, pod = %format!("{}/{}", request.pod_namespace, request.pod_name));
        async {
            request.validate()?;
            // Opened first: a missing namespace fails before anything is made.
            let pod_netns = File::open(&request.netns).map_err(|e| {
                NetworkError::InvalidRequest(format!("network namespace {}: {e}", request.netns.display()))
            })?;
            let owner = request.sandbox_id.clone();
            let host_ports = request.mapped_ports().next().is_some();
            let address = self.ledger(move |addresses| addresses.allocate(&owner, host_ports)).await?;
            match self.connect(request, &pod_netns, address).await {
                Ok(status) => {
                    debug!(address = %status.address, "pod network set up");
                    Ok(status)
                }
                Err(error) => {
                    // Leave no half-made pod network; the first error is the one to report.
                    if let Err(undo) = self.teardown(&request.sandbox_id, &request.netns).await {
                        warn!(%undo, "undoing a failed pod network setup failed too");
                    }
                    Err(error)
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn teardown(&self, sandbox_id: &str, _netns: &Path) -> Result<(), NetworkError> {
        // The pod side needs no work: deleting one end of a veth pair deletes
        // both, and the namespace may already be gone.
        let owner = sandbox_id.to_owned();
        let lease = self.ledger(move |addresses| addresses.lookup(&owner)).await?;
        if let Some(Lease { address, host_ports: true }) = lease {
            self.inner.host_ports.remove_where(|target| target == address).await?;
        }
        self.inner.node.delete_link(&host_veth_name(sandbox_id)).await?;
        let owner = sandbox_id.to_owned();
        self.ledger(move |addresses| addresses.release(&owner)).await?;
        debug!(sandbox = sandbox_id, "pod network torn down");
        Ok(())
    }

    async fn status(&self, sandbox_id: &str, _netns: &Path) -> Result<Option<PodNetworkStatus>, NetworkError> {
        let owner = sandbox_id.to_owned();
        let Some(Lease { address, .. }) = self.ledger(move |addresses| addresses.lookup(&owner)).await? else {
            return Ok(None);
        };
        // An address without its link is a setup that did not finish.
        let linked = self.inner.node.link(&host_veth_name(sandbox_id)).await?.is_some();
        Ok(linked.then(|| self.status_for(address)))
    }

    async fn garbage_collect(&self, live_sandboxes: &HashSet<String>) -> Result<GcReport, NetworkError> {
        // Links and mappings first, addresses last: an address is never free
        // while a dead pod's interface or mapping could still use it.
        let live_links: HashSet<String> = live_sandboxes.iter().map(|id| host_veth_name(id)).collect();
        let mut removed_links = Vec::new();
        for name in self.inner.node.veths_on(self.inner.bridge_index).await? {
            if is_host_veth_name(&name) && !live_links.contains(&name) && self.inner.node.delete_link(&name).await? {
                removed_links.push(name);
            }
        }

        let live_addresses: BTreeSet<Ipv4Addr> = self
            .ledger(|addresses| addresses.allocations())
            .await?
            .into_iter()
            .filter(|(_, owner)| live_sandboxes.contains(owner))
            .map(|(address, _)| address)
            .collect();
        let removed_port_mappings =
            self.inner.host_ports.remove_where(|target| !live_addresses.contains(&target)).await?;

        let live = live_sandboxes.clone();
        let released_addresses = self.ledger(move |addresses| addresses.retain(|owner| live.contains(owner))).await?;
        Ok(GcReport { released_addresses, removed_links, removed_port_mappings })
    }
}

/// The host-side veth name of a sandbox: short, stable, r8s-prefixed.
pub fn host_veth_name(sandbox_id: &str) -> String {
    let digest = hex::encode(Sha256::digest(sandbox_id.as_bytes()));
    format!("{HOST_VETH_PREFIX}{}", &digest[..HOST_VETH_HASH_DIGITS])
}

fn is_host_veth_name(name: &str) -> bool {
    name.strip_prefix(HOST_VETH_PREFIX)
        .is_some_and(|hash| hash.len() == HOST_VETH_HASH_DIGITS && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Sets `net.ipv4.ip_forward` in the node's namespace (sysctls under
/// `/proc/sys/net` act on the namespace of the thread that opens them).
async fn enable_ip_forward(node_netns: Option<&Path>) -> Result<(), NetworkError> {
    const SYSCTL: &str = "/proc/sys/net/ipv4/ip_forward";
    run_in_netns(node_netns, || std::fs::write(SYSCTL, "1"))
        .await?
        .map_err(|e| NetworkError::InvalidConfig(format!("enabling IPv4 forwarding ({SYSCTL}): {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_fit_and_are_recognised() {
        let name = host_veth_name("0123456789abcdef-some-long-sandbox-id");
        assert_eq!(name.len(), MAX_INTERFACE_NAME);
        assert!(is_host_veth_name(&name));
        assert_ne!(name, host_veth_name("another sandbox"));
        assert!(!is_host_veth_name("r8s0"));
        assert!(!is_host_veth_name("eth0"));
    }

    #[test]
    fn bad_config_is_refused() {
        let config = BridgeConfig::new("10.244.1.0/24".parse().unwrap(), "/tmp/x");
        assert!(config.validate().is_ok());
        let long = BridgeConfig { bridge: "a-much-too-long-bridge".into(), ..config.clone() };
        assert!(long.validate().is_err());
        let veth_like = BridgeConfig { bridge: host_veth_name("x"), ..config.clone() };
        assert!(veth_like.validate().is_err());
        let table = BridgeConfig { nft_table: "r8s; flush ruleset".into(), ..config.clone() };
        assert!(table.validate().is_err());
        let mtu = BridgeConfig { mtu: 10, ..config };
        assert!(mtu.validate().is_err());
    }
}
