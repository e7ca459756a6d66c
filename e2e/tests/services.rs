//! Services on `r8s up --nodes 3`, as root, with real containers: a
//! Deployment of three busybox httpd pods spread over the nodes, each
//! answering its own name, behind a ClusterIP Service and a NodePort
//! Service. A client pod reaches all three through the cluster IP and the
//! Service's DNS names; every node's address serves the node port; scaling
//! down takes the removed pods out of rotation; a node whose agent hangs has
//! its pod replaced on the others while the Service keeps answering; and
//! `r8s down` leaves nothing behind. One cluster runs the whole story, in
//! order, to keep the suite short. Build first: `cargo build -p r8s`.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use client::k8s_openapi::api::apps::v1::Deployment;
use client::k8s_openapi::api::core::v1::{Node, Pod, Service};
use client::kube::api::{ListParams, Patch, PatchParams, PostParams};
use client::kube::Api;
use e2e::{phase, TestCluster, IMAGE};
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);
/// Requests per target in a round; with even balancing over three pods,
/// missing one of them by chance is about 3 × (2/3)^30 ≈ 2e-5.
const ROUND: usize = 30;

/// Three busybox httpd replicas on port 8080 (named `http`), each serving its
/// pod's name, spread over the nodes (softly, so that the pods of a lost
/// node can come back on the others).
fn web_deployment() -> Deployment {
    let script = "hostname > /www/index.html && exec httpd -f -p 8080 -h /www";
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app": "web"}}
                    }],
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web", "image": IMAGE, "command": ["sh", "-c", script],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}
                    }]
                }
            }
        }
    }))
    .expect("deployment")
}

fn service(name: &str, type_: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": type_, "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .expect("service")
}

/// A pod that requests each target [`ROUND`] times and prints `<target> <answer>` per request.
fn requester(targets: &[&str]) -> serde_json::Value {
    let script = format!(
        "for i in $(seq {ROUND}); do for target in {}; do echo \"$target $(wget -qO- http://$target/ 2>&1)\"; done; done",
        targets.join(" ")
    );
    json!({"restartPolicy": "Never", "containers": [{"name": "client", "image": IMAGE, "command": ["sh", "-c", script]}]})
}

fn is_ready(pod: &Pod) -> bool {
    pod.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The web pods that are Ready and not being deleted: name → node.
async fn ready_web_pods(cluster: &TestCluster) -> Vec<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let list = pods.list(&ListParams::default().labels("app=web")).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .map(|p| (p.metadata.name.unwrap_or_default(), p.spec.and_then(|s| s.node_name).unwrap_or_default()))
        .collect()
}

/// Polls until `check` holds on the ready web pods; panics after `limit`.
async fn wait_web_pods(cluster: &TestCluster, what: &str, limit: Duration, check: impl Fn(&[(String, String)]) -> bool) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let pods = ready_web_pods(cluster).await;
        if check(&pods) {
            return pods;
        }
        if tokio::time::Instant::now() > deadline {
            cluster.print_logs();
            panic!("{what}: the ready web pods are {pods:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn names(pods: &[(String, String)]) -> BTreeSet<String> {
    pods.iter().map(|(name, _)| name.clone()).collect()
}

/// One HTTP GET from inside a network namespace of the cluster (Debian's
/// busybox-static on the host), bounded by `timeout`: the body, or why not.
fn get_from(netns: &str, url: &str) -> Result<String, String> {
    let output = Command::new("timeout")
        .args(["5", "ip", "netns", "exec", netns, "/bin/busybox", "wget", "-qO-", url])
        .output()
        .expect("ip netns exec");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!("{url} from {netns}: {} {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}

fn internal_ip(node: &Node) -> String {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref()).expect("node addresses");
    addresses.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone()).expect("an InternalIP")
}

#[test]
fn a_service_balances_over_three_nodes_and_follows_scaling_and_a_lost_node() {
    // A short grace period and toleration, so that the lost node's pod is
    // evicted quickly; the grace period stays above the agents' 10 s Lease
    // renewal, or live nodes would turn NotReady between renewals.
    let mut cluster = TestCluster::up_with(3, &["--server-arg=--node-grace-seconds=15", "--server-arg=--default-toleration-seconds=2"]);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let client = cluster.client();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        deployments.create(&PostParams::default(), &web_deployment()).await.expect("create deployment");
        let web = services.create(&PostParams::default(), &service("web", "ClusterIP")).await.expect("create service");
        let cluster_ip = web.spec.and_then(|s| s.cluster_ip).expect("a cluster IP");
        let pods = wait_web_pods(&cluster, "three ready pods on three nodes", 3 * MINUTE, |pods| {
            pods.len() == 3 && pods.iter().map(|(_, node)| node).collect::<BTreeSet<_>>().len() == 3
        })
        .await;
        let backends = names(&pods);

        // By cluster IP, full DNS name and short name, from a pod.
        let first = format!("{}-n1", cluster.name);
        let targets = [cluster_ip.as_str(), "web.default.svc.cluster.local", "web"];
        cluster.create_pod("client", &first, requester(&targets)).await;
        let done = cluster.wait_pod("client", 3 * MINUTE, |p| matches!(phase(p), "Succeeded" | "Failed")).await;
        let log = cluster.logs("client").await;
        assert_eq!(phase(&done), "Succeeded", "the client failed: {log}");
        for target in targets {
            let answers: BTreeSet<&str> = log.lines().filter_map(|l| l.strip_prefix(&format!("{target} "))).collect();
            assert_eq!(answers, backends.iter().map(String::as_str).collect(), "answers through {target} (client log:\n{log})");
        }

        // A node port, through every node's address, from the cluster's hub network.
        let node_port_service = services.create(&PostParams::default(), &service("web-nodeport", "NodePort")).await.expect("create NodePort service");
        let node_port = node_port_service.spec.and_then(|s| s.ports).and_then(|p| p.first()?.node_port).expect("a node port");
        let hub = format!("r8s-{}", cluster.name);
        for node in cluster.nodes().await {
            let url = format!("http://{}:{node_port}/", internal_ip(&node));
            let mut answers = BTreeSet::new();
            // The node's proxy programs the port shortly after the Service exists.
            let deadline = tokio::time::Instant::now() + MINUTE;
            while answers != backends && tokio::time::Instant::now() < deadline {
                if let Ok(answer) = get_from(&hub, &url) {
                    answers.insert(answer);
                }
            }
            assert_eq!(answers, backends, "answers through {url}");
        }

        // Scaled to one: the removed pods leave the Service's rotation.
        let netns = format!("r8s-{}-n1", cluster.name);
        let url = format!("http://{cluster_ip}/");
        let scale = |replicas: i32| Patch::Merge(json!({"spec": {"replicas": replicas}}));
        deployments.patch("web", &PatchParams::default(), &scale(1)).await.expect("scale to 1");
        let left = wait_web_pods(&cluster, "one ready pod", 2 * MINUTE, |pods| pods.len() == 1).await;
        let survivor = left[0].0.clone();
        let deadline = tokio::time::Instant::now() + MINUTE;
        let mut answers = Vec::new();
        while !(answers.len() >= ROUND && answers[answers.len() - ROUND..].iter().all(|a| *a == Ok(survivor.clone()))) && tokio::time::Instant::now() < deadline {
            answers.push(get_from(&netns, &url));
        }
        let last: Vec<_> = answers.iter().rev().take(ROUND).collect();
        assert!(last.iter().all(|a| **a == Ok(survivor.clone())), "only {survivor} answers after scaling to 1; the last answers: {last:?}");

        // Back to three, then node 3's agent hangs: its pod comes back on the
        // other nodes and the Service answers all along.
        deployments.patch("web", &PatchParams::default(), &scale(3)).await.expect("scale to 3");
        let third = format!("{}-n3", cluster.name);
        let pods = wait_web_pods(&cluster, "three ready pods, one on node 3", 3 * MINUTE, |pods| pods.len() == 3 && pods.iter().any(|(_, node)| *node == third)).await;
        let lost: String = pods.iter().find(|(_, node)| *node == third).map(|(name, _)| name.clone()).unwrap();
        cluster.pause("agent-n3");
        let mut failures = Vec::new();
        let deadline = tokio::time::Instant::now() + 3 * MINUTE;
        let replaced = loop {
            if let Err(error) = get_from(&netns, &url) {
                failures.push(error);
            }
            let pods = ready_web_pods(&cluster).await;
            if pods.len() == 3 && pods.iter().all(|(_, node)| *node != third) {
                break pods;
            }
            if tokio::time::Instant::now() > deadline {
                cluster.print_logs();
                panic!("{lost} on node 3 was not replaced on the other nodes: ready web pods {pods:?}");
            }
        };
        assert!(failures.is_empty(), "the Service failed {} requests while node 3 was lost, the first: {:?}", failures.len(), failures.first());
        assert!(!names(&replaced).contains(&lost), "{lost} is replaced");
        // The replacement joins the rotation.
        let mut answers = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + MINUTE;
        while !names(&replaced).is_subset(&answers) && tokio::time::Instant::now() < deadline {
            match get_from(&netns, &url) {
                Ok(answer) => {
                    answers.insert(answer);
                }
                Err(error) => failures.push(error),
            }
        }
        assert!(names(&replaced).is_subset(&answers), "all of {replaced:?} answer: {answers:?}");
        assert!(failures.is_empty(), "the Service failed {} requests after node 3 was lost, the first: {:?}", failures.len(), failures.first());
    });
    let down = cluster.down();
    assert!(down.status.success(), "r8s down: {}", String::from_utf8_lossy(&down.stderr));
    let leftovers = cluster.leftovers();
    assert!(leftovers.is_empty(), "r8s down left these behind: {leftovers:#?}");
}
