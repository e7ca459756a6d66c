//! A node made of network namespaces for the proxy's tests: the runtime's
//! bridge pod network in a "node" namespace, pods `a` and `b` each serving its
//! own name, a `client` pod, and an `outside` host joined to the node by a
//! link of its own (the node's default route), so node ports can be reached
//! from another host. Everything goes when the node is dropped.

#![allow(dead_code)]

// The runtime's own test fixture: namespaces, echo servers, clients.
#[path = "../../../runtime/tests/network_fixture/mod.rs"]
mod network_fixture;

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use ipnet::Ipv4Net;
pub use network_fixture::call;
use network_fixture::{echo_server, TestNode};
use runtime::network::netlink::Netlink;
use runtime::network::{NetNs, PodNetwork};

/// The port the pods serve on.
pub const POD_PORT: u16 = 7000;
/// The Service's address, port and node port in the tests.
pub const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
pub const SERVICE_PORT: u16 = 80;
pub const NODE_PORT: u16 = 30080;
/// The node's and the outside host's addresses on their link.
pub const NODE_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const OUTSIDE_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// Connections each pod's server answers before it stops.
const SERVED_CONNECTIONS: usize = 100_000;

pub struct Pod {
    pub netns: NetNs,
    pub ip: Ipv4Addr,
}

pub struct ServiceNode {
    pub a: Pod,
    pub b: Pod,
    pub client: Pod,
    pub outside: NetNs,
    /// The node's address on the pod bridge.
    pub gateway: Ipv4Addr,
    // Last: dropping it removes every namespace above.
    pub node: TestNode,
}

impl ServiceNode {
    /// A node with pod CIDR `cidr` (unique per test, for readable failures).
    pub async fn start(cidr: &str) -> Self {
        let mut node = TestNode::start(cidr).await;
        let mut pod = async |name: &'static str, serve: bool| {
            let netns = node.pod_netns(name);
            let status = node.network.setup(&node.request(name, &netns, vec![])).await.expect("pod network");
            if serve {
                echo_server(&netns, POD_PORT, SERVED_CONNECTIONS, name);
            }
            Pod { netns, ip: status.address.addr() }
        };
        let (a, b, client) = (pod("a", true).await, pod("b", true).await, pod("client", false).await);
        let gateway = node.network.gateway();

        let outside = node.namespaces.create("outside");
        let node_netlink = node.node_netlink().await;
        let outside_file = File::open(outside.path()).expect("outside namespace");
        node_netlink.add_veth("r8s-uplink", None, "eth0", &outside_file, 1500).await.expect("uplink veth");
        let uplink = node_netlink.set_up("r8s-uplink").await.expect("uplink up");
        node_netlink.add_address(uplink, Ipv4Net::new(NODE_ADDRESS, 30).unwrap()).await.expect("node address");
        // The node reaches cluster IPs as a real node does: they are not on any
        // of its links, so its default route must exist for a connect to start.
        node_netlink.add_default_route(OUTSIDE_ADDRESS, uplink).await.expect("node default route");
        let outside_netlink = Netlink::connect(Some(outside.path())).await.expect("netlink outside");
        outside_netlink.set_up("lo").await.expect("lo up outside");
        let eth0 = outside_netlink.set_up("eth0").await.expect("outside eth0");
        outside_netlink.add_address(eth0, Ipv4Net::new(OUTSIDE_ADDRESS, 30).unwrap()).await.expect("outside address");
        outside_netlink.add_default_route(NODE_ADDRESS, eth0).await.expect("outside route");
        Self { a, b, client, outside, gateway, node }
    }

    pub fn node_netns(&self) -> &NetNs {
        &self.node.node
    }

    /// The proxy's configuration for this node.
    pub fn proxy_config(&self) -> proxy::Config {
        proxy::Config { netns: Some(self.node.node.path().to_owned()), ..proxy::Config::default() }
    }

    /// `nft list table ip r8s` in the node.
    pub fn table(&self) -> String {
        self.nft(&["list", "table", "ip", "r8s"])
    }

    /// Runs `nft ARGS` in the node; its output.
    pub fn nft(&self, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let output = self.node.node.run(move || Command::new("nft").args(&args).output()).expect("enter the node").expect("run nft");
        assert!(output.status.success(), "nft: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Connects `times` times from `from` to `target`; the answering pods' names.
pub fn names_answering(from: &NetNs, target: SocketAddr, times: usize) -> Vec<String> {
    (0..times).map(|_| answer_from(from, target).expect("an answer")).collect()
}

/// One connection from `from` to `target`: the name of the pod that answered.
pub fn answer_from(from: &NetNs, target: SocketAddr) -> io::Result<String> {
    let answer = call(from, target, "hello")?;
    Ok(answer.strip_suffix(": hello").unwrap_or(&answer).to_owned())
}
