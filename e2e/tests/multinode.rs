//! `r8s up --nodes N` and `r8s down`, as root, with real containers: nodes
//! get distinct pod CIDRs, a pod on one node reaches a pod on another by its
//! IP, a node that leaves takes the other nodes' routes to its pods with
//! it, and `r8s down` leaves nothing behind, also after `r8s up` and its
//! processes were SIGKILLed. Build first: `cargo build -p r8s`.

use std::collections::BTreeSet;
use std::time::Duration;

use client::k8s_openapi::api::apps::v1::Deployment;
use client::k8s_openapi::api::core::v1::{Node, Pod};
use client::kube::api::{DeleteParams, ListParams, PostParams};
use client::kube::Api;
use e2e::{phase, pod_ip, TestCluster, IMAGE};
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);

fn ready(node: &Node) -> bool {
    node.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True")
}

/// A busybox httpd answering `hello from <node>` on port 8080.
fn web_server(node: &str) -> serde_json::Value {
    let script = format!("mkdir -p /www && echo hello from {node} > /www/index.html && exec httpd -f -p 8080 -h /www");
    json!({"containers": [{
        "name": "web", "image": IMAGE, "command": ["sh", "-c", script],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    }]})
}

/// A pod that fetches `url` (a few tries, as a client would) and prints what it got.
fn fetcher(url: &str) -> serde_json::Value {
    let script = format!("for try in 1 2 3 4 5 6 7 8 9 10; do wget -qO- {url} && exit 0; sleep 1; done; exit 1");
    json!({"restartPolicy": "Never", "containers": [{"name": "fetch", "image": IMAGE, "command": ["sh", "-c", script]}]})
}

fn ready_pod(pod: &Pod) -> bool {
    pod.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True")
}

fn assert_gone(cluster: &TestCluster) {
    let leftovers = cluster.leftovers();
    assert!(leftovers.is_empty(), "r8s down left these behind: {leftovers:#?}");
}

#[test]
fn three_nodes_route_pod_traffic_between_them_and_down_removes_everything() {
    let mut cluster = TestCluster::up(3);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let nodes = cluster.nodes().await;
        assert_eq!(nodes.len(), 3);
        assert!(nodes.iter().all(ready), "every node is Ready");
        let cidrs: BTreeSet<String> = nodes.iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
        assert_eq!(cidrs.len(), 3, "three distinct pod CIDRs: {cidrs:?}");
        assert!(cidrs.iter().all(|c| c.starts_with("10.244.") && c.ends_with("/24")), "{cidrs:?}");

        let first = format!("{}-n1", cluster.name);
        let second = format!("{}-n2", cluster.name);
        cluster.create_pod("web", &second, web_server(&second)).await;
        let web = cluster.wait_pod("web", 2 * MINUTE, |p| ready_pod(p) && pod_ip(p).is_some()).await;
        let web_ip = pod_ip(&web).unwrap();
        let second_cidr = nodes.iter().find(|n| n.metadata.name.as_deref() == Some(&second)).and_then(|n| n.spec.as_ref()?.pod_cidr.clone()).unwrap();
        assert!(web_ip.starts_with(second_cidr.trim_end_matches("0/24")), "pod IP {web_ip} is in {second}'s pod CIDR {second_cidr}");

        cluster.create_pod("client", &first, fetcher(&format!("http://{web_ip}:8080/"))).await;
        let client = cluster.wait_pod("client", 2 * MINUTE, |p| matches!(phase(p), "Succeeded" | "Failed")).await;
        let answer = cluster.logs("client").await;
        assert_eq!(phase(&client), "Succeeded", "the fetch from {first} to {web_ip} on {second} failed: {answer:?}");
        assert_eq!(answer.trim(), format!("hello from {second}"));

        // Node 3 leaves (its agent hangs, its Node is deleted): the other nodes
        // drop their routes to its pods and keep the rest.
        let cidr_of = |name: &str| nodes.iter().find(|n| n.metadata.name.as_deref() == Some(name)).and_then(|n| n.spec.as_ref()?.pod_cidr.clone()).unwrap();
        let third = format!("{}-n3", cluster.name);
        let routes: BTreeSet<_> = cluster.pod_routes(1).into_iter().collect();
        let expected: BTreeSet<_> = [(cidr_of(&second), "172.30.0.12".to_string()), (cidr_of(&third), "172.30.0.13".to_string())].into_iter().collect();
        assert_eq!(routes, expected, "node 1 routes to the pods of nodes 2 and 3");
        cluster.pause("agent-n3");
        let node_api: Api<Node> = Api::all(cluster.client());
        node_api.delete(&third, &DeleteParams::default()).await.expect("delete node 3");
        let deadline = tokio::time::Instant::now() + MINUTE;
        while cluster.pod_routes(1).len() != 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(cluster.pod_routes(1), vec![(cidr_of(&second), "172.30.0.12".to_string())], "node 1 routes only to node 2's pods");
        assert_eq!(cluster.pod_routes(2), vec![(cidr_of(&first), "172.30.0.11".to_string())], "node 2 routes only to node 1's pods");
    });
    let down = cluster.down();
    assert!(down.status.success(), "r8s down: {}", String::from_utf8_lossy(&down.stderr));
    assert_gone(&cluster);
    let again = cluster.down();
    assert!(again.status.success(), "r8s down is idempotent: {}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn down_after_a_crash_removes_everything() {
    let mut cluster = TestCluster::up(2);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let node = format!("{}-n2", cluster.name);
        cluster.create_pod("web", &node, web_server(&node)).await;
        cluster.wait_pod("web", 2 * MINUTE, |p| phase(p) == "Running").await;
    });
    // r8s up, the server and the agents die at once; the runtimes, their
    // shims and the pod's containers keep running.
    cluster.crash();
    assert!(!cluster.leftovers().is_empty(), "the crash leaves the cluster's pieces behind");
    let down = cluster.down();
    assert!(down.status.success(), "r8s down: {}", String::from_utf8_lossy(&down.stderr));
    assert_gone(&cluster);
}

#[test]
fn pods_of_a_node_whose_agent_hangs_come_back_on_another_node() {
    // A short grace period and toleration, so that the lost node's pods are evicted quickly.
    let cluster = TestCluster::up_with(2, &["--server-arg=--node-grace-seconds=15", "--server-arg=--default-toleration-seconds=2"]);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let deployments: Api<Deployment> = Api::namespaced(cluster.client(), "default");
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sleepers"},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "sleepers"}},
                "template": {"metadata": {"labels": {"app": "sleepers"}}, "spec": {"containers": [{"name": "sleep", "image": IMAGE, "command": ["sleep", "3600"]}]}}
            }
        }))
        .unwrap();
        deployments.create(&PostParams::default(), &deployment).await.expect("create deployment");
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        let running_on = |node: String| {
            let pods = pods.clone();
            async move {
                let list = pods.list(&ListParams::default().labels("app=sleepers")).await.map(|l| l.items).unwrap_or_default();
                list.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none() && phase(p) == "Running")
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
                    .count()
            }
        };
        let (first, second) = (format!("{}-n1", cluster.name), format!("{}-n2", cluster.name));
        let deadline = tokio::time::Instant::now() + 2 * MINUTE;
        while running_on(first.clone()).await + running_on(second.clone()).await < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(running_on(second.clone()).await > 0, "the scheduler spreads the pods over both nodes");

        cluster.pause("agent-n2");
        let deadline = tokio::time::Instant::now() + 2 * MINUTE;
        while running_on(first.clone()).await < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if running_on(first.clone()).await < 4 {
            cluster.print_logs();
        }
        assert_eq!(running_on(first).await, 4, "all four replicas run on the node that is left");
    });
}
