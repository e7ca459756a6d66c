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
fn start_runtime(args: &AgentArgs) -> anyhow::Result<Option<RuntimeProcess>> {
    if std::os::unix::net::UnixStream::connect(&args.runtime_socket).is_ok() {
        tracing::info!(socket = %args.runtime_socket.display(), "using the runtime already serving on the socket");
        return Ok(None);
    }
    let exe = std::env::current_exe().context("cannot find the r8s binary")?;
    let child = Command::new(exe)
        .args(["runtime", "serve", "--socket"])
        .arg(&args.runtime_socket)
        .args(&args.runtime_args)
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
    crate::init_logging();
    let (runtime, endpoint) = match &args.container_runtime_endpoint {
        Some(endpoint) => (None, endpoint.clone()),
        None => (start_runtime(&args)?, format!("unix://{}", args.runtime_socket.display())),
    };
    let mut config = node_agent::Config::new(&args.server, args.node_name.clone().unwrap_or_else(hostname));
    config.cri_endpoint = endpoint;
    config.root_dir = args.root_dir;
    config.log_dir = args.log_dir;
    config.listen = args.listen;
    config.node_ip = args.node_ip;
    let tokio = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = tokio.block_on(async move {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            ran = node_agent::run(config) => ran.map_err(anyhow::Error::from),
            _ = terminate.recv() => Ok(()),
            _ = interrupt.recv() => Ok(()),
        }
    });
    drop(runtime);
    result
}
