//! `r8s server` processes on loopback, for tests and benchmarks that need a
//! real cluster of separate processes: [`ServerProcess`] is one server,
//! [`LocalCluster`] bootstraps one and has the others join it. Each server logs
//! to `<root>/server-<id>.log`; every process is killed by PID when its handle
//! is dropped, and a cluster's temp dir is removed with it.

use std::io::{self, BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use super::{NodeId, RaftClient};

/// How long a server may take to print `ready` (joining waits for catch-up).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {binary}: {source}")]
    Spawn { binary: PathBuf, source: io::Error },
    #[error("server {node_id} did not become ready; its log:\n{log}")]
    NotReady { node_id: NodeId, log: String },
    #[error("cannot signal server {node_id}: {source}")]
    Signal { node_id: NodeId, source: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One `r8s server` process.
pub struct ServerProcess {
    binary: PathBuf,
    node_id: NodeId,
    addr: String,
    data_dir: PathBuf,
    /// Everything after `--data-dir DIR`: `--join`, snapshot flags, ...
    args: Vec<String>,
    child: Child,
    /// The Kubernetes API's URL, from the `ready api=URL` line (a free port,
    /// new at every start).
    api_url: String,
}

impl ServerProcess {
    /// Starts `binary server` with its data in `root/server-<id>` on a free
    /// loopback port, and waits until it is ready (has bootstrapped or joined).
    pub fn start(
        binary: &Path,
        node_id: NodeId,
        root: &Path,
        join: Option<&str>,
        extra_args: &[&str],
    ) -> Result<ServerProcess, ProcessError> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut args: Vec<String> = extra_args.iter().map(|arg| arg.to_string()).collect();
        if let Some(seed) = join {
            args.extend(["--join".to_string(), seed.to_string()]);
        }
        let data_dir = root.join(format!("server-{node_id}"));
        let child = spawn(binary, node_id, &addr, &data_dir, &args)?;
        let mut server = ServerProcess {
            binary: binary.to_path_buf(),
            node_id,
            addr,
            data_dir,
            args,
            child,
            api_url: String::new(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL of this server's Kubernetes API (changes at every restart).
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    pub fn client(&self) -> RaftClient {
        RaftClient::new(&self.addr)
    }

    /// Where the server's stderr goes.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus, ProcessError> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(io::Error::other)?;
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped
        // yet (so the PID cannot have been reused).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(ProcessError::Signal {
                node_id: self.node_id,
                source: io::Error::last_os_error(),
            });
        }
        Ok(self.child.wait()?)
    }

    /// Kills it if it runs, then starts it again with the same id, address,
    /// data and flags, and waits until it is ready.
    pub fn restart(&mut self) -> Result<(), ProcessError> {
        self.kill();
        self.child = spawn(
            &self.binary,
            self.node_id,
            &self.addr,
            &self.data_dir,
            &self.args,
        )?;
        self.wait_ready()
    }

    /// Waits for the `ready` line `r8s server` prints once its store is up.
    fn wait_ready(&mut self) -> Result<(), ProcessError> {
        let stdout = self
            .child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("stdout is not piped"))?;
        let (ready, wait) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("ready api=") {
                    let _ = ready.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
            }
        });
        self.api_url = wait
            .recv_timeout(READY_TIMEOUT)
            .map_err(|_| ProcessError::NotReady {
                node_id: self.node_id,
                log: std::fs::read_to_string(self.log_path()).unwrap_or_default(),
            })?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(
    binary: &Path,
    node_id: NodeId,
    addr: &str,
    data_dir: &Path,
    args: &[String],
) -> Result<Child, ProcessError> {
    let spawn_error = |source| ProcessError::Spawn {
        binary: binary.to_path_buf(),
        source,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .map_err(spawn_error)?;
    Command::new(binary)
        .args([
            "server",
            "--node-id",
            &node_id.to_string(),
            "--raft-addr",
            addr,
            // The store is what these processes are for: an API on a free
            // port, and no scheduler or controllers.
            "--listen",
            "127.0.0.1:0",
            "--no-control-plane",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(spawn_error)
}

/// A port that was free a moment ago (the server binds it right after).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Servers 1..=n in their own temp dir: server 1 bootstraps, the others join it.
pub struct LocalCluster {
    // Declared first: the processes are killed before their data is removed.
    servers: Vec<ServerProcess>,
    root: TempDir,
}

impl LocalCluster {
    /// `extra_args` go to every server (e.g. `--snapshot-every 50`).
    pub fn start(
        binary: &Path,
        size: usize,
        extra_args: &[&str],
    ) -> Result<LocalCluster, ProcessError> {
        let root = tempfile::Builder::new().prefix("r8s-cluster").tempdir()?;
        let first = ServerProcess::start(binary, 1, root.path(), None, extra_args)?;
        let seed = first.addr().to_string();
        let mut servers = vec![first];
        for node_id in 2..=size as NodeId {
            servers.push(ServerProcess::start(
                binary,
                node_id,
                root.path(),
                Some(&seed),
                extra_args,
            )?);
        }
        Ok(LocalCluster { servers, root })
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn servers(&self) -> &[ServerProcess] {
        &self.servers
    }

    pub fn servers_mut(&mut self) -> &mut [ServerProcess] {
        &mut self.servers
    }

    /// The position in [`LocalCluster::servers`] of the server that the
    /// server at `asked` believes leads.
    pub async fn leader(&self, asked: usize) -> crate::Result<Option<usize>> {
        let leader = self.servers[asked].client().leader().await?;
        Ok(leader.and_then(|id| self.servers.iter().position(|server| server.node_id == id)))
    }
}
