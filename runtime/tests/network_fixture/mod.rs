//! A node made of network namespaces, for the pod network tests.
//!
//! Everything lives under `/run/r8s-test-<unique>/`: the namespaces' pins and
//! the address ledger. The node is a namespace holding the bridge and the
//! nftables table, so nothing touches the machine's own interfaces, routes
//! or rules, and removing the node namespace takes every device and rule of
//! the test with it. [`Namespaces`] removes it all on drop, also when a test
//! fails.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runtime::network::netlink::Netlink;
use runtime::network::{BridgeConfig, BridgeNetwork, NetNs, PodNetworkRequest, PortMapping};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The namespaces (and files) a test made; all removed on drop.
pub struct Namespaces {
    root: PathBuf,
    made: Vec<NetNs>,
}

impl Namespaces {
    pub fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let unique = format!("{:x}-{:x}-{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed));
        Self { root: PathBuf::from(format!("/run/r8s-test-{unique}")), made: Vec::new() }
    }

    pub fn root(&self) -> &PathBuf {
        &self.root
    }

    /// A new namespace `<root>/netns/<name>`.
    pub fn create(&mut self, name: &str) -> NetNs {
        let netns = NetNs::create(self.root.join("netns").join(name)).expect("create a network namespace");
        self.made.push(netns.clone());
        netns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for netns in self.made.iter().rev() {
            if let Err(e) = netns.remove() {
                eprintln!("cleanup: {e}");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("cleanup of {}: {e}", self.root.display());
            }
        }
    }
}

/// A node namespace with a bridge pod network in it.
pub struct TestNode {
    // Dropped first: its netlink socket holds the node namespace.
    pub network: BridgeNetwork,
    pub node: NetNs,
    pub namespaces: Namespaces,
}

impl TestNode {
    /// A node with pod CIDR `cidr`.
    pub async fn start(cidr: &str) -> Self {
        let mut namespaces = Namespaces::new();
        let node = namespaces.create("node");
        // As on a real machine: the node's own local traffic goes over lo.
        let node_netlink = Netlink::connect(Some(node.path())).await.expect("netlink in the node namespace");
        node_netlink.set_up("lo").await.expect("lo up in the node");
        let mut config = BridgeConfig::new(cidr.parse().expect("pod CIDR"), namespaces.root().join("state"));
        config.node_netns = Some(node.path().to_owned());
        let network = BridgeNetwork::new(config).await.expect("set up the node's pod network");
        Self { network, node, namespaces }
    }

    /// A fresh namespace for a pod sandbox.
    pub fn pod_netns(&mut self, name: &str) -> NetNs {
        self.namespaces.create(name)
    }

    pub fn request(&self, sandbox_id: &str, netns: &NetNs, port_mappings: Vec<PortMapping>) -> PodNetworkRequest {
        PodNetworkRequest {
            sandbox_id: sandbox_id.to_owned(),
            netns: netns.path().to_owned(),
            pod_namespace: "default".to_owned(),
            pod_name: sandbox_id.to_owned(),
            port_mappings,
        }
    }

    /// A netlink connection in the node's namespace, to look at its links.
    pub async fn node_netlink(&self) -> Netlink {
        Netlink::connect(Some(self.node.path())).await.expect("netlink in the node namespace")
    }
}

/// Listens on `port` inside `netns` and echoes back, for `connections`
/// connections, what each client sends, prefixed with `tag`.
pub fn echo_server(netns: &NetNs, port: u16, connections: usize, tag: &'static str) {
    // A socket stays in the namespace it was made in, whichever thread uses it.
    let listener = netns.run(move || TcpListener::bind(("0.0.0.0", port))).expect("enter").expect("bind");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
            let mut received = String::new();
            if stream.read_to_string(&mut received).is_ok() {
                let _ = stream.write_all(format!("{tag}: {received}").as_bytes());
            }
        }
    });
}

/// Connects from inside `netns` to `target`, sends `message`, returns the answer.
pub fn call(netns: &NetNs, target: SocketAddr, message: &'static str) -> io::Result<String> {
    netns.run(move || {
        let mut stream = TcpStream::connect_timeout(&target, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(message.as_bytes())?;
        stream.shutdown(Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .map_err(io::Error::other)?
}
