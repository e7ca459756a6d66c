//! The scheduler against the real API server: an unschedulable pod is told why
//! (condition and event, in Kubernetes' words), waits without spinning, and is
//! placed as soon as a node that fits appears.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

async fn start_api() -> (Client, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        let _ = apiserver::serve(store::mem::MemStore::new(), listener, apiserver::Config::default()).await;
    });
    (client::connect::from_url(&url).expect("client"), server)
}

fn node(name: &str, cpu: &str, taint: Option<&str>) -> Node {
    let taints = taint.map(|key| json!([{ "key": key, "effect": "NoExecute" }]));
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
        "spec": { "taints": taints },
        "status": {
            "allocatable": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "capacity": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }]
        }
    }))
    .expect("a valid Node")
}

async fn create_node(nodes: &Api<Node>, node: Node) {
    let name = node.metadata.name.clone().unwrap();
    let status = json!({ "status": node.status });
    nodes.create(&PostParams::default(), &node).await.expect("create node");
    nodes.patch_status(&name, &Default::default(), &kube::api::Patch::Merge(status)).await.expect("node status");
}

async fn eventually<T, Fut: std::future::Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> Fut) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_is_told_why_and_placed_when_a_node_fits() {
    let (client, server) = start_api().await;
    let nodes: Api<Node> = Api::all(client.clone());
    create_node(&nodes, node("small", "1", None)).await;
    create_node(&nodes, node("lost-1", "8", Some("node.kubernetes.io/unreachable"))).await;
    create_node(&nodes, node("lost-2", "8", Some("node.kubernetes.io/unreachable"))).await;
    let scheduler_client = client.clone();
    let scheduler = tokio::spawn(async move {
        let _ = scheduler::run(scheduler_client, scheduler::Settings::default()).await;
    });

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "containers": [{ "name": "web", "image": "nginx", "resources": { "requests": { "cpu": "2" } } }] }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.expect("create pod");

    let expected = "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.";
    let condition = eventually("PodScheduled=False", || async {
        let pod = pods.get("web").await.ok()?;
        pod.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(condition.message.as_deref(), Some(expected));
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let failed = eventually("a FailedScheduling event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("FailedScheduling"))
    })
    .await;
    assert_eq!(failed.message.as_deref(), Some(expected));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));

    // Not retried in a loop: with nothing changing, the pod stays as it is.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let list = events.list(&ListParams::default()).await.unwrap();
    let attempts = list.items.iter().filter(|e| e.reason.as_deref() == Some("FailedScheduling")).count();
    assert_eq!(attempts, 1, "one attempt while nothing changed");

    create_node(&nodes, node("big", "4", None)).await;
    let bound = eventually("the pod bound to the new node", || async {
        pods.get("web").await.ok()?.spec?.node_name.filter(|n| !n.is_empty())
    })
    .await;
    assert_eq!(bound, "big");
    let scheduled = eventually("a Scheduled event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("Scheduled"))
    })
    .await;
    assert_eq!(scheduled.message.as_deref(), Some("Successfully assigned default/web to big"));
    scheduler.abort();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_scheduling_never_double_books_a_node() {
    let (client, server) = start_api().await;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..3 {
        create_node(&nodes, node(&format!("n{i}"), "1", None)).await;
    }
    let scheduler_client = client.clone();
    let scheduler = tokio::spawn(async move {
        let _ = scheduler::run(scheduler_client, scheduler::Settings::default()).await;
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": format!("p{i}"), "namespace": "default" },
            "spec": { "containers": [{ "name": "c", "image": "busybox", "resources": { "requests": { "cpu": "600m" } } }] }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.expect("create pod");
    }
    let placed = eventually("three pods placed", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let nodes: Vec<String> = list.items.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
        let pending = list.items.iter().filter(|p| {
            p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.reason.as_deref() == Some("Unschedulable")))
        });
        (nodes.len() == 3 && pending.count() == 2).then_some(nodes)
    })
    .await;
    let mut distinct = placed.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one 600m pod per 1-cpu node: {placed:?}");
    scheduler.abort();
    server.abort();
}
