//! Shared by the CRI tests: a node made of a network namespace with a bridge
//! pod network, a busybox image, and the CRI service serving on a unix socket
//! in the test's own directory, with its own state, cgroup and netns roots.
//! Everything (pods, the node namespace, cgroups, files) is removed on drop,
//! also when a test fails.

#![allow(dead_code)] // each test file uses part of it

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runtime::cri::api::{
    ContainerConfig, ContainerMetadata, ImageSpec, KeyValue, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata,
};
use runtime::cri::{CriConfig, CriServer, CriService};
use runtime::network::netlink::Netlink;
use runtime::network::{BridgeConfig, BridgeNetwork, NetNs, PodNetwork};
use runtime::RuntimeConfig;
use tokio::sync::oneshot;

#[path = "../runtime_support/mod.rs"]
pub mod runtime_support;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub const IMAGE: &str = "busybox:latest";

/// The directories and names of one test node; kept across service restarts.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub config: CriConfig,
    /// The node's network namespace (`None`: networking disabled).
    pub netns: Option<NetNs>,
    pub pod_cidr: String,
    pub socket: PathBuf,
}

impl Node {
    /// A node with pod CIDR `cidr`, or without pod networking when `None`.
    pub async fn new(cidr: Option<&str>) -> Self {
        let dir = tempfile::Builder::new().prefix("r8s-test-cri-").tempdir_in("/run").unwrap();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let rootfs = dir.path().join("busybox");
        runtime_support::build_busybox_rootfs(&rootfs);
        let mut runtime = RuntimeConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_r8s")));
        runtime.state_root = dir.path().join("state");
        runtime.cgroup_root = format!("r8s-test-cri-{}-{n}", std::process::id());
        let mut config = CriConfig::new(runtime);
        config.root = dir.path().join("cri");
        config.image_root = dir.path().join("images");
        config.netns_dir = dir.path().join("netns");
        let store = runtime::image::ImageStore::open(&config.image_root).unwrap();
        store.import_rootfs(&rootfs, "busybox").unwrap();
        let netns = match cidr {
            Some(_) => {
                let netns = NetNs::create(dir.path().join("node-netns")).unwrap();
                let netlink = Netlink::connect(Some(netns.path())).await.unwrap();
                netlink.set_up("lo").await.unwrap();
                Some(netns)
            }
            None => None,
        };
        let socket = dir.path().join("cri.sock");
        Node { dir, config, netns, pod_cidr: cidr.unwrap_or_default().to_string(), socket }
    }

    pub async fn network(&self) -> Option<Arc<dyn PodNetwork>> {
        let netns = self.netns.as_ref()?;
        let mut config = BridgeConfig::new(self.pod_cidr.parse().unwrap(), self.dir.path().join("network"));
        config.node_netns = Some(netns.path().to_owned());
        Some(Arc::new(BridgeNetwork::new(config).await.unwrap()))
    }

    /// Starts the CRI service for this node and connects a client.
    pub async fn start(&self) -> Cri {
        let service = CriService::new(self.config.clone(), self.network().await).await.unwrap();
        let streaming = runtime::cri::streaming::Streaming::start(service.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = CriServer { service: service.clone(), streaming: Some(streaming) };
        let socket = self.socket.clone();
        let task = tokio::spawn(async move {
            runtime::cri::serve(server, &socket, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let client = loop {
            match cri::Remote::connect(&self.socket).await {
                Ok(client) => break cri::Cri::new(Arc::new(client)),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        Cri { client, service, stop: Some(stop), task: Some(task) }
    }

    /// Runs a command in the node's namespace (a "host" process).
    pub fn in_node<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.netns.as_ref().expect("a node with a network").run(f).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Pods outlive a stopped service: remove them with a fresh one, on a
        // thread of its own (this may run inside a tokio runtime).
        let config = self.config.clone();
        let netns = self.netns.clone();
        let cidr = self.pod_cidr.clone();
        let network_dir = self.dir.path().join("network");
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let network: Option<Arc<dyn PodNetwork>> = match &netns {
                    Some(netns) => {
                        let mut bridge = BridgeConfig::new(cidr.parse().unwrap(), network_dir);
                        bridge.node_netns = Some(netns.path().to_owned());
                        BridgeNetwork::new(bridge).await.ok().map(|n| Arc::new(n) as Arc<dyn PodNetwork>)
                    }
                    None => None,
                };
                match CriService::new(config, network).await {
                    Ok(service) => {
                        for sandbox in service.sandboxes() {
                            if let Err(e) = service.remove_sandbox(&sandbox.id).await {
                                eprintln!("cleanup of sandbox {}: {e}", sandbox.id);
                            }
                        }
                        for container in service.runtime().list().unwrap_or_default() {
                            let _ = service.runtime().delete(&container.id, true);
                        }
                        let _ = service.runtime().cgroups().remove_root();
                    }
                    Err(e) => eprintln!("cleanup: {e}"),
                }
            });
        });
        let _ = cleanup.join();
        if let Some(netns) = &self.netns {
            let _ = netns.remove();
        }
    }
}

/// A running service and a client of it.
pub struct Cri {
    pub client: cri::Cri,
    pub service: CriService,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cri {
    /// Stops serving (pods keep running).
    pub async fn shutdown(mut self) {
        // As `r8s runtime serve` does: event streams would hold up the graceful stop.
        self.service.events().close();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub async fn run_pod(&mut self, name: &str, customize: impl FnOnce(&mut PodSandboxConfig)) -> Result<String, tonic::Status> {
        let mut config = pod_config(name);
        customize(&mut config);
        self.client.runtime.run_pod_sandbox(config, "").await
    }

    pub async fn create(&mut self, sandbox: &str, name: &str, command: &[&str]) -> Result<String, tonic::Status> {
        let config = container_config(name, command);
        self.client.runtime.create_container(sandbox, config, None).await
    }

    /// Creates and starts a container.
    pub async fn run(&mut self, sandbox: &str, name: &str, command: &[&str]) -> String {
        let id = self.create(sandbox, name, command).await.unwrap();
        self.client.runtime.start_container(&id).await.unwrap();
        id
    }

    /// ExecSync: (exit code, stdout, stderr).
    pub async fn exec(&mut self, container: &str, cmd: &[&str]) -> (i32, String, String) {
        let reply = self.client.runtime.exec_sync(container, strings(cmd), 30).await.unwrap();
        (reply.exit_code, String::from_utf8_lossy(&reply.stdout).into_owned(), String::from_utf8_lossy(&reply.stderr).into_owned())
    }

    /// Retries `cmd` until it exits 0 (a server still starting), at most ~10 s.
    pub async fn exec_until_ok(&mut self, container: &str, cmd: &[&str]) -> String {
        let mut last = (0, String::new(), String::new());
        for _ in 0..100 {
            last = self.exec(container, cmd).await;
            if last.0 == 0 {
                return last.1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{cmd:?} kept failing: {last:?}");
    }

    pub async fn remove_pod(&mut self, id: &str) {
        self.client.runtime.remove_pod_sandbox(id).await.unwrap();
    }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "default".into(), attempt: 0 }),
        hostname: name.into(),
        log_directory: String::new(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                // Kubernetes' defaults: pod network and IPC, a PID namespace per container.
                namespace_options: Some(NamespaceOption { network: 0, pid: 1, ipc: 0, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_config(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: IMAGE.into(), ..Default::default() }),
        command: strings(command),
        envs: vec![KeyValue { key: "GREETING".into(), value: "hello".into() }],
        labels: HashMap::from([("container".to_string(), name.to_string())]),
        annotations: HashMap::from([("note".to_string(), "kept".to_string())]),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

/// The netns pins left in `dir` (none after every pod is gone).
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}
