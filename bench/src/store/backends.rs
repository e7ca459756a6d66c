//! The stores the benchmark compares, each started fresh on disk in a temporary
//! directory and stopped (processes killed by PID, files removed) when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use store::etcd::EtcdStore;
use store::raft::{RaftConfig, RaftStore};
use store::testing::LocalEtcd;
use store::Store;
use tempfile::TempDir;

pub const ETCD: &str = "etcd 3.4";

#[derive(Clone, Copy)]
pub enum Backend {
    /// One embedded raft server in the benchmark's own process, as the API
    /// server embeds it.
    RaftOne,
    /// The same, plus two `r8s server` processes that join it: three voters.
    RaftThree,
    Etcd,
}

pub const ALL: [Backend; 3] = [Backend::RaftOne, Backend::RaftThree, Backend::Etcd];

/// A started backend and what keeps it alive.
pub struct Started {
    store: Arc<dyn Store>,
    _followers: Vec<ServerProcess>,
    _etcd: Option<LocalEtcd>,
    _dir: Option<TempDir>,
}

impl Started {
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::RaftOne => "r8s raft, 1 server",
            Backend::RaftThree => "r8s raft, 3 servers",
            Backend::Etcd => ETCD,
        }
    }

    pub async fn start(self) -> anyhow::Result<Started> {
        match self {
            Backend::Etcd => {
                let etcd = LocalEtcd::start().await?;
                let store = EtcdStore::connect(&[etcd.client_url()]).await?;
                Ok(Started { store: Arc::new(store), _followers: vec![], _etcd: Some(etcd), _dir: None })
            }
            Backend::RaftOne | Backend::RaftThree => {
                let dir = tempfile::Builder::new().prefix("r8s-bench-store-").tempdir()?;
                let mut config = RaftConfig::new(1, dir.path().join("server-1"), "127.0.0.1:0");
                config.compaction_interval = None;
                let leader = RaftStore::open(config).await?;
                let mut followers = Vec::new();
                if let Backend::RaftThree = self {
                    for id in [2, 3] {
                        followers.push(ServerProcess::start(id, &dir.path().join(format!("server-{id}")), leader.addr())?);
                    }
                    wait_for_voters(&leader, 3).await?;
                }
                Ok(Started { store: leader, _followers: followers, _etcd: None, _dir: Some(dir) })
            }
        }
    }
}

async fn wait_for_voters(store: &RaftStore, voters: usize) -> anyhow::Result<()> {
    let mut metrics = store.raft().metrics();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if metrics.borrow().membership_config.membership().voter_ids().count() == voters {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    })
    .await
    .context("the followers did not become voters")
}

/// An `r8s server` process, killed by PID when dropped.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn start(node_id: u64, data_dir: &Path, join: &str) -> anyhow::Result<Self> {
        let binary = r8s_binary()?;
        let mut child = Command::new(&binary)
            .args(["server", "--node-id", &node_id.to_string(), "--raft-addr", "127.0.0.1:0", "--join", join])
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut process = ServerProcess { child };
        let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.starts_with("ready"));
        if !ready {
            let status = process.child.wait()?;
            anyhow::bail!("r8s server {node_id} exited before it was ready ({status})");
        }
        Ok(process)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `r8s` binary built beside this one (`bench/run.sh` builds both).
fn r8s_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let binary = me.with_file_name("r8s");
    anyhow::ensure!(binary.exists(), "{} is missing: build it with `cargo build --release -p r8s`", binary.display());
    Ok(binary)
}
