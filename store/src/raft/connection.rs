//! A client connection to one server's raft port: one TCP connection carries
//! every request to that server, answers are matched by request id, and a broken
//! connection is replaced by a new one on the next request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::frame;
use super::rpc::{RemoteError, Request, RequestFrame, Response, ResponseFrame};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent: the request certainly did not happen.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The request may or may not have been carried out.
    #[error("connection to {addr} lost before an answer")]
    Lost { addr: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

type Waiting = HashMap<u64, oneshot::Sender<Result<Response, RemoteError>>>;

/// The live TCP connection: frames to send, and who waits for which answer
/// (`None` once the connection is broken).
#[derive(Clone)]
struct Live {
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    waiting: Arc<Mutex<Option<Waiting>>>,
}

pub struct Connection {
    addr: String,
    live: tokio::sync::Mutex<Option<Live>>,
    next_id: AtomicU64,
}

impl Connection {
    pub fn new(addr: impl Into<String>) -> Connection {
        Connection {
            addr: addr.into(),
            live: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    pub async fn call(&self, request: Request, timeout: Duration) -> Result<Response, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::new();
        frame::encode(&mut bytes, &RequestFrame { id, request })
            .map_err(|e| RemoteError::Store(crate::StoreError::Internal(e.to_string())))?;
        let live = self.live().await?;
        let (tx, rx) = oneshot::channel();
        let lost = || CallError::Lost {
            addr: self.addr.clone(),
        };
        match lock(&live.waiting).as_mut() {
            Some(waiting) => waiting.insert(id, tx),
            None => return Err(lost()),
        };
        if live.outgoing.send(bytes).is_err() {
            return Err(lost());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer?),
            Ok(Err(_)) => Err(lost()),
            Err(_) => {
                if let Some(waiting) = lock(&live.waiting).as_mut() {
                    waiting.remove(&id);
                }
                Err(CallError::Timeout {
                    addr: self.addr.clone(),
                    timeout,
                })
            }
        }
    }

    /// The live connection, connecting first if there is none or it broke.
    async fn live(&self) -> Result<Live, CallError> {
        let mut live = self.live.lock().await;
        if let Some(current) = live.as_ref() {
            if lock(&current.waiting).is_some() {
                return Ok(current.clone());
            }
        }
        let connect_error = |reason: String| CallError::Connect {
            addr: self.addr.clone(),
            reason,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| connect_error("timed out".into()))?
            .map_err(|e| connect_error(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| connect_error(e.to_string()))?;
        let (mut reader, writer) = stream.into_split();
        let (outgoing, frames) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(Some(Waiting::new())));
        let sender = tokio::spawn(write_frames(frames, writer));
        let answers = waiting.clone();
        let addr = self.addr.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                match frame::read::<ResponseFrame, _>(&mut reader, &mut buf).await {
                    Ok(Some(answer)) => {
                        let tx = lock(&answers)
                            .as_mut()
                            .and_then(|waiting| waiting.remove(&answer.id));
                        if let Some(tx) = tx {
                            let _ = tx.send(answer.response);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(%addr, "raft connection closed: {e}");
                        break;
                    }
                }
            }
            // Dropping the senders tells every waiting caller the connection is lost.
            lock(&answers).take();
            sender.abort();
        });
        let current = Live { outgoing, waiting };
        *live = Some(current.clone());
        Ok(current)
    }
}

fn lock(waiting: &Mutex<Option<Waiting>>) -> std::sync::MutexGuard<'_, Option<Waiting>> {
    waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes queued frames to a socket, many per system call when they queue up.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    writer: W,
) {
    let mut writer = BufWriter::with_capacity(256 * 1024, writer);
    while let Some(frame) = frames.recv().await {
        if writer.write_all(&frame).await.is_err() {
            return;
        }
        while let Ok(frame) = frames.try_recv() {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}
