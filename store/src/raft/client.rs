//! [`RaftClient`]: writes and linearizable reads sent to one server's raft port
//! from another process (tests and benchmarks drive separate server processes
//! with it). Any server takes them; writes are forwarded to the leader.

use std::time::Duration;

use bytes::Bytes;

use super::connection::{CallError, Connection};
use super::rpc::{RemoteError, Request, Response};
use super::NodeId;
use crate::mvcc::Command;
use crate::{KeyValue, RangeRequest, RangeResponse, Result, Revision, StoreError};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one server. Cheap to share: one connection carries all calls,
/// and a broken one is replaced on the next call.
pub struct RaftClient {
    connection: Connection,
}

impl RaftClient {
    /// `addr` is a server's `--raft-addr`.
    pub fn new(addr: impl Into<String>) -> RaftClient {
        RaftClient {
            connection: Connection::new(addr),
        }
    }

    pub async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(Command::Create {
            key: key.to_string(),
            value,
        })
        .await?
        .into_put()
    }

    pub async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.write(Command::Update {
            key: key.to_string(),
            value,
            expected,
        })
        .await?
        .into_put()
    }

    pub async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision)> {
        self.write(Command::Delete {
            key: key.to_string(),
            expected,
        })
        .await?
        .into_deleted()
    }

    pub async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        match self
            .call(Request::Get {
                key: key.to_string(),
                revision,
            })
            .await?
        {
            Response::Value(kv) => Ok(kv),
            other => Err(unexpected(other)),
        }
    }

    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        match self.call(Request::Range(request)).await? {
            Response::Range(range) => Ok(range),
            other => Err(unexpected(other)),
        }
    }

    pub async fn current_revision(&self) -> Result<Revision> {
        match self.call(Request::CurrentRevision).await? {
            Response::Revision(revision) => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    /// The id of the server the contacted one believes leads, if any.
    pub async fn leader(&self) -> Result<Option<NodeId>> {
        match self.call(Request::Leader).await? {
            Response::Leader(leader) => Ok(leader),
            other => Err(unexpected(other)),
        }
    }

    async fn write(&self, command: Command) -> Result<crate::mvcc::Applied> {
        match self.call(Request::Write(command)).await? {
            Response::Applied(applied) => Ok(applied),
            other => Err(unexpected(other)),
        }
    }

    async fn call(&self, request: Request) -> Result<Response> {
        self.connection
            .call(request, CALL_TIMEOUT)
            .await
            .map_err(|e| match e {
                CallError::Remote(RemoteError::Store(e)) => e,
                other => StoreError::Unavailable(other.to_string()),
            })
    }
}

fn unexpected(response: Response) -> StoreError {
    StoreError::Internal(format!("unexpected answer: {}", response.name()))
}
