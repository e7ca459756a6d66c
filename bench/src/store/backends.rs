//! The stores the benchmark compares, each started fresh on disk in a temporary
//! directory and stopped (processes killed by PID, files removed) when dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use store::etcd::EtcdStore;
use store::raft::process::ServerProcess;
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
                    let binary = r8s_binary()?;
                    for id in [2, 3] {
                        followers.push(ServerProcess::start(&binary, id, dir.path(), Some(leader.addr()), &[])?);
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

/// The `r8s` binary built beside this one (`bench/run.sh` builds both).
fn r8s_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let binary = me.with_file_name("r8s");
    anyhow::ensure!(binary.exists(), "{} is missing: build it with `cargo build --release -p r8s`", binary.display());
    Ok(binary)
}
