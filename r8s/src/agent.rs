//! `r8s agent`: the node agent (r8s's kubelet). It joins the cluster at
//! `--server` as node `--node-name` and runs that node's pods through CRI.
//!
//! Without `--container-runtime-endpoint` it starts r8s's own CRI runtime in a
//! process of its own (`r8s runtime serve --socket ...`), unless one already
//! answers on the socket (an agent restarted after a crash finds the runtime
//! it started before, with the pods still running), and starts it again
//! whenever it dies, with back-off; the containers keep running meanwhile
//! and the new runtime adopts them. The runtime outlives the agent on
//! SIGKILL; on SIGTERM/SIGINT the agent stops the runtime it started, which
//! leaves containers running.
//!
//! `--server` may name several API servers (comma-separated): the agent then
//! reaches them through a forwarder of its own on loopback, which picks a
//! ready one for every connection.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The API server, e.g. http://127.0.0.1:6443, or several, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    server: Vec<String>,
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
    /// Run inside this network namespace (a pinned file, or NAME under
    /// `/run/netns`), entered at start: the runtime, the pod bridge and the
    /// agent's listeners live there.
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
        // Only while it runs: a reaped child's pid may be another process's now.
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: signalling the child this agent started, not yet reaped, by its PID.
            unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_lowercase()).unwrap_or_else(|_| "localhost".into())
}

fn runtime_answers(socket: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// Starts `r8s runtime serve` and waits until it answers on its socket.
fn start_runtime(args: &AgentArgs, pod_cidr: Option<&str>) -> anyhow::Result<RuntimeProcess> {
    let exe = std::env::current_exe().context("cannot find the r8s binary")?;
    let child = Command::new(exe)
        .args(["runtime", "serve", "--socket"])
        .arg(&args.runtime_socket)
        .args(&args.runtime_args)
        .args(pod_cidr.map(|cidr| format!("--pod-cidr={cidr}")))
        .spawn()
        .context("cannot start `r8s runtime serve`")?;
    let mut process = RuntimeProcess(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !runtime_answers(&args.runtime_socket) {
        if let Ok(Some(status)) = process.0.try_wait() {
            bail!("`r8s runtime serve` {}", crate::cluster::supervisor::describe_exit(status));
        }
        if Instant::now() > deadline {
            bail!("the runtime did not serve on {} within 30 s", args.runtime_socket.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(process)
}

/// Keeps r8s's runtime serving on the agent's socket: uses one that answers
/// already (started by an earlier agent), else starts one, and starts it
/// again whenever nothing answers any more, with back-off.
async fn keep_runtime(args: &AgentArgs, pod_cidr: Option<&str>, mut runtime: Option<RuntimeProcess>) {
    let mut backoff = crate::cluster::supervisor::RestartBackoff::default();
    let mut started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let exited = runtime.as_mut().and_then(|process| process.0.try_wait().ok().flatten());
        if let Some(status) = exited {
            runtime = None;
            tracing::warn!(status = %crate::cluster::supervisor::describe_exit(status), "the runtime died");
        } else if runtime.is_some() || runtime_answers(&args.runtime_socket) {
            continue;
        } else {
            tracing::warn!(socket = %args.runtime_socket.display(), "the runtime the agent found at start no longer answers");
        }
        let delay = backoff.delay(started.elapsed());
        tracing::info!(delay_seconds = delay.as_secs(), "starting the runtime again after a pause");
        tokio::time::sleep(delay).await;
        started = Instant::now();
        let (args_ref, cidr) = (&*args, pod_cidr);
        match tokio::task::block_in_place(|| start_runtime(args_ref, cidr)) {
            Ok(process) => {
                tracing::info!("the runtime serves again; it adopts the running containers");
                runtime = Some(process);
            }
            Err(error) => tracing::warn!(error = %format!("{error:#}"), "could not start the runtime"),
        }
    }
}

/// The URL the agent talks to: the server itself, or a forwarder of its own
/// in front of several.
async fn api_url(servers: &[String]) -> anyhow::Result<(String, Option<client::AbortOnDrop>)> {
    if let [one] = servers {
        return Ok((one.clone(), None));
    }
    let mut addresses = Vec::new();
    for server in servers {
        let authority = server.strip_prefix("http://").unwrap_or(server).trim_end_matches('/');
        let address = tokio::net::lookup_host(authority).await.ok().and_then(|mut found| found.next());
        addresses.push(address.with_context(|| format!("--server {server:?} is not http://host:port"))?);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen on loopback")?;
    let url = format!("http://{}", listener.local_addr()?);
    let forwarder = tokio::spawn(crate::balancer::serve(listener, addresses, crate::balancer::Dialer::Direct));
    Ok((url, Some(client::AbortOnDrop(vec![forwarder]))))
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.simulate {
        let name = args.node_name.clone().unwrap_or_else(hostname);
        let settings = node_agent::hollow::HollowSettings { ready_delay: Duration::from_millis(args.simulate_ready_delay_ms), ..Default::default() };
        return crate::sim::serve(&args.server[0], vec![name], settings);
    }
    crate::init_logging();
    if let Some(netns) = &args.netns {
        // Before any thread exists: `setns` moves only the calling thread.
        crate::netns::enter(netns)?;
    }
    let tokio = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let (url, _forwarder) = tokio.block_on(api_url(&args.server))?;
    let mut config = node_agent::Config::new(&url, args.node_name.clone().unwrap_or_else(hostname));
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
    let own_runtime = args.container_runtime_endpoint.is_none();
    let runtime = if own_runtime && runtime_answers(&args.runtime_socket) {
        tracing::info!(socket = %args.runtime_socket.display(), "using the runtime already serving on the socket");
        None
    } else if own_runtime {
        Some(start_runtime(&args, pod_cidr.as_deref())?)
    } else {
        None
    };
    config.cri_endpoint = match &args.container_runtime_endpoint {
        Some(endpoint) => endpoint.clone(),
        None => format!("unix://{}", args.runtime_socket.display()),
    };
    tokio.block_on(async {
        let runtime_kept = async {
            match own_runtime {
                true => keep_runtime(&args, pod_cidr.as_deref(), runtime).await,
                false => std::future::pending().await,
            }
        };
        tokio::select! {
            ran = node_agent::run(config) => ran.map_err(anyhow::Error::from),
            () = runtime_kept => Ok(()),
            _ = terminate.recv() => Ok(()),
            _ = interrupt.recv() => Ok(()),
        }
    })
}
