//! Gathers concurrent writes into one raft entry.
//!
//! openraft 0.9's leader waits for each log append to be on disk before it takes
//! the next client write, so one entry per write would cost one fsync per write.
//! Instead, writes queue here; a batch is proposed as soon as fewer than
//! [`MAX_IN_FLIGHT`] batches are being committed, and holds everything that
//! queued meanwhile. One writer alone still gets its own entry at once; many get
//! one fsync between them (the journal then groups whole batches too).

use std::sync::Arc;

use openraft::{BasicNode, Raft};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::TypeConfig;
use crate::mvcc::{Applied, Command};
use crate::StoreError;

/// Batches being committed at once: one being written while the previous one is
/// applied and answered.
const MAX_IN_FLIGHT: usize = 2;
/// A batch stops growing at this many commands or bytes of values, to bound the
/// size of raft messages.
const MAX_BATCH_COMMANDS: usize = 1024;
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// What became of a proposed command.
pub enum Proposal {
    Applied(Applied),
    /// This server is not the leader; nothing was written.
    NotLeader(Option<BasicNode>),
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Proposal, StoreError>>,
}

pub struct Proposer {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Proposer {
    /// Starts the batching task; it ends when the proposer is dropped.
    pub fn start(raft: Raft<TypeConfig>) -> Proposer {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(propose_batches(raft, pending));
        Proposer { queue }
    }

    pub async fn propose(&self, command: Command) -> Result<Proposal, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the store is shutting down".into());
        self.queue
            .send(Pending { command, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn value_len(command: &Command) -> usize {
    match command {
        Command::Create { value, .. } | Command::Update { value, .. } => value.len(),
        Command::Delete { .. } | Command::Compact { .. } => 0,
    }
}

async fn propose_batches(raft: Raft<TypeConfig>, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = pending.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while waiting for the permit joins this batch.
        let mut bytes = value_len(&first.command);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
            let Ok(next) = pending.try_recv() else { break };
            bytes += value_len(&next.command);
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (commands, replies): (Vec<Command>, Vec<_>) = batch
                .into_iter()
                .map(|pending| (pending.command, pending.reply))
                .unzip();
            let written = raft.client_write(commands).await;
            drop(permit);
            match written {
                Ok(written) if written.data.len() == replies.len() => {
                    for (reply, applied) in replies.into_iter().zip(written.data) {
                        let _ = reply.send(Ok(Proposal::Applied(applied)));
                    }
                }
                Ok(written) => {
                    let error = StoreError::Internal(format!(
                        "a batch of {} commands gave {} results",
                        replies.len(),
                        written.data.len()
                    ));
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
                Err(e) => {
                    let outcome = || match e.forward_to_leader() {
                        Some(forward) => Ok(Proposal::NotLeader(forward.leader_node.clone())),
                        None => Err(StoreError::Unavailable(e.to_string())),
                    };
                    for reply in replies {
                        let _ = reply.send(outcome());
                    }
                }
            }
        });
    }
}
