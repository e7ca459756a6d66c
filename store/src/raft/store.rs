//! [`RaftStore`]: the [`Store`] contract on a raft cluster. Writes are
//! committed through the leader (from any server), reads are linearizable
//! (raft read-index, so followers serve them too), watches stream from this
//! server's own state machine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use openraft::{BasicNode, Raft, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::connection::{CallError, Connection};
use super::log_store::LogStore;
use super::network::Peers;
use super::node::Node;
use super::rpc::{RemoteError, Request};
use super::state_machine::StateMachineStore;
use super::{server, JournalError, NodeId, SnapshotError, TypeConfig};
use crate::compaction::{AutoCompaction, DEFAULT_COMPACTION_INTERVAL};
use crate::mvcc::Command;
use crate::{
    KeyValue, RangeRequest, RangeResponse, Result, Revision, Store, StoreError, WatchStream,
};

/// How long a new server keeps asking to join (the member it asks may still be starting).
const JOIN_WAIT: Duration = Duration::from_secs(120);
const JOIN_TIMEOUT: Duration = Duration::from_secs(150);

#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// This server's id in the cluster; unique and never reused.
    pub node_id: NodeId,
    /// Holds `log/` (the raft log and vote) and `snapshot/`.
    pub data_dir: PathBuf,
    /// `host:port` to listen on for raft and client RPCs. Other servers reach
    /// this one at the address it is bound to, so use a routable address (port
    /// 0 picks a free port, for tests).
    pub addr: String,
    /// A fresh server (empty data dir) asks the member at this address to add
    /// it; without it a fresh server starts a new one-server cluster. Ignored
    /// when the data dir already holds a log.
    pub join: Option<String>,
    /// Take a snapshot after this many applied entries, then drop the log up to
    /// it (keeping `logs_to_keep`).
    pub snapshot_every: u64,
    pub logs_to_keep: u64,
    /// Compact the key-value history automatically at this interval; `None` never does.
    pub compaction_interval: Option<Duration>,
}

impl RaftConfig {
    pub fn new(
        node_id: NodeId,
        data_dir: impl Into<PathBuf>,
        addr: impl Into<String>,
    ) -> RaftConfig {
        RaftConfig {
            node_id,
            data_dir: data_dir.into(),
            addr: addr.into(),
            join: None,
            snapshot_every: 10_000,
            logs_to_keep: 1_000,
            compaction_interval: Some(DEFAULT_COMPACTION_INTERVAL),
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, RaftStoreError> {
        openraft::Config {
            cluster_name: "r8s".into(),
            heartbeat_interval: 100,
            election_timeout_min: 500,
            election_timeout_max: 1000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.logs_to_keep,
            // An entry is a batch of up to 1 MiB of values (plus one value of up
            // to 2 MiB): this keeps an AppendEntries message under 256 MiB.
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftStoreError::Config(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RaftStoreError {
    #[error(transparent)]
    Log(#[from] JournalError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot join the cluster through {seed}: {reason}")]
    Join { seed: String, reason: String },
}

pub struct RaftStore {
    node: Arc<Node>,
    addr: String,
    server: JoinHandle<()>,
    _compaction: Option<AutoCompaction>,
}

impl RaftStore {
    /// Opens (or creates) the server's data, starts serving its raft port, and
    /// bootstraps or joins a cluster if the data dir is fresh.
    pub async fn open(config: RaftConfig) -> Result<Arc<RaftStore>, RaftStoreError> {
        let log = LogStore::open(&config.data_dir.join("log"))?;
        let sm = StateMachineStore::open(&config.data_dir.join("snapshot"))?;
        let fresh = log.is_empty();
        let listen_error = |source| RaftStoreError::Listen {
            addr: config.addr.clone(),
            source,
        };
        let listener = TcpListener::bind(&config.addr)
            .await
            .map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?.to_string();
        let peers = Peers::default();
        let raft = Raft::new(
            config.node_id,
            Arc::new(config.raft_config()?),
            peers.clone(),
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| RaftStoreError::Raft(e.to_string()))?;
        let node = Arc::new(Node::new(raft, sm, peers));
        let server = tokio::spawn(server::serve(listener, node.clone()));
        let store = Arc::new_cyclic(|this: &Weak<RaftStore>| RaftStore {
            node,
            addr,
            server,
            _compaction: config
                .compaction_interval
                .map(|interval| AutoCompaction::start(this.clone(), interval)),
        });
        if fresh {
            match &config.join {
                None => store.bootstrap(config.node_id).await?,
                Some(seed) => store.join(config.node_id, seed).await?,
            }
        }
        tracing::info!(node_id = config.node_id, addr = %store.addr, "raft store open");
        Ok(store)
    }

    /// Reads a server's data directory the way [`RaftStore::open`] does,
    /// without starting anything: the error of a corrupt log or snapshot
    /// names the file. A directory that does not exist yet is fine.
    pub fn check_data_dir(data_dir: &std::path::Path) -> Result<(), RaftStoreError> {
        if !data_dir.exists() {
            return Ok(());
        }
        LogStore::open(&data_dir.join("log"))?;
        StateMachineStore::open(&data_dir.join("snapshot"))?;
        Ok(())
    }

    /// The address this server's raft port is bound to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The raft handle, to look at metrics (leader, membership, log indexes).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.node.raft
    }

    /// Stops raft (flushing the log) and the raft port. Call it before opening
    /// the same data dir again.
    pub async fn shutdown(&self) -> Result<(), RaftStoreError> {
        self.server.abort();
        self.node
            .raft
            .shutdown()
            .await
            .map_err(|e| RaftStoreError::Raft(e.to_string()))
    }

    async fn bootstrap(&self, node_id: NodeId) -> Result<(), RaftStoreError> {
        let members = BTreeMap::from([(node_id, BasicNode::new(&self.addr))]);
        self.node
            .raft
            .initialize(members)
            .await
            .map_err(|e| RaftStoreError::Raft(e.to_string()))?;
        tracing::info!(node_id, "started a new one-server cluster");
        Ok(())
    }

    /// Asks `seed` (any member) to have the leader add this server as a learner
    /// and then as a voter, retrying while `seed` cannot be reached.
    async fn join(&self, node_id: NodeId, seed: &str) -> Result<(), RaftStoreError> {
        let join_error = |reason: String| RaftStoreError::Join {
            seed: seed.to_string(),
            reason,
        };
        let connection = Connection::new(seed);
        let deadline = Instant::now() + JOIN_WAIT;
        loop {
            let request = Request::Join {
                node_id,
                addr: self.addr.clone(),
            };
            match connection.call(request, JOIN_TIMEOUT).await {
                Ok(_) => break,
                Err(
                    CallError::Connect { .. }
                    | CallError::Remote(RemoteError::Store(StoreError::Unavailable(_))),
                ) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => return Err(join_error(e.to_string())),
            }
        }
        tracing::info!(node_id, seed, "joined the cluster");
        Ok(())
    }
}

impl Drop for RaftStore {
    /// Stops the raft port and starts stopping raft; call [`RaftStore::shutdown`]
    /// to wait until the log is closed.
    fn drop(&mut self) {
        self.server.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let raft = self.node.raft.clone();
            runtime.spawn(async move { raft.shutdown().await });
        }
    }
}

#[async_trait]
impl Store for RaftStore {
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.node
            .write(Command::Create {
                key: key.to_string(),
                value,
            })
            .await?
            .into_put()
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.node
            .write(Command::Update {
                key: key.to_string(),
                value,
                expected,
            })
            .await?
            .into_put()
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        self.node
            .write(Command::Delete {
                key: key.to_string(),
                expected,
            })
            .await?
            .into_deleted()
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        self.node.linearize().await?;
        self.node.sm.read().mvcc.get(key, revision)
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        self.node.linearize().await?;
        self.node.sm.read().mvcc.range(&request)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.node.sm.write().mvcc.watch(prefix, after)
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.node.linearize().await?;
        Ok(self.node.sm.read().mvcc.current_revision())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.node
            .write(Command::Compact { revision })
            .await?
            .into_compacted()
    }

    async fn check_live(&self) -> Result<()> {
        match &self.node.raft.metrics().borrow().running_state {
            Ok(()) => Ok(()),
            Err(fatal) => Err(StoreError::Unavailable(format!(
                "the raft core has stopped: {fatal}"
            ))),
        }
    }

    async fn check_ready(&self) -> Result<()> {
        self.check_live().await?;
        self.node.linearize().await
    }
}
