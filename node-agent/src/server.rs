//! The agent's HTTP endpoints (the kubelet's port, 10250 by default), which the
//! API server proxies `pods/log`, `pods/exec` and `pods/attach` to:
//!
//! - `GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&sinceSeconds=&sinceTime=&timestamps=&previous=&limitBytes=`
//!   answers `text/plain` (chunked while following, until the container exits
//!   or the client goes away);
//! - `GET /exec/{namespace}/{pod}/{container}?command=..&command=..&stdin=&stdout=&stderr=&tty=`
//!   upgraded to a WebSocket speaking `v5.channel.k8s.io` (or v4): stdin on
//!   channel 0, stdout on 1, stderr on 2, the exit status on 3 (a `Status`,
//!   `NonZeroExitCode` with the code as cause), resize on 4, close on 255. The
//!   agent relays it to the runtime's streaming server (CRI Exec's URL).
//! - `GET /attach/{namespace}/{pod}/{container}?stdin=&stdout=&stderr=&tty=`
//!   the same WebSocket joined to the container's own stdio (CRI Attach's URL).
//! - `GET /healthz` answers `ok`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::cri::{api as cri, Cri};
use crate::logs::{self, LogOptions};
use crate::pods::labels;

#[derive(Clone)]
struct Server {
    cri: Cri,
    log_dir: PathBuf,
}

pub fn router(cri: Cri, log_dir: PathBuf) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/exec/{namespace}/{pod}/{container}", get(exec))
        .route("/attach/{namespace}/{pod}/{container}", get(attach))
        .with_state(Server { cri, log_dir })
}

/// Serves the endpoints on `address` until cancelled.
pub async fn serve(address: SocketAddr, cri: Cri, log_dir: PathBuf) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "serving container logs, exec and attach");
    axum::serve(listener, router(cri, log_dir)).await
}

fn error(code: StatusCode, message: String) -> Response {
    (code, message).into_response()
}

/// A container of a pod as CRI knows it.
struct Found {
    id: String,
    log_path: PathBuf,
    running: bool,
}

/// The newest instance of the container (or the one before it).
async fn find(server: &Server, namespace: &str, pod: &str, container: &str, previous: bool) -> Result<Found, Response> {
    let runtime = &server.cri.runtime;
    let selector = [
        (labels::POD_NAMESPACE.to_string(), namespace.to_string()),
        (labels::POD_NAME.to_string(), pod.to_string()),
        (labels::CONTAINER_NAME.to_string(), container.to_string()),
    ];
    let filter = cri::ContainerFilter { label_selector: selector.into(), ..Default::default() };
    let listed = runtime
        .list_containers(Some(filter))
        .await
        .map_err(|s| error(StatusCode::BAD_GATEWAY, format!("container runtime: {}", s.message())))?;
    let mut instances = Vec::new();
    for listed in listed {
        let Ok(reply) = runtime.container_status(&listed.id, false).await else { continue };
        if let Some(status) = reply.status {
            instances.push((labels::restart_count(&status.annotations), listed.labels.get(labels::POD_UID).cloned().unwrap_or_default(), status));
        }
    }
    instances.sort_by_key(|(count, _, status)| std::cmp::Reverse((*count, status.created_at)));
    let index = usize::from(previous);
    let Some((_, uid, status)) = instances.into_iter().nth(index) else {
        let what = if previous { "previous terminated container" } else { "container" };
        return Err(error(StatusCode::NOT_FOUND, format!("{what} {container:?} in pod {pod:?} not found")));
    };
    let mut log_path = PathBuf::from(&status.log_path);
    if log_path.is_relative() {
        log_path = server.log_dir.join(format!("{namespace}_{pod}_{uid}")).join(log_path);
    }
    Ok(Found { id: status.id, log_path, running: status.state == cri::ContainerState::ContainerRunning as i32 })
}

async fn container_logs(State(server): State<Server>, UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>, Query(options): Query<LogOptions>) -> Response {
    let found = match find(&server, &namespace, &pod, &container, options.previous).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let text = match tokio::fs::read(&found.log_path).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading {}: {e}", found.log_path.display())),
    };
    let now = client::time::now().0;
    let first = logs::render(&text, &options, now);
    if !options.follow || !found.running {
        return ([(header::CONTENT_TYPE, "text/plain")], first).into_response();
    }
    let offset = text.len() as u64;
    let stream = follow(server, found, offset, options, first);
    ([(header::CONTENT_TYPE, "text/plain")], Body::from_stream(stream)).into_response()
}

/// The log as it grows, until the container stops (and its last lines are out).
fn follow(server: Server, found: Found, mut offset: u64, options: LogOptions, first: String) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let unlimited = LogOptions { tail_lines: None, since_seconds: None, since_time: None, limit_bytes: None, ..options };
    async_stream(move |sender| async move {
        if sender.send(Bytes::from(first)).await.is_err() {
            return;
        }
        let mut pending = String::new();
        let mut checks = 0u32;
        loop {
            let grown = read_from(&found.log_path, &mut offset).await;
            pending.push_str(&grown);
            let complete = logs::take_complete_lines(&mut pending);
            if !complete.is_empty() {
                let rendered = logs::render(&complete, &unlimited, client::time::now().0);
                if sender.send(Bytes::from(rendered)).await.is_err() {
                    return;
                }
            }
            if grown.is_empty() {
                checks += 1;
                if checks.is_multiple_of(5) && !still_running(&server.cri, &found.id).await {
                    let rest = read_from(&found.log_path, &mut offset).await;
                    pending.push_str(&rest);
                    let _ = sender.send(Bytes::from(logs::render(&pending, &unlimited, client::time::now().0))).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    })
}

/// A stream fed by a task through a small channel (the task ends when the
/// receiver, i.e. the response, is dropped).
fn async_stream<F, Fut>(producer: F) -> impl futures::Stream<Item = Result<Bytes, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(sender));
    futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|bytes| (Ok(bytes), receiver)) })
}

async fn read_from(path: &Path, offset: &mut u64) -> String {
    let Ok(mut file) = tokio::fs::File::open(path).await else { return String::new() };
    if file.seek(std::io::SeekFrom::Start(*offset)).await.is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).await.is_err() {
        return String::new();
    }
    *offset += bytes.len() as u64;
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn still_running(cri: &Cri, id: &str) -> bool {
    match cri.runtime.container_status(id, false).await {
        Ok(reply) => reply.status.is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32),
        Err(_) => false,
    }
}

/// The exec and attach query: `command` repeats (exec only); the stream flags
/// are booleans (kubectl sends `stdout=true`, older clients `output=1`).
#[derive(Debug, Default)]
struct StreamQuery {
    command: Vec<String>,
    stdin: bool,
    stdout: Option<bool>,
    stderr: Option<bool>,
    tty: bool,
}

impl StreamQuery {
    fn stdout(&self) -> bool {
        self.stdout.unwrap_or(true)
    }

    /// A terminal has one output stream.
    fn stderr(&self) -> bool {
        self.stderr.unwrap_or(true) && !self.tty
    }
}

fn stream_query(raw: Option<&str>) -> StreamQuery {
    let mut query = StreamQuery::default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default()).unwrap_or_default();
    for (key, value) in pairs {
        let on = matches!(value.as_str(), "true" | "1" | "");
        match key.as_str() {
            "command" => query.command.push(value),
            "stdin" | "input" => query.stdin = on,
            "stdout" | "output" => query.stdout = Some(on),
            "stderr" | "error" => query.stderr = Some(on),
            "tty" => query.tty = on,
            _ => {}
        }
    }
    query
}

/// Exec as the kubelet does it: CRI Exec hands out a URL of the runtime's
/// streaming server, and the agent relays the client's WebSocket to it.
async fn exec(
    State(server): State<Server>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(raw): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query = stream_query(raw.as_deref());
    if query.command.is_empty() {
        return error(StatusCode::BAD_REQUEST, "you must specify at least 1 command".into());
    }
    let (container_id, upgrade) = match checked_stream(&server, &namespace, &pod, &container, upgrade, "exec").await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let request = cri::ExecRequest {
        container_id,
        tty: query.tty,
        stdin: query.stdin,
        stdout: query.stdout(),
        stderr: query.stderr(),
        cmd: query.command,
    };
    let url = server.cri.runtime.exec(request).await;
    relay_upgrade(upgrade, url)
}

/// Attach as the kubelet does it: CRI Attach hands out a URL joining the
/// container's own stdio (the runtime knows whether it has a terminal), relayed
/// as exec is.
async fn attach(
    State(server): State<Server>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(raw): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query = stream_query(raw.as_deref());
    let (container_id, upgrade) = match checked_stream(&server, &namespace, &pod, &container, upgrade, "attach").await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let request = cri::AttachRequest { container_id, tty: query.tty, stdin: query.stdin, stdout: query.stdout(), stderr: query.stderr() };
    let url = server.cri.runtime.attach(request).await;
    relay_upgrade(upgrade, url)
}

/// The running container's id and the client's WebSocket upgrade. The
/// container is checked before the protocol: a client that falls back to SPDY
/// (which r8s does not speak) still learns why its exec or attach failed.
async fn checked_stream(
    server: &Server,
    namespace: &str,
    pod: &str,
    container: &str,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    what: &str,
) -> Result<(String, WebSocketUpgrade), Response> {
    // The kubelet's words when the container is not (or no longer) running:
    // it looks among running containers only.
    let not_found = || error(StatusCode::BAD_REQUEST, format!("container not found ({container:?})"));
    let found = match find(server, namespace, pod, container, false).await {
        Ok(found) if found.running => found,
        Ok(_) => return Err(not_found()),
        Err(response) if response.status() == StatusCode::NOT_FOUND => return Err(not_found()),
        Err(response) => return Err(response),
    };
    let Ok(upgrade) = upgrade else {
        return Err(error(StatusCode::BAD_REQUEST, format!("{what} streams over WebSockets only ({}); SPDY is not supported", PROTOCOLS.join(", "))));
    };
    Ok((found.id, upgrade))
}

/// Switches the client to a WebSocket relayed to the runtime's stream `url`.
fn relay_upgrade(upgrade: WebSocketUpgrade, url: Result<String, tonic::Status>) -> Response {
    let url = match url {
        Ok(url) => url,
        Err(status) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("container runtime: {}", status.message())),
    };
    let url = url.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    upgrade.protocols(PROTOCOLS).on_upgrade(move |socket| relay(socket, url))
}

const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Copies frames both ways between the client and the runtime's stream.
async fn relay(client_socket: WebSocket, url: String) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as Frame;

    let chosen = client_socket.protocol().and_then(|p| p.to_str().ok()).unwrap_or_default();
    let protocol = PROTOCOLS.into_iter().find(|p| *p == chosen).unwrap_or(PROTOCOLS[0]);
    let (mut client_tx, mut client_rx) = client_socket.split();
    let runtime = async {
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", axum::http::HeaderValue::from_static(protocol));
        tokio_tungstenite::connect_async(request).await
    };
    let (runtime_socket, _) = match runtime.await {
        Ok(connected) => connected,
        Err(failure) => {
            let status = serde_json::json!({"metadata": {}, "status": "Failure", "message": format!("connecting to the runtime's stream: {failure}"), "reason": "InternalError"});
            let _ = client_tx.send(frame(3, status.to_string().as_bytes())).await;
            return;
        }
    };
    let (mut runtime_tx, mut runtime_rx) = runtime_socket.split();
    let upstream = async {
        while let Some(Ok(message)) = client_rx.next().await {
            let forwarded = match message {
                Message::Binary(bytes) => Frame::Binary(bytes),
                Message::Text(text) => Frame::Text(text.as_str().into()),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if runtime_tx.send(forwarded).await.is_err() {
                break;
            }
        }
        let _ = runtime_tx.close().await;
    };
    let downstream = async {
        while let Some(Ok(message)) = runtime_rx.next().await {
            let forwarded = match message {
                Frame::Binary(bytes) => Message::Binary(bytes),
                Frame::Text(text) => Message::Text(text.as_str().into()),
                Frame::Close(_) => break,
                _ => continue,
            };
            if client_tx.send(forwarded).await.is_err() {
                break;
            }
        }
        // A close without a code reads as an error to kubectl.
        let normal = axum::extract::ws::CloseFrame { code: axum::extract::ws::close_code::NORMAL, reason: "".into() };
        let _ = client_tx.send(Message::Close(Some(normal))).await;
    };
    // The runtime's end closing ends the stream; the client may close stdin earlier.
    tokio::pin!(downstream);
    tokio::select! {
        () = &mut downstream => {}
        () = upstream => downstream.await,
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_query_collects_commands() {
        let query = stream_query(Some("command=sh&command=-c&command=echo%20hi&stdout=true&stderr=true&tty=false"));
        assert_eq!(query.command, ["sh", "-c", "echo hi"]);
        assert!(!query.stdin && !query.tty);
        assert_eq!((query.stdout, query.stderr), (Some(true), Some(true)));
    }
}
