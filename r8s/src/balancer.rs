//! Reaching a cluster's API servers from where a client is: a TCP forwarder
//! that sends each connection to the first server that is ready (its
//! `/readyz` answers 200), else to the first that accepts connections, so
//! that a client keeps working while any one server is down (as k3s' agent
//! load balancer does). `r8s up` runs one on the machine for kubectl, in
//! front of servers that live in the cluster's hub namespace; an agent runs
//! one in its node for itself when the cluster has several servers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How connections to the servers are made.
#[derive(Debug, Clone)]
pub enum Dialer {
    /// From this process's network namespace.
    Direct,
    /// From inside the network namespace pinned at this path (a socket
    /// belongs to the namespace of the thread that made it).
    InNetns(PathBuf),
}

impl Dialer {
    pub async fn connect(&self, address: SocketAddr) -> std::io::Result<TcpStream> {
        match self {
            Dialer::Direct => tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await.map_err(|_| timed_out(address))?,
            Dialer::InNetns(path) => {
                let stream = runtime::network::netns::run_in_netns(Some(path), move || std::net::TcpStream::connect_timeout(&address, CONNECT_TIMEOUT))
                    .await
                    .map_err(std::io::Error::other)??;
                stream.set_nonblocking(true)?;
                TcpStream::from_std(stream)
            }
        }
    }

    /// The status code of `GET path` on the server at `address`.
    pub async fn http_status(&self, address: SocketAddr, path: &str) -> std::io::Result<u16> {
        let probe = async {
            let mut stream = self.connect(address).await?;
            let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await?;
            status_code(&head).ok_or_else(|| std::io::Error::other("not an HTTP answer"))
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe).await.map_err(|_| timed_out(address))?
    }
}

fn timed_out(address: SocketAddr) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{address} did not answer"))
}

/// The code of an HTTP status line's start (`HTTP/1.1 200`).
fn status_code(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// The servers, in the order to try them: ready ones first, each group in
/// the configured order (pure).
pub fn preference(servers: &[SocketAddr], ready: &[bool]) -> Vec<SocketAddr> {
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for (i, server) in servers.iter().enumerate() {
        if ready.get(i).copied().unwrap_or(false) { first.push(*server) } else { rest.push(*server) }
    }
    first.extend(rest);
    first
}

/// Forwards every connection to `listener` to a server, for ever.
pub async fn serve(listener: TcpListener, servers: Vec<SocketAddr>, dialer: Dialer) {
    let ready = Arc::new(RwLock::new(vec![false; servers.len()]));
    let _probes = client::AbortOnDrop(vec![tokio::spawn(probe_forever(servers.clone(), dialer.clone(), ready.clone()))]);
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            // Out of descriptors, say: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let order = preference(&servers, &ready.read().unwrap_or_else(|p| p.into_inner()));
        let dialer = dialer.clone();
        tokio::spawn(async move {
            for server in order {
                if let Ok(mut upstream) = dialer.connect(server).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return;
                }
            }
        });
    }
}

async fn probe_forever(servers: Vec<SocketAddr>, dialer: Dialer, ready: Arc<RwLock<Vec<bool>>>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tick.tick().await;
        let probes = servers.iter().map(|server| dialer.http_status(*server, "/readyz"));
        let now: Vec<bool> = futures::future::join_all(probes).await.into_iter().map(|code| code.is_ok_and(|c| c == 200)).collect();
        *ready.write().unwrap_or_else(|p| p.into_inner()) = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_servers_come_first_in_their_order() {
        let servers: Vec<SocketAddr> = ["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(preference(&servers, &[false, true, true]), vec![servers[1], servers[2], servers[0]]);
        assert_eq!(preference(&servers, &[false, false, false]), servers);
        assert_eq!(preference(&servers, &[]), servers, "before the first probe: the configured order");
    }

    #[test]
    fn status_lines_give_their_code() {
        assert_eq!(status_code(b"HTTP/1.1 200"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 500"), Some(500));
        assert_eq!(status_code(b"SSH-2.0-Open"), None);
    }

    #[tokio::test]
    async fn connections_go_to_a_live_server() {
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_address = live.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = live.accept().await.unwrap();
            stream.write_all(b"hello").await.unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_address = front.local_addr().unwrap();
        let _forwarder = client::AbortOnDrop(vec![tokio::spawn(serve(front, vec![dead, live_address], Dialer::Direct))]);
        let mut client = TcpStream::connect(front_address).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "hello");
    }
}
