//! `r8s-bench agent`: pod startup latency on a real one-node cluster, from the
//! pod's create request to the watch showing it `Running` (image present, as
//! Kubernetes' startup SLO counts it), for one pod at a time and for a burst
//! of 100; then the node's own CPU and memory while idle with the 100 pods
//! running. Beside it, the same busybox image started with `podman run -d`
//! (Debian's podman, runc, a bridge network in a namespace of the run's own).
//!
//! The cluster is `r8s server` (store, API server, scheduler, controllers),
//! `r8s runtime serve` with pod networking in a node namespace made for the
//! run, and `r8s agent`, each a process of its own, all removed at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::mpsc;

use crate::cri::{busybox_image, remove_bench_pods, remove_empty_tree, run_checked, R8sServer, IMAGE};
use crate::stats::{ms, print_table, Samples};

/// The namespace of the benchmark's pods (CRI sees it too, for clean-up).
const NAMESPACE: &str = "bench";
const NODE: &str = "bench-node";
/// How long the idle CPU is sampled.
const IDLE_WINDOW: Duration = Duration::from_secs(30);
/// How long the node settles after the burst before idle is measured (the
/// last status writes, the first probes and log walks).
const SETTLE: Duration = Duration::from_secs(10);
/// podman's cgroup parent, removed at the end.
const PODMAN_CGROUPS: &str = "r8s-bench-podman";

#[derive(clap::Args)]
pub struct AgentBenchArgs {
    /// Pods started one at a time (after one warm-up).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Pods created at once.
    #[arg(long, default_value_t = 100)]
    burst: usize,
    /// The r8s binary (default: `r8s` beside this benchmark).
    #[arg(long)]
    r8s: Option<PathBuf>,
    /// Skip the podman column.
    #[arg(long)]
    no_podman: bool,
    /// Where the processes' logs go (default: discarded with the run's directory).
    #[arg(long)]
    keep_logs: Option<PathBuf>,
}

pub fn run(args: AgentBenchArgs) -> anyhow::Result<()> {
    let r8s = match &args.r8s {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("r8s"),
    };
    if !r8s.is_file() {
        bail!("{} not found: build it first (cargo build --release -p r8s) or pass --r8s", r8s.display());
    }
    let dir = tempfile::Builder::new().prefix("r8s-bench-agent-").tempdir_in("/run")?;
    let (rootfs, images) = busybox_image(&r8s, dir.path())?;
    let tokio = tokio::runtime::Runtime::new()?;
    let mut rows = vec![tokio.block_on(measure_r8s(&r8s, dir.path(), &images, &args))?];
    if !args.no_podman {
        rows.push(tokio.block_on(measure_podman(dir.path(), &rootfs, &args))?);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                ms(r.one.percentile(50.0)),
                ms(r.one.percentile(99.0)),
                ms(r.burst_all),
                ms(r.burst.percentile(50.0)),
                ms(r.burst.percentile(99.0)),
                format!("{:.1}", r.idle.cpu_percent),
                format!("{:.1}", r.idle.rss as f64 / (1 << 20) as f64),
            ]
        })
        .collect();
    println!(
        "\nStart to Running, ms ({} one at a time; a burst of {} at once); the node's own CPU and memory idle with the {} running\n",
        args.runs, args.burst, args.burst
    );
    let burst = args.burst;
    print_table(
        &["node", "1 pod p50", "1 pod p99", &format!("{burst} pods, all Running"), &format!("{burst} pods p50"), &format!("{burst} pods p99"), "idle CPU %", "RSS MiB"],
        &table,
    );
    println!("\nr8s: create request → watch sees phase Running (scheduler, agent, CRI, status write); RSS and CPU of agent + runtime.");
    println!("podman: `podman run -d` returning (container started); RSS and CPU of its conmon processes (podman has no daemon).");
    Ok(())
}

struct Row {
    name: String,
    one: Samples,
    burst: Samples,
    burst_all: Duration,
    idle: Usage,
}

/// CPU and memory of a set of processes.
pub(crate) struct Usage {
    pub cpu_percent: f64,
    pub rss: u64,
}

/// The processes of a one-node cluster, stopped on drop.
struct Cluster {
    server: Option<Child>,
    agent: Option<Child>,
    runtime: Option<R8sServer>,
    base: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The agent first, so it does not restart what the clean-up removes.
        for child in [self.agent.take(), self.server.take()].into_iter().flatten() {
            stop(child);
        }
        if let Some(runtime) = self.runtime.take() {
            let socket = runtime.socket.clone();
            let cleanup = std::thread::spawn(move || {
                let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
                tokio.block_on(remove_bench_pods(&socket));
            });
            let _ = cleanup.join();
            runtime.stop();
        }
    }
}

/// SIGTERM, then wait.
fn stop(mut child: Child) {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn log_file(args: &AgentBenchArgs, dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    let path = args.keep_logs.as_deref().unwrap_or(dir).join(format!("{name}.log"));
    Ok(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?.into())
}

async fn start_cluster(r8s: &Path, dir: &Path, images: &Path, args: &AgentBenchArgs) -> anyhow::Result<Cluster> {
    if let Some(logs) = &args.keep_logs {
        std::fs::create_dir_all(logs)?;
    }
    let log_level = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let runtime = R8sServer::start(r8s, dir, images, true).await?;
    let api_port = free_port()?;
    let base = format!("http://127.0.0.1:{api_port}");
    let mut cluster = Cluster { server: None, agent: None, runtime: Some(runtime), base: base.clone() };
    let server = Command::new(r8s)
        .arg("server")
        .arg("--data-dir")
        .arg(dir.join("server"))
        .args(["--listen", &format!("127.0.0.1:{api_port}"), "--raft-addr", &format!("127.0.0.1:{}", free_port()?)])
        .env("RUST_LOG", &log_level)
        .stdout(Stdio::null())
        .stderr(log_file(args, dir, "server")?)
        .spawn()
        .context("starting r8s server")?;
    cluster.server = Some(server);
    let socket = cluster.runtime.as_ref().map(|r| r.socket.clone()).unwrap_or_default();
    let agent = Command::new(r8s)
        .args(["agent", "--server", &base, "--node-name", NODE, "--node-ip", "127.0.0.1", "--no-proxy"])
        .arg("--container-runtime-endpoint")
        .arg(format!("unix://{}", socket.display()))
        .arg("--root-dir")
        .arg(dir.join("agent"))
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port()?)])
        .env("RUST_LOG", &log_level)
        .stdout(Stdio::null())
        .stderr(log_file(args, dir, "agent")?)
        .spawn()
        .context("starting r8s agent")?;
    cluster.agent = Some(agent);
    let client = client::connect::from_url(&base)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(node)) = nodes.get_opt(NODE).await {
            if node.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True") {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("node {NODE} did not become Ready within a minute");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(client).create(&PostParams::default(), &namespace).await?;
    Ok(cluster)
}

async fn measure_r8s(r8s: &Path, dir: &Path, images: &Path, args: &AgentBenchArgs) -> anyhow::Result<Row> {
    let cluster = start_cluster(r8s, dir, images, args).await?;
    let client = client::connect::from_url(&cluster.base)?;
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let (running_tx, mut running) = mpsc::unbounded_channel();
    let watch = tokio::spawn(watch_running(pods.clone(), running_tx));
    // The watch is established before the first pod is made.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut one = Samples::default();
    for i in 0..=args.runs {
        let name = format!("one-{i}");
        let (took, _) = start_pods(&pods, &mut running, std::slice::from_ref(&name)).await?;
        if i > 0 {
            one.extend(took);
        }
        pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
        wait_gone(&pods, &name).await?;
    }
    let names: Vec<String> = (0..args.burst).map(|i| format!("burst-{i}")).collect();
    let (burst, burst_all) = start_pods(&pods, &mut running, &names).await?;
    watch.abort();

    tokio::time::sleep(SETTLE).await;
    let mut pids = vec![cluster.runtime.as_ref().map(R8sServer::pid).unwrap_or_default()];
    pids.extend(cluster.agent.as_ref().map(Child::id));
    let idle = usage(&pids).await?;
    drop(cluster);
    Ok(Row { name: "r8s (server + agent + runtime, bridge network)".into(), one, burst, burst_all, idle })
}

/// Sends (pod, when) each time the watch first shows a pod Running.
async fn watch_running(pods: Api<Pod>, sender: mpsc::UnboundedSender<(String, Instant)>) {
    let mut events = watcher(pods, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        if let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event {
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && sender.send((pod.metadata.name.unwrap_or_default(), Instant::now())).is_err() {
                return;
            }
        }
    }
}

/// Creates the pods at once; returns each one's create → Running time and
/// the time from the first create to the last Running.
async fn start_pods(pods: &Api<Pod>, running: &mut mpsc::UnboundedReceiver<(String, Instant)>, names: &[String]) -> anyhow::Result<(Samples, Duration)> {
    let first = Instant::now();
    let creations = names.iter().map(|name| async move {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}],
                     "terminationGracePeriodSeconds": 0}
        }))?;
        let started = Instant::now();
        pods.create(&PostParams::default(), &pod).await?;
        anyhow::Ok((name.clone(), started))
    });
    let mut created: HashMap<String, Instant> = HashMap::new();
    for outcome in futures::future::join_all(creations).await {
        let (name, started) = outcome?;
        created.insert(name, started);
    }
    let mut took = Samples::default();
    let mut seen = std::collections::HashSet::new();
    let mut last = first;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while seen.len() < names.len() {
        let Ok(Some((name, at))) = tokio::time::timeout_at(deadline, running.recv()).await else {
            bail!("{} of {} pods Running after 5 minutes", seen.len(), names.len());
        };
        if let Some(started) = created.get(&name) {
            if seen.insert(name) {
                took.push(at.duration_since(*started));
                last = last.max(at);
            }
        }
    }
    Ok((took, last.duration_since(first)))
}

async fn wait_gone(pods: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if pods.get_opt(name).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("pod {name} was not removed within 30 s")
}

/// user + system CPU ticks of a process.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start at state, field 3.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Ok(field(14) + field(15))
}

/// CPU (percent of one core) over [`IDLE_WINDOW`] and RSS of the processes.
pub(crate) async fn usage(pids: &[u32]) -> anyhow::Result<Usage> {
    let ticks = |pids: &[u32]| pids.iter().map(|p| cpu_ticks(*p)).sum::<anyhow::Result<u64>>();
    let before = ticks(pids)?;
    tokio::time::sleep(IDLE_WINDOW).await;
    let spent = ticks(pids)? - before;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_percent = spent as f64 / per_second / IDLE_WINDOW.as_secs_f64() * 100.0;
    let rss = pids.iter().map(|p| crate::api::rss_of(&format!("/proc/{p}/status"))).sum::<anyhow::Result<u64>>()?;
    Ok(Usage { cpu_percent, rss })
}

/// podman with storage, state, networks and cgroups of the run's own; every
/// command runs in a network namespace made for the run, so its bridge and
/// firewall rules never touch the machine's network.
pub(crate) struct Podman {
    dir: PathBuf,
    netns: runtime::network::NetNs,
}

impl Podman {
    /// podman under `<base>/podman`, with the busybox `rootfs` imported as
    /// the image that [`Podman::start`] runs.
    pub(crate) async fn with_busybox(base: &Path, rootfs: &Path) -> anyhow::Result<Self> {
        let dir = base.join("podman");
        std::fs::create_dir_all(dir.join("networks"))?;
        let netns = runtime::network::NetNs::create(dir.join("netns"))?;
        let podman = Podman { dir, netns };
        let tarball = base.join("busybox.tar");
        run_checked(Command::new("tar").arg("-C").arg(rootfs).arg("-cf").arg(&tarball).arg("."))?;
        podman.run(&["import", &tarball.to_string_lossy(), "bench-busybox:latest"]).await?;
        Ok(podman)
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let d = &self.dir;
        let mut command = tokio::process::Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns.path().display()))
            .arg("podman")
            .arg(format!("--root={}/root", d.display()))
            .arg(format!("--runroot={}/run", d.display()))
            .arg(format!("--tmpdir={}/tmp", d.display()))
            .arg(format!("--network-config-dir={}/networks", d.display()))
            .args(["--cgroup-manager=cgroupfs", "--events-backend=file", "--runtime=runc"])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.command(args).output().await.with_context(|| format!("podman {args:?}"))?;
        if !output.status.success() {
            bail!("podman {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// `podman run -d` of a `sleep`; how long until it returned.
    pub(crate) async fn start(&self, name: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let parent = format!("--cgroup-parent=/{PODMAN_CGROUPS}");
        self.run(&["run", "-d", "--name", name, &parent, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", "localhost/bench-busybox:latest", "sleep", "3600"])
            .await?;
        Ok(started.elapsed())
    }

    async fn conmon_pids(&self) -> anyhow::Result<Vec<u32>> {
        let listed = self.run(&["ps", "-q", "--no-trunc"]).await?;
        let ids: Vec<&str> = listed.lines().collect();
        let mut args = vec!["inspect", "--format", "{{.State.ConmonPid}}"];
        args.extend(ids);
        Ok(self.run(&args).await?.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let remove = self.command(&["rm", "-a", "-f", "-t", "0"]);
        let cleanup = std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
            let mut remove = remove;
            tokio.block_on(async move { remove.stdout(Stdio::null()).status().await })
        });
        let _ = cleanup.join();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut ours: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| Path::new(m).starts_with(&self.dir)).collect();
            ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for mount in ours {
                let _ = Command::new("umount").args(["-l", mount]).status();
            }
        }
        let _ = self.netns.remove();
        let _ = std::fs::remove_dir_all(&self.dir);
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            remove_empty_tree(&hierarchy.path().join(PODMAN_CGROUPS));
        }
    }
}

async fn measure_podman(dir: &Path, rootfs: &Path, args: &AgentBenchArgs) -> anyhow::Result<Row> {
    let podman = Podman::with_busybox(dir, rootfs).await?;

    let mut one = Samples::default();
    for i in 0..=args.runs {
        let name = format!("one-{i}");
        let took = podman.start(&name).await?;
        if i > 0 {
            one.push(took);
        }
        podman.run(&["rm", "-f", "-t", "0", &name]).await?;
    }
    let first = Instant::now();
    let starts = (0..args.burst).map(|i| {
        let podman = &podman;
        async move { podman.start(&format!("burst-{i}")).await }
    });
    let mut burst = Samples::default();
    for outcome in futures::future::join_all(starts).await {
        burst.push(outcome?);
    }
    let burst_all = first.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = usage(&podman.conmon_pids().await?).await?;
    Ok(Row { name: "podman 4.3 run -d (runc, bridge network)".into(), one, burst, burst_all, idle })
}
