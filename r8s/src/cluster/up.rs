//! `r8s up`: a cluster on this machine, in the foreground, made the first
//! time and resumed every time after from its data (see [`super::state`]).
//! It starts the API server(s), then one `r8s agent` per node (each starting
//! its runtime), keeps them running ([`super::supervisor`]), waits until
//! every node is Ready, and prints how to reach the cluster.
//!
//! - A one-node cluster (the default) runs on this machine's network, its
//!   API on `--listen`.
//! - `--nodes N [--servers S]`: the servers in the cluster's hub namespace
//!   and each node in a namespace of its own (see [`super::topology`]); a
//!   forwarder on `--listen` sends kubectl's connections to a ready server.
//!
//! SIGINT or SIGTERM stops the cluster: the agents, then every container
//! (SIGTERM, SIGKILL after a grace period), then the servers; the mounts,
//! namespaces, cgroups and run directory go, the data stays. A later
//! `r8s up` of the same name resumes it: its objects, volumes, images and
//! pods (which run again). After a crash, leftovers are cleared first:
//! processes that ran the cluster are stopped, while containers that still
//! run, and the network they are in, are kept for the new agents to adopt.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use tokio::signal::unix::{signal, SignalKind};

use super::state::{ClusterState, Request, Shape};
use super::supervisor::Supervised;
use super::teardown::{self, HostObject, Report};
use super::topology::{self, HUB_ADDRESS, MAX_NODES, MAX_SERVERS, NODE_INTERFACE};
use super::{Layout, NodeSlot, ProcessId, ServerSlot};
use crate::balancer::{self, Dialer};
use crate::progress::{Progress, Step};

/// Where the API servers listen inside the hub, for the agents.
const API_PORT: u16 = 6443;
const RAFT_PORT: u16 = 7380;
/// The `kube-dns` Service's ClusterIP, the pods' name server; the servers
/// answer at their hub addresses behind it.
const CLUSTER_DNS: &str = "10.96.0.10";
/// The API server's default service CIDR, which CLUSTER_DNS is in.
const SERVICE_CIDR: &str = "10.96.0.0/12";
/// A one-node cluster's pod bridge and nftables table, in the machine's network.
const HOST_BRIDGE: &str = "r8s0";
const HOST_NFT_TABLE: &str = "r8s";
/// How long containers get to stop when the cluster stops.
const CONTAINER_GRACE: Duration = Duration::from_secs(10);
/// How long an agent or server gets to stop before SIGKILL.
const PROCESS_GRACE: Duration = Duration::from_secs(15);
/// How often servers' liveness and readiness are checked.
const PROBE_PERIOD: Duration = Duration::from_secs(2);

/// What `r8s up` was asked for.
pub struct Options {
    pub layout: Layout,
    pub request: Request,
    pub image_root: PathBuf,
    /// More arguments for `r8s server`.
    pub server_args: Vec<String>,
    pub timeout: Duration,
    /// A one-node cluster's raft port (on loopback).
    pub raft_addr: String,
}

/// Refuses a pod range that would collide with the node network or the
/// Services' addresses, or that has no /24 for every node, before anything
/// is made: overlapping ranges would route pods' packets to the wrong place.
fn check_cluster_cidr(text: &str, nodes: usize) -> anyhow::Result<()> {
    let cidr: Ipv4Net = text.parse().with_context(|| format!("--cluster-cidr {text:?} is not an IPv4 CIDR"))?;
    let service_cidr: Ipv4Net = SERVICE_CIDR.parse().expect("a valid CIDR");
    for (what, other) in [("the node network", topology::node_network()), ("the service CIDR", service_cidr)] {
        if cidr.contains(&other.network()) || other.contains(&cidr.network()) {
            bail!("--cluster-cidr {cidr} overlaps {what} {other}");
        }
    }
    let subnets = if cidr.prefix_len() > 24 { 0 } else { 1usize << (24 - cidr.prefix_len()) };
    if subnets < nodes {
        bail!("--cluster-cidr {cidr} has room for {subnets} node pod CIDRs (/24), not {nodes}");
    }
    Ok(())
}

/// Checks a cluster's shape before anything is made.
fn check_shape(state: &ClusterState) -> anyhow::Result<()> {
    state.listen.parse::<SocketAddr>().with_context(|| format!("--listen {:?} is not host:port", state.listen))?;
    match &state.shape {
        Shape::Host { pod_cidr, .. } => {
            pod_cidr.parse::<Ipv4Net>().with_context(|| format!("--pod-cidr {pod_cidr:?} is not an IPv4 CIDR"))?;
        }
        Shape::Namespaced { nodes, servers, cluster_cidr } => {
            if *nodes == 0 || *nodes > MAX_NODES {
                bail!("--nodes must be between 1 and {MAX_NODES}");
            }
            if *servers == 0 || *servers > MAX_SERVERS {
                bail!("--servers must be between 1 and {MAX_SERVERS}");
            }
            check_cluster_cidr(cluster_cidr, *nodes)?;
        }
    }
    Ok(())
}

pub fn run(options: Options) -> anyhow::Result<()> {
    crate::init_logging();
    let progress = Progress::stdout();
    let layout = options.layout.clone();
    let me = std::process::id() as i32;
    if let Some(up) = ProcessId::read(&layout.pid_file("up")).filter(|p| p.is_alive_r8s() && p.pid != me) {
        bail!("cluster {} is already up (r8s up, pid {}); stop it with Ctrl-C there, or `r8s down {}` to remove it", layout.name, up.pid, layout.name);
    }
    let stored = ClusterState::read(&layout.state_file(), &layout.name)?;
    let resuming = stored.is_some();
    let state = match stored {
        Some(stored) => stored.resume(&layout.name, &options.request)?,
        None => options.request.fresh(crate::agent::hostname),
    };
    check_shape(&state)?;
    let servers = layout.servers(state.shape.server_count());
    let nodes = match &state.shape {
        Shape::Host { node_name, .. } => vec![NodeSlot { id: "n1".into(), node_name: node_name.clone(), address: std::net::Ipv4Addr::LOCALHOST }],
        Shape::Namespaced { nodes, .. } => layout.nodes(*nodes),
    };
    // First, so that no server of an earlier run still writes the store read next.
    clear_leftovers(&layout, &state, &nodes, &progress);
    for server in &servers {
        store::raft::RaftStore::check_data_dir(&layout.server_data_dir(server))
            .with_context(|| format!("cluster {} cannot resume: the store of its server {} is damaged; restore it from a backup, or remove the cluster and its data with `r8s down {}`", layout.name, server.id, layout.name))?;
    }
    for dir in [&layout.data_dir, &layout.run_dir, &layout.logs_dir()] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    ProcessId::of(me).context("cannot read this process's start time")?.write(&layout.pid_file("up"))?;
    if !resuming {
        state.write(&layout.state_file())?;
    }
    let daemons = layout.daemons_cgroup();
    std::fs::create_dir_all(&daemons).with_context(|| format!("cannot create cgroup {}", daemons.display()))?;
    let verb = if resuming { "resuming" } else { "starting" };
    progress.note(format!("r8s up: {verb} cluster {}, {}", layout.name, state.shape.describe()));

    let tokio = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut cluster = Running { layout: layout.clone(), servers: Vec::new(), agents: Vec::new(), forwarder: None, stopped: false, started: Timestamp::now() };
    let started = tokio.block_on(cluster.start(&options, &state, &servers, &nodes, &progress));
    if let Err(error) = started {
        cluster.stop(&progress);
        return Err(error.context(format!("cluster {} did not start; its processes' logs:\n{}", layout.name, log_tails(&layout))));
    }
    let outcome = tokio.block_on(cluster.supervise(&state, &servers, &progress));
    cluster.stop(&progress);
    outcome
}

/// What an earlier run left: its daemons are stopped; its containers and
/// network are kept when the network is whole (they are adopted), and
/// released otherwise.
fn clear_leftovers(layout: &Layout, state: &ClusterState, nodes: &[NodeSlot], progress: &Progress) {
    let mut report = Report::default();
    let daemons = teardown::kill_daemons(layout, &mut report.problems);
    let network_whole = match state.shape {
        Shape::Host { .. } => true,
        Shape::Namespaced { .. } => topology::is_complete(layout, nodes),
    };
    if !network_whole {
        teardown::release(layout, &mut report);
    }
    if daemons > 0 {
        progress.note(format!("r8s up: stopped {daemons} processes an earlier run of cluster {} left running", layout.name));
    }
    if network_whole && layout.run_dir.exists() && daemons > 0 {
        progress.note("r8s up: its containers and network are kept, for the agents to adopt");
    }
    if let Some(summary) = report.summary() {
        progress.note(format!("r8s up: removed what an earlier run left: {summary}"));
    }
    for problem in &report.problems {
        progress.note(format!("r8s up: {problem}"));
    }
}

/// The processes of a running cluster; stopping it stops them in order.
struct Running {
    layout: Layout,
    servers: Vec<(ServerSlot, Supervised)>,
    agents: Vec<Supervised>,
    forwarder: Option<client::AbortOnDrop>,
    stopped: bool,
    /// When this `r8s up` began.
    started: Timestamp,
}

impl Running {
    async fn start(&mut self, options: &Options, state: &ClusterState, servers: &[ServerSlot], nodes: &[NodeSlot], progress: &Progress) -> anyhow::Result<()> {
        let layout = self.layout.clone();
        let exe = std::env::current_exe().context("cannot find the r8s binary")?;
        let dialer = dialer(&layout, state);
        if let Shape::Namespaced { .. } = state.shape {
            if !topology::is_complete(&layout, nodes) {
                let step = progress.step(format!("network: hub and {} node namespaces", nodes.len()));
                let (hub, bridge) = topology::create_hub(&layout, servers).await?;
                for (i, node) in nodes.iter().enumerate() {
                    topology::create_node(&layout, &hub, bridge, node, i + 1).await?;
                }
                step.done("");
            }
        } else {
            teardown::record_host_network(&layout, &[HostObject::Bridge(HOST_BRIDGE.into()), HostObject::NftTable(HOST_NFT_TABLE.into())])?;
        }

        for server in servers {
            let step = progress.step(format!("server {}", server.id));
            let command = server_command(&exe, &layout, state, server, options);
            self.servers.push((server.clone(), Supervised::start(&layout, &server.process(), command)?));
            let process = &mut self.servers.last_mut().expect("just pushed").1;
            wait_ready(&dialer, server_address(state, server), options.timeout, process).await?;
            step.done("ready");
        }

        let url = format!("http://{}", state.listen);
        if let Shape::Namespaced { .. } = state.shape {
            let listener = tokio::net::TcpListener::bind(&state.listen).await.with_context(|| format!("cannot listen on {}", state.listen))?;
            let addresses = servers.iter().map(|s| server_address(state, s)).collect();
            self.forwarder = Some(client::AbortOnDrop(vec![tokio::spawn(balancer::serve(listener, addresses, dialer.clone()))]));
        }
        crate::kubeconfig::write(&layout.kubeconfig(), "r8s", &url)?;

        for node in nodes {
            let command = agent_command(&exe, &layout, state, servers, node, &options.image_root);
            self.agents.push(Supervised::start(&layout, &format!("agent-{}", node.id), command)?);
        }
        let client = client::connect::from_url(&url)?;
        let mut step = progress.step(if nodes.len() == 1 { "node Ready".to_string() } else { format!("{} nodes Ready", nodes.len()) });
        let names: Vec<&str> = nodes.iter().map(|n| n.node_name.as_str()).collect();
        let ready = tokio::time::timeout(options.timeout, wait_for_nodes(&client, &names, self.started, &mut step, state))
            .await
            .map_err(|_| anyhow::anyhow!("the nodes were not all Ready within {} s", options.timeout.as_secs()))??;
        step.done("");

        let count = if nodes.len() == 1 { "1 node".to_string() } else { format!("{} nodes", nodes.len()) };
        println!("r8s is up: cluster {}, {count} Ready, the API is at {url}.", layout.name);
        for (name, pod_cidr, address) in ready {
            println!("  node {name}: {address}, pods {pod_cidr}");
        }
        println!("  export KUBECONFIG={}", layout.kubeconfig().display());
        println!("  logs: {}", layout.logs_dir().display());
        println!("Ctrl-C stops it and keeps its state (`r8s up --name {}` resumes it); `r8s down {}` removes it.", layout.name, layout.name);
        Ok(())
    }

    /// Restarts what dies and reports servers' health until SIGINT or SIGTERM.
    async fn supervise(&mut self, state: &ClusterState, servers: &[ServerSlot], progress: &Progress) -> anyhow::Result<()> {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let dialer = dialer(&self.layout, state);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_probe = Instant::now();
        let mut ready = vec![true; servers.len()];
        loop {
            tokio::select! {
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
                _ = tick.tick() => {}
            }
            for process in self.servers.iter_mut().map(|(_, p)| p).chain(self.agents.iter_mut()) {
                if let Some(event) = process.check() {
                    progress.note(format!("r8s up: {event}"));
                }
            }
            if last_probe.elapsed() < PROBE_PERIOD {
                continue;
            }
            last_probe = Instant::now();
            for (i, (server, process)) in self.servers.iter_mut().enumerate() {
                if !process.is_running() {
                    continue;
                }
                let address = server_address(state, server);
                let alive = dialer.http_status(address, "/livez").await.is_ok_and(|code| code == 200);
                if let Some(event) = process.liveness(alive) {
                    progress.note(format!("r8s up: {event}"));
                }
                if !alive {
                    continue;
                }
                let now_ready = dialer.http_status(address, "/readyz").await.is_ok_and(|code| code == 200);
                if now_ready != ready[i] {
                    let what = if now_ready { "is ready again" } else { "is alive but not ready (see /readyz?verbose; its log says why)" };
                    progress.note(format!("r8s up: server {} {what}", server.id));
                    ready[i] = now_ready;
                }
            }
        }
    }

    /// Stops the cluster and keeps its data: agents first (so nothing
    /// restarts the containers), then the containers, then the servers;
    /// then everything they held on the machine is released.
    fn stop(&mut self, progress: &Progress) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let step = progress.step(format!("stopping cluster {}", self.layout.name));
        stop_all(&mut self.agents);
        let containers = teardown::stop_containers(&self.layout, CONTAINER_GRACE);
        let mut servers: Vec<Supervised> = self.servers.drain(..).map(|(_, p)| p).collect();
        stop_all(&mut servers);
        self.forwarder = None;
        let mut report = Report::default();
        teardown::release(&self.layout, &mut report);
        step.done(&format!("{containers} container processes stopped"));
        progress.note(format!(
            "cluster {} stopped; its data stays in {} (`r8s up --name {}` resumes it, `r8s down {}` removes it)",
            self.layout.name,
            self.layout.data_dir.display(),
            self.layout.name,
            self.layout.name
        ));
        for problem in &report.problems {
            eprintln!("r8s up: {problem}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop(&Progress::stdout());
    }
}

/// SIGTERM to every process at once, then a wait for each.
fn stop_all(processes: &mut Vec<Supervised>) {
    for process in processes.iter_mut() {
        process.terminate();
    }
    for mut process in processes.drain(..) {
        process.stop(PROCESS_GRACE);
    }
}

/// How `r8s up` reaches the servers: directly, or from inside the hub.
fn dialer(layout: &Layout, state: &ClusterState) -> Dialer {
    match state.shape {
        Shape::Host { .. } => Dialer::Direct,
        Shape::Namespaced { .. } => Dialer::InNetns(layout.hub_netns_path()),
    }
}

/// Where a server's API answers, as the dialer reaches it.
fn server_address(state: &ClusterState, server: &ServerSlot) -> SocketAddr {
    match state.shape {
        Shape::Host { .. } => {
            let listen: SocketAddr = state.listen.parse().expect("checked when the cluster was made");
            // A wildcard listener answers on loopback.
            if listen.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], listen.port())) } else { listen }
        }
        Shape::Namespaced { .. } => SocketAddr::from((server.address, API_PORT)),
    }
}

/// Waits until a server answers `/readyz` with 200; fails early if it dies.
async fn wait_ready(dialer: &Dialer, address: SocketAddr, timeout: Duration, process: &mut Supervised) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if dialer.http_status(address, "/readyz").await.is_ok_and(|code| code == 200) {
            return Ok(());
        }
        if !process.is_alive() {
            bail!("r8s {} exited while starting", process.name);
        }
        if Instant::now() > deadline {
            bail!("r8s {} was not ready within {} s", process.name, timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn server_command(exe: &Path, layout: &Layout, state: &ClusterState, server: &ServerSlot, options: &Options) -> impl Fn() -> Command + Send + 'static {
    let exe = exe.to_path_buf();
    let data_dir = layout.server_data_dir(server);
    let mut args: Vec<String> = vec!["server".into(), "--node-id".into(), server.id.to_string(), "--identity".into(), server.process()];
    match &state.shape {
        Shape::Host { .. } => {
            args.extend(["--listen".into(), state.listen.clone(), "--raft-addr".into(), options.raft_addr.clone()]);
        }
        Shape::Namespaced { cluster_cidr, .. } => {
            let address = server.address.to_string();
            args.extend(["--netns".into(), layout.hub_netns_path().display().to_string()]);
            args.extend(["--listen".into(), format!("{address}:{API_PORT}"), "--raft-addr".into(), format!("{address}:{RAFT_PORT}")]);
            if server.id > 1 {
                args.extend(["--join".into(), format!("{HUB_ADDRESS}:{RAFT_PORT}")]);
            }
            args.extend(["--allocate-node-cidrs".into(), "--cluster-cidr".into(), cluster_cidr.clone()]);
            args.extend(["--advertise-address".into(), address.clone(), "--cluster-dns-listen".into(), format!("{address}:53")]);
        }
    }
    args.push("--write-kubeconfig".into());
    args.push(data_dir.join("kubeconfig.yaml").display().to_string());
    args.extend(options.server_args.iter().cloned());
    move || {
        let mut command = Command::new(&exe);
        command.args(&args).arg("--data-dir").arg(&data_dir);
        command
    }
}

fn agent_command(exe: &Path, layout: &Layout, state: &ClusterState, servers: &[ServerSlot], node: &NodeSlot, image_root: &Path) -> impl Fn() -> Command + Send + 'static {
    let exe = exe.to_path_buf();
    let data = layout.node_data_dir(node);
    let run = layout.node_run_dir(node);
    let path_arg = |flag: &str, value: &Path| format!("--{flag}={}", value.display());
    let runtime_arg = |flag: &str, value: &Path| format!("--runtime-arg=--{flag}={}", value.display());
    let mut args: Vec<String> = vec!["agent".into(), "--node-name".into(), node.node_name.clone()];
    args.push(path_arg("runtime-socket", &run.join("cri.sock")));
    args.push(path_arg("root-dir", &data.join("agent")));
    args.push(path_arg("log-dir", &data.join("pod-logs")));
    args.push(runtime_arg("state-root", &run.join("runtime")));
    args.push(format!("--runtime-arg=--cgroup-root={}", layout.node_cgroup_root(node)));
    args.push(runtime_arg("image-root", image_root));
    args.push(runtime_arg("cri-root", &run.join("cri")));
    args.push(runtime_arg("netns-dir", &run.join("netns")));
    // The address ledger goes with the sandboxes it describes (the run dir).
    args.push(runtime_arg("network-state-dir", &run.join("network")));
    match &state.shape {
        Shape::Host { pod_cidr, .. } => {
            args.extend(["--server".into(), format!("http://{}", server_address(state, &servers[0]))]);
            args.push(format!("--runtime-arg=--pod-cidr={pod_cidr}"));
            args.push(format!("--runtime-arg=--bridge={HOST_BRIDGE}"));
        }
        Shape::Namespaced { cluster_cidr, .. } => {
            let urls: Vec<String> = servers.iter().map(|s| format!("http://{}", server_address(state, s))).collect();
            args.extend(["--server".into(), urls.join(",")]);
            args.extend(["--node-ip".into(), node.address.to_string()]);
            args.extend(["--netns".into(), layout.node_netns_path(node).display().to_string()]);
            args.extend(["--wait-for-pod-cidr".into(), "--cluster-cidr".into(), cluster_cidr.clone()]);
            args.extend(["--masquerade-interface".into(), NODE_INTERFACE.into(), "--cluster-dns".into(), CLUSTER_DNS.into()]);
        }
    }
    move || {
        let mut command = Command::new(&exe);
        command.args(&args);
        command
    }
}

/// Waits until every named node is Ready (and, in a cluster of nodes, has a
/// pod CIDR) as its agent said since `since` (a resumed cluster's Nodes
/// still say what they said before it stopped); returns each node's name,
/// pod CIDR and InternalIP.
async fn wait_for_nodes(client: &kube::Client, names: &[&str], since: Timestamp, step: &mut Step, state: &ClusterState) -> anyhow::Result<Vec<(String, String, String)>> {
    let api: kube::Api<Node> = kube::Api::all(client.clone());
    let needs_cidr = matches!(state.shape, Shape::Namespaced { .. });
    // Heartbeats have whole seconds.
    let since = Timestamp::from_second(since.as_second()).unwrap_or(since);
    loop {
        let mut ready = Vec::new();
        for name in names {
            let Ok(Some(node)) = api.get_opt(name).await else { continue };
            let status = node.status.unwrap_or_default();
            let is_ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True" && c.last_heartbeat_time.as_ref().is_some_and(|t| t.0 >= since));
            let pod_cidr = node.spec.and_then(|s| s.pod_cidr).unwrap_or_default();
            let address = status.addresses.iter().flatten().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone()).unwrap_or_default();
            if is_ready && (!needs_cidr || !pod_cidr.is_empty()) {
                let pod_cidr = match &state.shape {
                    Shape::Host { pod_cidr, .. } => pod_cidr.clone(),
                    Shape::Namespaced { .. } => pod_cidr,
                };
                ready.push((name.to_string(), pod_cidr, address));
            }
        }
        if ready.len() == names.len() {
            return Ok(ready);
        }
        step.update(&format!("{}/{}", ready.len(), names.len()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines of every process's log, for a failed start.
fn log_tails(layout: &Layout) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(layout.logs_dir()).into_iter().flatten().flatten() {
        let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        text.push_str(&format!("--- {}\n", entry.path().display()));
        for line in &lines[lines.len().saturating_sub(10)..] {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::check_cluster_cidr;

    #[test]
    fn pod_ranges_that_collide_or_are_too_small_are_refused() {
        assert!(check_cluster_cidr("10.244.0.0/16", 3).is_ok());
        let message = |cidr: &str, nodes| check_cluster_cidr(cidr, nodes).unwrap_err().to_string();
        assert_eq!(message("172.30.0.0/16", 3), "--cluster-cidr 172.30.0.0/16 overlaps the node network 172.30.0.0/24");
        assert_eq!(message("10.96.0.0/16", 3), "--cluster-cidr 10.96.0.0/16 overlaps the service CIDR 10.96.0.0/12");
        assert_eq!(message("10.0.0.0/8", 3), "--cluster-cidr 10.0.0.0/8 overlaps the service CIDR 10.96.0.0/12");
        assert_eq!(message("10.244.0.0/23", 3), "--cluster-cidr 10.244.0.0/23 has room for 2 node pod CIDRs (/24), not 3");
        assert!(message("10.244.0.0", 3).contains("is not an IPv4 CIDR"));
    }
}
