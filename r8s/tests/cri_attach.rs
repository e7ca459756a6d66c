//! CRI Attach through the gRPC API and the streaming URL, as kubectl attach
//! does (WebSocket, `v5.channel.k8s.io`): live output, stdin with and
//! without `stdinOnce`, a terminal and its resize. Needs root.

mod cri_support;

use std::time::Duration;

use cri_support::{container_config, Cri, Node};
use futures::{SinkExt, StreamExt};
use runtime::cri::api::{AttachRequest, ContainerState};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tonic::Code;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Creates a container with stdin (and `stdin_once`, `tty` as given) and starts it.
async fn run_with_stdin(cri: &mut Cri, pod: &str, name: &str, command: &[&str], once: bool, tty: bool) -> String {
    let mut config = container_config(name, command);
    config.stdin = true;
    config.stdin_once = once;
    config.tty = tty;
    let id = cri.client.runtime.create_container(pod, config, None).await.unwrap();
    cri.client.runtime.start_container(&id).await.unwrap();
    id
}

async fn attach(cri: &mut Cri, container: &str, stdin: bool, tty: bool) -> Socket {
    let request = AttachRequest { container_id: container.into(), stdin, tty, stdout: true, stderr: true };
    let url = cri.client.runtime.attach(request).await.unwrap();
    assert!(url.contains("/attach/"), "{url}");
    let mut ws = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    ws.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
    tokio_tungstenite::connect_async(ws).await.unwrap().0
}

async fn send(socket: &mut Socket, channel: u8, data: &[u8]) {
    socket.send(Message::Binary([&[channel][..], data].concat().into())).await.unwrap();
}

/// What the stream brought, by channel: (stdout, stderr, status).
#[derive(Default, Debug)]
struct Received {
    out: String,
    err: String,
    status: String,
    closed: bool,
}

/// Reads until `done` holds for what was received or the stream ends (at
/// most 20 s, so that a broken attach fails instead of hanging).
async fn read_until(socket: &mut Socket, received: &mut Received, done: impl Fn(&Received) -> bool) {
    let reading = async {
        while !done(received) {
            let Some(Ok(message)) = socket.next().await else {
                received.closed = true;
                return;
            };
            let Message::Binary(data) = message else { continue };
            let text = String::from_utf8_lossy(&data[1..]).into_owned();
            match data[0] {
                1 => received.out.push_str(&text),
                2 => received.err.push_str(&text),
                3 => received.status.push_str(&text),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), reading).await.unwrap_or_else(|_| panic!("attach stalled: {received:?}"));
}

async fn state(cri: &mut Cri, id: &str) -> (i32, i32) {
    let status = cri.client.runtime.container_status(id, false).await.unwrap().status.unwrap();
    (status.state, status.exit_code)
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_writes_stdin_once_and_ends_with_the_container() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let logs = node.dir.path().join("logs").display().to_string();
    let pod = cri.run_pod("attach-once", |c| c.log_directory = logs.clone()).await.unwrap();
    let script = "while read line; do echo got-$line; echo err-$line >&2; done; echo stdin-closed";
    let id = run_with_stdin(&mut cri, &pod, "reader", &["sh", "-c", script], true, false).await;

    let mut socket = attach(&mut cri, &id, true, false).await;
    send(&mut socket, 0, b"one\n").await;
    let mut received = Received::default();
    read_until(&mut socket, &mut received, |r| r.out.contains("got-one\n") && r.err.contains("err-one\n")).await;
    // The end of stdin: with stdinOnce the container sees it, prints and exits.
    send(&mut socket, 255, &[0]).await;
    read_until(&mut socket, &mut received, |r| r.closed).await;
    assert!(received.out.contains("stdin-closed\n"), "{received:?}");
    assert!(received.status.contains("Success"), "{received:?}");
    assert_eq!(state(&mut cri, &id).await, (ContainerState::ContainerExited as i32, 0));
    // The log has everything, as without attach.
    let log = std::fs::read_to_string(node.dir.path().join("logs/reader/0.log")).unwrap();
    assert!(log.contains(" stdout F got-one\n") && log.contains(" stderr F err-one\n") && log.contains(" stdout F stdin-closed\n"), "{log}");
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_stdin_once_stdin_stays_open_for_the_next_attach() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let pod = cri.run_pod("attach-open", |_| {}).await.unwrap();
    let id = run_with_stdin(&mut cri, &pod, "echoer", &["sh", "-c", "while read line; do echo got-$line; done"], false, false).await;

    let mut first = attach(&mut cri, &id, true, false).await;
    send(&mut first, 0, b"a\n").await;
    let mut received = Received::default();
    read_until(&mut first, &mut received, |r| r.out.contains("got-a\n")).await;
    send(&mut first, 255, &[0]).await;
    first.close(None).await.unwrap();

    // A watcher without stdin sees what the next one's input makes.
    let mut watcher = attach(&mut cri, &id, false, false).await;
    let mut second = attach(&mut cri, &id, true, false).await;
    send(&mut second, 0, b"b\n").await;
    let (mut to_second, mut to_watcher) = (Received::default(), Received::default());
    read_until(&mut second, &mut to_second, |r| r.out.contains("got-b\n")).await;
    read_until(&mut watcher, &mut to_watcher, |r| r.out.contains("got-b\n")).await;
    assert!(!to_second.out.contains("got-a"), "output from before the attach: {to_second:?}");
    assert_eq!(state(&mut cri, &id).await.0, ContainerState::ContainerRunning as i32);
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_is_attached_and_resized() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let pod = cri.run_pod("attach-tty", |_| {}).await.unwrap();
    let id = run_with_stdin(&mut cri, &pod, "shell", &["sh"], true, true).await;

    let mut socket = attach(&mut cri, &id, true, true).await;
    send(&mut socket, 4, br#"{"Width":100,"Height":30}"#).await;
    send(&mut socket, 0, b"tty >/dev/null && echo is-a-tty; stty size\n").await;
    let mut received = Received::default();
    read_until(&mut socket, &mut received, |r| r.out.contains("is-a-tty") && r.out.contains("30 100")).await;
    send(&mut socket, 0, b"exit 4\n").await;
    read_until(&mut socket, &mut received, |r| r.closed).await;
    assert!(received.err.is_empty(), "a terminal has one output stream: {received:?}");
    assert_eq!(state(&mut cri, &id).await, (ContainerState::ContainerExited as i32, 4));
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_refuses_what_it_cannot_serve() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let pod = cri.run_pod("attach-bad", |_| {}).await.unwrap();
    let unknown = AttachRequest { container_id: "nosuch".into(), stdout: true, ..Default::default() };
    assert_eq!(cri.client.runtime.attach(unknown).await.expect_err("unknown").code(), Code::NotFound);
    let created = cri.create(&pod, "idle", &["sleep", "60"]).await.unwrap();
    let not_running = AttachRequest { container_id: created.clone(), stdout: true, ..Default::default() };
    assert_eq!(cri.client.runtime.attach(not_running).await.expect_err("not started").code(), Code::FailedPrecondition);
    let nothing = AttachRequest { container_id: created, ..Default::default() };
    assert_eq!(cri.client.runtime.attach(nothing).await.expect_err("no streams").code(), Code::InvalidArgument);
    cri.shutdown().await;
}
