//! The embedded raft backend, r8s's default store: every server keeps the
//! [`crate::mvcc::Mvcc`] in memory, fed by a raft log (openraft) kept on disk in
//! its own files with group commit, and snapshots in a checksummed file.
//!
//! * `journal`, `log_store`: the log and vote on disk, with group commit.
//! * `state_machine`: the Mvcc and its snapshots.
//! * `frame`, `rpc`, `connection`, `server`, `network`: the TCP protocol
//!   between servers and from clients, on one port per server.
//! * `node`: request handling and routing to the leader; `proposer`: batching
//!   concurrent writes into one entry.
//! * [`RaftStore`] (the [`crate::Store`]) and [`RaftClient`] (for other processes).
//! * [`process`]: `r8s server` processes on loopback, for tests and benchmarks.

mod client;
mod connection;
mod frame;
mod journal;
mod log_store;
mod network;
mod node;
pub mod process;
mod proposer;
mod rpc;
mod server;
mod state_machine;
mod store;

use std::io::Cursor;

use crate::mvcc::{Applied, Command};

pub use client::RaftClient;
pub use journal::JournalError;
pub use log_store::{LogReader, LogStore};
pub use state_machine::{SnapshotError, StateMachineStore};
pub use store::{RaftConfig, RaftStore, RaftStoreError};

openraft::declare_raft_types!(
    /// The types r8s's raft is built from: an entry holds a batch of
    /// [`Command`]s and gives back what applying each did (nothing for raft's
    /// own entries).
    pub TypeConfig:
        D = Vec<Command>,
        R = Vec<Applied>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
type Entry = openraft::Entry<TypeConfig>;
type LogId = openraft::LogId<NodeId>;
type Vote = openraft::Vote<NodeId>;
