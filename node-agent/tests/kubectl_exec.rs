//! The real kubectl (`/usr/bin/kubectl`, 1.32) running commands in real
//! containers (and attaching to them) through the API server, which passes
//! `pods/exec` and `pods/attach` on to the agent
//! (see `support` for the test node); r8sctl exec beside it. Build the binaries first:
//! `cargo build -p r8s -p r8s-cli && cargo nextest run -p r8s-node-agent --test kubectl_exec`.

mod support;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{container, phase, Cluster, TestNode, IMAGE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const KUBECTL: &str = "/usr/bin/kubectl";
const MINUTE: Duration = Duration::from_secs(60);

/// kubectl with its own HOME (fresh caches) and a kubeconfig for the cluster.
struct Kubectl {
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(cluster: &Cluster) -> Kubectl {
        let home = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: r8s\n  cluster:\n    server: {}\ncontexts:\n- name: r8s\n  context:\n    cluster: r8s\n    user: r8s\n    namespace: default\ncurrent-context: r8s\nusers:\n- name: r8s\n  user: {{}}\n",
            cluster.base
        );
        std::fs::write(home.path().join("config"), config).expect("kubeconfig");
        Kubectl { home }
    }

    /// Runs kubectl (in this thread's network namespace, the node's), feeding
    /// it `stdin`.
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_program(Path::new(KUBECTL), args, stdin).await
    }

    /// The same with r8sctl, which reads the same kubeconfig.
    async fn r8sctl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let exe = std::env::current_exe().expect("test binary path");
        let r8sctl = exe.parent().and_then(Path::parent).expect("target dir").join("r8sctl");
        assert!(r8sctl.exists(), "{} is missing: run `cargo build -p r8s-cli` first", r8sctl.display());
        self.run_program(&r8sctl, args, stdin).await
    }

    async fn run_program(&self, program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self.command(program, args, if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.expect("kubectl stdin");
        }
        tokio::time::timeout(MINUTE, child.wait_with_output()).await.expect("kubectl finished").expect("kubectl output")
    }

    /// kubectl left running (killed when dropped), its output read as it comes.
    fn spawn(&self, args: &[&str]) -> Child {
        self.command(Path::new(KUBECTL), args, Stdio::null())
    }

    fn command(&self, program: &Path, args: &[&str], stdin: Stdio) -> Child {
        Command::new(program)
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", "/usr/bin:/bin")
            .env("KUBECONFIG", self.home.path().join("config"))
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run kubectl")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn running(pod: &client::k8s_openapi::api::core::v1::Pod) -> bool {
    phase(pod) == "Running" && container(pod, "main").is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

#[test]
fn kubectl_exec_runs_commands_in_the_container() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        cluster.create_pod("web", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]})).await;
        cluster.wait_pod("web", MINUTE, "Running", running).await;
        let kubectl = Kubectl::new(&cluster);

        let out = kubectl.run(&["exec", "web", "--", "sh", "-c", "echo hi from $(hostname); echo oops >&2"], None).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "hi from web\n");
        assert_eq!(text(&out.stderr), "oops\n");

        let out = kubectl.run(&["exec", "web", "--", "sh", "-c", "exit 3"], None).await;
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

        let out = kubectl.run(&["exec", "-i", "web", "--", "cat"], Some("x\ny\n")).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "x\ny\n");

        let out = kubectl.run(&["exec", "web", "-c", "main", "--", "cat", "/etc/hostname"], None).await;
        assert_eq!(text(&out.stdout), "web\n", "{}", text(&out.stderr));

        // r8sctl exec, the same way.
        let out = kubectl.r8sctl(&["exec", "web", "--", "sh", "-c", "echo hi; echo oops >&2"], None).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!((text(&out.stdout).as_str(), text(&out.stderr).as_str()), ("hi\n", "oops\n"));
        let out = kubectl.r8sctl(&["exec", "web", "--", "sh", "-c", "exit 3"], None).await;
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let out = kubectl.r8sctl(&["exec", "-i", "web", "--", "cat"], Some("piped\n")).await;
        assert_eq!(text(&out.stdout), "piped\n", "{}", text(&out.stderr));
        let out = kubectl.r8sctl(&["exec", "web", "-c", "other", "--", "true"], None).await;
        assert_eq!(text(&out.stderr).trim(), "Error from server (BadRequest): container other is not valid for pod web");
    });
}

#[test]
fn kubectl_exec_reports_what_kubernetes_reports() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        cluster.create_pod("web", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]})).await;
        // Never starts: its image is not on the node.
        cluster.create_pod("stuck", json!({"containers": [{"name": "main", "image": "r8s.test/missing:1", "imagePullPolicy": "Never"}]})).await;
        cluster.wait_pod("web", MINUTE, "Running", running).await;
        let kubectl = Kubectl::new(&cluster);

        let out = kubectl.run(&["exec", "nope", "--", "true"], None).await;
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("pods \"nope\" not found"), "{}", text(&out.stderr));

        let out = kubectl.run(&["exec", "web", "-c", "other", "--", "true"], None).await;
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("container other is not valid for pod web"), "{}", text(&out.stderr));

        let out = kubectl.run(&["exec", "stuck", "--", "true"], None).await;
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("container not found (\"main\")"), "{}", text(&out.stderr));
    });
}

#[test]
fn kubectl_attach_joins_the_containers_own_stdio() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        let reader = json!({"name": "main", "image": IMAGE, "command": ["cat"], "stdin": true, "stdinOnce": true});
        cluster.create_pod("reader", json!({"restartPolicy": "Never", "containers": [reader]})).await;
        let ticking = "while true; do echo tick; sleep 1; done";
        cluster.create_pod("talker", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", ticking]}]})).await;
        cluster.wait_pod("reader", MINUTE, "Running", running).await;
        cluster.wait_pod("talker", MINUTE, "Running", running).await;
        let kubectl = Kubectl::new(&cluster);

        // stdin reaches the container's cat; with stdinOnce its end is cat's
        // end, and the attach ends with the container.
        let out = kubectl.run(&["attach", "-i", "reader"], Some("hello\n")).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "hello\n");
        cluster.wait_pod("reader", MINUTE, "Succeeded", |pod| phase(pod) == "Succeeded").await;

        // Without -i the client follows what the container prints from now on.
        let mut attached = kubectl.spawn(&["attach", "talker"]);
        let mut lines = BufReader::new(attached.stdout.take().expect("kubectl stdout")).lines();
        let line = tokio::time::timeout(MINUTE, lines.next_line()).await.expect("a line within a minute").expect("kubectl stdout");
        assert_eq!(line.as_deref(), Some("tick"));
    });
}
