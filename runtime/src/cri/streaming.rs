//! The streaming server behind CRI's Exec: Exec registers the request under a
//! one-time token and answers with `http://<addr>/exec/<token>`; the client
//! (the node agent, or anything speaking Kubernetes' remotecommand protocol
//! over WebSocket, `v5.channel.k8s.io` / `v4.channel.k8s.io`) connects there.
//!
//! Frames are binary, the first byte the channel: 0 stdin, 1 stdout,
//! 2 stderr, 3 the final status (a `metav1.Status` in JSON), 4 terminal
//! resize (ignored), 255 close of a stream (v5).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::error::{io, CriError};
use super::service::{new_id, CriService};

/// How long an Exec URL stays valid (CRI asks for a short time).
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;

/// An Exec waiting for its client.
#[derive(Debug, Clone)]
pub struct PendingExec {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

pub struct Streaming {
    service: CriService,
    address: SocketAddr,
    pending: Mutex<HashMap<String, (PendingExec, Instant)>>,
}

impl Streaming {
    /// Binds `address` (port 0: any) and serves in the background.
    pub async fn start(service: CriService, address: SocketAddr) -> Result<Arc<Self>, CriError> {
        let listener = tokio::net::TcpListener::bind(address).await.map_err(io(format!("binding the streaming server on {address}")))?;
        let address = listener.local_addr().map_err(io("the streaming server's address"))?;
        let streaming = Arc::new(Self { service, address, pending: Mutex::new(HashMap::new()) });
        let app = Router::new().route("/exec/{token}", get(exec)).with_state(streaming.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("the streaming server stopped: {e}");
            }
        });
        Ok(streaming)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Remembers `exec` and returns the URL to run it at.
    pub fn register(&self, exec: PendingExec) -> Result<String, CriError> {
        let token = new_id()?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, (_, made)| made.elapsed() < TOKEN_LIFETIME);
        pending.insert(token.clone(), (exec, Instant::now()));
        Ok(format!("http://{}/exec/{token}", self.address))
    }

    fn take(&self, token: &str) -> Option<PendingExec> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.remove(token).filter(|(_, made)| made.elapsed() < TOKEN_LIFETIME).map(|(exec, _)| exec)
    }
}

async fn exec(State(streaming): State<Arc<Streaming>>, Path(token): Path<String>, upgrade: WebSocketUpgrade) -> Response {
    let Some(exec) = streaming.take(&token) else {
        return (axum::http::StatusCode::NOT_FOUND, "unknown or expired exec token").into_response();
    };
    let service = streaming.service.clone();
    upgrade
        .protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| async move {
            if let Err(e) = relay(service, exec, socket).await {
                debug!("exec stream ended: {e}");
            }
        })
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// `metav1.Status` for the exit, as kubectl reads it.
fn exit_status(code: i32) -> String {
    if code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.into();
    }
    format!(
        r#"{{"metadata":{{}},"status":"Failure","message":"command terminated with non-zero exit code: {code}","reason":"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}"#
    )
}

fn forward(channel: u8, mut reader: impl AsyncRead + Unpin + Send + 'static, out: mpsc::Sender<(u8, Vec<u8>)>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 || out.send((channel, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    });
}

async fn relay(service: CriService, exec: PendingExec, mut socket: WebSocket) -> Result<(), CriError> {
    let command = service.exec_command(&exec.container_id, exec.cmd.clone(), exec.tty)?;
    let mut command = tokio::process::Command::from(command);
    let pipe_or_null = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
    command.stdin(pipe_or_null(exec.stdin)).stdout(pipe_or_null(exec.stdout)).stderr(pipe_or_null(exec.stderr)).kill_on_drop(true);
    let mut child = command.spawn().map_err(io("starting exec"))?;
    let mut stdin = child.stdin.take();
    let (output, mut outputs) = mpsc::channel(16);
    if let Some(stdout) = child.stdout.take() {
        forward(STDOUT, stdout, output.clone());
    }
    if let Some(stderr) = child.stderr.take() {
        forward(STDERR, stderr, output.clone());
    }
    drop(output);
    loop {
        tokio::select! {
            chunk = outputs.recv() => match chunk {
                Some((channel, data)) => {
                    if socket.send(frame(channel, &data)).await.is_err() {
                        return Ok(());
                    }
                }
                // Both output streams ended.
                None => break,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(data))) => match (data.first(), data.get(1)) {
                    (Some(&STDIN), _) => {
                        if let Some(pipe) = stdin.as_mut() {
                            let _ = pipe.write_all(&data[1..]).await;
                        }
                    }
                    (Some(&CLOSE), Some(&STDIN)) => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
    let status = child.wait().await.map_err(io("waiting for exec"))?;
    let code = status.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0));
    let _ = socket.send(frame(STATUS, exit_status(code).as_bytes())).await;
    let _ = socket.send(Message::Close(None)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_as_kubectl_expects() {
        assert_eq!(exit_status(0), r#"{"metadata":{},"status":"Success"}"#);
        let failure: serde_json::Value = serde_json::from_str(&exit_status(3)).unwrap();
        assert_eq!(failure["reason"], "NonZeroExitCode");
        assert_eq!(failure["details"]["causes"][0]["message"], "3");
    }
}
