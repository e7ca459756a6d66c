//! `r8s agent`: the node agent (r8s's kubelet). It joins the cluster at
//! `--server` as node `--node-name` and runs that node's pods through CRI.
//!
//! Without `--container-runtime-endpoint` it starts r8s's own CRI runtime in a
//! process of its own (`r8s runtime serve --socket ...`), unless one already
//! answers on the socket (an agent restarted after a crash finds the runtime
//! it started before, with the pods still running). The runtime outlives the
//! agent on SIGKILL; on SIGTERM/SIGINT the agent stops the runtime it started,
//! which leaves containers running.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The API server, e.g. http://127.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// The Node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// A CRI runtime to use instead of starting r8s's own (unix:///path).
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// The socket of the runtime the agent starts.
    #[arg(long, default_value = "/run/r8s/cri.sock")]
    runtime_socket: PathBuf,
    /// More arguments for `r8s runtime serve` (repeat the flag), e.g. `--runtime-arg=--pod-cidr=10.88.0.0/16`.
    #[arg(long = "runtime-arg", allow_hyphen_values = true)]
    runtime_args: Vec<String>,
    /// Pod volumes.
    #[arg(long, default_value = "/var/lib/r8s/agent")]
    root_dir: PathBuf,
    /// Container logs.
    #[arg(long, default_value = "/var/log/pods")]
    log_dir: PathBuf,
    /// Where container logs and exec are served.
    #[arg(long, default_value = "0.0.0.0:10250")]
    listen: SocketAddr,
    /// The node's InternalIP (default: the source address of the default route).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Do not run the Service proxy (the nftables rules that make Services reach their pods).
    #[arg(long)]
    no_proxy: bool,
    /// The cluster DNS server(s) pods with dnsPolicy ClusterFirst use (comma-separated);
    /// without one they fall back to the node's resolv.conf, as with the kubelet.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<IpAddr>,
    /// The cluster domain in pods' DNS search path.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Run inside this network namespace (`/run/netns/NAME`), entered at
    /// start: the runtime, the pod bridge and the agent's listeners live there.
    #[arg(long)]
    netns: Option<String>,
    /// Register the Node, wait for the controller to give it `spec.podCIDR`,
    /// and start the runtime with that pod CIDR.
    #[arg(long)]
    wait_for_pod_cidr: bool,
    /// Route other nodes' pod CIDRs inside this range through their InternalIPs.
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// Masquerade pods' traffic leaving through this interface toward
    /// addresses outside `--cluster-cidr` (only for a node that is a namespace).
    #[arg(long, requires_all = ["netns", "cluster_cidr"])]
    masquerade_interface: Option<String>,
    /// Act as a hollow node (like Kubernetes' kubemark): register the Node, renew
    /// its Lease and act out the lives of its pods without a runtime or containers.
    #[arg(long)]
    simulate: bool,
    /// With `--simulate`: milliseconds from binding to Running and Ready.
    #[arg(long, default_value_t = 100, requires = "simulate")]
    simulate_ready_delay_ms: u64,
    /// A running container's log is rotated once it is larger than this (a quantity, e.g. 10Mi).
    #[arg(long, default_value = "10Mi", value_parser = parse_log_size)]
    container_log_max_size: u64,
    /// Log files kept per container, the current one included (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    container_log_max_files: u16,
}

/// A size such as `10Mi` or `500k`, in bytes.
fn parse_log_size(text: &str) -> Result<u64, String> {
    let quantity = api::Quantity::parse(text).map_err(|e| e.to_string())?;
    u64::try_from(quantity.value()).ok().filter(|bytes| *bytes > 0).ok_or_else(|| format!("{text} is not a positive size"))
}

/// The runtime process the agent started; stopped (SIGTERM) with the agent.
struct RuntimeProcess(Child);

impl Drop for RuntimeProcess {
    fn drop(&mut self) {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: signalling the child this agent started, by its PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_lowercase()).unwrap_or_else(|_| "localhost".into())
}

/// Starts `r8s runtime serve` unless a runtime already answers on the socket.
fn start_runtime(args: &AgentArgs, pod_cidr: Option<&str>) -> anyhow::Result<Option<RuntimeProcess>> {
    if std::os::unix::net::UnixStream::connect(&args.runtime_socket).is_ok() {
        tracing::info!(socket = %args.runtime_socket.display(), "using the runtime already serving on the socket");
        return Ok(None);
    }
    let exe = std::env::current_exe().context("cannot find the r8s binary")?;
    let child = Command::new(exe)
        .args(["runtime", "serve", "--socket"])
        .arg(&args.runtime_socket)
        .args(&args.runtime_args)
        .args(pod_cidr.map(|cidr| format!("--pod-cidr={cidr}")))
        .spawn()
        .context("cannot start `r8s runtime serve`")?;
    let process = RuntimeProcess(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&args.runtime_socket).is_err() {
        if Instant::now() > deadline {
            bail!("the runtime did not serve on {} within 30 s", args.runtime_socket.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(process))
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.simulate {
        let name = args.node_name.clone().unwrap_or_else(hostname);
        let settings = controller::hollow::HollowSettings { ready_delay: Duration::from_millis(args.simulate_ready_delay_ms), ..Default::default() };
        return crate::sim::serve(&args.server, vec![name], settings);
    }
    crate::init_logging();
    if let Some(name) = &args.netns {
        // Before any thread exists: `setns` moves only the calling thread.
        crate::netns::enter(name)?;
    }
    let mut config = node_agent::Config::new(&args.server, args.node_name.clone().unwrap_or_else(hostname));
    config.root_dir = args.root_dir.clone();
    config.log_dir = args.log_dir.clone();
    config.listen = args.listen;
    config.node_ip = args.node_ip;
    config.service_proxy = !args.no_proxy;
    config.cluster_dns.servers = args.cluster_dns.clone();
    config.cluster_dns.domain = args.cluster_domain.clone();
    config.container_logs = node_agent::container_logs::LogPolicy {
        max_size: args.container_log_max_size,
        max_files: usize::from(args.container_log_max_files),
    };
    if let Some(cidr) = &args.cluster_cidr {
        let cluster_cidr = cidr.parse().with_context(|| format!("--cluster-cidr {cidr:?}"))?;
        config.pod_routes = Some(node_agent::routes::PodRoutes { cluster_cidr, masquerade_interface: args.masquerade_interface.clone() });
    }
    let tokio = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut terminate = tokio.block_on(async { signal(SignalKind::terminate()) })?;
    let mut interrupt = tokio.block_on(async { signal(SignalKind::interrupt()) })?;
    let pod_cidr = if args.wait_for_pod_cidr {
        let waited = tokio.block_on(async {
            tokio::select! {
                cidr = node_agent::wait_for_pod_cidr(&config) => cidr.map(Some).map_err(anyhow::Error::from),
                _ = terminate.recv() => Ok(None),
                _ = interrupt.recv() => Ok(None),
            }
        })?;
        let Some(cidr) = waited else { return Ok(()) };
        tracing::info!(pod_cidr = %cidr, "the node's pod CIDR");
        Some(cidr)
    } else {
        None
    };
    let (runtime, endpoint) = match &args.container_runtime_endpoint {
        Some(endpoint) => (None, endpoint.clone()),
        None => (start_runtime(&args, pod_cidr.as_deref())?, format!("unix://{}", args.runtime_socket.display())),
    };
    config.cri_endpoint = endpoint;
    let result = tokio.block_on(async move {
        tokio::select! {
            ran = node_agent::run(config) => ran.map_err(anyhow::Error::from),
            _ = terminate.recv() => Ok(()),
            _ = interrupt.recv() => Ok(()),
        }
    });
    drop(runtime);
    result
}
