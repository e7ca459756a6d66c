//! The CRI service driven through its gRPC API, as the kubelet would: pod
//! networking, shared namespaces, exec, logs, stats, statuses, restarts and
//! bad input. Needs root (namespaces, cgroups, veths inside a node netns).

mod cri_support;

use std::time::Duration;

use cri_support::{entries, pod_config, Node};
use runtime::cri::api::{
    AttachRequest, ContainerFilter, ContainerStateValue, ImageSpec, NamespaceOption,
};
use runtime::cri::api::{ContainerState, PodSandboxState};
use futures::{SinkExt, StreamExt};
use runtime::cri::api::ExecRequest;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tonic::Code;

/// A busybox web server answering `name` on `port`.
fn web_server(name: &str, port: u16) -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p {port} -h /www")]
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn pod_ip(cri: &mut cri_support::Cri, sandbox: &str) -> String {
    let status = cri.client.runtime.pod_sandbox_status(sandbox, false).await.unwrap().status.unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    status.network.unwrap().ip
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pods_reach_each_other_by_pod_ip() {
    let node = Node::new(Some("10.231.1.0/24")).await;
    let mut cri = node.start().await;
    let a = cri.run_pod("web-a", |_| {}).await.unwrap();
    let b = cri.run_pod("web-b", |_| {}).await.unwrap();
    let (ip_a, ip_b) = (pod_ip(&mut cri, &a).await, pod_ip(&mut cri, &b).await);
    assert!(ip_a.starts_with("10.231.1.") && ip_b.starts_with("10.231.1.") && ip_a != ip_b, "{ip_a} {ip_b}");
    let server_a = cri.run(&a, "server", &as_strs(&web_server("pod-a", 8080))).await;
    let server_b = cri.run(&b, "server", &as_strs(&web_server("pod-b", 8080))).await;
    let from_b = cri.exec_until_ok(&server_b, &["wget", "-q", "-O", "-", &format!("http://{ip_a}:8080/")]).await;
    assert_eq!(from_b.trim(), "pod-a");
    let from_a = cri.exec_until_ok(&server_a, &["wget", "-q", "-O", "-", &format!("http://{ip_b}:8080/")]).await;
    assert_eq!(from_a.trim(), "pod-b");
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_a_pod_share_localhost_hostname_and_etc_files() {
    let node = Node::new(Some("10.231.2.0/24")).await;
    let mut cri = node.start().await;
    let pod = cri.run_pod("shared", |_| {}).await.unwrap();
    let ip = pod_ip(&mut cri, &pod).await;
    let server = cri.run(&pod, "server", &["httpd", "-f", "-p", "127.0.0.1:9090", "-h", "/etc"]).await;
    let client = cri.run(&pod, "client", &["sleep", "600"]).await;
    let hostname = cri.exec_until_ok(&client, &["wget", "-q", "-O", "-", "http://127.0.0.1:9090/hostname"]).await;
    assert_eq!(hostname.trim(), "shared");
    assert_eq!(cri.exec(&server, &["hostname"]).await.1.trim(), "shared");
    let hosts = cri.exec(&client, &["cat", "/etc/hosts"]).await.1;
    assert!(hosts.contains(&format!("{ip}\tshared")), "{hosts}");
    // Each container has its own PID namespace (Kubernetes' default).
    assert_eq!(cri.exec(&client, &["sh", "-c", "ps -o comm | grep -c httpd"]).await.1.trim(), "0");
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_and_a_shared_process_namespace() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let pod = cri
        .run_pod("hostnet", |config| {
            let options = NamespaceOption { network: 2, pid: 0, ipc: 0, ..Default::default() };
            config.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options = Some(options);
        })
        .await
        .unwrap();
    assert_eq!(pod_ip(&mut cri, &pod).await, "");
    let first = cri.run(&pod, "first", &["sleep", "600"]).await;
    let second = cri.run(&pod, "second", &["sleep", "601"]).await;
    // The node's interfaces are visible, and the pause is PID 1 of the pod.
    let node_links = std::fs::read_dir("/sys/class/net").unwrap().count();
    let links = cri.exec(&first, &["ls", "/sys/class/net"]).await.1;
    assert_eq!(links.split_whitespace().count(), node_links, "{links}");
    let init = cri.exec(&second, &["cat", "/proc/1/cmdline"]).await.1;
    assert!(init.contains("pause"), "{init:?}");
    let ps = cri.exec(&second, &["ps", "-o", "args"]).await.1;
    assert!(ps.contains("sleep 600") && ps.contains("sleep 601"), "{ps}");
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_exec_logs_and_stats() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let logs = node.dir.path().join("pod-logs");
    let logs_dir = logs.display().to_string();
    let pod = cri.run_pod("lifecycle", |c| c.log_directory = logs_dir.clone()).await.unwrap();

    let id = cri.create(&pod, "worker", &["sh", "-c", "echo out-$GREETING; echo err >&2; exec sleep 600"]).await.unwrap();
    let status = |cri: &mut cri_support::Cri, id: String| {
        let client = cri.client.runtime.clone();
        async move { client.container_status(&id, false).await.unwrap().status.unwrap() }
    };
    let created = status(&mut cri, id.clone()).await;
    assert_eq!(created.state, ContainerState::ContainerCreated as i32);
    assert_eq!(created.labels["container"], "worker");
    assert_eq!(created.annotations["note"], "kept");
    assert_eq!(created.log_path, logs.join("worker/0.log").display().to_string());
    assert!(created.created_at > 0 && created.image_ref.starts_with("sha256:"));

    cri.client.runtime.start_container(&id).await.unwrap();
    let running = status(&mut cri, id.clone()).await;
    assert_eq!(running.state, ContainerState::ContainerRunning as i32);
    assert!(running.started_at >= running.created_at);

    let (code, out, err) = cri.exec(&id, &["sh", "-c", "echo to-out; echo to-err >&2; exit 3"]).await;
    assert_eq!((code, out.as_str(), err.as_str()), (3, "to-out\n", "to-err\n"));
    cri.exec(&id, &["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; head -c 4000000 /dev/zero > /tmp/fill"]).await;

    let stats = cri.client.runtime.container_stats(&id).await.unwrap();
    assert!(stats.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    let pod_stats = cri.client.runtime.pod_sandbox_stats(&pod).await.unwrap();
    let linux = pod_stats.linux.unwrap();
    assert!(linux.memory.unwrap().usage_bytes.unwrap().value > 0);
    assert_eq!(linux.containers.len(), 1);

    // The log, in the CRI format, where the kubelet looks for it.
    let log = std::fs::read_to_string(logs.join("worker/0.log")).unwrap();
    assert!(log.contains(" stdout F out-hello\n") && log.contains(" stderr F err\n"), "{log}");

    cri.client.runtime.stop_container(&id, 1).await.unwrap();
    let stopped = status(&mut cri, id.clone()).await;
    assert_eq!(stopped.state, ContainerState::ContainerExited as i32);
    // sleep is its PID namespace's init: it ignores SIGTERM and is killed after the grace period.
    assert_eq!((stopped.exit_code, stopped.reason.as_str()), (137, "Error"));
    assert!(stopped.finished_at >= stopped.started_at);

    let done = cri.run(&pod, "done", &["true"]).await;
    let missing = cri.create(&pod, "missing", &["/no/such/program"]).await;
    let mut completed = status(&mut cri, done.clone()).await;
    for _ in 0..100 {
        if completed.state == ContainerState::ContainerExited as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        completed = status(&mut cri, done.clone()).await;
    }
    assert_eq!((completed.exit_code, completed.reason.as_str()), (0, "Completed"));
    let missing = missing.expect_err("a program that does not exist");
    assert!(missing.message().contains("/no/such/program"), "{missing:?}");

    let filter = ContainerFilter { pod_sandbox_id: pod.clone(), state: Some(ContainerStateValue { state: ContainerState::ContainerExited as i32 }), ..Default::default() };
    let exited = cri.client.runtime.list_containers(Some(filter)).await.unwrap();
    assert_eq!(exited.len(), 2);
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_pod_frees_its_address_and_exhaustion_leaves_nothing() {
    // A /30: the gateway and one pod address.
    let node = Node::new(Some("10.231.3.0/30")).await;
    let mut cri = node.start().await;
    let first = cri.run_pod("first", |_| {}).await.unwrap();
    let ip = pod_ip(&mut cri, &first).await;
    let netns_dir = node.config.netns_dir.clone();
    assert_eq!(entries(&netns_dir).len(), 1);

    let refused = cri.run_pod("second", |_| {}).await.expect_err("no address left");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("exhausted"), "{refused:?}");
    // Nothing half-made: no second sandbox, netns or sandbox directory.
    let listed = cri.client.runtime.list_pod_sandbox(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(entries(&netns_dir).len(), 1);
    assert_eq!(entries(&node.config.root.join("sandboxes")).len(), 1);

    cri.remove_pod(&first).await;
    assert!(entries(&netns_dir).is_empty());
    let second = cri.run_pod("second", |_| {}).await.unwrap();
    assert_eq!(pod_ip(&mut cri, &second).await, ip);
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_service_finds_running_pods_again() {
    let node = Node::new(Some("10.231.4.0/24")).await;
    let mut cri = node.start().await;
    let pod = cri.run_pod("survivor", |_| {}).await.unwrap();
    let ip = pod_ip(&mut cri, &pod).await;
    let container = cri.run(&pod, "sleeper", &["sleep", "600"]).await;
    // pid, name and start time: the same process (the rest of the line are
    // counters and the CPU it last ran on, which may change).
    let identity = ["sh", "-c", "cut -d' ' -f1,2,22 /proc/1/stat"];
    let pid_before = cri.exec(&container, &identity).await.1;
    assert!(pid_before.starts_with("1 (sleep) "), "{pid_before}");
    cri.shutdown().await;

    let mut cri = node.start().await;
    let pods = cri.client.runtime.list_pod_sandbox(None).await.unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!((pods[0].id.as_str(), pods[0].state), (pod.as_str(), PodSandboxState::SandboxReady as i32));
    assert_eq!(pod_ip(&mut cri, &pod).await, ip);
    let containers = cri.client.runtime.list_containers(None).await.unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!((containers[0].id.as_str(), containers[0].state), (container.as_str(), ContainerState::ContainerRunning as i32));
    // The same process, still running.
    assert_eq!(cri.exec(&container, &identity).await.1, pid_before);
    // Names stay taken across the restart.
    let again = cri.create(&pod, "sleeper", &["sleep", "1"]).await.expect_err("duplicate name");
    assert_eq!(again.code(), Code::AlreadyExists);
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let unknown = cri.create("0123456789abcdef", "c", &["true"]).await.expect_err("unknown sandbox");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    let pod = cri.run_pod("bad", |_| {}).await.unwrap();
    let twice = cri.run_pod("bad", |_| {}).await.expect_err("duplicate pod");
    assert_eq!(twice.code(), Code::AlreadyExists, "{twice:?}");

    cri.create(&pod, "one", &["sleep", "60"]).await.unwrap();
    let duplicate = cri.create(&pod, "one", &["sleep", "60"]).await.expect_err("duplicate container");
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert!(duplicate.message().contains("\"one\""), "{duplicate:?}");

    let mut config = cri_support::container_config("img", &["true"]);
    config.image = Some(ImageSpec { image: "nosuch:1.0".into(), ..Default::default() });
    let no_image = cri.client.runtime.create_container(&pod, config, None).await.expect_err("missing image");
    assert_eq!(no_image.code(), Code::NotFound);
    assert!(no_image.message().contains("nosuch:1.0"), "{no_image:?}");

    // Pulls from a registry are tested in registry_pull.rs; a malformed reference never leaves the node.
    let pull = cri.client.images.pull_image(ImageSpec { image: "NoSuch:1.0".into(), ..Default::default() }, None, None).await;
    let pull = pull.expect_err("not a reference");
    assert_eq!(pull.code(), Code::InvalidArgument);
    assert!(pull.message().contains("\"NoSuch:1.0\""), "{pull:?}");

    let attach = cri.client.runtime.attach(AttachRequest { container_id: "x".into(), stdout: true, ..Default::default() }).await;
    assert_eq!(attach.expect_err("attach to an unknown container").code(), Code::NotFound);

    let no_metadata = cri.client.runtime.run_pod_sandbox(Default::default(), "").await;
    assert_eq!(no_metadata.expect_err("no metadata").code(), Code::InvalidArgument);
    let mut bad_parent = pod_config("parent");
    bad_parent.linux.as_mut().unwrap().cgroup_parent = "/../../escape".into();
    let escape = cri.client.runtime.run_pod_sandbox(bad_parent, "").await;
    assert_eq!(escape.expect_err("bad cgroup parent").code(), Code::InvalidArgument);
    assert_eq!(entries(&node.config.root.join("sandboxes")).len(), 1);
    cri.shutdown().await;
}

/// Runs an Exec through its streaming URL as kubectl would (WebSocket,
/// `v5.channel.k8s.io`): `stdin` is sent and closed; returns stdout, stderr
/// and the final status.
async fn exec_stream(cri: &mut cri_support::Cri, container: &str, cmd: &[&str], stdin: Option<&str>) -> (String, String, String) {
    let request = ExecRequest {
        container_id: container.into(),
        cmd: cri_support::strings(cmd),
        tty: false,
        stdin: stdin.is_some(),
        stdout: true,
        stderr: true,
    };
    let url = cri.client.runtime.exec(request).await.unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut ws_request = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    ws_request.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(ws_request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    if let Some(input) = stdin {
        socket.send(Message::Binary([&[0u8][..], input.as_bytes()].concat().into())).await.unwrap();
        socket.send(Message::Binary(vec![255u8, 0].into())).await.unwrap();
    }
    let (mut out, mut err, mut status) = (String::new(), String::new(), String::new());
    while let Some(Ok(message)) = socket.next().await {
        let Message::Binary(data) = message else { continue };
        let text = String::from_utf8_lossy(&data[1..]).into_owned();
        match data[0] {
            1 => out.push_str(&text),
            2 => err.push_str(&text),
            3 => status.push_str(&text),
            _ => {}
        }
    }
    (out, err, status)
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streams_over_websocket() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let pod = cri.run_pod("streams", |_| {}).await.unwrap();
    let container = cri.run(&pod, "shell", &["sleep", "600"]).await;

    let (out, err, status) = exec_stream(&mut cri, &container, &["sh", "-c", "echo streamed; echo oops >&2; exit 7"], None).await;
    assert_eq!((out.as_str(), err.as_str()), ("streamed\n", "oops\n"));
    assert!(status.contains("NonZeroExitCode") && status.contains("\"message\":\"7\""), "{status}");

    let (out, _, status) = exec_stream(&mut cri, &container, &["cat"], Some("from stdin\n")).await;
    assert_eq!(out, "from stdin\n");
    assert!(status.contains("Success"), "{status}");

    // A URL is good once.
    let url = cri
        .client
        .runtime
        .exec(ExecRequest { container_id: container.clone(), cmd: vec!["true".into()], stdout: true, ..Default::default() })
        .await
        .unwrap();
    let mut first = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    first.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(first.clone()).await.unwrap();
    while socket.next().await.is_some() {}
    assert!(tokio_tungstenite::connect_async(first).await.is_err());
    cri.shutdown().await;
}
