//! One raft server's request handling: raft's own RPCs, the operations that
//! only the leader can do (propose a write, hand out a read index, add a
//! member), and routing those to the leader from any server.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::error::RaftError;
use openraft::TryAsRef;
use openraft::{BasicNode, ChangeMembers, LogIdOptionExt, Raft};

use super::connection::CallError;
use super::network::Peers;
use super::proposer::{Proposal, Proposer};
use super::rpc::{RemoteError, Request, Response};
use super::state_machine::StateMachineStore;
use super::{NodeId, TypeConfig};
use crate::mvcc::{Applied, Command};
use crate::{StoreError, MAX_VALUE_SIZE};

/// How long a request waits for a leader to exist and answer (an election takes
/// about a second).
const LEADER_WAIT: Duration = Duration::from_secs(20);
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Adding a member waits until it has caught up with the log, which can take a
/// snapshot transfer.
const ADD_MEMBER_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Node {
    pub raft: Raft<TypeConfig>,
    pub sm: StateMachineStore,
    pub peers: Peers,
    proposer: Proposer,
}

/// Where a request for the leader ended up.
enum Routed {
    Done(Response),
    NotLeader(Option<BasicNode>),
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn unexpected(response: Response) -> StoreError {
    StoreError::Internal(format!("unexpected answer: {}", response.name()))
}

/// Turns openraft's "not the leader" into [`Routed::NotLeader`].
fn not_leader<E>(e: RaftError<NodeId, E>) -> Result<Routed, StoreError>
where
    E: TryAsRef<openraft::error::ForwardToLeader<NodeId, BasicNode>> + std::error::Error,
{
    match e.forward_to_leader() {
        Some(forward) => Ok(Routed::NotLeader(forward.leader_node.clone())),
        None => Err(unavailable(e)),
    }
}

impl Node {
    pub fn new(raft: Raft<TypeConfig>, sm: StateMachineStore, peers: Peers) -> Node {
        Node {
            proposer: Proposer::start(raft.clone()),
            raft,
            sm,
            peers,
        }
    }

    /// Answers one request that came in on the raft port.
    pub async fn handle(&self, request: Request) -> Result<Response, RemoteError> {
        let raft = &self.raft;
        Ok(match request {
            Request::AppendEntries(rpc) => {
                Response::AppendEntries(raft.append_entries(rpc).await.map_err(unavailable)?)
            }
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await.map_err(unavailable)?),
            Request::InstallSnapshot(rpc) => {
                Response::InstallSnapshot(raft.install_snapshot(rpc).await.map_err(unavailable)?)
            }
            Request::Propose(_) | Request::ReadIndex | Request::AddMember { .. } => {
                match self.as_leader(&request).await? {
                    Routed::Done(response) => response,
                    Routed::NotLeader(_) => return Err(RemoteError::NotLeader),
                }
            }
            Request::Join { node_id, addr } => {
                self.via_leader(Request::AddMember { node_id, addr })
                    .await?
            }
            Request::Write(command) => Response::Applied(self.write(command).await?),
            Request::Get { key, revision } => {
                self.linearize().await?;
                Response::Value(self.sm.read().mvcc.get(&key, revision)?)
            }
            Request::Range(range) => {
                self.linearize().await?;
                Response::Range(self.sm.read().mvcc.range(&range)?)
            }
            Request::CurrentRevision => {
                self.linearize().await?;
                Response::Revision(self.sm.read().mvcc.current_revision())
            }
            Request::Leader => Response::Leader(self.raft.current_leader().await),
        })
    }

    /// Commits a write through the leader and returns what applying it did.
    pub async fn write(&self, command: Command) -> Result<Applied, StoreError> {
        // Checked here too, not only when applied, to keep huge values out of the log.
        if let Command::Create { key, value } | Command::Update { key, value, .. } = &command {
            if value.len() > MAX_VALUE_SIZE {
                return Err(StoreError::TooLarge {
                    key: key.clone(),
                    size: value.len(),
                    limit: MAX_VALUE_SIZE,
                });
            }
        }
        match self.via_leader(Request::Propose(command)).await? {
            Response::Applied(applied) => Ok(applied),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until this server's state machine has applied everything committed
    /// when the call started (raft's read-index), so a read after it is
    /// linearizable even on a follower.
    pub async fn linearize(&self) -> Result<(), StoreError> {
        let read_log_id = match self.via_leader(Request::ReadIndex).await? {
            Response::ReadIndex(read_log_id) => read_log_id,
            other => return Err(unexpected(other)),
        };
        self.raft
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(read_log_id.index(), "linearizable read")
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Does a leader-only request here if this server leads, else sends it to the
    /// leader; retries while there is no leader or it just changed.
    pub async fn via_leader(&self, request: Request) -> Result<Response, StoreError> {
        let deadline = Instant::now() + LEADER_WAIT;
        // A proposal whose answer was lost may have been committed: retrying it
        // could apply it twice. The others can be repeated safely.
        let retry_when_lost = !matches!(request, Request::Propose(_));
        loop {
            let leader = match self.as_leader(&request).await? {
                Routed::Done(response) => return Ok(response),
                Routed::NotLeader(leader) => leader,
            };
            if let Some(leader) = leader {
                let timeout = match request {
                    Request::AddMember { .. } => ADD_MEMBER_TIMEOUT,
                    _ => LEADER_WAIT,
                };
                match self
                    .peers
                    .connection(&leader.addr)
                    .call(request.clone(), timeout)
                    .await
                {
                    Ok(response) => return Ok(response),
                    Err(CallError::Remote(RemoteError::Store(e))) => return Err(e),
                    Err(CallError::Remote(RemoteError::NotLeader) | CallError::Connect { .. }) => {}
                    Err(e @ (CallError::Lost { .. } | CallError::Timeout { .. }))
                        if !retry_when_lost =>
                    {
                        return Err(StoreError::Unavailable(format!(
                            "{e}; the write may or may not have been applied"
                        )));
                    }
                    Err(e) => tracing::debug!("retrying a request to the leader: {e}"),
                }
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable("no leader answered".into()));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn as_leader(&self, request: &Request) -> Result<Routed, StoreError> {
        match request {
            Request::Propose(command) => Ok(match self.proposer.propose(command.clone()).await? {
                Proposal::Applied(applied) => Routed::Done(Response::Applied(applied)),
                Proposal::NotLeader(leader) => Routed::NotLeader(leader),
            }),
            Request::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read_log_id, _applied)) => Ok(Routed::Done(Response::ReadIndex(read_log_id))),
                Err(e) => not_leader(e),
            },
            Request::AddMember { node_id, addr } => self.add_member(*node_id, addr).await,
            _ => Err(StoreError::Internal("not a request for the leader".into())),
        }
    }

    /// Adds a server as a learner, waits until it has caught up, then makes it a
    /// voter. Adding a voter again does nothing.
    async fn add_member(&self, node_id: NodeId, addr: &str) -> Result<Routed, StoreError> {
        let is_voter = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == node_id);
        if !is_voter {
            if let Err(e) = self
                .raft
                .add_learner(node_id, BasicNode::new(addr), true)
                .await
            {
                return not_leader(e);
            }
            let voters: BTreeSet<NodeId> = [node_id].into();
            if let Err(e) = self
                .raft
                .change_membership(ChangeMembers::AddVoterIds(voters), false)
                .await
            {
                return not_leader(e);
            }
            tracing::info!(node_id, addr, "added a voting member");
        }
        Ok(Routed::Done(Response::MemberAdded))
    }
}
