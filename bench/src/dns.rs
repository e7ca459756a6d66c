//! `r8s-bench dns`: A lookups of Service names from the cluster DNS beside
//! dnsmasq answering the same names from a hosts file, both on loopback.
//!
//! The API server (in-memory store) and the cluster DNS run on a runtime of
//! their own in this process, as in `r8s server`; dnsmasq runs as a child
//! (`--keep-in-foreground`, no upstream) and is stopped by its PID. Clients
//! are blocking threads, each with one UDP socket and one query in flight,
//! asking for names picked in turn from the Service list.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::Api;

use crate::stats::{ms, print_table, Samples};

const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct DnsBenchArgs {
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients in the loaded runs.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Services (names) in the cluster.
    #[arg(long, default_value_t = 1000)]
    services: usize,
}

pub fn run(args: DnsBenchArgs) -> anyhow::Result<()> {
    // The server side gets a runtime (and threads) of its own, apart from the clients.
    let server = tokio::runtime::Runtime::new()?;
    let (r8s, names) = server.block_on(start_r8s(args.services))?;
    let dir = tempfile::tempdir()?;
    let dnsmasq = Dnsmasq::start(dir.path(), &names)?;

    let mut rows = Vec::new();
    for (label, address) in [("r8s cluster DNS", r8s), ("dnsmasq 2.90 (hosts file)", dnsmasq.address)] {
        for clients in [1, args.clients] {
            let result = load(address, &names, clients, Duration::from_secs(args.seconds))?;
            rows.push(vec![
                label.to_string(),
                clients.to_string(),
                format!("{:.0}", result.rate),
                ms(result.latency.percentile(50.0)),
                ms(result.latency.percentile(99.0)),
            ]);
        }
    }
    println!("A lookups over UDP on loopback, {} names, {} s per row", names.len(), args.seconds);
    print_table(&["server", "clients", "queries/s", "p50 ms", "p99 ms"], &rows);
    Ok(())
}

/// The API server and the cluster DNS, with `count` Services; returns the DNS
/// address and each Service's (name, cluster IP).
async fn start_r8s(count: usize) -> anyhow::Result<(SocketAddr, Vec<(String, String)>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(apiserver::serve(store::mem::MemStore::new(), listener, apiserver::Config::default()));
    let client = client::connect::from_url(&url)?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut names = Vec::with_capacity(count);
    for i in 0..count {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("svc-{i}") },
            "spec": { "ports": [{ "name": "http", "port": 80 }] }
        }))?;
        let created = services.create(&PostParams::default(), &service).await.context("creating a Service")?;
        let ip = created.spec.and_then(|s| s.cluster_ip).context("a cluster IP")?;
        names.push((format!("svc-{i}.default.svc.cluster.local"), ip));
    }
    let sockets = dns::Sockets::bind("127.0.0.1:0".parse()?).await?;
    let address = sockets.local_addr()?;
    tokio::spawn(dns::run(client, dns::Config::default(), sockets));
    // Ready once the last Service made resolves.
    let last = names.last().map(|(name, _)| name.clone()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ask = move || -> anyhow::Result<bool> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(TIMEOUT))?;
        Ok(ask(&socket, address, &last, 1)?.is_some_and(|answers| answers > 0))
    };
    while !tokio::task::spawn_blocking(ask.clone()).await?.unwrap_or(false) {
        anyhow::ensure!(Instant::now() < deadline, "the cluster DNS did not answer for the Services");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((address, names))
}

/// dnsmasq answering from a hosts file only, on a loopback port; stopped on drop.
struct Dnsmasq {
    child: Child,
    address: SocketAddr,
}

impl Dnsmasq {
    fn start(dir: &std::path::Path, names: &[(String, String)]) -> anyhow::Result<Dnsmasq> {
        let hosts = dir.join("hosts");
        let mut file = std::fs::File::create(&hosts)?;
        for (name, ip) in names {
            writeln!(file, "{ip} {name}")?;
        }
        // A free port: bind, read it, let go (dnsmasq binds it right after).
        let port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root"])
            .args(["--bind-interfaces", "--listen-address=127.0.0.1", "--local=/cluster.local/", "--pid-file="])
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting dnsmasq (Debian: apt-get install dnsmasq-base)")?;
        let dnsmasq = Dnsmasq { child, address: SocketAddr::from(([127, 0, 0, 1], port)) };
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while ask(&socket, dnsmasq.address, &names[0].0, 1)?.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "dnsmasq did not answer on {}", dnsmasq.address);
        }
        Ok(dnsmasq)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Load {
    rate: f64,
    latency: Samples,
}

/// `clients` threads asking in a closed loop for `duration`; every answer must
/// carry an address.
fn load(address: SocketAddr, names: &[(String, String)], clients: usize, duration: Duration) -> anyhow::Result<Load> {
    let started = Instant::now();
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                scope.spawn(move || -> anyhow::Result<Samples> {
                    let socket = UdpSocket::bind("127.0.0.1:0")?;
                    socket.set_read_timeout(Some(TIMEOUT))?;
                    let mut samples = Samples::default();
                    let mut next = client;
                    while started.elapsed() < duration {
                        let (name, _) = &names[next % names.len()];
                        next += clients;
                        let sent = Instant::now();
                        let answers = ask(&socket, address, name, next as u16)?.with_context(|| format!("no answer for {name}"))?;
                        anyhow::ensure!(answers > 0, "{name}: an answer without records");
                        samples.push(sent.elapsed());
                    }
                    Ok(samples)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a client thread")).collect::<Vec<_>>()
    });
    let elapsed = started.elapsed();
    let mut latency = Samples::default();
    for result in results {
        latency.extend(result?);
    }
    Ok(Load { rate: latency.len() as f64 / elapsed.as_secs_f64(), latency })
}

/// One A query for `name`; the answer count, or `None` on timeout.
fn ask(socket: &UdpSocket, server: SocketAddr, name: &str, id: u16) -> anyhow::Result<Option<u16>> {
    let mut query = Vec::with_capacity(64);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
    for label in name.split('.') {
        query.push(u8::try_from(label.len())?);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    socket.send_to(&query, server)?;
    let mut buffer = [0u8; 1500];
    loop {
        match socket.recv_from(&mut buffer) {
            // Answers to an earlier, timed-out query are skipped by their id.
            Ok((length, _)) if length >= 12 && buffer[..2] == id.to_be_bytes() => {
                let rcode = buffer[3] & 0x0f;
                anyhow::ensure!(rcode == 0, "{name}: response code {rcode}");
                return Ok(Some(u16::from_be_bytes([buffer[6], buffer[7]])));
            }
            Ok(_) => continue,
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Ok(None),
            Err(error) => return Err(error.into()),
        }
    }
}
