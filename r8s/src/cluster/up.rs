//! `r8s up --nodes N --name C`: a cluster of N nodes on this machine, in the
//! foreground. It builds the node network ([`super::topology`]), starts
//! `r8s server` in the hub namespace (with a listener on the machine for
//! kubectl) and one `r8s agent --netns` per node, each with its own
//! directories, runtime socket and cgroup subtree, waits until every node is
//! Ready with its pod CIDR, and prints how to reach the cluster. SIGINT or
//! SIGTERM stops the agents and the server and removes the whole cluster, as
//! `r8s down C` does.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use tokio::signal::unix::{signal, SignalKind};

use super::topology::{self, HUB_ADDRESS, MAX_NODES, NODE_INTERFACE};
use super::{teardown, Layout, NodeSlot, ProcessId};
use crate::up::{wait_for_ready_line, Process};

/// Where the API server listens inside the hub, for the agents.
const API_PORT: u16 = 6443;
/// The `kube-dns` Service's ClusterIP, the pods' name server; the server
/// answers at the hub's address behind it.
const CLUSTER_DNS: &str = "10.96.0.10";
/// The API server's default service CIDR, which CLUSTER_DNS is in.
const SERVICE_CIDR: &str = "10.96.0.0/12";

/// What `r8s up --nodes` was asked for.
pub struct Options {
    pub layout: Layout,
    pub nodes: usize,
    /// host:port of the API on this machine.
    pub listen: String,
    pub cluster_cidr: String,
    pub image_root: PathBuf,
    /// More arguments for `r8s server`.
    pub server_args: Vec<String>,
    pub timeout: Duration,
}

/// The claim on a cluster's name and places: made when no `r8s up` of the
/// cluster runs (leftovers of an earlier run are removed first); dropping it
/// removes the whole cluster.
struct Cluster {
    layout: Layout,
}

impl Cluster {
    fn claim(layout: &Layout) -> anyhow::Result<Cluster> {
        let me = std::process::id() as i32;
        if let Some(up) = ProcessId::read(&layout.pid_file("up")).filter(|p| p.is_alive_r8s() && p.pid != me) {
            bail!("cluster {} is already up (r8s up, pid {}); stop it with `r8s down {}`", layout.name, up.pid, layout.name);
        }
        let hub_exists = crate::netns::netns_path(&layout.hub_netns()).exists();
        if layout.data_dir.exists() || layout.run_dir.exists() || hub_exists {
            tracing::info!(cluster = %layout.name, "removing what an earlier run of the cluster left");
            report(&layout.name, &teardown::remove(layout, false));
        }
        for dir in [&layout.data_dir, &layout.run_dir, &layout.logs_dir()] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let cluster = Cluster { layout: layout.clone() };
        ProcessId::of(me).context("cannot read this process's start time")?.write(&layout.pid_file("up"))?;
        let daemons = layout.daemons_cgroup();
        std::fs::create_dir_all(&daemons).with_context(|| format!("cannot create cgroup {}", daemons.display()))?;
        Ok(cluster)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        report(&self.layout.name, &teardown::remove(&self.layout, false));
    }
}

pub fn report(name: &str, report: &teardown::Report) {
    if !report.is_empty() {
        println!(
            "cluster {name} removed: {} processes, {} mounts, {} network namespaces, {} cgroups",
            report.processes,
            report.mounts,
            report.netns.len(),
            report.cgroups
        );
    }
    for problem in &report.problems {
        eprintln!("r8s down {name}: {problem}");
    }
}

/// The last lines of every process's log: the logs go with the cluster, so a
/// failed start shows them before it removes everything.
fn log_tails(layout: &Layout) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(layout.logs_dir()).into_iter().flatten().flatten() {
        let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        text.push_str(&format!("--- {}\n", entry.file_name().to_string_lossy()));
        for line in &lines[lines.len().saturating_sub(10)..] {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn log_file(layout: &Layout, process: &str) -> anyhow::Result<File> {
    let path = layout.logs_dir().join(format!("{process}.log"));
    File::create(&path).with_context(|| format!("cannot create {}", path.display()))
}

/// Starts a process of the cluster, logging to its own file, and records it
/// (pid file, daemons cgroup) so that `r8s down` finds it and all it starts.
/// It is moved into the cgroup before it starts anything of its own: the
/// server starts nothing, an agent starts its runtime only once its Node has
/// a pod CIDR.
fn start(layout: &Layout, process: &str, command: &mut Command) -> anyhow::Result<Process> {
    let started = Process::start(process, command.stdin(Stdio::null()).stderr(log_file(layout, process)?))?;
    let procs = layout.daemons_cgroup().join("cgroup.procs");
    std::fs::write(&procs, started.pid().to_string()).with_context(|| format!("cannot move r8s {process} into {}", procs.display()))?;
    if let Some(id) = ProcessId::of(started.pid()) {
        id.write(&layout.pid_file(process))?;
    }
    Ok(started)
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

pub fn run(options: Options) -> anyhow::Result<()> {
    crate::init_logging();
    if options.nodes == 0 || options.nodes > MAX_NODES {
        bail!("--nodes must be between 1 and {MAX_NODES}");
    }
    check_cluster_cidr(&options.cluster_cidr, options.nodes)?;
    let layout = options.layout.clone();
    let nodes = layout.nodes(options.nodes);
    let exe = std::env::current_exe().context("cannot find the r8s binary")?;
    let _cluster = Cluster::claim(&layout)?;
    let tokio = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    tokio.block_on(async {
        let (_hub, hub, bridge) = topology::create_hub(&layout).await?;
        for (i, node) in nodes.iter().enumerate() {
            topology::create_node(&layout, &hub, bridge, node, i + 1).await?;
        }
        anyhow::Ok(())
    })?;

    let inner_api = format!("{HUB_ADDRESS}:{API_PORT}");
    let mut server = start(
        &layout,
        "server",
        Command::new(&exe)
            .arg("server")
            .arg("--data-dir")
            .arg(layout.data_dir.join("server"))
            .args(["--netns", &layout.hub_netns(), "--host-listen", &options.listen, "--listen", &inner_api])
            .args(["--raft-addr", "127.0.0.1:7380"])
            .arg("--write-kubeconfig")
            .arg(layout.kubeconfig())
            .args(["--allocate-node-cidrs", "--cluster-cidr", &options.cluster_cidr])
            .args(["--advertise-address", &HUB_ADDRESS.to_string(), "--cluster-dns-listen", &format!("{HUB_ADDRESS}:53")])
            .args(&options.server_args)
            .stdout(Stdio::piped()),
    )?;
    let url = wait_for_ready_line(&mut server).map_err(|_| anyhow::anyhow!("r8s server did not start:\n{}", log_tails(&layout)))?;

    let mut agents = Vec::new();
    for node in &nodes {
        let process = format!("agent-{}", node.id);
        agents.push(start(&layout, &process, &mut agent_command(&exe, &layout, node, &options, &inner_api))?);
    }

    tokio.block_on(async {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let client = client::connect::from_url(&url)?;
        let names: Vec<&str> = nodes.iter().map(|n| n.node_name.as_str()).collect();
        let ready = tokio::select! {
            ready = tokio::time::timeout(options.timeout, wait_for_nodes(&client, &names)) => ready,
            _ = terminate.recv() => return anyhow::Ok(()),
            _ = interrupt.recv() => return anyhow::Ok(()),
        };
        let ready = ready.map_err(|_| {
            anyhow::anyhow!("the nodes were not all Ready within {} s:\n{}", options.timeout.as_secs(), log_tails(&layout))
        })??;
        let count = if nodes.len() == 1 { "1 node".to_string() } else { format!("{} nodes", nodes.len()) };
        println!("r8s is up: cluster {}, {count} Ready, the API is at {url}.", layout.name);
        for (name, pod_cidr, address) in ready {
            println!("  node {name}: {address}, pods {pod_cidr}");
        }
        println!("  export KUBECONFIG={}", layout.kubeconfig().display());
        println!("  logs: {}", layout.logs_dir().display());
        println!("Stop it with Ctrl-C or `r8s down {}`.", layout.name);
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        anyhow::Ok(())
    })?;
    // Agents stop before the server; then `_cluster` removes everything.
    drop(agents);
    drop(server);
    Ok(())
}

fn agent_command(exe: &Path, layout: &Layout, node: &NodeSlot, options: &Options, inner_api: &str) -> Command {
    let data = layout.node_data_dir(node);
    let run = layout.node_run_dir(node);
    let runtime_arg = |flag: &str, value: &Path| format!("--runtime-arg=--{flag}={}", value.display());
    let mut command = Command::new(exe);
    command
        .arg("agent")
        .args(["--server", &format!("http://{inner_api}"), "--node-name", &node.node_name])
        .args(["--node-ip", &node.address.to_string(), "--netns", &layout.node_netns(node)])
        .arg("--runtime-socket")
        .arg(run.join("cri.sock"))
        .arg("--root-dir")
        .arg(data.join("agent"))
        .arg("--log-dir")
        .arg(data.join("pod-logs"))
        .args(["--wait-for-pod-cidr", "--cluster-cidr", &options.cluster_cidr, "--masquerade-interface", NODE_INTERFACE])
        .args(["--cluster-dns", CLUSTER_DNS])
        .arg(runtime_arg("state-root", &run.join("runtime")))
        .arg(format!("--runtime-arg=--cgroup-root={}", layout.node_cgroup_root(node)))
        .arg(runtime_arg("image-root", &options.image_root))
        .arg(runtime_arg("cri-root", &run.join("cri")))
        .arg(runtime_arg("netns-dir", &run.join("netns")))
        .arg(runtime_arg("network-state-dir", &data.join("network")));
    command
}

/// Waits until every named node is Ready and has a pod CIDR; returns each
/// node's name, pod CIDR and InternalIP.
async fn wait_for_nodes(client: &kube::Client, names: &[&str]) -> anyhow::Result<Vec<(String, String, String)>> {
    let api: kube::Api<Node> = kube::Api::all(client.clone());
    loop {
        let mut ready = Vec::new();
        for name in names {
            let Ok(Some(node)) = api.get_opt(name).await else { break };
            let status = node.status.unwrap_or_default();
            let is_ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            let pod_cidr = node.spec.and_then(|s| s.pod_cidr).unwrap_or_default();
            let address = status.addresses.iter().flatten().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone()).unwrap_or_default();
            if !is_ready || pod_cidr.is_empty() {
                break;
            }
            ready.push((name.to_string(), pod_cidr, address));
        }
        if ready.len() == names.len() {
            return Ok(ready);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
