//! Node IPAM against a real API server: Nodes get distinct pod CIDRs, an
//! exhausted range leaves a Node without one (with a CIDRNotAvailable event)
//! until a deleted Node frees its subnet, and restarted controllers keep the
//! subnets they find on the Nodes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use controller::manager::Settings;
use controller::nodeipam;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};

use common::{eventually, start_api};

const WAIT: Duration = Duration::from_secs(30);

fn settings() -> Settings {
    // Two /24s only, so that the third node finds the range exhausted.
    let ipam = nodeipam::Settings::new("10.9.0.0/23".parse().unwrap(), 24).unwrap();
    Settings { node_ipam: Some(ipam), ..Default::default() }
}

async fn create_node(nodes: &Api<Node>, name: &str) {
    let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.expect("create node");
}

async fn pod_cidrs(nodes: &Api<Node>) -> BTreeMap<String, String> {
    let list = nodes.list(&ListParams::default()).await.expect("list nodes").items;
    list.into_iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, n.spec?.pod_cidr.filter(|c| !c.is_empty())?)))
        .collect()
}

async fn exhausted_events(client: &Client, node: &str) -> usize {
    let events: Api<Event> = Api::all(client.clone());
    let list = events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    list.iter().filter(|e| e.reason.as_deref() == Some("CIDRNotAvailable") && e.involved_object.name.as_deref() == Some(node)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_cidrs_and_freed_ones_are_reused() {
    let (client, _url, _server) = start_api().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let controllers = tokio::spawn(controller::manager::run(client.clone(), settings()));
    for name in ["a", "b", "c"] {
        create_node(&nodes, name).await;
    }

    let given = eventually("two nodes with pod CIDRs", WAIT, || async {
        let cidrs = pod_cidrs(&nodes).await;
        (cidrs.len() == 2).then_some(cidrs)
    })
    .await;
    assert_eq!(given.values().collect::<std::collections::BTreeSet<_>>().len(), 2, "distinct: {given:?}");
    let waiting = ["a", "b", "c"].into_iter().find(|n| !given.contains_key(*n)).unwrap();
    eventually("a CIDRNotAvailable event for the node left without one", WAIT, || async {
        (exhausted_events(&client, waiting).await > 0).then_some(())
    })
    .await;

    // The controllers restart: they read the subnets back from the Nodes.
    controllers.abort();
    let _controllers = tokio::spawn(controller::manager::run(client.clone(), settings()));
    let (freed_node, freed_cidr) = given.iter().next().map(|(n, c)| (n.clone(), c.clone())).unwrap();
    nodes.delete(&freed_node, &DeleteParams::default()).await.expect("delete node");

    let after = eventually("the freed subnet given to the waiting node", WAIT, || async {
        let cidrs = pod_cidrs(&nodes).await;
        cidrs.contains_key(waiting).then_some(cidrs)
    })
    .await;
    assert_eq!(after[waiting], freed_cidr, "the waiting node got the deleted node's subnet");
    assert_eq!(after.len(), 2);
    assert_ne!(after.values().next(), after.values().nth(1), "never a duplicate: {after:?}");
}
