//! `r8s-bench cri`: time from RunPodSandbox to a started container (RunPodSandbox,
//! CreateContainer, StartContainer of `sleep`), through CRI gRPC on a unix
//! socket, for one pod at a time and for 50 pods started concurrently, with
//! pod networking (bridge, veth, address) and without it (a network namespace
//! with loopback only).
//!
//! r8s's service runs as `r8s runtime serve` in its own process, with its own
//! state roots and cgroup root; with networking, the node is a network
//! namespace made for the run, so the machine's interfaces stay untouched.
//! containerd is measured with the same client and calls when `--containerd`
//! gives the socket of a running containerd with its CRI plugin.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cri::Remote as CriClient;
use cri::RuntimeService;
use runtime::cri::api::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata,
};
use runtime::network::NetNs;

use crate::stats::{ms, print_table, Samples};

const CONCURRENT_PODS: usize = 50;
pub const IMAGE: &str = "bench-busybox:latest";
/// The pod cgroups' parent (containerd puts it at the root of each hierarchy).
const POD_CGROUPS: &str = "r8s-bench-pods";

#[derive(clap::Args)]
pub struct CriBenchArgs {
    /// Pods started one at a time, per configuration.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// The r8s binary (default: `r8s` beside this benchmark).
    #[arg(long)]
    r8s: Option<PathBuf>,
    /// Also start containerd (Debian's 1.6, CRI plugin, runc, CNI bridge
    /// from containernetworking-plugins) in a network namespace of its own
    /// and measure it with the same calls.
    #[arg(long)]
    with_containerd: bool,
}

pub fn run(args: CriBenchArgs) -> anyhow::Result<()> {
    let r8s = match &args.r8s {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("r8s"),
    };
    if !r8s.is_file() {
        bail!("{} not found: build it first (cargo build --release -p r8s) or pass --r8s", r8s.display());
    }
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(compare(&r8s, &args))
}

/// containerd's name for the same busybox image (also its sandbox image:
/// `sleep infinity` holds the pod's namespaces).
const CONTAINERD_IMAGE: &str = "docker.io/library/bench-busybox:latest";

/// One measured configuration.
struct Row {
    name: String,
    one: Samples,
    concurrent: Samples,
    concurrent_wall: Duration,
}

async fn compare(r8s: &Path, args: &CriBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("r8s-bench-cri-").tempdir_in("/run")?;
    let (rootfs, images) = busybox_image(r8s, dir.path())?;

    let mut rows = Vec::new();
    for networking in [true, false] {
        let name = format!("r8s, {}", if networking { "bridge network" } else { "no network" });
        let server = R8sServer::start(r8s, dir.path(), &images, networking).await?;
        let result = measure(&server.socket, IMAGE, args.runs, &name).await;
        remove_bench_pods(&server.socket).await;
        server.stop();
        rows.push(result?);
    }
    if args.with_containerd {
        let containerd = Containerd::start(dir.path(), &rootfs).await?;
        let result = measure(&containerd.socket, CONTAINERD_IMAGE, args.runs, "containerd 1.6 (CRI, runc, CNI bridge)").await;
        remove_bench_pods(&containerd.socket).await;
        containerd.stop();
        rows.push(result?);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                ms(r.one.percentile(50.0)),
                ms(r.one.percentile(99.0)),
                ms(r.concurrent.percentile(50.0)),
                ms(r.concurrent.percentile(99.0)),
                ms(r.concurrent_wall),
            ]
        })
        .collect();
    println!("RunPodSandbox → CreateContainer → StartContainer, ms ({} pods one at a time; {CONCURRENT_PODS} at once)\n", args.runs);
    print_table(&["runtime", "1 pod p50", "1 pod p99", "50 pods p50", "50 pods p99", "50 pods, all started"], &table);
    Ok(())
}

/// A busybox root filesystem under `dir` (`sleep` is all the pods run), and an
/// r8s image store holding it as `bench-busybox:latest`.
pub fn busybox_image(r8s: &Path, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    for sub in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(sub))?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("copying /bin/busybox (busybox-static)")?;
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep"))?;
    let images = dir.join("images");
    let imported = Command::new(r8s).args(["image", "import-rootfs"]).arg(&rootfs).arg("bench-busybox").arg("--image-root").arg(&images).status()?;
    if !imported.success() {
        bail!("importing the busybox image failed");
    }
    Ok((rootfs, images))
}

/// `r8s runtime serve` in its own process, with roots under the run's directory.
pub struct R8sServer {
    child: Child,
    pub socket: PathBuf,
    node: Option<NetNs>,
    dir: PathBuf,
}

impl R8sServer {
    pub async fn start(r8s: &Path, base: &Path, images: &Path, networking: bool) -> anyhow::Result<Self> {
        let dir = base.join(if networking { "with-network" } else { "without-network" });
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("cri.sock");
        let mut command = Command::new(r8s);
        command
            .args(["runtime", "--cgroup-root", "r8s-bench-cri"])
            .arg("--state-root")
            .arg(dir.join("state"))
            .arg("--image-root")
            .arg(images)
            .args(["serve", "--socket"])
            .arg(&socket)
            .arg("--cri-root")
            .arg(dir.join("cri"))
            .arg("--netns-dir")
            .arg(dir.join("netns"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        let node = if networking {
            let node = NetNs::create(dir.join("node-netns"))?;
            command
                .args(["--pod-cidr", "10.232.0.0/16", "--bridge", "r8sbench0", "--network-state-dir"])
                .arg(dir.join("network"))
                .arg("--node-netns")
                .arg(node.path());
            Some(node)
        } else {
            command.arg("--disable-network");
            None
        };
        let child = command.spawn().context("starting r8s runtime serve")?;
        let server = R8sServer { child, socket, node, dir };
        for _ in 0..200 {
            if CriClient::connect(&server.socket).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        server.stop();
        bail!("r8s runtime serve did not open its socket")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        // SIGTERM: the service stops serving; the pods are already removed.
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        if let Some(node) = &self.node {
            let _ = node.remove();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "bench".into(), attempt: 0 }),
        hostname: name.into(),
        linux: Some(LinuxPodSandboxConfig {
            // The kubelet's cgroupfs layout; r8s nests it under its own root.
            cgroup_parent: format!("/{POD_CGROUPS}/pod-{name}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption { network: 0, pid: 1, ipc: 0, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Starts one pod with one container; returns the sandbox id and the time taken.
async fn start_pod(client: &mut CriClient, image: &str, name: &str) -> anyhow::Result<(String, Duration)> {
    let config = pod_config(name);
    let start = Instant::now();
    let sandbox = client.run_pod_sandbox(config.clone(), "").await?;
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata { name: "sleep".into(), attempt: 0 }),
        image: Some(ImageSpec { image: image.into(), ..Default::default() }),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    };
    let container_id = client.create_container(&sandbox, container, Some(config)).await?;
    client.start_container(&container_id).await?;
    Ok((sandbox, start.elapsed()))
}

async fn remove_pods(client: &mut CriClient, sandboxes: &[String]) -> anyhow::Result<()> {
    for id in sandboxes {
        client.stop_pod_sandbox(id).await?;
        client.remove_pod_sandbox(id).await?;
    }
    Ok(())
}

/// Removes every pod this benchmark made (namespace `bench`), also after a failure.
pub async fn remove_bench_pods(socket: &Path) {
    let Ok(mut client) = CriClient::connect(socket).await else { return };
    let Ok(pods) = client.list_pod_sandbox(None).await else { return };
    let ours: Vec<String> = pods
        .into_iter()
        .filter(|pod| pod.metadata.as_ref().is_some_and(|m| m.namespace == "bench"))
        .map(|pod| pod.id)
        .collect();
    if let Err(e) = remove_pods(&mut client, &ours).await {
        eprintln!("removing the benchmark's pods: {e}");
    }
}

async fn measure(socket: &Path, image: &str, runs: usize, name: &str) -> anyhow::Result<Row> {
    let mut client = CriClient::connect(socket).await.with_context(|| format!("connecting to {}", socket.display()))?;
    let mut one = Samples::default();
    // One warm-up pod, not counted.
    for i in 0..=runs {
        let (sandbox, took) = start_pod(&mut client, image, &format!("one-{i}")).await?;
        if i > 0 {
            one.push(took);
        }
        remove_pods(&mut client, &[sandbox]).await?;
    }
    let wall = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_PODS)
        .map(|i| {
            let mut client = client.clone();
            let image = image.to_string();
            tokio::spawn(async move { start_pod(&mut client, &image, &format!("many-{i}")).await })
        })
        .collect();
    let mut concurrent = Samples::default();
    let mut sandboxes = Vec::new();
    let mut failure = None;
    for task in tasks {
        match task.await? {
            Ok((sandbox, took)) => {
                concurrent.push(took);
                sandboxes.push(sandbox);
            }
            Err(e) => failure = Some(e),
        }
    }
    let concurrent_wall = wall.elapsed();
    remove_pods(&mut client, &sandboxes).await?;
    if let Some(e) = failure {
        return Err(e.context(format!("{name}: starting {CONCURRENT_PODS} pods at once")));
    }
    Ok(Row { name: name.into(), one, concurrent, concurrent_wall })
}

/// A containerd of the run's own: its root, state, socket and CNI network
/// under the run's directory, started in a new network namespace so that its
/// bridge (`r8sctrd0`) and veths never touch the machine's network.
struct Containerd {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Containerd {
    async fn start(base: &Path, rootfs: &Path) -> anyhow::Result<Self> {
        let dir = base.join("containerd");
        std::fs::create_dir_all(dir.join("cni"))?;
        let d = dir.display();
        std::fs::write(
            dir.join("cni/10-r8s-bench.conflist"),
            serde_json::json!({
                "cniVersion": "0.4.0", "name": "r8s-bench",
                "plugins": [
                    {"type": "bridge", "bridge": "r8sctrd0", "isGateway": true, "ipMasq": false,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.233.0.0/16"}]], "dataDir": format!("{d}/ipam")}},
                    {"type": "loopback"}
                ]
            })
            .to_string(),
        )?;
        // restrict_oom_score_adj: this machine cannot lower oom_score_adj.
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{d}/containerd.sock\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{CONTAINERD_IMAGE}\"\n  restrict_oom_score_adj = true\n\
               netns_mounts_under_state_dir = true\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{d}/cni\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
        );
        std::fs::write(dir.join("config.toml"), config)?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new("unshare")
            .args(["--net", "containerd", "--config"])
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd (Debian package containerd)")?;
        let containerd = Containerd { child, socket: dir.join("containerd.sock"), dir };
        let mut ready = false;
        for _ in 0..200 {
            if CriClient::connect(&containerd.socket).await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if !ready {
            containerd.stop();
            bail!("containerd did not open its socket");
        }
        if let Err(e) = containerd.import_image(rootfs) {
            containerd.stop();
            return Err(e);
        }
        Ok(containerd)
    }

    /// The busybox root filesystem as a `docker save` archive, imported with `ctr`.
    fn import_image(&self, rootfs: &Path) -> anyhow::Result<()> {
        let image = self.dir.join("image");
        std::fs::create_dir_all(&image)?;
        run_checked(Command::new("tar").arg("-C").arg(rootfs).arg("-cf").arg(image.join("layer.tar")).arg("."))?;
        let sum = Command::new("sha256sum").arg(image.join("layer.tar")).output()?;
        let hex = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap_or_default().to_string();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/sleep", "infinity"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{hex}")]}
        });
        std::fs::write(image.join("config.json"), config.to_string())?;
        let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": [CONTAINERD_IMAGE], "Layers": ["layer.tar"]}]);
        std::fs::write(image.join("manifest.json"), manifest.to_string())?;
        run_checked(Command::new("tar").arg("-cf").arg(self.dir.join("image.tar")).arg("-C").arg(&image).args(["config.json", "layer.tar", "manifest.json"]))?;
        run_checked(Command::new("ctr").arg("-a").arg(&self.socket).args(["-n", "k8s.io", "images", "import"]).arg(self.dir.join("image.tar")))
    }

    /// Stops containerd (its pods are removed already) and removes its files,
    /// mounts and the pods' cgroup parents.
    fn stop(mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut ours: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| Path::new(m).starts_with(&self.dir)).collect();
            ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for mount in ours {
                let _ = Command::new("umount").args(["-l", mount]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            remove_empty_tree(&hierarchy.path().join(POD_CGROUPS));
        }
    }
}

/// Removes an empty cgroup tree, children first.
pub fn remove_empty_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            remove_empty_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

pub fn run_checked(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
