//! openraft's network: raft RPCs to other servers over their [`Connection`]s,
//! one per peer address, shared with the r8s RPCs that go to the leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use super::connection::{CallError, Connection};
use super::rpc::{Request, Response};
use super::{NodeId, TypeConfig};

/// The connections to other servers, by address.
#[derive(Clone, Default)]
pub struct Peers {
    connections: Arc<Mutex<HashMap<String, Arc<Connection>>>>,
}

impl Peers {
    pub fn connection(&self, addr: &str) -> Arc<Connection> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        connections
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Connection::new(addr)))
            .clone()
    }
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerClient;

    async fn new_client(&mut self, _target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            connection: self.connection(&node.addr),
        }
    }
}

pub struct PeerClient {
    connection: Arc<Connection>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<E: std::error::Error>(
        &self,
        request: Request,
        option: &RPCOption,
    ) -> RpcResult<Response, E> {
        self.connection
            .call(request, option.hard_ttl())
            .await
            .map_err(|e| match e {
                CallError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })
    }
}

fn unexpected<E: std::error::Error>(
    response: &Response,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    let what = std::io::Error::other(format!("unexpected answer: {}", response.name()));
    RPCError::Network(NetworkError::new(&what))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.call(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(answer) => Ok(answer),
            other => Err(unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.call(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(answer) => Ok(answer),
            other => Err(unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(answer) => Ok(answer),
            other => Err(unexpected(&other)),
        }
    }
}
