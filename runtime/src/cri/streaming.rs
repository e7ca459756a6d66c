//! The streaming server behind CRI's Exec and Attach: each registers its
//! request under a one-time token and answers with
//! `http://<addr>/exec/<token>` or `.../attach/<token>`; the client (the node
//! agent, or anything speaking Kubernetes' remotecommand protocol over
//! WebSocket, `v5.channel.k8s.io` / `v4.channel.k8s.io`) connects there.
//!
//! Frames are binary, the first byte the channel: 0 stdin, 1 stdout,
//! 2 stderr, 3 the final status (a `metav1.Status` in JSON), 4 terminal
//! resize (Attach only; an Exec's terminal keeps its size), 255 close of a
//! stream (v5). Attach relays them to and from the container's shim
//! ([`crate::attach`], which uses the same channel numbers).

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
use crate::attach::{self, FrameReader, RESIZE, STDERR, STDIN, STDOUT};

/// How long an Exec URL stays valid (CRI asks for a short time).
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

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

/// An Attach waiting for its client.
#[derive(Debug, Clone)]
pub struct PendingAttach {
    pub container_id: String,
    /// The container has a terminal: its output is all stdout.
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

#[derive(Debug, Clone)]
enum Pending {
    Exec(PendingExec),
    Attach(PendingAttach),
}

pub struct Streaming {
    service: CriService,
    address: SocketAddr,
    pending: Mutex<HashMap<String, (Pending, Instant)>>,
}

impl Streaming {
    /// Binds `address` (port 0: any) and serves in the background.
    pub async fn start(service: CriService, address: SocketAddr) -> Result<Arc<Self>, CriError> {
        let listener = tokio::net::TcpListener::bind(address).await.map_err(io(format!("binding the streaming server on {address}")))?;
        let address = listener.local_addr().map_err(io("the streaming server's address"))?;
        let streaming = Arc::new(Self { service, address, pending: Mutex::new(HashMap::new()) });
        let app = Router::new()
            .route("/exec/{token}", get(exec))
            .route("/attach/{token}", get(attach))
            .with_state(streaming.clone());
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
        self.remember("exec", Pending::Exec(exec))
    }

    /// Remembers `attach` and returns the URL to attach at.
    pub fn register_attach(&self, attach: PendingAttach) -> Result<String, CriError> {
        self.remember("attach", Pending::Attach(attach))
    }

    fn remember(&self, kind: &str, request: Pending) -> Result<String, CriError> {
        let token = new_id()?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, (_, made)| made.elapsed() < TOKEN_LIFETIME);
        pending.insert(token.clone(), (request, Instant::now()));
        Ok(format!("http://{}/{kind}/{token}", self.address))
    }

    fn take(&self, token: &str) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.remove(token).filter(|(_, made)| made.elapsed() < TOKEN_LIFETIME).map(|(request, _)| request)
    }
}

fn unknown_token() -> Response {
    (axum::http::StatusCode::NOT_FOUND, "unknown or expired token").into_response()
}

/// Answers the WebSocket upgrade with the remotecommand protocols.
fn upgrade_to<F: std::future::Future<Output = Result<(), CriError>> + Send + 'static>(
    upgrade: WebSocketUpgrade,
    what: &'static str,
    serve: impl FnOnce(WebSocket) -> F + Send + 'static,
) -> Response {
    upgrade.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"]).on_upgrade(move |socket| async move {
        if let Err(e) = serve(socket).await {
            debug!("{what} stream ended: {e}");
        }
    })
}

async fn attach(State(streaming): State<Arc<Streaming>>, Path(token): Path<String>, upgrade: WebSocketUpgrade) -> Response {
    let Some(Pending::Attach(attach)) = streaming.take(&token) else { return unknown_token() };
    let service = streaming.service.clone();
    upgrade_to(upgrade, "attach", move |socket| relay_attach(service, attach, socket))
}

async fn exec(State(streaming): State<Arc<Streaming>>, Path(token): Path<String>, upgrade: WebSocketUpgrade) -> Response {
    let Some(Pending::Exec(exec)) = streaming.take(&token) else { return unknown_token() };
    let service = streaming.service.clone();
    upgrade_to(upgrade, "exec", move |socket| relay(service, exec, socket))
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

/// Relays between the client and the container's shim until the container
/// exits (then the status is Success, as the kubelet sends) or the client
/// leaves (its stdin ends: with `stdinOnce` the container sees the end).
async fn relay_attach(service: CriService, attach: PendingAttach, mut socket: WebSocket) -> Result<(), CriError> {
    let (mut from_shim, mut to_shim) = service.attach(&attach.container_id).await?.into_split();
    let (output, mut outputs) = mpsc::channel::<(u8, Vec<u8>)>(16);
    tokio::spawn(async move {
        let mut frames = FrameReader::default();
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n @ 1..) = from_shim.read(&mut buf).await {
            frames.push(&buf[..n]);
            while let Ok(Some(frame)) = frames.next_frame() {
                if output.send(frame).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut stdin_open = attach.stdin;
    loop {
        tokio::select! {
            chunk = outputs.recv() => match chunk {
                Some((channel, data)) => {
                    let wanted = (channel == STDOUT && attach.stdout) || (channel == STDERR && attach.stderr && !attach.tty);
                    if wanted && socket.send(frame(channel, &data)).await.is_err() {
                        break;
                    }
                }
                // The container has exited and its output is all sent.
                None => {
                    let _ = socket.send(frame(STATUS, exit_status(0).as_bytes())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return Ok(());
                }
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(data))) => {
                    let to_shim_frame = match (data.first(), data.get(1)) {
                        (Some(&STDIN), _) if stdin_open => Some(attach::encode(STDIN, &data[1..])),
                        (Some(&RESIZE), _) if attach.tty => Some(attach::encode(RESIZE, &data[1..])),
                        (Some(&CLOSE), Some(&STDIN)) if stdin_open => {
                            stdin_open = false;
                            Some(attach::encode(attach::CLOSE_STDIN, &[]))
                        }
                        _ => None,
                    };
                    if let Some(bytes) = to_shim_frame {
                        to_shim.write_all(&bytes).await.map_err(io("writing to the container's shim"))?;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    if stdin_open {
        let _ = to_shim.write_all(&attach::encode(attach::CLOSE_STDIN, &[])).await;
    }
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
