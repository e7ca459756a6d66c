//! The messages on r8s's raft port. Each TCP frame (see [`super::frame`]) holds
//! one [`RequestFrame`] or [`ResponseFrame`]; the id pairs them up, so many
//! requests can be in flight on one connection.
//!
//! Servers send each other raft's own RPCs and the r8s ones that need the leader
//! (forwarded writes, read-index, join). Clients ([`super::RaftClient`]) send
//! writes and reads to any server.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::{LogId, NodeId, TypeConfig};
use crate::mvcc::{Applied, Command};
use crate::{KeyValue, RangeRequest, RangeResponse, Revision, StoreError};

#[derive(Serialize, Deserialize)]
pub struct RequestFrame {
    pub id: u64,
    pub request: Request,
}

#[derive(Serialize, Deserialize)]
pub struct ResponseFrame {
    pub id: u64,
    pub response: Result<Response, RemoteError>,
}

#[derive(Clone, Serialize, Deserialize)]
pub enum Request {
    // Raft between servers.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    // To the leader, from another server; answered `NotLeader` by any other server.
    /// Propose a write.
    Propose(Command),
    /// The log id a linearizable read must wait for.
    ReadIndex,
    /// Add a server as a learner, then make it a voter.
    AddMember {
        node_id: NodeId,
        addr: String,
    },
    // From clients, to any server.
    /// Join the cluster: routed to the leader as `AddMember`.
    Join {
        node_id: NodeId,
        addr: String,
    },
    Write(Command),
    Get {
        key: String,
        revision: Option<Revision>,
    },
    Range(RangeRequest),
    CurrentRevision,
    /// Which server this one believes leads.
    Leader,
}

#[derive(Serialize, Deserialize)]
pub enum Response {
    AppendEntries(AppendEntriesResponse<NodeId>),
    Vote(VoteResponse<NodeId>),
    InstallSnapshot(InstallSnapshotResponse<NodeId>),
    Applied(Applied),
    ReadIndex(Option<LogId>),
    MemberAdded,
    Value(Option<KeyValue>),
    Range(RangeResponse),
    Revision(Revision),
    Leader(Option<NodeId>),
}

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum RemoteError {
    /// The request needs the leader and this server is not (or no longer) it.
    #[error("not the leader")]
    NotLeader,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Response {
    /// For error messages about answers that do not fit the request.
    pub fn name(&self) -> &'static str {
        match self {
            Response::AppendEntries(_) => "AppendEntries",
            Response::Vote(_) => "Vote",
            Response::InstallSnapshot(_) => "InstallSnapshot",
            Response::Applied(_) => "Applied",
            Response::ReadIndex(_) => "ReadIndex",
            Response::MemberAdded => "MemberAdded",
            Response::Value(_) => "Value",
            Response::Range(_) => "Range",
            Response::Revision(_) => "Revision",
            Response::Leader(_) => "Leader",
        }
    }
}
