//! Preemption end to end on hollow nodes: a pod of a high PriorityClass that
//! fits nowhere evicts one lower-priority pod (with a `Preempted` event), is
//! nominated for its node and runs there; pods of equal priority never evict.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;

use common::eventually;

const WAIT: Duration = Duration::from_secs(60);

/// A bare pod asking for 2 CPUs (half a hollow node) in the class `p<priority>`.
fn pod(name: &str, priority: i32) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "priorityClassName": format!("p{priority}"),
            "containers": [{ "name": "main", "image": "busy", "resources": { "requests": { "cpu": "2" } } }]
        }
    }))
    .expect("a valid pod")
}

async fn running_on(pods: &Api<Pod>, name: &str) -> Option<String> {
    let pod = pods.get(name).await.ok()?;
    (pod.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(())?;
    pod.spec?.node_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_one_lower_priority_pod() {
    let cluster = common::start(2, Default::default()).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let classes: Api<PriorityClass> = Api::all(cluster.client.clone());
    for value in [0, 1, 2, 100, 1000] {
        let class = json!({ "metadata": { "name": format!("p{value}") }, "value": value });
        classes.create(&PostParams::default(), &serde_json::from_value(class).unwrap()).await.expect("create class");
    }
    let low = ["low-0", "low-1", "low-2", "mid"];
    for (index, name) in low.iter().enumerate() {
        // Two CPUs each fill both 4-CPU nodes; `mid` outranks the others.
        let priority = if index == 3 { 100 } else { index as i32 };
        pods.create(&PostParams::default(), &pod(name, priority)).await.expect("create");
    }
    for name in low {
        eventually(&format!("{name} running"), WAIT, || running_on(&pods, name)).await;
    }

    // An equal-priority pod waits instead of preempting.
    pods.create(&PostParams::default(), &pod("peer", 0)).await.expect("create peer");
    pods.create(&PostParams::default(), &pod("vip", 1000)).await.expect("create vip");
    let node = eventually("vip running", WAIT, || running_on(&pods, "vip")).await;
    let vip = pods.get("vip").await.unwrap();
    assert_eq!(vip.status.unwrap().nominated_node_name.as_deref(), Some(node.as_str()));

    let left: Vec<String> = pods.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|p| p.metadata.name).collect();
    assert!(left.contains(&"mid".to_string()), "the higher-priority pod stays: {left:?}");
    let evicted: Vec<&str> = low.iter().copied().filter(|n| !left.iter().any(|l| l == n)).collect();
    assert_eq!(evicted, ["low-0"], "exactly the lowest-priority pod goes");
    assert_eq!(running_on(&pods, "peer").await, None, "the equal-priority pod still waits");

    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let preempted = eventually("a Preempted event", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.into_iter().find(|e| e.reason.as_deref() == Some("Preempted"))
    })
    .await;
    assert_eq!(preempted.involved_object.name.as_deref(), Some("low-0"));
    assert!(preempted.message.unwrap().ends_with(&format!("on node {node}")));
}
