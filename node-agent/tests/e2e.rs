//! The node agent end to end, as root: real containers through the real CRI
//! service (`r8s runtime serve`), an in-process API server, and `r8s agent` as
//! a process of its own (see `support`). Build the binary first:
//! `cargo build -p r8s && cargo nextest run -p r8s-node-agent --test e2e`.

mod support;

use std::time::Duration;

use client::k8s_openapi::api::core::v1::{ConfigMap, Secret};
use client::kube::api::DeleteParams;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use support::{condition, container, phase, Cluster, TestNode, IMAGE};

const MINUTE: Duration = Duration::from_secs(60);

fn running(pod: &client::k8s_openapi::api::core::v1::Pod) -> bool {
    phase(pod) == "Running" && container(pod, "main").is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

/// Runs a command through the agent's exec endpoint (a v5.channel.k8s.io
/// WebSocket); returns (stdout, the status frame).
async fn exec(cluster: &Cluster, pod: &str, command: &[&str], stdin: Option<&str>) -> (String, serde_json::Value) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let mut query: Vec<String> = command.iter().map(|c| format!("command={}", c.replace(' ', "%20"))).collect();
    query.push("stdout=true&stderr=true".into());
    if stdin.is_some() {
        query.push("stdin=true".into());
    }
    let url = format!("ws://127.0.0.1:{}/exec/default/{pod}/main?{}", cluster.agent_port, query.join("&"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("exec websocket");
    if let Some(input) = stdin {
        let mut frame = vec![0u8];
        frame.extend_from_slice(input.as_bytes());
        socket.send(Message::Binary(frame.into())).await.unwrap();
        socket.send(Message::Binary(vec![255u8, 0].into())).await.unwrap();
    }
    let (mut stdout, mut status) = (String::new(), serde_json::Value::Null);
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Binary(bytes) = message {
            match bytes.first() {
                Some(1) => stdout.push_str(&String::from_utf8_lossy(&bytes[1..])),
                Some(3) => status = serde_json::from_slice(&bytes[1..]).unwrap_or_default(),
                _ => {}
            }
        }
    }
    (stdout, status)
}

#[test]
fn pod_runs_with_an_ip_logs_and_exec() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        cluster
            .create_pod("web", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", "echo hello from $(NAME); echo second; exec sleep 3600"],
                "env": [{"name": "NAME", "value": "web"}]}]}))
            .await;
        let pod = cluster.wait_pod("web", MINUTE, "Running", running).await;
        let status = pod.status.clone().unwrap();
        let ip = status.pod_ip.clone().expect("a pod IP");
        assert!(ip.starts_with("10."), "{ip}");
        assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        assert!(status.start_time.is_some());
        let main = container(&pod, "main").unwrap();
        assert!(main.container_id.as_deref().unwrap().starts_with("r8s://"));
        assert_eq!(main.restart_count, 0);
        assert!(main.ready);
        assert_eq!(condition(&pod, "Ready").as_deref(), Some("True"));
        assert_eq!(condition(&pod, "PodReadyToStartContainers").as_deref(), Some("True"));

        // Logs, through the agent's HTTP endpoint.
        let mut logs = String::new();
        for _ in 0..50 {
            logs = cluster.agent_get("/containerLogs/default/web/main").await.1;
            if logs.contains("second") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(logs, "hello from web\nsecond\n");
        assert_eq!(cluster.agent_get("/containerLogs/default/web/main?tailLines=1").await.1, "second\n");
        let stamped = cluster.agent_get("/containerLogs/default/web/main?timestamps=true&tailLines=1").await.1;
        assert!(stamped.ends_with(" second\n") && stamped.starts_with("20"), "{stamped}");
        assert_eq!(cluster.agent_get("/containerLogs/default/web/nope").await.0, 404);

        // Exec, relayed to the runtime's streaming server.
        let (out, status) = exec(&cluster, "web", &["sh", "-c", "echo in $(hostname)"], None).await;
        assert_eq!(out, "in web\n", "exec status: {status}");
        assert_eq!(status["status"], "Success");
        let (_, status) = exec(&cluster, "web", &["sh", "-c", "exit 3"], None).await;
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        let (out, _) = exec(&cluster, "web", &["cat"], Some("piped\n")).await;
        assert_eq!(out, "piped\n");

        let events = cluster.events("web").await;
        for expected in ["Pulled: Container image \"busybox:1.36\" already present on machine", "Created: Created container: main", "Started: Started container main"] {
            assert!(events.iter().any(|e| e == expected), "missing {expected:?} in {events:#?}");
        }
    });
}

#[test]
fn env_config_maps_and_secrets_reach_the_container() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        let _: ConfigMap = cluster.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"mode": "fast", "app.conf": "level=3"}})).await;
        let _: Secret = cluster.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}})).await;
        cluster
            .create_pod("cfg", json!({
                "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"],
                    "env": [
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "GREETING", "value": "$(POD) runs $(MODE)"}],
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "secret", "mountPath": "/etc/secret", "readOnly": true},
                                     {"name": "scratch", "mountPath": "/scratch"}]}],
                "volumes": [{"name": "config", "configMap": {"name": "cfg"}}, {"name": "secret", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                            {"name": "scratch", "emptyDir": {"medium": "Memory"}}]}))
            .await;
        cluster.wait_pod("cfg", MINUTE, "Running", running).await;
        let (out, _) = exec(&cluster, "cfg", &["sh", "-c", "echo $MODE $PASSWORD $GREETING; cat /etc/app/app.conf; echo; cat /etc/secret/password; echo; stat -c %a /etc/secret/password; grep -c ' /scratch tmpfs' /proc/mounts"], None).await;
        assert_eq!(out, "fast s3cret cfg runs fast\nlevel=3\ns3cret\n400\n1\n");
        let (_, status) = exec(&cluster, "cfg", &["sh", "-c", "touch /etc/secret/x"], None).await;
        assert_eq!(status["status"], "Failure", "a readOnly mount refuses writes");

        // A missing ConfigMap: CreateContainerConfigError, not a crash.
        cluster.create_pod("broken", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "1"],
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}]})).await;
        let pod = cluster
            .wait_pod("broken", MINUTE, "CreateContainerConfigError", |pod| {
                container(pod, "main").and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()).as_deref() == Some("CreateContainerConfigError")
            })
            .await;
        let waiting = container(&pod, "main").unwrap().state.clone().unwrap().waiting.unwrap();
        assert_eq!(waiting.message.as_deref(), Some("configmap \"absent\" not found"));

        // A volume type r8s lacks: FailedMount and ContainerCreating.
        cluster.create_pod("nfs", json!({"containers": [{"name": "main", "image": IMAGE}], "volumes": [{"name": "share", "nfs": {"server": "nas", "path": "/"}}]})).await;
        cluster.wait_pod("nfs", MINUTE, "ContainerCreating", |pod| {
            container(pod, "main").and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()).as_deref() == Some("ContainerCreating")
        }).await;
        let events = cluster.events("nfs").await;
        assert!(events.iter().any(|e| e.starts_with("FailedMount: ") && e.contains("\"nfs\"")), "{events:#?}");
    });
}

#[test]
fn crash_loop_back_off_and_oom() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        cluster.create_pod("crash", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", "echo dying; exit 2"]}]})).await;
        let pod = cluster
            .wait_pod("crash", MINUTE, "CrashLoopBackOff", |pod| {
                container(pod, "main").and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()).as_deref() == Some("CrashLoopBackOff")
            })
            .await;
        let main = container(&pod, "main").unwrap();
        assert!(main.restart_count >= 1);
        let last = main.last_state.clone().unwrap().terminated.unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
        assert_eq!(phase(&pod), "Running");
        let (_, previous) = cluster.agent_get("/containerLogs/default/crash/main?previous=true").await;
        assert_eq!(previous, "dying\n");
        let events = cluster.events("crash").await;
        assert!(events.iter().any(|e| e.starts_with("BackOff: Back-off restarting failed container main in pod crash_default(")), "{events:#?}");

        cluster.create_pod("hog", json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": IMAGE,
            "command": ["sh", "-c", "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done"],
            "resources": {"limits": {"memory": "16Mi"}}}]})).await;
        let pod = cluster.wait_pod("hog", MINUTE, "Failed", |pod| phase(pod) == "Failed").await;
        let done = container(&pod, "main").unwrap().state.clone().unwrap().terminated.unwrap();
        assert_eq!(done.reason.as_deref(), Some("OOMKilled"));
        assert_eq!(pod.status.unwrap().qos_class.as_deref(), Some("Burstable"));
    });
}

#[test]
fn probes_gate_readiness_and_restart_on_liveness_failure() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        cluster.create_pod("ready", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", "sleep 2; touch /tmp/ready; exec httpd -f -p 8080 -h /tmp"],
            "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/ready"]}, "periodSeconds": 1},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 5, "periodSeconds": 1}}]})).await;
        let pod = cluster.wait_pod("ready", MINUTE, "Running", running).await;
        let ready_now = condition(&pod, "Ready");
        let pod = cluster.wait_pod("ready", MINUTE, "Ready", |pod| condition(pod, "Ready").as_deref() == Some("True")).await;
        assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("True"));
        assert!(ready_now.is_some());

        cluster.create_pod("sick", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", "mkdir -p /www; echo ok > /www/healthz; httpd -p 8080 -h /www; sleep 4; rm /www/healthz; sleep 3600"],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2}}]})).await;
        let pod = cluster.wait_pod("sick", Duration::from_secs(90), "a restart", |pod| container(pod, "main").is_some_and(|c| c.restart_count >= 1)).await;
        assert!(container(&pod, "main").unwrap().last_state.clone().unwrap().terminated.is_some());
        let events = cluster.events("sick").await;
        assert!(events.iter().any(|e| e.starts_with("Unhealthy: Liveness probe failed: HTTP probe failed with statuscode: 404")), "{events:#?}");
        assert!(events.iter().any(|e| e == "Killing: Container main failed liveness probe, will be restarted"), "{events:#?}");
    });
}

#[test]
fn deletion_stops_within_the_grace_period_and_removes_the_pod() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        // The shell ignores SIGTERM, so only the grace period's SIGKILL ends it.
        cluster.create_pod("stubborn", json!({"terminationGracePeriodSeconds": 3, "containers": [{"name": "main", "image": IMAGE,
            "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}]})).await;
        cluster.wait_pod("stubborn", MINUTE, "Running", running).await;
        let started = std::time::Instant::now();
        cluster.pods().delete("stubborn", &DeleteParams::default()).await.expect("delete");
        for _ in 0..300 {
            if cluster.pods().get_opt("stubborn").await.expect("get").is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(cluster.pods().get_opt("stubborn").await.expect("get").is_none(), "the agent removes the pod object");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2), "the container got its grace period ({took:?})");
        let events = cluster.events("stubborn").await;
        assert!(events.iter().any(|e| e == "Killing: Stopping container main"), "{events:#?}");
        // Nothing is left in the runtime.
        let cri = node_agent::cri::Cri::connect(&format!("unix://{}", cluster.socket.display())).unwrap();
        let left = cri.runtime.list_pod_sandbox(None).await.unwrap();
        assert!(left.is_empty(), "{left:?}");
    });
}

#[test]
fn container_logs_rotate_and_go_with_their_pod() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        // About 200 KiB a second of numbered lines: the test agent rotates past 64 KiB, keeping 3 files.
        let script = "i=0; while true; do i=$((i+1)); echo line $i $(head -c 2000 /dev/zero | tr '\\0' x); [ $((i % 100)) = 0 ] && sleep 1; done";
        cluster.create_pod("chatty", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", script]}]})).await;
        let pod = cluster.wait_pod("chatty", MINUTE, "Running", running).await;
        let uid = pod.metadata.uid.clone().unwrap();
        let pod_logs = cluster.dir.join("logs").join(format!("default_chatty_{uid}"));
        let container_logs = pod_logs.join("main");
        let files = || -> Vec<(String, u64)> {
            std::fs::read_dir(&container_logs).into_iter().flatten().flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0))).collect()
        };
        let mut rotations_seen = 0;
        for _ in 0..120 {
            rotations_seen = files().iter().filter(|(name, _)| name.starts_with("0.log.")).count();
            if rotations_seen >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(rotations_seen >= 2, "the log was not rotated: {:?}", files());
        // Rotation goes on, and never keeps more than three files.
        for _ in 0..30 {
            let now = files();
            assert!(now.len() <= 3, "more than --container-log-max-files: {now:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The runtime reopened the log: the current file gets the new lines and `logs` reads them.
        let logs = cluster.pods().logs("chatty", &Default::default()).await.expect("logs");
        assert!(logs.lines().last().is_some_and(|l| l.starts_with("line ")), "logs after rotation: {:?}", logs.lines().last());

        cluster.pods().delete("chatty", &DeleteParams { grace_period_seconds: Some(1), ..Default::default() }).await.expect("delete");
        for _ in 0..300 {
            if cluster.pods().get_opt("chatty").await.expect("get").is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!pod_logs.exists(), "the pod's log directory stays after the pod is gone: {}", pod_logs.display());
    });
}

#[test]
fn restarted_agent_adopts_running_pods() {
    let node = TestNode::new();
    node.run(|mut cluster| async move {
        cluster.create_pod("steady", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", "sleep 3; exit 1"]}]})).await;
        // Let it restart once, then run for good.
        let pod = cluster.wait_pod("steady", MINUTE, "one restart", |pod| container(pod, "main").is_some_and(|c| c.restart_count >= 1)).await;
        let before = container(&pod, "main").unwrap().restart_count;
        cluster.create_pod("calm", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]})).await;
        let calm = cluster.wait_pod("calm", MINUTE, "Running", running).await;
        let id = container(&calm, "main").unwrap().container_id.clone();

        cluster.kill_agent();
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.start_agent();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let calm = cluster.wait_pod("calm", MINUTE, "Running", running).await;
        assert_eq!(container(&calm, "main").unwrap().container_id, id, "the same container, adopted");
        assert_eq!(container(&calm, "main").unwrap().restart_count, 0);
        let pod = cluster.pods().get("steady").await.unwrap();
        assert!(container(&pod, "main").unwrap().restart_count >= before, "restart counts survive");
    });
}

/// Imports the test node's busybox as a `docker save` directory whose config
/// runs as `user`.
fn import_image_with_user(node: &TestNode, name: &str, user: &str) {
    let save = node.dir.path().join(format!("save-{user}"));
    std::fs::create_dir_all(&save).unwrap();
    let layer = std::process::Command::new("tar").arg("-C").arg(node.dir.path().join("rootfs")).arg("-cf").arg(save.join("layer.tar")).arg(".").status().unwrap();
    assert!(layer.success(), "tar of the rootfs");
    std::fs::write(save.join("config.json"), json!({"architecture": "amd64", "os": "linux", "config": {"User": user}, "rootfs": {"type": "layers", "diff_ids": []}}).to_string()).unwrap();
    std::fs::write(save.join("manifest.json"), json!([{"Config": "config.json", "RepoTags": [name], "Layers": ["layer.tar"]}]).to_string()).unwrap();
    let imported = std::process::Command::new(support::r8s_bin()).arg("image").arg("--image-root").arg(node.dir.path().join("images")).arg("import").arg(&save).status().unwrap();
    assert!(imported.success(), "importing {name}");
}

#[test]
fn run_as_non_root_is_checked_against_the_image_user() {
    let node = TestNode::new();
    import_image_with_user(&node, "busybox-uid:1", "1000:1000");
    import_image_with_user(&node, "busybox-named:1", "nobody");
    node.run(|cluster| async move {
        let non_root = json!({"runAsNonRoot": true});
        let pod = |image: &str| json!({"securityContext": non_root, "containers": [{"name": "main", "image": image, "command": ["sh", "-c", "id -u; exec sleep 3600"]}]});
        cluster.create_pod("numeric", pod("busybox-uid:1")).await;
        let root = cluster.create_pod("root", pod(IMAGE)).await;
        let named = cluster.create_pod("named", pod("busybox-named:1")).await;
        let mut as_root = pod("busybox-uid:1");
        as_root["containers"][0]["securityContext"] = json!({"runAsUser": 0});
        let explicit = cluster.create_pod("explicit", as_root).await;

        cluster.wait_pod("numeric", MINUTE, "Running", running).await;
        let mut logs = String::new();
        for _ in 0..50 {
            logs = cluster.agent_get("/containerLogs/default/numeric/main").await.1;
            if !logs.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(logs, "1000\n");

        let full_name = |pod: &client::k8s_openapi::api::core::v1::Pod| {
            let meta = &pod.metadata;
            format!("{}_default({})", meta.name.as_deref().unwrap(), meta.uid.as_deref().unwrap())
        };
        let expected = [
            (root, "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: main)"),
            (named, "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"{pod}\", container: main)"),
            (explicit, "container's runAsUser breaks non-root policy (pod: \"{pod}\", container: main)"),
        ];
        for (created, message) in expected {
            let name = created.metadata.name.clone().unwrap();
            let refused = |pod: &client::k8s_openapi::api::core::v1::Pod| {
                container(pod, "main").and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()).as_deref() == Some("CreateContainerConfigError")
            };
            let pod = cluster.wait_pod(&name, MINUTE, "CreateContainerConfigError", refused).await;
            let waiting = container(&pod, "main").unwrap().state.clone().unwrap().waiting.unwrap();
            assert_eq!(waiting.message.unwrap(), message.replace("{pod}", &full_name(&created)));
            let events = cluster.events(&name).await;
            assert!(events.iter().any(|e| e.starts_with("Failed: Error: container")), "{events:#?}");
        }
    });
}
