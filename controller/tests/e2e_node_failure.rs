//! A node whose agent stops renewing its Lease is marked unreachable and
//! tainted; its pods are evicted and replaced on the other nodes; when the agent
//! comes back the taint goes.

mod common;

use std::time::Duration;

use controller::manager::Settings;
use controller::nodelifecycle::{self, UNREACHABLE};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;

use common::{available, deployment, eventually};

const WAIT: Duration = Duration::from_secs(60);

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

fn has_unreachable_taint(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == UNREACHABLE && t.effect == "NoExecute"))
}

fn ready_status(node: &Node) -> Option<String> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_lost_node_come_back_elsewhere() {
    let settings = Settings {
        node_lifecycle: nodelifecycle::Settings {
            grace_period: Duration::from_secs(2),
            default_toleration_seconds: 1,
            monitor_period: Duration::from_millis(200),
        },
        ..Default::default()
    };
    let cluster = common::start(3, settings).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    deployments.create(&PostParams::default(), &deployment("web", 6, "nginx:1")).await.expect("create");
    eventually("6 replicas available", WAIT, || available(&deployments, "web", 6)).await;

    let placed = pods.list(&ListParams::default()).await.unwrap().items;
    let lost = node_of(&placed[0]).expect("a bound pod");
    cluster.nodes.stop_node(&lost);

    eventually("the lost node marked unreachable and tainted", WAIT, || async {
        let node = nodes.get(&lost).await.ok()?;
        (ready_status(&node).as_deref() == Some("Unknown") && has_unreachable_taint(&node)).then_some(())
    })
    .await;
    eventually("6 replicas available on the other nodes", WAIT, || async {
        available(&deployments, "web", 6).await?;
        let live: Vec<Pod> =
            pods.list(&ListParams::default()).await.ok()?.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        (live.len() == 6 && live.iter().all(|p| node_of(p).is_some_and(|n| n != lost))).then_some(())
    })
    .await;

    cluster.nodes.resume_node(&lost);
    eventually("the node Ready and untainted again", WAIT, || async {
        let node = nodes.get(&lost).await.ok()?;
        (ready_status(&node).as_deref() == Some("True") && !has_unreachable_taint(&node)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_removes_dependents_before_the_owner() {
    let cluster = common::start(2, Settings::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment("fg", 3, "nginx:1")).await.expect("create");
    eventually("3 replicas available", WAIT, || available(&deployments, "fg", 3)).await;

    deployments.delete("fg", &DeleteParams::foreground()).await.expect("delete");
    let marked = deployments.get("fg").await.expect("still there while dependents go");
    assert!(marked.metadata.finalizers.unwrap_or_default().contains(&"foregroundDeletion".to_string()));
    eventually("the Deployment gone after its pods", WAIT, || async {
        let gone = matches!(deployments.get("fg").await, Err(ref e) if client::is_not_found(e));
        let left = pods.list(&ListParams::default()).await.ok()?.items;
        (gone && left.is_empty()).then_some(())
    })
    .await;
}
