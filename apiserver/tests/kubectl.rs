//! The real kubectl (`/usr/bin/kubectl`, 1.32) against the server: create, get
//! (table, yaml, json), apply twice, scale, describe, label, get -w, delete.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::start;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";

/// Runs kubectl with its own HOME (fresh caches) and kubeconfig.
struct Kubectl {
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(server: &str) -> Kubectl {
        let home = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: r8s\n  cluster:\n    server: {server}\ncontexts:\n- name: r8s\n  context:\n    cluster: r8s\n    user: r8s\n    namespace: default\ncurrent-context: r8s\nusers:\n- name: r8s\n  user: {{}}\n"
        );
        std::fs::create_dir_all(home.path().join(".kube")).expect("kube dir");
        std::fs::write(home.path().join(".kube/config"), config).expect("kubeconfig");
        Kubectl { home }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KUBECTL);
        command
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", "/usr/bin:/bin")
            .env("KUBECONFIG", self.home.path().join(".kube/config"))
            .current_dir(self.home.path())
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl and returns its stdout; fails the test with stderr if it fails.
    async fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().await.expect("run kubectl");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    async fn run_failing(&self, args: &[&str]) -> String {
        let output = self.command(args).output().await.expect("run kubectl");
        assert!(!output.status.success(), "kubectl {args:?} should have failed");
        String::from_utf8_lossy(&output.stderr).to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path.display().to_string()
    }
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: app
    image: nginx:1.25
";

fn app(image: &str, env: &str, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels:
{labels}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: app
  template:
    metadata:
      labels:
        app: app
    spec:
      containers:
      - name: app
        image: {image}
        env:
{env}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_end_to_end() {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: no {KUBECTL}");
        return;
    }
    let server = start().await;
    let kubectl = Kubectl::new(&server.base);

    let version = kubectl.run(&["version"]).await;
    assert!(version.contains("Server Version: v1.32.0-r8s"), "{version}");

    // create -f, with server-side field validation.
    let pod = kubectl.write("pod.yaml", POD);
    assert!(kubectl.run(&["create", "-f", &pod]).await.contains("pod/web created"));

    // Strict server-side validation of unknown fields; --validate=false sends them anyway.
    let unknown = kubectl.write("bad.yaml", &POD.replace("name: web", "name: bad").replace("  containers:", "  bogusField: 1\n  containers:"));
    let rejected = kubectl.run_failing(&["create", "-f", &unknown]).await;
    assert!(rejected.contains("unknown field \"spec.bogusField\""), "{rejected}");
    assert!(kubectl.run(&["create", "-f", &unknown, "--validate=false"]).await.contains("pod/bad created"));
    kubectl.run(&["delete", "pod", "bad"]).await;

    // Validation errors come back as kubectl prints them.
    let invalid = kubectl.write("invalid.yaml", &POD.replace("name: web", "name: invalid").replace("    image: nginx:1.25\n", ""));
    let rejected = kubectl.run_failing(&["create", "-f", &invalid]).await;
    assert!(rejected.contains("is invalid") && rejected.contains("spec.containers[0].image: Required value"), "{rejected}");

    // get as a table, yaml and json.
    let table = kubectl.run(&["get", "pods"]).await;
    let header = table.lines().next().unwrap_or("");
    for column in ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains("web") && table.contains("Pending"), "{table}");
    let wide = kubectl.run(&["get", "pods", "-o", "wide"]).await;
    assert!(wide.contains("NODE") && wide.contains("IP"), "{wide}");
    let yaml = kubectl.run(&["get", "pod", "web", "-o", "yaml"]).await;
    assert!(yaml.contains("image: nginx:1.25") && yaml.contains("kind: Pod"), "{yaml}");
    let json: Value = serde_json::from_str(&kubectl.run(&["get", "pod", "web", "-o", "json"]).await).expect("json");
    assert_eq!(json["metadata"]["name"], "web");
    let missing = kubectl.run_failing(&["get", "pod", "nope"]).await;
    assert!(missing.contains("Error from server (NotFound): pods \"nope\" not found"), "{missing}");

    // apply twice with a change: image, one env var removed, one label added.
    let first = kubectl.write(
        "app.yaml",
        &app("nginx:1.25", "        - name: A\n          value: \"1\"\n        - name: B\n          value: \"2\"", "    app: app"),
    );
    assert!(kubectl.run(&["apply", "-f", &first]).await.contains("deployment.apps/app created"));
    let second = kubectl.write(
        "app.yaml",
        &app("nginx:1.26", "        - name: A\n          value: \"1\"", "    app: app\n    tier: front"),
    );
    assert!(kubectl.run(&["apply", "-f", &second]).await.contains("deployment.apps/app configured"));
    let applied = server.get("/apis/apps/v1/namespaces/default/deployments/app").await.body;
    let container = &applied["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.26");
    assert_eq!(container["env"], serde_json::json!([{"name": "A", "value": "1"}]));
    assert_eq!(applied["metadata"]["labels"]["tier"], "front");
    assert_eq!(applied["metadata"]["generation"], 2);
    assert!(kubectl.run(&["apply", "-f", &second]).await.contains("deployment.apps/app unchanged"));

    // scale.
    assert!(kubectl.run(&["scale", "deployment/app", "--replicas=3"]).await.contains("deployment.apps/app scaled"));
    let scaled = server.get("/apis/apps/v1/namespaces/default/deployments/app").await.body;
    assert_eq!(scaled["spec"]["replicas"], 3);
    let deployments = kubectl.run(&["get", "deploy"]).await;
    assert!(deployments.contains("UP-TO-DATE") && deployments.contains("0/3"), "{deployments}");

    // describe.
    let described = kubectl.run(&["describe", "pod", "web"]).await;
    assert!(described.contains("Name:") && described.contains("web") && described.contains("nginx:1.25"), "{described}");
    let described = kubectl.run(&["describe", "deployment", "app"]).await;
    assert!(described.contains("nginx:1.26"), "{described}");

    // label.
    assert!(kubectl.run(&["label", "pod", "web", "tier=back"]).await.contains("pod/web labeled"));
    let labeled = server.get("/api/v1/namespaces/default/pods/web").await.body;
    assert_eq!(labeled["metadata"]["labels"]["tier"], "back");

    // get -w sees a change.
    let mut watcher = kubectl.command(&["get", "pods", "-w"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("kubectl get -w");
    let mut lines = BufReader::new(watcher.stdout.take().expect("stdout")).lines();
    let next_line = async |lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.expect("kubectl get -w stalled").expect("read").unwrap_or_default()
    };
    let header = next_line(&mut lines).await;
    assert!(header.contains("NAME"), "{header}");
    let first_row = next_line(&mut lines).await;
    assert!(first_row.contains("web"), "{first_row}");
    kubectl.run(&["label", "pod", "web", "tier=middle", "--overwrite"]).await;
    server
        .patch("/api/v1/namespaces/default/pods/web/status", "application/merge-patch+json", serde_json::json!({"status": {"phase": "Running"}}))
        .await;
    let mut saw_running = false;
    for _ in 0..4 {
        let line = next_line(&mut lines).await;
        if line.contains("web") && line.contains("Running") {
            saw_running = true;
            break;
        }
    }
    assert!(saw_running, "kubectl get -w did not print the change");
    if let Some(pid) = watcher.id() {
        // Stop exactly the child started above.
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    }
    let _ = watcher.wait().await;

    // get all, api-resources.
    let all = kubectl.run(&["get", "all"]).await;
    assert!(all.contains("pod/web") && all.contains("deployment.apps/app"), "{all}");
    let resources = kubectl.run(&["api-resources"]).await;
    assert!(resources.contains("deployments") && resources.contains("deploy"), "{resources}");

    // explain reads the OpenAPI schemas.
    let explained = kubectl.run(&["explain", "deployment.spec.replicas"]).await;
    assert!(explained.contains("replicas") && explained.contains("integer"), "{explained}");
    let namespaces = kubectl.run(&["get", "namespaces"]).await;
    assert!(namespaces.contains("kube-system") && namespaces.contains("Active"), "{namespaces}");

    // delete.
    assert!(kubectl.run(&["delete", "pod", "web"]).await.contains("pod \"web\" deleted"));
    assert_eq!(server.get("/api/v1/namespaces/default/pods/web").await.code, 404);
    assert!(kubectl.run(&["delete", "-f", &second]).await.contains("deleted"));
}
