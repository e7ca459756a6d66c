//! `r8s agent --simulate` as its own process against an `r8s server` (API and
//! store only): the hollow node registers, turns Ready, runs a pod bound to it
//! (without containers), and exits cleanly on SIGTERM.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use kube::Api;
use store::raft::process::ServerProcess;

const WAIT: Duration = Duration::from_secs(60);

fn r8s() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_r8s"))
}

/// The agent process, killed by PID if the test ends early.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The API URL from the kubeconfig the server wrote.
fn api_url(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).expect("the server's kubeconfig");
    let line = text.lines().find_map(|l| l.trim().strip_prefix("server: ")).expect("a server URL");
    line.trim().to_string()
}

async fn eventually<T, Fut: std::future::Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> Fut) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_agent_registers_its_node_and_runs_its_pods() {
    let root = tempfile::Builder::new().prefix("r8s-agent-simulate").tempdir().expect("temp dir");
    let _server = ServerProcess::start(r8s(), 1, root.path(), None, &[]).expect("start r8s server");
    let url = api_url(&root.path().join("server-1").join("kubeconfig.yaml"));
    let node_name = format!("sim-{}", std::process::id());
    let mut agent = Agent(
        Command::new(r8s())
            .args(["agent", "--simulate", "--simulate-ready-delay-ms", "50", "--server", &url, "--node-name", &node_name])
            .spawn()
            .expect("start r8s agent --simulate"),
    );

    let client = client::connect::from_url(&url).expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("the simulated node Ready", || async {
        let node = nodes.get(&node_name).await.ok()?;
        let conditions = node.status?.conditions?;
        conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web" },
        "spec": { "nodeName": node_name, "containers": [{ "name": "web", "image": "nginx" }] }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
    let running = eventually("the pod Running", || async {
        let pod = pods.get("web").await.ok()?;
        (pod.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(pod)
    })
    .await;
    assert_eq!(running.spec.unwrap().node_name.as_deref(), Some(node_name.as_str()));

    // SAFETY: signalling the agent this test started, by its PID.
    unsafe { libc::kill(agent.0.id() as libc::pid_t, libc::SIGTERM) };
    let status = agent.0.wait().expect("wait for the agent");
    assert!(status.success(), "the agent exited with {status} on SIGTERM");
}
