//! One lifecycle for every cluster, as root, with real processes and
//! containers: Ctrl-C stops a cluster and keeps its state, and `r8s up`
//! resumes it (objects, pod UIDs and volume contents kept, pods running
//! again); a server, agent or runtime killed under `r8s up` comes back while
//! the pods keep running and nothing is evicted; `r8s down` stops a server
//! restarted by hand; a node that stops reporting has its pods leave the
//! Service's endpoints at once; and a cluster whose state is corrupt is
//! refused with a message that names the file, with nothing started.
//! Build first: `cargo build -p r8s`.

use std::process::Command;
use std::time::Duration;

use client::k8s_openapi::api::core::v1::{Endpoints, Node, Pod};
use client::kube::api::{ListParams, PostParams};
use client::kube::Api;
use e2e::{phase, r8s_bin, TestCluster, IMAGE};
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);

fn ready(pod: &Pod) -> bool {
    pod.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True")
}

fn container_id(pod: &Pod) -> String {
    pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).and_then(|c| c.container_id.clone()).unwrap_or_default()
}

/// The pid a process's pid file names.
fn recorded_pid(cluster: &TestCluster, process: &str) -> Option<i32> {
    let text = std::fs::read_to_string(cluster.data_dir().join("pids").join(format!("{process}.pid"))).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The pid of node `node`'s runtime (`r8s runtime serve` with its socket).
fn runtime_pid(cluster: &TestCluster, node: &str) -> Option<i32> {
    let socket = cluster.run_dir.join(&cluster.name).join(node).join("cri.sock").display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).ok()?).replace('\0', " ");
        (cmdline.contains(" runtime ") && cmdline.contains(" serve ") && cmdline.contains(&socket)).then_some(pid)
    })
}

fn sigkill(pid: i32) {
    // SAFETY: signalling a process of this test's own cluster, by pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A pod on `node` that counts its starts in an emptyDir and serves HTTP.
fn counter(node: &str) -> serde_json::Value {
    json!({"nodeName": node, "containers": [{
        "name": "main", "image": IMAGE,
        "command": ["sh", "-c", "echo start >> /data/starts; mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    }], "volumes": [{"name": "data", "emptyDir": {}}]})
}

async fn exec_output(cluster: &TestCluster, pod: &str, command: &[&str]) -> String {
    let output = Command::new("kubectl")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir.path())
        .args(["exec", pod, "--"])
        .args(command)
        .output()
        .expect("kubectl exec");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_stopped_cluster_resumes_with_its_objects_pods_and_volumes() {
    let mut cluster = TestCluster::up(2);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let node = format!("{}-n2", cluster.name);
    let before = tokio.block_on(async {
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "counter"}, "spec": counter(&node)})).unwrap();
        pods.create(&PostParams::default(), &pod).await.expect("create pod");
        cluster.wait_pod("counter", 2 * MINUTE, ready).await
    });

    let status = cluster.stop();
    assert!(status.success(), "r8s up ends well on Ctrl-C: {status}");
    let traces = cluster.running_traces();
    assert!(traces.is_empty(), "a stopped cluster keeps only its data: {traces:#?}");
    assert!(cluster.data_dir().join("cluster.json").exists(), "the cluster's state stays");

    cluster.resume();
    tokio.block_on(async {
        let after = cluster
            .wait_pod("counter", 2 * MINUTE, |pod| ready(pod) && !container_id(pod).is_empty() && container_id(pod) != container_id(&before))
            .await;
        assert_eq!(after.metadata.uid, before.metadata.uid, "the same pod, not a new one");
        let starts = exec_output(&cluster, "counter", &["cat", "/data/starts"]).await;
        assert_eq!(starts.lines().count(), 2, "the emptyDir kept what the first run wrote: {starts:?}");
        let nodes = cluster.nodes().await;
        assert_eq!(nodes.len(), 2, "the same two nodes");
    });
    let down = cluster.down();
    assert!(down.status.success(), "r8s down: {}", String::from_utf8_lossy(&down.stderr));
    let leftovers = cluster.leftovers();
    assert!(leftovers.is_empty(), "r8s down leaves nothing: {leftovers:#?}");
}

#[test]
fn killed_server_agent_and_runtime_come_back_and_pods_keep_running() {
    let cluster = TestCluster::up(1);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let node = format!("{}-n1", cluster.name);
    tokio.block_on(async {
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "steady"}, "spec": counter(&node)})).unwrap();
        pods.create(&PostParams::default(), &pod).await.expect("create pod");
        let before = cluster.wait_pod("steady", 2 * MINUTE, ready).await;

        for process in ["server-1", "agent-n1", "runtime"] {
            let pid = match process {
                "runtime" => runtime_pid(&cluster, "n1"),
                _ => recorded_pid(&cluster, process),
            }
            .unwrap_or_else(|| panic!("{process} runs"));
            sigkill(pid);
            let deadline = tokio::time::Instant::now() + MINUTE;
            loop {
                let now = match process {
                    "runtime" => runtime_pid(&cluster, "n1"),
                    _ => recorded_pid(&cluster, process),
                };
                let back = now.is_some_and(|p| p != pid && std::path::Path::new(&format!("/proc/{p}")).exists());
                let answering = pods.get("steady").await.is_ok();
                if back && answering {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "{process} did not come back");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // The agent reports the same container, still running, never restarted.
            let pod = cluster.wait_pod("steady", MINUTE, |p| ready(p) && container_id(p) == container_id(&before)).await;
            let restarts = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map(|c| c[0].restart_count);
            assert_eq!(restarts, Some(0), "killing {process} restarted the container");
        }
        let starts = exec_output(&cluster, "steady", &["cat", "/data/starts"]).await;
        assert_eq!(starts.lines().count(), 1, "the container ran on: {starts:?}");
        let node_object = Api::<Node>::all(cluster.client()).get(&node).await.expect("node");
        let unreachable = node_object.spec.and_then(|s| s.taints).unwrap_or_default().into_iter().any(|t| t.key == "node.kubernetes.io/unreachable");
        assert!(!unreachable, "the node was never taken for unreachable");
        assert_eq!(phase(&pods.get("steady").await.unwrap()), "Running");
    });
}

#[test]
fn down_stops_a_server_restarted_by_hand() {
    let mut cluster = TestCluster::up(1);
    let up_pid = cluster.pids()[0];
    let server = recorded_pid(&cluster, "server-1").expect("server runs");
    let command: Vec<String> = String::from_utf8_lossy(&std::fs::read(format!("/proc/{server}/cmdline")).unwrap())
        .split('\0')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    // No supervisor in the way: r8s up is paused while the server is
    // replaced by one started by hand, outside the cluster's cgroup.
    // SAFETY: signalling this test's own r8s up, by pid.
    unsafe { libc::kill(up_pid, libc::SIGSTOP) };
    sigkill(server);
    std::thread::sleep(Duration::from_millis(300));
    let mut by_hand = Command::new(&command[0]).args(&command[1..]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("start a server by hand");
    std::thread::sleep(Duration::from_secs(1));
    assert!(by_hand.try_wait().unwrap().is_none(), "the hand-started server runs");

    let down = cluster.down();
    assert!(down.status.success(), "r8s down: {}", String::from_utf8_lossy(&down.stderr));
    let ended = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        by_hand.try_wait().unwrap().is_some()
    });
    assert!(ended, "r8s down left the hand-started server running");
    let leftovers = cluster.leftovers();
    assert!(leftovers.is_empty(), "r8s down leaves nothing: {leftovers:#?}");
}

#[test]
fn pods_of_a_silent_node_leave_endpoints_at_once() {
    // The node is judged after 15 s of silence; its pods would be evicted only after 300 s.
    let cluster = TestCluster::up_with(2, &["--server-arg=--node-grace-seconds=15"]);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let second = format!("{}-n2", cluster.name);
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        for (name, node) in [("a", format!("{}-n1", cluster.name)), ("b", second.clone())] {
            let spec = counter(&node);
            let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec})).unwrap();
            pods.create(&PostParams::default(), &pod).await.expect("create pod");
        }
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
        Api::<client::k8s_openapi::api::core::v1::Service>::namespaced(cluster.client(), "default")
            .create(&PostParams::default(), &serde_json::from_value(service).unwrap())
            .await
            .expect("create service");
        let endpoints: Api<Endpoints> = Api::namespaced(cluster.client(), "default");
        let ready_ips = || {
            let endpoints = endpoints.clone();
            async move {
                let found = endpoints.get_opt("web").await.ok().flatten();
                found.and_then(|e| e.subsets).unwrap_or_default().into_iter().flat_map(|s| s.addresses.unwrap_or_default()).count()
            }
        };
        let deadline = tokio::time::Instant::now() + 2 * MINUTE;
        while ready_ips().await < 2 {
            assert!(tokio::time::Instant::now() < deadline, "both pods never became endpoints");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        cluster.pause("agent-n2");
        let deadline = tokio::time::Instant::now() + 2 * MINUTE;
        while ready_ips().await != 1 {
            assert!(tokio::time::Instant::now() < deadline, "the silent node's pod stayed an endpoint");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let b = pods.get("b").await.expect("the pod is not evicted yet");
        assert!(!ready(&b), "its Ready condition is False");
        assert_eq!(b.metadata.deletion_timestamp, None, "it is not evicted yet");
        let listed = pods.list(&ListParams::default().labels("app=web")).await.unwrap().items.len();
        assert_eq!(listed, 2);
    });
}

#[test]
fn a_cluster_with_corrupt_state_is_refused_and_nothing_starts() {
    let mut cluster = TestCluster::prepare();
    let state = cluster.data_dir().join("cluster.json");
    std::fs::create_dir_all(cluster.data_dir()).unwrap();
    std::fs::write(&state, "{\"version\": 1, \"shape\": {\"namespaced\"").unwrap();
    let output = Command::new(r8s_bin())
        .args(["up", "--name", &cluster.name])
        .args(cluster.roots())
        .output()
        .expect("r8s up");
    assert!(!output.status.success(), "r8s up started on a corrupt state");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains(&format!("the state of cluster {} in {} is corrupt", cluster.name, state.display())), "{message}");
    assert!(message.contains(&format!("`r8s down {}`", cluster.name)), "says what to do: {message}");
    let traces = cluster.running_traces();
    assert!(traces.is_empty(), "nothing may start: {traces:#?}");
    let down = cluster.down();
    assert!(down.status.success(), "r8s down removes it: {}", String::from_utf8_lossy(&down.stderr));
    assert!(!cluster.data_dir().exists());
}

#[test]
fn three_servers_keep_the_api_and_the_controllers_working_when_one_hangs() {
    let cluster = TestCluster::up_with(1, &["--servers", "3"]);
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        let endpoints: Api<Endpoints> = Api::namespaced(cluster.client(), "default");
        let deadline = tokio::time::Instant::now() + MINUTE;
        loop {
            let kubernetes = endpoints.get_opt("kubernetes").await.ok().flatten();
            let count = kubernetes.and_then(|e| e.subsets).unwrap_or_default().into_iter().flat_map(|s| s.addresses.unwrap_or_default()).count();
            if count == 3 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the kubernetes Service never listed the three servers");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The first server hangs (it may lead raft, the scheduler and the
        // controllers): the API on this machine, the scheduler and the
        // ReplicaSet controller carry on through the others.
        cluster.pause("server-1");
        let deployments: Api<client::k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(cluster.client(), "default");
        let deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "after"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "after"}},
                     "template": {"metadata": {"labels": {"app": "after"}}, "spec": {"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}}}
        }))
        .unwrap();
        let deadline = tokio::time::Instant::now() + MINUTE;
        while let Err(error) = deployments.create(&PostParams::default(), &deployment).await {
            assert!(tokio::time::Instant::now() < deadline, "no write went through with one server hung: {error}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        let deadline = tokio::time::Instant::now() + 2 * MINUTE;
        loop {
            let running = pods.list(&ListParams::default().labels("app=after")).await.map(|l| l.items).unwrap_or_default().iter().filter(|p| phase(p) == "Running").count();
            if running == 2 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the Deployment's pods did not run with one server hung");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}
