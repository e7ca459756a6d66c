//! The bridge pod network, for real, inside namespaces the tests make (needs root).

mod network_fixture;

use std::collections::HashSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use ipnet::Ipv4Net;
use network_fixture::{call, echo_server, Namespaces, TestNode};
use runtime::network::bridge::host_veth_name;
use runtime::network::netlink::Netlink;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use runtime::network::{
    BridgeConfig, BridgeNetwork, HostPortError, IpAllocator, IpamError, NetNs, NetworkError, PodNetwork, PortMapping,
    Protocol,
};

const ECHO_PORT: u16 = 7000;

fn tcp(container_port: u16, host_port: u16) -> PortMapping {
    PortMapping { protocol: Protocol::Tcp, container_port, host_port, host_ip: None }
}

/// Whether `address` is configured on an interface inside `netns`.
fn has_address(netns: &NetNs, address: Ipv4Addr) -> bool {
    netns.run(move || TcpListener::bind((address, 0)).is_ok()).expect("enter namespace")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_reach_each_other_and_their_node() {
    let mut node = TestNode::start("10.244.1.0/24").await;
    let (a_ns, b_ns) = (node.pod_netns("a"), node.pod_netns("b"));
    let a = node.network.setup(&node.request("sandbox-a", &a_ns, vec![])).await.expect("setup a");
    let b = node.network.setup(&node.request("sandbox-b", &b_ns, vec![])).await.expect("setup b");

    assert_ne!(a.address, b.address);
    assert_eq!(a.gateway, Ipv4Addr::new(10, 244, 1, 1));
    assert_eq!(a.address.prefix_len(), 24);
    assert_eq!(a.interface, "eth0");
    assert!(has_address(&a_ns, a.address.addr()), "eth0 of a holds {}", a.address);
    assert!(has_address(&a_ns, Ipv4Addr::LOCALHOST), "lo is up in a");

    // Pod to pod, by pod IP, both ways.
    echo_server(&a_ns, ECHO_PORT, 1, "a");
    echo_server(&b_ns, ECHO_PORT, 1, "b");
    let to_a = call(&b_ns, SocketAddr::from((a.address.addr(), ECHO_PORT)), "hi from b").expect("b → a");
    assert_eq!(to_a, "a: hi from b");
    let to_b = call(&a_ns, SocketAddr::from((b.address.addr(), ECHO_PORT)), "hi from a").expect("a → b");
    assert_eq!(to_b, "b: hi from a");

    // Pod to node, at the bridge's address.
    echo_server(&node.node, ECHO_PORT, 1, "node");
    let to_node = call(&a_ns, SocketAddr::from((a.gateway, ECHO_PORT)), "hi node").expect("a → node");
    assert_eq!(to_node, "node: hi node");

    let status = node.network.status("sandbox-a", a_ns.path()).await.expect("status");
    assert_eq!(status, Some(a.clone()));

    for (id, ns) in [("sandbox-a", &a_ns), ("sandbox-b", &b_ns)] {
        node.network.teardown(id, ns.path()).await.expect("teardown");
    }
    assert_eq!(node.network.status("sandbox-a", a_ns.path()).await.expect("status"), None);
    assert!(!has_address(&a_ns, a.address.addr()), "eth0 went with the veth pair");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_and_teardown_are_idempotent() {
    let mut node = TestNode::start("10.244.2.0/24").await;
    let pod = node.pod_netns("pod");
    let request = node.request("sandbox", &pod, vec![tcp(ECHO_PORT, 30080)]);
    let first = node.network.setup(&request).await.expect("setup");
    let again = node.network.setup(&request).await.expect("setup again");
    assert_eq!(first, again, "same sandbox, same address");

    echo_server(&pod, ECHO_PORT, 2, "pod");
    let direct = SocketAddr::from((again.address.addr(), ECHO_PORT));
    assert_eq!(call(&node.node, direct, "x").expect("node → pod"), "pod: x");
    let host_port = SocketAddr::from((again.gateway, 30080));
    assert_eq!(call(&node.node, host_port, "y").expect("hostPort after setup twice"), "pod: y");

    node.network.teardown("sandbox", pod.path()).await.expect("teardown");
    node.network.teardown("sandbox", pod.path()).await.expect("teardown again");
    // Teardown of a sandbox that never had a network, whose namespace is gone.
    node.network.teardown("never-set-up", "/nonexistent".as_ref()).await.expect("teardown of nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_addresses_are_reused() {
    // /29: gateway .1, pods .2–.6.
    let mut node = TestNode::start("10.244.3.0/29").await;
    let mut addresses = Vec::new();
    for n in 0..5 {
        let ns = node.pod_netns(&format!("pod{n}"));
        let status = node.network.setup(&node.request(&format!("sandbox-{n}"), &ns, vec![])).await.expect("setup");
        addresses.push(status.address.addr());
    }
    let unique: HashSet<_> = addresses.iter().collect();
    assert_eq!(unique.len(), 5, "no address handed out twice: {addresses:?}");

    let freed_ns = NetNs::open(node.namespaces.root().join("netns/pod2")).expect("pod2");
    node.network.teardown("sandbox-2", freed_ns.path()).await.expect("teardown");
    let netlink = node.node_netlink().await;
    assert!(netlink.link(&host_veth_name("sandbox-2")).await.expect("lookup").is_none(), "veth removed");

    let later = node.pod_netns("later");
    let status = node.network.setup(&node.request("sandbox-later", &later, vec![])).await.expect("setup later");
    assert_eq!(status.address.addr(), addresses[2], "the freed address is handed out again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_range_is_a_clear_error_and_leaves_nothing() {
    // /30: gateway .1 and a single pod address, .2.
    let mut node = TestNode::start("10.244.4.0/30").await;
    let first = node.pod_netns("first");
    node.network.setup(&node.request("first", &first, vec![])).await.expect("the only address");

    let second = node.pod_netns("second");
    let err = node.network.setup(&node.request("second", &second, vec![])).await.expect_err("range is full");
    assert!(matches!(err, NetworkError::Ipam(IpamError::Exhausted { .. })), "{err:?}");
    assert!(err.to_string().contains("10.244.4.0/30"), "message names the range: {err}");

    let netlink = node.node_netlink().await;
    assert!(netlink.link(&host_veth_name("second")).await.expect("lookup").is_none(), "no half-made veth");
    let pod_side = Netlink::connect(Some(second.path())).await.expect("netlink in pod");
    assert!(pod_side.link("eth0").await.expect("lookup").is_none(), "no eth0 in the refused pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_allocation_and_setup_leaks_nothing() {
    let mut node = TestNode::start("10.244.5.0/24").await;
    let pod = node.pod_netns("pod");
    // The runtime allocated and died before making any link.
    let state = node.network.config().state_dir.clone();
    let ledger = IpAllocator::new(node.network.config().pod_cidr, &state).expect("ledger");
    let orphan = ledger.allocate("crashed", false).expect("allocate");

    assert_eq!(node.network.status("crashed", pod.path()).await.expect("status"), None, "no link, no network");
    node.network.teardown("crashed", pod.path()).await.expect("teardown");
    assert!(ledger.allocations().expect("ledger").is_empty(), "{orphan} released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_frees_what_dead_sandboxes_left() {
    let mut node = TestNode::start("10.244.6.0/24").await;
    let (live_ns, dead_ns) = (node.pod_netns("live"), node.pod_netns("dead"));
    let live = node.network.setup(&node.request("live", &live_ns, vec![tcp(ECHO_PORT, 30081)])).await.expect("live");
    let dead = node.network.setup(&node.request("dead", &dead_ns, vec![tcp(ECHO_PORT, 30082)])).await.expect("dead");

    // A runtime restarted after a crash knows only "live".
    let report = node.network.garbage_collect(&HashSet::from(["live".to_owned()])).await.expect("gc");
    assert_eq!(report.released_addresses, vec![(dead.address.addr(), "dead".to_owned())]);
    assert_eq!(report.removed_links, vec![host_veth_name("dead")]);
    assert_eq!(report.removed_port_mappings, 1);

    // The live pod kept its network and its host port; the dead one's is gone.
    echo_server(&live_ns, ECHO_PORT, 1, "live");
    let host_port = SocketAddr::from((live.gateway, 30081));
    assert_eq!(call(&node.node, host_port, "still there").expect("live hostPort"), "live: still there");
    let again = node.network.garbage_collect(&HashSet::from(["live".to_owned()])).await.expect("gc again");
    assert_eq!(again, Default::default(), "nothing left to collect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_reaches_the_pod_from_node_pods_and_outside() {
    let mut node = TestNode::start("10.244.7.0/24").await;
    let (web_ns, other_ns) = (node.pod_netns("web"), node.pod_netns("other"));
    let web = node.network.setup(&node.request("web", &web_ns, vec![tcp(ECHO_PORT, 30080)])).await.expect("web");
    node.network.setup(&node.request("other", &other_ns, vec![])).await.expect("other");
    echo_server(&web_ns, ECHO_PORT, 3, "web");

    // From the node itself, at its bridge address.
    let on_bridge = SocketAddr::from((web.gateway, 30080));
    assert_eq!(call(&node.node, on_bridge, "node").expect("node → hostPort"), "web: node");
    // From another pod on the same node (hairpin through the node).
    assert_eq!(call(&other_ns, on_bridge, "pod").expect("pod → hostPort"), "web: pod");

    // From a host outside the node: a namespace wired to the node by its own
    // veth pair, reaching the node's address on that link.
    let client = node.namespaces.create("client");
    let (node_side, client_side) = (Ipv4Net::new(Ipv4Addr::new(10, 99, 0, 1), 30).unwrap(), Ipv4Net::new(Ipv4Addr::new(10, 99, 0, 2), 30).unwrap());
    let node_netlink = node.node_netlink().await;
    let client_file = File::open(client.path()).expect("client namespace");
    node_netlink.add_veth("r8s-uplink", None, "eth0", &client_file, 1500).await.expect("uplink veth");
    let uplink = node_netlink.set_up("r8s-uplink").await.expect("uplink up");
    node_netlink.add_address(uplink, node_side).await.expect("node address");
    let client_netlink = Netlink::connect(Some(client.path())).await.expect("netlink in client");
    let client_eth0 = client_netlink.set_up("eth0").await.expect("client eth0");
    client_netlink.add_address(client_eth0, client_side).await.expect("client address");
    client_netlink.add_default_route(node_side.addr(), client_eth0).await.expect("client route");

    let from_outside = SocketAddr::from((node_side.addr(), 30080));
    assert_eq!(call(&client, from_outside, "outside").expect("outside → hostPort"), "web: outside");

    node.network.teardown("web", web_ns.path()).await.expect("teardown");
    let refused = call(&node.node, on_bridge, "gone").expect_err("the mapping went with the pod");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");
}

/// Hairpin: pod → node:hostPort → the same pod. The veth's bridge port is in
/// hairpin mode (br_netfilter DNATs in the bridge and sends the packet back
/// out the port it came in on) and the DNATed packet is masqueraded to the
/// node's address, or the pod would answer itself directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reaches_its_own_host_port() {
    let mut node = TestNode::start("10.244.14.0/24").await;
    let web_ns = node.pod_netns("self");
    let web = node.network.setup(&node.request("self", &web_ns, vec![tcp(ECHO_PORT, 30090)])).await.expect("setup");
    echo_server(&web_ns, ECHO_PORT, 1, "self");
    let on_bridge = SocketAddr::from((web.gateway, 30090));
    assert_eq!(call(&web_ns, on_bridge, "me").expect("pod → own hostPort"), "self: me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_host_port_is_refused_and_leaves_nothing() {
    let mut node = TestNode::start("10.244.8.0/24").await;
    let (first_ns, second_ns) = (node.pod_netns("first"), node.pod_netns("second"));
    node.network.setup(&node.request("first", &first_ns, vec![tcp(80, 30080)])).await.expect("first");
    let err = node
        .network
        .setup(&node.request("second", &second_ns, vec![tcp(80, 30080)]))
        .await
        .expect_err("host port taken");
    assert!(matches!(err, NetworkError::HostPort(HostPortError::Taken { host_port: 30080, .. })), "{err:?}");

    let netlink = node.node_netlink().await;
    assert!(netlink.link(&host_veth_name("second")).await.expect("lookup").is_none(), "no veth left");
    assert_eq!(node.network.status("second", second_ns.path()).await.expect("status"), None);
    let state = &node.network.config().state_dir;
    let ledger = IpAllocator::new(node.network.config().pod_cidr, state).expect("ledger");
    assert_eq!(ledger.allocations().expect("ledger").len(), 1, "second's address was freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let node = TestNode::start("10.244.9.0/24").await;
    let missing = node.namespaces.root().join("netns/missing");
    let request = runtime::network::PodNetworkRequest {
        sandbox_id: "sandbox".into(),
        netns: missing,
        pod_namespace: "default".into(),
        pod_name: "web".into(),
        port_mappings: vec![],
    };
    let err = node.network.setup(&request).await.expect_err("no such namespace");
    assert!(matches!(err, NetworkError::InvalidRequest(ref m) if m.contains("missing")), "{err:?}");
    let ledger = IpAllocator::new(node.network.config().pod_cidr, &node.network.config().state_dir).expect("ledger");
    assert!(ledger.allocations().expect("ledger").is_empty(), "nothing allocated");

    let mut namespaces = Namespaces::new();
    let other_node = namespaces.create("node");
    let mut config = BridgeConfig::new("10.244.10.0/24".parse().unwrap(), namespaces.root().join("state"));
    config.node_netns = Some(other_node.path().to_owned());
    config.bridge = "this-name-is-too-long".into();
    let err = BridgeNetwork::new(config).await.err().expect("bad bridge name");
    assert!(matches!(err, NetworkError::InvalidConfig(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_setups_get_distinct_addresses() {
    let mut node = TestNode::start("10.244.11.0/24").await;
    let pods: Vec<NetNs> = (0..12).map(|n| node.pod_netns(&format!("pod{n}"))).collect();
    let requests: Vec<_> = pods.iter().enumerate().map(|(n, ns)| node.request(&format!("sandbox-{n}"), ns, vec![])).collect();
    let statuses = futures::future::join_all(requests.iter().map(|request| node.network.setup(request))).await;
    let addresses: Vec<Ipv4Addr> = statuses.into_iter().map(|s| s.expect("setup").address.addr()).collect();
    let unique: HashSet<_> = addresses.iter().collect();
    assert_eq!(unique.len(), addresses.len(), "{addresses:?}");

    echo_server(&pods[0], ECHO_PORT, 1, "first");
    let answer = call(&pods[11], SocketAddr::from((addresses[0], ECHO_PORT)), "last").expect("last → first");
    assert_eq!(answer, "first: last");

    let teardowns = futures::future::join_all(requests.iter().map(|r| node.network.teardown(&r.sandbox_id, &r.netns))).await;
    teardowns.into_iter().for_each(|t| t.expect("teardown"));
    let ledger = IpAllocator::new(node.network.config().pod_cidr, &node.network.config().state_dir).expect("ledger");
    assert!(ledger.allocations().expect("ledger").is_empty(), "every address freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_keeps_running_pods() {
    let mut node = TestNode::start("10.244.12.0/24").await;
    let pod = node.pod_netns("pod");
    let before = node.network.setup(&node.request("sandbox", &pod, vec![tcp(ECHO_PORT, 30090)])).await.expect("setup");

    // The runtime restarts: a new BridgeNetwork over the same node and state.
    let restarted = BridgeNetwork::new(node.network.config().clone()).await.expect("node setup again");
    node.network = restarted;
    assert_eq!(node.network.status("sandbox", pod.path()).await.expect("status"), Some(before.clone()));

    echo_server(&pod, ECHO_PORT, 2, "pod");
    let direct = SocketAddr::from((before.address.addr(), ECHO_PORT));
    assert_eq!(call(&node.node, direct, "a").expect("pod address"), "pod: a");
    let host_port = SocketAddr::from((before.gateway, 30090));
    assert_eq!(call(&node.node, host_port, "b").expect("hostPort kept"), "pod: b");

    let other = node.pod_netns("other");
    let next = node.network.setup(&node.request("other", &other, vec![])).await.expect("setup after restart");
    assert_ne!(next.address, before.address, "the ledger survived the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_get_the_configured_mtu() {
    let mut namespaces = Namespaces::new();
    let node_ns = namespaces.create("node");
    let mut config = BridgeConfig::new("10.244.13.0/24".parse().unwrap(), namespaces.root().join("state"));
    config.node_netns = Some(node_ns.path().to_owned());
    config.mtu = 1400;
    let network = BridgeNetwork::new(config).await.expect("node");
    let pod = namespaces.create("pod");
    let request = runtime::network::PodNetworkRequest {
        sandbox_id: "sandbox".into(),
        netns: pod.path().to_owned(),
        pod_namespace: "default".into(),
        pod_name: "web".into(),
        port_mappings: vec![],
    };
    assert_eq!(network.setup(&request).await.expect("setup").mtu, 1400);

    let mtu_of = |link: Option<LinkMessage>| {
        link.expect("link exists").attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
    };
    let node_netlink = Netlink::connect(Some(node_ns.path())).await.expect("netlink");
    assert_eq!(mtu_of(node_netlink.link("r8s0").await.expect("bridge")), Some(1400));
    assert_eq!(mtu_of(node_netlink.link(&host_veth_name("sandbox")).await.expect("veth")), Some(1400));
    let pod_netlink = Netlink::connect(Some(pod.path())).await.expect("netlink");
    assert_eq!(mtu_of(pod_netlink.link("eth0").await.expect("eth0")), Some(1400));
}
