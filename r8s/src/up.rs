//! `r8s up`: a whole one-node cluster on this machine, in the foreground
//! (with `--nodes N`, a cluster of N nodes in network namespaces: see
//! [`crate::cluster`]). It
//! starts `r8s server` (the embedded raft store, the API server, the scheduler
//! and the controllers) and `r8s agent` (which starts the runtime) as processes
//! of their own, talking to each other only through the API, waits until the
//! node is Ready, and prints how to reach the cluster. SIGINT or SIGTERM stops
//! the agent, then the server.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the server's store, the agent's volumes and the kubeconfig live.
    #[arg(long, default_value = "/var/lib/r8s")]
    data_dir: PathBuf,
    /// host:port of the Kubernetes API.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: String,
    /// host:port of the server's raft RPCs.
    #[arg(long, default_value = "127.0.0.1:7380")]
    raft_addr: String,
    /// The node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's pod CIDR.
    #[arg(long, default_value = "10.88.0.0/16")]
    pod_cidr: String,
    /// How long to wait for the node to be Ready.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
    /// Run a cluster of this many nodes, each in a network namespace of its own.
    #[arg(long)]
    nodes: Option<usize>,
    /// The multi-node cluster's name: its namespaces are `r8s-NAME` and
    /// `r8s-NAME-n<i>`, its Nodes `NAME-n<i>`.
    #[arg(long, default_value = "local", requires = "nodes")]
    name: String,
    /// The range of the nodes' pod CIDRs (a /24 per node) in a multi-node cluster.
    #[arg(long, default_value = "10.244.0.0/16", requires = "nodes")]
    cluster_cidr: String,
    /// The image store the nodes' runtimes share in a multi-node cluster.
    #[arg(long, env = "R8S_IMAGE_ROOT", default_value = crate::image_cmd::DEFAULT_IMAGE_ROOT)]
    image_root: PathBuf,
    /// More arguments for `r8s server` (repeat the flag), e.g. `--server-arg=--node-grace-seconds=15`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    #[command(flatten)]
    roots: crate::cluster::Roots,
}

/// A child process, stopped with SIGTERM (then waited for) when dropped.
pub struct Process {
    name: String,
    child: Child,
}

impl Process {
    pub fn start(name: &str, command: &mut Command) -> anyhow::Result<Process> {
        let child = command.spawn().with_context(|| format!("cannot start r8s {name}"))?;
        Ok(Process { name: name.to_string(), child })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: signalling a child this process started, by its PID.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        match self.child.wait() {
            Ok(status) => tracing::info!(process = %self.name, %status, "stopped"),
            Err(error) => tracing::warn!(process = %self.name, %error, "could not wait for it"),
        }
    }
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    if let Some(nodes) = args.nodes {
        return crate::cluster::up::run(crate::cluster::up::Options {
            layout: crate::cluster::Layout::new(&args.name, &args.roots)?,
            nodes,
            listen: args.listen,
            cluster_cidr: args.cluster_cidr,
            image_root: args.image_root,
            server_args: args.server_args,
            timeout: Duration::from_secs(args.timeout_seconds),
        });
    }
    crate::init_logging();
    let exe = std::env::current_exe().context("cannot find the r8s binary")?;
    let kubeconfig = args.data_dir.join("kubeconfig.yaml");
    let node_name = args.node_name.clone().unwrap_or_else(crate::agent::hostname);

    let mut server = Process::start(
        "server",
        Command::new(&exe)
            .arg("server")
            .arg("--data-dir")
            .arg(args.data_dir.join("server"))
            .args(["--listen", &args.listen, "--raft-addr", &args.raft_addr])
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            .args(&args.server_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )?;
    let url = wait_for_ready_line(&mut server)?;

    let _agent = Process::start(
        "agent",
        Command::new(&exe)
            .args(["agent", "--server", &url, "--node-name", &node_name])
            .arg("--root-dir")
            .arg(args.data_dir.join("agent"))
            .arg(format!("--runtime-arg=--pod-cidr={}", args.pod_cidr))
            .stdin(Stdio::null()),
    )?;

    let tokio = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    tokio.block_on(async {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let client = client::connect::from_url(&url)?;
        let deadline = Duration::from_secs(args.timeout_seconds);
        // Ctrl-C while waiting stops the cluster too.
        let waited = tokio::select! {
            waited = tokio::time::timeout(deadline, wait_for_node_ready(&client, &node_name)) => waited,
            _ = terminate.recv() => return anyhow::Ok(()),
            _ = interrupt.recv() => return anyhow::Ok(()),
        };
        waited.with_context(|| format!("node {node_name} was not Ready within {} s", args.timeout_seconds))??;
        println!("r8s is up: node {node_name} is Ready, the API is at {url}.");
        println!("  export KUBECONFIG={}", kubeconfig.display());
        println!("  r8sctl get nodes        # or kubectl");
        println!("Stop it with Ctrl-C.");
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        anyhow::Ok(())
    })
    // The agent stops first, then the server (drop order is the reverse of creation).
}

/// Reads the server's `ready api=URL ...` line and returns the URL.
pub fn wait_for_ready_line(server: &mut Process) -> anyhow::Result<String> {
    let stdout = server.child.stdout.take().context("the server's stdout is not piped")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the server's output")?;
        if let Some(url) = line.strip_prefix("ready api=").and_then(|rest| rest.split_whitespace().next()) {
            return Ok(url.to_string());
        }
        if Instant::now() > deadline {
            break;
        }
    }
    bail!("the server exited or did not print its ready line; see its log above")
}

async fn wait_for_node_ready(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    loop {
        if let Some(node) = nodes.get_opt(name).await? {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
