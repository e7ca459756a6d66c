//! A real etcd for tests and benchmarks: one member on loopback, on free ports,
//! with a temporary data dir; killed by PID when dropped. It keeps etcd's
//! defaults, fsync included, so benchmarks compare like with like.

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::MAX_VALUE_SIZE;

/// The etcd binary, looked up in `PATH` (Debian's `etcd-server` package).
const ETCD_BINARY: &str = "etcd";
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Another process may take a free port before etcd binds it; then try again.
const START_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum LocalEtcdError {
    #[error("cannot {action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("etcd exited with {status} before it was ready; its log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("etcd was not ready within {READY_WITHIN:?}; its log:\n{log}")]
    NotReady { log: String },
}

fn io_error(action: &'static str) -> impl FnOnce(io::Error) -> LocalEtcdError {
    move |source| LocalEtcdError::Io { action, source }
}

/// A running etcd member. Dropping it kills the process and removes its data.
pub struct LocalEtcd {
    process: Child,
    client_url: String,
    // Dropped after the process is killed (see Drop).
    dir: TempDir,
}

impl LocalEtcd {
    /// Starts etcd and waits until it serves requests.
    ///
    /// Call it from an async task, not from `spawn_blocking`: etcd is told to die
    /// with the thread that started it, so that a test killed mid-way leaves no
    /// etcd behind, and tokio ends idle blocking threads.
    pub async fn start() -> Result<Self, LocalEtcdError> {
        let mut attempt = 1;
        loop {
            match Self::start_once().await {
                Err(LocalEtcdError::Exited { log, .. })
                    if attempt < START_ATTEMPTS && log.contains("address already in use") =>
                {
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The URL clients connect to, like `http://127.0.0.1:41234`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Where etcd keeps its data (inside a temporary directory).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn start_once() -> Result<Self, LocalEtcdError> {
        let dir = tempfile::Builder::new()
            .prefix("r8s-etcd-")
            .tempdir()
            .map_err(io_error("create a data directory for etcd"))?;
        let [client_port, peer_port] = free_ports()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = File::create(log_path(dir.path())).map_err(io_error("create etcd's log file"))?;
        let log_again = log.try_clone().map_err(io_error("share etcd's log file"))?;

        let mut command = Command::new(ETCD_BINARY);
        command
            .arg("--name")
            .arg("r8s-test")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .arg("--initial-cluster")
            .arg(format!("r8s-test={peer_url}"))
            // Room for the largest value r8s accepts plus the request around it.
            .arg(format!(
                "--max-request-bytes={}",
                MAX_VALUE_SIZE + 64 * 1024
            ))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_again);
        // SAFETY: between fork and exec the child only makes one system call.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = command
            .spawn()
            .map_err(io_error("start etcd (is etcd-server installed?)"))?;
        let mut etcd = LocalEtcd {
            process,
            client_url,
            dir,
        };
        etcd.wait_until_ready().await?;
        Ok(etcd)
    }

    async fn wait_until_ready(&mut self) -> Result<(), LocalEtcdError> {
        let deadline = Instant::now() + READY_WITHIN;
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        loop {
            if let Some(status) = self.process.try_wait().map_err(io_error("check on etcd"))? {
                return Err(LocalEtcdError::Exited {
                    status,
                    log: self.log(),
                });
            }
            if let Ok(mut client) =
                etcd_client::Client::connect([&self.client_url], Some(options.clone())).await
            {
                if client.status().await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(LocalEtcdError::NotReady { log: self.log() });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(log_path(self.dir.path()))
            .unwrap_or_else(|error| format!("(unreadable: {error})"))
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        // Kills by PID; it is our own child, so the PID cannot have been reused
        // before we reap it here.
        if let Err(error) = self.process.kill() {
            tracing::warn!(%error, pid = self.process.id(), "cannot kill etcd");
        }
        let _ = self.process.wait();
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("etcd.log")
}

/// Two distinct ports nobody listens on right now.
fn free_ports() -> Result<[u16; 2], LocalEtcdError> {
    let bind = || TcpListener::bind("127.0.0.1:0").map_err(io_error("find a free port"));
    // Both held at once, so they differ.
    let (first, second) = (bind()?, bind()?);
    let port = |listener: &TcpListener| {
        listener
            .local_addr()
            .map(|address| address.port())
            .map_err(io_error("find a free port"))
    };
    Ok([port(&first)?, port(&second)?])
}
