//! An r8s node for end-to-end tests, as root, with real containers:
//!
//! - a network namespace is the node (lo up; the pod bridge lives in it);
//! - `r8s runtime serve` (a separate process) serves CRI for it, with its own
//!   state, image, cgroup and network roots and a busybox image;
//! - the API server runs in the test over a MemStore, listening inside the
//!   node's namespace;
//! - `r8s agent` (a separate process, so it can be SIGKILLed) runs in the node's
//!   namespace and joins as node `n1`.
//!
//! The test body runs on a tokio runtime whose threads are all inside the node's
//! namespace, so it reaches the API server, the agent and the pods' IPs.
//! Everything is removed on drop, also when the test fails.

#![allow(dead_code)] // each test uses part of it

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::k8s_openapi::api::core::v1::{Event, Pod};
use client::kube::api::{ListParams, PostParams};
use client::kube::{Api, Client};
use runtime::network::NetNs;
use store::mem::{MemStore, MemStoreConfig};

pub const NODE: &str = "n1";
pub const IMAGE: &str = "busybox:1.36";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Shared with the whole-cluster tests.
pub use e2e::{r8s_bin, require_root};

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Process(pub Child);

impl Process {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub netns: NetNs,
    pub cgroup_root: String,
    pub socket: PathBuf,
    pub agent_port: u16,
    runtime: Option<Process>,
}

impl TestNode {
    pub fn new() -> Self {
        require_root();
        // Checked before anything is made: a panic here leaves nothing behind.
        let bin = r8s_bin();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = std::process::id() % 1000;
        let dir = tempfile::Builder::new().prefix("r8s-test-agent-").tempdir_in("/run").expect("temp dir");
        let netns = NetNs::create(dir.path().join("node-netns")).expect("node namespace");
        netns
            .run(|| Command::new("ip").args(["link", "set", "lo", "up"]).status())
            .expect("enter the node namespace")
            .expect("ip link set lo up");
        let rootfs = dir.path().join("rootfs");
        build_busybox_rootfs(&rootfs);
        let images = dir.path().join("images");
        let imported = Command::new(&bin).arg("image").arg("--image-root").arg(&images).arg("import-rootfs").arg(&rootfs).arg(IMAGE).status().expect("r8s image");
        assert!(imported.success(), "importing the busybox image");
        let mut node = TestNode {
            socket: dir.path().join("cri.sock"),
            cgroup_root: format!("r8s-test-agent-{id}-{n}"),
            agent_port: 10250,
            dir,
            netns,
            runtime: None,
        };
        node.start_runtime(n);
        node
    }

    fn start_runtime(&mut self, n: usize) {
        let dir = self.dir.path();
        let bridge = format!("r8sa{}{n}", std::process::id() % 1000);
        let cidr = format!("10.{}.{}.0/24", 200 + (std::process::id() % 50), n % 250);
        let mut command = Command::new(r8s_bin());
        command
            .arg("runtime")
            .arg("--state-root")
            .arg(dir.join("state"))
            .arg("--cgroup-root")
            .arg(&self.cgroup_root)
            .arg("--image-root")
            .arg(dir.join("images"))
            .arg("serve")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--cri-root")
            .arg(dir.join("cri"))
            .arg("--netns-dir")
            .arg(dir.join("netns"))
            .arg("--network-state-dir")
            .arg(dir.join("network"))
            .arg("--node-netns")
            .arg(self.netns.path())
            .args(["--pod-cidr", &cidr, "--bridge", &bridge])
            .stdout(Stdio::null());
        // Started inside the node's namespace, like the agent: its exec
        // streaming server listens on the node's loopback.
        let child = self.netns.run(move || command.spawn()).expect("enter the node namespace").expect("r8s runtime serve");
        self.runtime = Some(Process(child));
        for _ in 0..300 {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the runtime did not serve on {}", self.socket.display());
    }

    /// Runs `test` on a tokio runtime whose threads are in the node's namespace.
    pub fn run<F, Fut>(&self, test: F)
    where
        F: FnOnce(Cluster) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let netns_path = self.netns.path().to_owned();
        let dir = self.dir.path().to_owned();
        let socket = self.socket.clone();
        let outcome = self.netns.run(move || {
            let enter_path = netns_path.clone();
            let tokio = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .on_thread_start(move || enter(&enter_path))
                .build()
                .expect("tokio runtime");
            tokio.block_on(async move {
                let cluster = Cluster::start(dir, socket).await;
                test(cluster).await;
            });
        });
        if let Err(error) = outcome {
            panic!("test failed: {error}");
        }
    }

    /// Removes every sandbox and container through CRI, then stops the runtime.
    fn clean_up(&mut self) {
        let endpoint = format!("unix://{}", self.socket.display());
        let cleanup = std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
            tokio.block_on(async move {
                let Ok(cri) = node_agent::cri::Cri::connect(&endpoint) else { return };
                let runtime = &cri.runtime;
                for sandbox in runtime.list_pod_sandbox(None).await.unwrap_or_default() {
                    let _ = runtime.stop_pod_sandbox(&sandbox.id).await;
                    let _ = runtime.remove_pod_sandbox(&sandbox.id).await;
                }
                for container in runtime.list_containers(None).await.unwrap_or_default() {
                    let _ = runtime.remove_container(&container.id).await;
                }
            });
        });
        let _ = cleanup.join();
        if let Some(mut runtime) = self.runtime.take() {
            // SIGTERM: the runtime stops serving cleanly.
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(runtime.0.id() as libc::pid_t, libc::SIGTERM) };
            let _ = runtime.0.wait();
        }
        // The runtime's cgroup subtree, now empty, on every v1 hierarchy (and v2).
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for entry in entries.flatten() {
                remove_cgroup_tree(&entry.path().join(&self.cgroup_root));
            }
        }
        let _ = self.netns.remove();
        // Mounts left under the test directory (tmpfs volumes) go before it does.
        unmount_under(self.dir.path());
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.clean_up();
    }
}

fn remove_cgroup_tree(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut targets: Vec<&str> = mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|t| t.starts_with(&prefix)).collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in targets {
        if let Ok(path) = std::ffi::CString::new(target) {
            // SAFETY: a valid C string naming a mount under the test's own directory.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) {
    let file = File::open(path).expect("node namespace");
    // SAFETY: a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

fn build_busybox_rootfs(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).expect("rootfs");
    for dir in ["etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(root.join(dir)).expect("rootfs");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("/bin/busybox (busybox-static)");
    let list = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n").expect("passwd");
}

/// The API server and the agent of a test node, seen from inside it.
pub struct Cluster {
    pub base: String,
    pub client: Client,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub agent_port: u16,
    agent: Option<Process>,
    _api: client::AbortOnDrop,
    _store: Arc<MemStore>,
}

impl Cluster {
    async fn start(dir: PathBuf, socket: PathBuf) -> Self {
        let store = MemStore::with_config(MemStoreConfig { compaction_interval: None, ..Default::default() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        apiserver::bootstrap(store.as_ref()).await.expect("bootstrap");
        let router = apiserver::router(store.clone(), apiserver::Config { bookmark_interval: Duration::from_secs(5), ..Default::default() });
        let api = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let agent_port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let client = client::connect::from_url(&base).expect("client");
        let mut cluster = Cluster { base, client, dir, socket, agent_port, agent: None, _api: client::AbortOnDrop(vec![api]), _store: store };
        cluster.start_agent();
        cluster.wait_node_ready().await;
        cluster
    }

    /// Starts `r8s agent` (in this thread's namespace, the node's).
    pub fn start_agent(&mut self) {
        let child = Command::new(r8s_bin())
            .args(["agent", "--server", &self.base, "--node-name", NODE, "--node-ip", "127.0.0.1"])
            .arg("--container-runtime-endpoint")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--root-dir")
            .arg(self.dir.join("agent"))
            .arg("--log-dir")
            .arg(self.dir.join("logs"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.agent_port))
            // Small, so that a test sees logs rotate.
            .args(["--container-log-max-size", "64Ki", "--container-log-max-files", "3"])
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .spawn()
            .expect("r8s agent");
        self.agent = Some(Process(child));
    }

    /// SIGKILL, as a crash.
    pub fn kill_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.kill();
        }
    }

    async fn wait_node_ready(&self) {
        let nodes: Api<client::k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        for _ in 0..300 {
            if let Ok(Some(node)) = nodes.get_opt(NODE).await {
                let ready = node.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True");
                if ready {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {NODE} did not become Ready");
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates a pod bound to the test node from a JSON spec.
    pub async fn create_pod(&self, name: &str, spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["nodeName"] = serde_json::json!(NODE);
        let pod: Pod = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})).expect("pod");
        self.pods().create(&PostParams::default(), &pod).await.expect("create pod")
    }

    pub async fn create<K>(&self, object: serde_json::Value) -> K
    where
        K: client::kube::Resource<Scope = client::k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(object).expect("object");
        Api::<K>::namespaced(self.client.clone(), "default").create(&PostParams::default(), &object).await.expect("create")
    }

    /// Polls the pod until `check` holds (up to `limit`); panics with the last
    /// status otherwise.
    pub async fn wait_pod(&self, name: &str, limit: Duration, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            if let Ok(pod) = self.pods().get(name).await {
                if check(&pod) {
                    return pod;
                }
                last = Some(pod);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let status = last.and_then(|p| p.status).map(|s| serde_json::to_string_pretty(&s).unwrap_or_default());
        panic!("pod {name}: {what} not reached in {limit:?}; status: {}\nevents: {:#?}", status.unwrap_or_default(), self.events(name).await);
    }

    /// `reason: message` of the pod's events, oldest first.
    pub async fn events(&self, pod: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        let mut found: Vec<(Option<String>, String)> = list
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod))
            .map(|e| (e.first_timestamp.map(|t| t.0.to_string()), format!("{}: {}", e.reason.unwrap_or_default(), e.message.unwrap_or_default())))
            .collect();
        found.sort();
        found.into_iter().map(|(_, e)| e).collect()
    }

    /// GET on the agent's HTTP port.
    pub async fn agent_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.agent_port)).await.expect("agent port");
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
        (code, body)
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The state of a container in a pod's status.
pub fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a client::k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == name)
}

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

pub fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind).map(|c| c.status.clone())
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
