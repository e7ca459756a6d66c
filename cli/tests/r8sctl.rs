//! r8sctl against a real API server (in this process, on 127.0.0.1:0, over the
//! in-memory store): the flow a user runs, checked by what r8sctl prints, plus
//! taking turns with the real kubectl on the same object.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use store::mem::MemStore;

const KUBECTL: &str = "/usr/bin/kubectl";

/// An API server and a home directory with a kubeconfig pointing at it.
struct Cluster {
    home: tempfile::TempDir,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let store = MemStore::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(apiserver::serve(store, listener, apiserver::Config::default()));
        let home = tempfile::Builder::new().prefix("r8s-cli-test-").tempdir().expect("temp dir");
        std::fs::create_dir_all(home.path().join(".kube")).expect("kube dir");
        std::fs::write(
            home.path().join(".kube/config"),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: r8s\n  cluster:\n    server: {url}\ncontexts:\n- name: r8s\n  context:\n    cluster: r8s\n    user: admin\n- name: other\n  context:\n    cluster: r8s\n    user: admin\n    namespace: kube-system\ncurrent-context: r8s\nusers:\n- name: admin\n  user: {{}}\n"
            ),
        )
        .expect("kubeconfig");
        Cluster { home, server }
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", "/usr/bin:/bin")
            .current_dir(self.home.path())
            .stdin(Stdio::null());
        command
    }

    async fn output(&self, program: &str, args: &[&str]) -> Output {
        let mut command = self.command(program, args);
        tokio::task::spawn_blocking(move || command.output().expect("run"))
            .await
            .expect("join")
    }

    /// Runs r8sctl, expects success, returns stdout.
    async fn r8sctl(&self, args: &[&str]) -> String {
        let out = self.output(env!("CARGO_BIN_EXE_r8sctl"), args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "r8sctl {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    /// Runs r8sctl, expects failure, returns stderr.
    async fn r8sctl_fails(&self, args: &[&str]) -> String {
        let out = self.output(env!("CARGO_BIN_EXE_r8sctl"), args).await;
        assert!(!out.status.success(), "r8sctl {args:?} should have failed");
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    async fn kubectl(&self, args: &[&str]) -> String {
        let out = self.output(KUBECTL, args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.home.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path.display().to_string()
    }

    fn path(&self) -> &Path {
        self.home.path()
    }
}

fn deployment(image: &str, env: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: {image}
        env:
{env}
"
    )
}

const CONFIG_MAPS: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: one
  labels:
    tier: a
data:
  k: v
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: two
  labels:
    tier: b
data:
  k: w
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_describe_label_delete() {
    let cluster = Cluster::start().await;
    let file = cluster.write("cms.yaml", CONFIG_MAPS);

    assert_eq!(cluster.r8sctl(&["create", "-f", &file]).await, "configmap/one created\nconfigmap/two created\n");
    let err = cluster.r8sctl_fails(&["create", "-f", &file]).await;
    assert!(err.contains("Error from server (AlreadyExists): configmaps \"one\" already exists"), "{err}");

    let table = cluster.r8sctl(&["get", "configmaps"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("DATA") && lines[0].ends_with("AGE"), "{table}");
    assert!(lines[1].starts_with("one ") && lines[2].starts_with("two "), "{table}");

    assert_eq!(cluster.r8sctl(&["get", "cm", "-l", "tier=b", "-o", "name"]).await, "configmap/two\n");
    assert_eq!(cluster.r8sctl(&["get", "configmap/one", "-o", "jsonpath={.data.k}"]).await, "v");
    let yaml = cluster.r8sctl(&["get", "cm", "one", "-o", "yaml"]).await;
    assert!(yaml.contains("kind: ConfigMap") && yaml.contains("name: one") && yaml.contains("resourceVersion:"), "{yaml}");
    let list: serde_json::Value = serde_json::from_str(&cluster.r8sctl(&["get", "cm", "-o", "json"]).await).expect("json");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));

    assert_eq!(cluster.r8sctl(&["label", "cm", "one", "team=x"]).await, "configmap/one labeled\n");
    let err = cluster.r8sctl_fails(&["label", "cm", "one", "team=y"]).await;
    assert!(err.contains("'team' already has a value (x), and --overwrite is false"), "{err}");
    cluster.r8sctl(&["label", "cm", "one", "team=y", "--overwrite"]).await;
    assert_eq!(cluster.r8sctl(&["get", "cm", "-l", "team=y", "-o", "name"]).await, "configmap/one\n");
    assert_eq!(cluster.r8sctl(&["annotate", "cm/one", "note=hi"]).await, "configmap/one annotated\n");

    let described = cluster.r8sctl(&["describe", "cm", "one"]).await;
    assert!(described.starts_with("Name:         one\nNamespace:    default\n"), "{described}");
    assert!(described.contains("team=y") && described.contains("Events:"), "{described}");

    assert_eq!(cluster.r8sctl(&["delete", "cm", "one", "two"]).await, "configmap \"one\" deleted\nconfigmap \"two\" deleted\n");
    let err = cluster.r8sctl_fails(&["get", "cm", "one"]).await;
    assert_eq!(err.trim(), "Error from server (NotFound): configmaps \"one\" not found");
    let out = cluster.output(env!("CARGO_BIN_EXE_r8sctl"), &["get", "cm"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "No resources found in default namespace.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_scale_and_take_turns_with_kubectl() {
    let cluster = Cluster::start().await;
    let v1 = cluster.write("v1.yaml", &deployment("busybox:1.36", "        - name: A\n          value: \"1\"\n        - name: B\n          value: \"2\""));
    assert_eq!(cluster.r8sctl(&["apply", "-f", &v1]).await, "deployment.apps/web created\n");
    assert_eq!(cluster.r8sctl(&["apply", "-f", &v1]).await, "deployment.apps/web unchanged\n");

    // A new image and one variable less: the variable goes, the image changes.
    let v2 = cluster.write("v2.yaml", &deployment("busybox:1.37", "        - name: A\n          value: \"1\""));
    assert_eq!(cluster.r8sctl(&["apply", "-f", &v2]).await, "deployment.apps/web configured\n");
    let image = cluster.r8sctl(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]).await;
    assert_eq!(image, "busybox:1.37");
    let env = cluster.r8sctl(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"]).await;
    assert_eq!(env, "A");
    let generation = cluster.r8sctl(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]).await;
    assert_eq!(generation, "2");

    // Several types at once, each name with its type, as kubectl prints them.
    let many = cluster.r8sctl(&["get", "deploy,svc,cm"]).await;
    assert!(many.lines().any(|l| l.starts_with("deployment.apps/web ")), "{many}");
    assert!(!many.contains("service/"), "no Services exist, so no Service table: {many}");
    let err = cluster.r8sctl_fails(&["get", "deploy,cm", "-w"]).await;
    assert!(err.contains("you may only specify a single resource type"), "{err}");

    assert_eq!(cluster.r8sctl(&["scale", "deploy/web", "--replicas=5"]).await, "deployment.apps/web scaled\n");
    assert_eq!(cluster.r8sctl(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]).await, "5");
    let err = cluster.r8sctl_fails(&["scale", "deploy", "web", "--replicas=1", "--current-replicas=4"]).await;
    assert!(err.contains("Expected replicas to be 4, was 5"), "{err}");

    // kubectl reads the annotation r8sctl wrote, and r8sctl reads kubectl's.
    let v3 = cluster.write("v3.yaml", &deployment("busybox:1.38", "        - name: A\n          value: \"1\""));
    assert_eq!(cluster.kubectl(&["apply", "-f", &v3]).await, "deployment.apps/web configured\n");
    assert_eq!(cluster.r8sctl(&["apply", "-f", &v3]).await, "deployment.apps/web unchanged\n");
    assert_eq!(cluster.r8sctl(&["apply", "-f", &v2]).await, "deployment.apps/web configured\n");
    let image = cluster.kubectl(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]).await;
    assert_eq!(image, "busybox:1.37");

    // The manifest says 2 replicas, so the applies undid the scale, as with kubectl.
    let wait = cluster.r8sctl(&["wait", "--for=jsonpath={.spec.replicas}=2", "deploy/web", "--timeout=10s"]).await;
    assert_eq!(wait, "deployment.apps/web condition met\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_changes() {
    let cluster = Cluster::start().await;
    let file = cluster.write("cms.yaml", CONFIG_MAPS);
    cluster.r8sctl(&["create", "-f", &file]).await;

    let mut watch = cluster
        .command(env!("CARGO_BIN_EXE_r8sctl"), &["get", "cm", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start r8sctl get -w");
    let stdout = watch.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).take(3).collect::<Vec<_>>()
    });
    // The list is printed first; the label change arrives through the watch.
    let mut seen = Vec::new();
    for i in 0..100 {
        let label = format!("seen={i}");
        cluster.r8sctl(&["label", "cm", "two", &label, "--overwrite"]).await;
        if lines.is_finished() {
            seen = lines.join().expect("reader");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(seen, ["configmap/one", "configmap/two", "configmap/two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_version_and_contexts() {
    let cluster = Cluster::start().await;
    let resources = cluster.r8sctl(&["api-resources"]).await;
    let pods = resources.lines().find(|l| l.starts_with("pods ")).expect("pods listed");
    assert!(pods.split_whitespace().eq(["pods", "po", "v1", "true", "Pod"]), "{pods}");
    assert!(resources.lines().any(|l| l.split_whitespace().eq(["deployments", "deploy", "apps/v1", "true", "Deployment"])), "{resources}");

    let version = cluster.r8sctl(&["version"]).await;
    assert!(version.starts_with("Client Version: v1.32.0-r8s") && version.contains("Server Version: v1.32"), "{version}");

    assert_eq!(cluster.r8sctl(&["config", "current-context"]).await, "r8s\n");
    assert_eq!(cluster.r8sctl(&["config", "use-context", "other"]).await, "Switched to context \"other\".\n");
    let contexts = cluster.r8sctl(&["config", "get-contexts"]).await;
    assert!(contexts.lines().any(|l| l.split_whitespace().eq(["*", "other", "r8s", "admin", "kube-system"])), "{contexts}");
    // The context's namespace is now the default one.
    let err = cluster.r8sctl_fails(&["get", "cm", "nope"]).await;
    assert!(err.contains("configmaps \"nope\" not found"), "{err}");
    let out = cluster.output(env!("CARGO_BIN_EXE_r8sctl"), &["get", "cm"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "No resources found in kube-system namespace.");
    let err = cluster.r8sctl_fails(&["get", "widgets"]).await;
    assert!(err.contains("the server doesn't have a resource type \"widgets\""), "{err}");
    assert!(cluster.path().join(".kube/config").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_with_the_servers_reason() {
    let cluster = Cluster::start().await;
    let bad = cluster.write(
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers: []\n",
    );
    let err = cluster.r8sctl_fails(&["apply", "-f", &bad]).await;
    assert!(err.contains("Error from server (Invalid)"), "{err}");
    assert!(err.contains("metadata.name") && err.contains("spec.containers: Required value"), "{err}");
    let broken = cluster.write("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n");
    let err = cluster.r8sctl_fails(&["apply", "-f", &broken]).await;
    assert!(err.contains("error parsing") && err.contains("line"), "{err}");
}
