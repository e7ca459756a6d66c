//! The proxy's nftables rules, for real, in namespaces the tests make (needs
//! root): Services programmed straight through [`proxy::Rules`], reached from
//! pods, the node and another host.

mod support;

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::SocketAddr;

use proxy::{Endpoint, Protocol, Rules, ServicePort};
use support::{answer_from, names_answering, Pod, ServiceNode, CLUSTER_IP, NODE_ADDRESS, NODE_PORT, POD_PORT, SERVICE_PORT};

const CLUSTER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(CLUSTER_IP), SERVICE_PORT);

fn web(endpoints: &[&Pod]) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        service: "web".into(),
        port_name: String::new(),
        protocol: Protocol::Tcp,
        cluster_ip: CLUSTER_IP,
        port: SERVICE_PORT,
        node_port: None,
        affinity_timeout_seconds: None,
        endpoints: endpoints.iter().map(|pod| Endpoint { ip: pod.ip, port: POD_PORT }).collect(),
    }
}

fn distinct(names: &[String]) -> HashSet<&str> {
    names.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_balances_over_ready_endpoints_and_follows_changes() {
    let node = ServiceNode::start("10.244.11.0/24").await;
    let mut rules = Rules::new(&node.proxy_config());

    rules.program(&[web(&[&node.a, &node.b])]).await.expect("program both endpoints");
    let answers = names_answering(&node.client.netns, CLUSTER, 40);
    assert_eq!(distinct(&answers), HashSet::from(["a", "b"]), "both endpoints answer: {answers:?}");
    let from_node = names_answering(node.node_netns(), CLUSTER, 20);
    assert_eq!(distinct(&from_node), HashSet::from(["a", "b"]), "the node itself reaches both: {from_node:?}");

    rules.program(&[web(&[&node.b])]).await.expect("program one endpoint");
    let answers = names_answering(&node.client.netns, CLUSTER, 20);
    assert_eq!(distinct(&answers), HashSet::from(["b"]), "only the remaining endpoint answers");

    rules.program(&[web(&[])]).await.expect("program no endpoints");
    for from in [&node.client.netns, node.node_netns()] {
        let refused = answer_from(from, CLUSTER).expect_err("no endpoints");
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_answers_on_every_node_address() {
    let node = ServiceNode::start("10.244.12.0/24").await;
    let mut rules = Rules::new(&node.proxy_config());
    let mut service = web(&[&node.a, &node.b]);
    service.node_port = Some(NODE_PORT);
    rules.program(&[service.clone()]).await.expect("program");

    let on_uplink = SocketAddr::from((NODE_ADDRESS, NODE_PORT));
    let from_outside = names_answering(&node.outside, on_uplink, 30);
    assert_eq!(distinct(&from_outside), HashSet::from(["a", "b"]), "another host reaches both: {from_outside:?}");
    let on_bridge = SocketAddr::from((node.gateway, NODE_PORT));
    assert_eq!(distinct(&names_answering(&node.client.netns, on_bridge, 20)), HashSet::from(["a", "b"]));
    let from_node = names_answering(node.node_netns(), on_uplink, 20);
    assert_eq!(distinct(&from_node), HashSet::from(["a", "b"]), "the node reaches its own node port");

    service.endpoints.clear();
    rules.program(&[service]).await.expect("program no endpoints");
    let refused = answer_from(&node.outside, on_uplink).expect_err("no endpoints");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_a_client_on_one_endpoint() {
    let node = ServiceNode::start("10.244.13.0/24").await;
    let mut rules = Rules::new(&node.proxy_config());
    let mut sticky = web(&[&node.a, &node.b]);
    sticky.affinity_timeout_seconds = Some(600);
    rules.program(&[sticky.clone()]).await.expect("program");

    let answers = names_answering(&node.client.netns, CLUSTER, 30);
    assert_eq!(distinct(&answers).len(), 1, "one endpoint for one client: {answers:?}");
    // A sync (here: the same Services again) keeps who sticks where.
    rules.program(&[sticky]).await.expect("program again");
    let later = names_answering(&node.client.netns, CLUSTER, 10);
    assert_eq!(distinct(&later), distinct(&answers), "still the same endpoint after a sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hairpin_pods_reach_themselves_and_neighbours_through_a_service() {
    let node = ServiceNode::start("10.244.14.0/24").await;
    // The runtime's hostPort masquerade (pod subnet to pod subnet, DNATed)
    // would cover these cases too; without it the proxy's own rules must.
    node.nft(&["flush", "chain", "ip", "r8s", "hostport_postrouting"]);
    let mut rules = Rules::new(&node.proxy_config());

    rules.program(&[web(&[&node.a])]).await.expect("program a");
    assert_eq!(answer_from(&node.a.netns, CLUSTER).expect("a → its own service"), "a");
    rules.program(&[web(&[&node.b])]).await.expect("program b");
    assert_eq!(answer_from(&node.a.netns, CLUSTER).expect("a → b on the same bridge"), "b");
    let mut service = web(&[&node.a]);
    service.node_port = Some(NODE_PORT);
    rules.program(&[service]).await.expect("program node port");
    let own_node_port = SocketAddr::from((node.gateway, NODE_PORT));
    assert_eq!(answer_from(&node.a.netns, own_node_port).expect("a → its node port → a"), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_live_beside_host_ports_and_leave_nothing_stale() {
    let node = ServiceNode::start("10.244.15.0/24").await;
    let mut first = Rules::new(&node.proxy_config());
    let mut sticky = web(&[&node.a, &node.b]);
    sticky.affinity_timeout_seconds = Some(60);
    sticky.node_port = Some(NODE_PORT);
    first.program(&[sticky]).await.expect("program");
    let table = node.table();
    assert!(table.contains("chain hostport_dnat"), "the runtime's hostPort chains stay:\n{table}");
    assert!(table.contains("ep-default/web/tcp/80/"), "{table}");

    // A restarted proxy finds what the last one left, and removes what is no
    // longer wanted in its first sync.
    let mut restarted = Rules::new(&node.proxy_config());
    restarted.program(&[]).await.expect("program nothing");
    let table = node.table();
    assert!(!table.contains("default/web"), "no chain or set of the Service is left:\n{table}");
    assert!(table.contains("chain hostport_dnat") && table.contains("chain svc-services"), "{table}");
}
