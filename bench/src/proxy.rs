//! `r8s-bench proxy`: the node's Service proxy, in a node made of network
//! namespaces for the run (the runtime's bridge pod network, two server pods,
//! a client pod), so the machine's own network stays untouched.
//!
//! - Short TCP request/response (connect, 4 bytes out, the pod's name back,
//!   close) from the client pod, through the Service's cluster IP (nftables
//!   DNAT to either pod) beside the same requests straight to the pods' IPs:
//!   requests per second and latency percentiles, 1 and N clients.
//! - From an Endpoints change through the API (an endpoint removed) to the
//!   proxy having programmed the rules without it, with one Service and with
//!   many: the API server (in-memory store) and the proxy run in this process.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::PostParams;
use kube::Api;
use proxy::{Endpoint, Protocol, Rules, ServicePort, ServiceProxy};
use runtime::network::netlink::Netlink;
use runtime::network::{BridgeConfig, BridgeNetwork, NetNs, PodNetwork, PodNetworkRequest};

use crate::stats::{ms, print_table, Samples};

const POD_PORT: u16 = 7000;
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const SERVICE_PORT: u16 = 80;
/// Threads accepting connections in each server pod.
const SERVER_THREADS: usize = 8;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub struct ProxyBenchArgs {
    /// Seconds each request-rate measurement runs.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Concurrent clients in the loaded runs.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Endpoint removals timed per Service count.
    #[arg(long, default_value_t = 30)]
    changes: usize,
    /// Services in the cluster for the second row of the Endpoints table.
    #[arg(long, default_value_t = 500)]
    many_services: usize,
}

pub fn run(args: ProxyBenchArgs) -> anyhow::Result<()> {
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async {
        let node = BenchNode::start().await?;
        requests(&node, &args).await?;
        println!();
        endpoint_changes(&node, &args).await
    })
}

/// The namespaces of the run; removed (with every device and rule in them) on drop.
struct Namespaces {
    dir: tempfile::TempDir,
    made: Vec<NetNs>,
}

impl Namespaces {
    fn create(&mut self, name: &str) -> anyhow::Result<NetNs> {
        let netns = NetNs::create(self.dir.path().join("netns").join(name))?;
        self.made.push(netns.clone());
        Ok(netns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for netns in self.made.iter().rev() {
            if let Err(error) = netns.remove() {
                eprintln!("cleanup: {error}");
            }
        }
    }
}

struct BenchNode {
    // Held until the end, and dropped first: its netlink socket holds the node namespace.
    _network: BridgeNetwork,
    pods: [(NetNs, Ipv4Addr); 2],
    client: NetNs,
    node: NetNs,
    // Last: removes every namespace of the run.
    _namespaces: Namespaces,
}

impl BenchNode {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("r8s-bench-proxy-").tempdir_in("/run")?;
        let mut namespaces = Namespaces { dir, made: Vec::new() };
        let node = namespaces.create("node")?;
        Netlink::connect(Some(node.path())).await?.set_up("lo").await?;
        let mut config = BridgeConfig::new("10.244.0.0/24".parse()?, namespaces.dir.path().join("state"));
        config.node_netns = Some(node.path().to_owned());
        let network = BridgeNetwork::new(config).await?;
        let mut pod = async |name: &'static str| -> anyhow::Result<(NetNs, Ipv4Addr)> {
            let netns = namespaces.create(name)?;
            let request = PodNetworkRequest {
                sandbox_id: name.into(),
                netns: netns.path().to_owned(),
                pod_namespace: "default".into(),
                pod_name: name.into(),
                port_mappings: vec![],
            };
            let status = network.setup(&request).await?;
            Ok((netns, status.address.addr()))
        };
        let (a, b, (client, _)) = (pod("a").await?, pod("b").await?, pod("client").await?);
        for (netns, name) in [(&a.0, "a"), (&b.0, "b")] {
            serve(netns, name)?;
        }
        Ok(Self { _network: network, pods: [a, b], client, node, _namespaces: namespaces })
    }

    fn service_port(&self, endpoints: usize) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            service: "web".into(),
            port_name: String::new(),
            protocol: Protocol::Tcp,
            cluster_ip: CLUSTER_IP,
            port: SERVICE_PORT,
            node_port: None,
            affinity_timeout_seconds: None,
            endpoints: self.pods[..endpoints].iter().map(|(_, ip)| Endpoint { ip: *ip, port: POD_PORT }).collect(),
        }
    }

    fn proxy_config(&self) -> proxy::Config {
        proxy::Config { netns: Some(self.node.path().to_owned()), ..proxy::Config::default() }
    }
}

/// Answers each connection's 4-byte request with the pod's name, on
/// `SERVER_THREADS` threads, for as long as the process runs.
fn serve(netns: &NetNs, name: &'static str) -> anyhow::Result<()> {
    // A socket stays in the namespace it was made in, whichever thread uses it.
    let listener = netns.run(|| TcpListener::bind(("0.0.0.0", POD_PORT)))??;
    for _ in 0..SERVER_THREADS {
        let listener = listener.try_clone()?;
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0u8; 4];
                if stream.read_exact(&mut request).is_ok() {
                    let _ = stream.write_all(name.as_bytes());
                }
            }
        });
    }
    Ok(())
}

/// One request: connect, send, read the answer to its end.
fn request(target: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&target, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(b"ping")?;
    stream.shutdown(Shutdown::Write)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    if answer.is_empty() {
        return Err(std::io::Error::other("empty answer"));
    }
    Ok(())
}

/// `clients` threads in the client pod sending requests to `targets` (in
/// turn) for `duration`: the latencies, and requests per second.
fn load(client: &NetNs, targets: Vec<SocketAddr>, clients: usize, duration: Duration) -> anyhow::Result<(Samples, f64)> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for worker in 0..clients {
        let targets = targets.clone();
        workers.push(client.spawn(move || -> std::io::Result<Samples> {
            let mut samples = Samples::default();
            let mut n = worker;
            while Instant::now() < deadline {
                let begun = Instant::now();
                request(targets[n % targets.len()])?;
                samples.push(begun.elapsed());
                n += 1;
            }
            Ok(samples)
        })?);
    }
    let mut all = Samples::default();
    for worker in workers {
        let samples = worker.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))???;
        all.extend(samples);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    Ok((all, rate))
}

async fn requests(node: &BenchNode, args: &ProxyBenchArgs) -> anyhow::Result<()> {
    let mut rules = Rules::new(&node.proxy_config());
    rules.program(&[node.service_port(2)]).await.context("programming the Service")?;
    let direct: Vec<SocketAddr> = node.pods.iter().map(|(_, ip)| SocketAddr::from((*ip, POD_PORT))).collect();
    let cluster = vec![SocketAddr::from((CLUSTER_IP, SERVICE_PORT))];
    let duration = Duration::from_secs(args.seconds);
    let mut rows = Vec::new();
    for clients in [1, args.clients] {
        for (path, targets) in [("pod IPs (direct)", &direct), ("ClusterIP (nftables DNAT)", &cluster)] {
            let (client, targets) = (node.client.clone(), targets.clone());
            let (samples, rate) = tokio::task::spawn_blocking(move || load(&client, targets, clients, duration)).await??;
            rows.push(vec![
                path.to_owned(),
                clients.to_string(),
                format!("{rate:.0}"),
                ms(samples.percentile(50.0)),
                ms(samples.percentile(99.0)),
            ]);
        }
    }
    println!("Short TCP request/response from a pod (new connection each), {} s per row, 2 server pods:\n", args.seconds);
    print_table(&["path", "clients", "requests/s", "p50 ms", "p99 ms"], &rows);
    Ok(())
}

/// Aborts the API server's and the proxy's tasks when dropped.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

fn service(name: &str, cluster_ip: Ipv4Addr) -> anyhow::Result<Service> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "clusterIP": cluster_ip.to_string(), "ports": [{ "port": SERVICE_PORT, "targetPort": POD_PORT }] },
    }))?)
}

fn endpoints(name: &str, ips: &[Ipv4Addr]) -> anyhow::Result<Endpoints> {
    let addresses: Vec<_> = ips.iter().map(|ip| serde_json::json!({ "ip": ip.to_string() })).collect();
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "namespace": "default" },
        "subsets": [{ "addresses": addresses, "ports": [{ "port": POD_PORT, "protocol": "TCP" }] }],
    }))?)
}

async fn endpoint_changes(node: &BenchNode, args: &ProxyBenchArgs) -> anyhow::Result<()> {
    let mut tasks = Tasks(Vec::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tasks.0.push(tokio::spawn(async move {
        if let Err(error) = apiserver::serve(store::mem::MemStore::new(), listener, apiserver::Config::default()).await {
            eprintln!("API server failed: {error}");
        }
    }));
    let client = client::connect::from_url(&url)?;
    let proxy = Arc::new(ServiceProxy::new(node.proxy_config()));
    let mut programmed = proxy.programmed();
    let (running, proxy_client) = (proxy.clone(), client.clone());
    tasks.0.push(tokio::spawn(async move { running.run(proxy_client).await }));

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints_api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let both: Vec<Ipv4Addr> = node.pods.iter().map(|(_, ip)| *ip).collect();
    let mut rows = Vec::new();
    let mut existing = 0;
    for wanted in [1, args.many_services] {
        for n in existing..wanted {
            let name = format!("web-{n}");
            let n = u32::try_from(n)?;
            services.create(&PostParams::default(), &service(&name, Ipv4Addr::from(u32::from(CLUSTER_IP) + n))?).await?;
            endpoints_api.create(&PostParams::default(), &endpoints(&name, &both)?).await?;
        }
        existing = wanted;
        wait_programmed(&mut programmed, |ports| ports.len() == wanted && ports.iter().all(|p| p.endpoints.len() == 2)).await?;

        let mut removal = Samples::default();
        for _ in 0..args.changes {
            for (ips, count) in [(&both[..1], 1), (&both[..], 2)] {
                let mut changed = endpoints("web-0", ips)?;
                changed.metadata.resource_version = endpoints_api.get("web-0").await?.metadata.resource_version;
                let begun = Instant::now();
                endpoints_api.replace("web-0", &PostParams::default(), &changed).await?;
                wait_programmed(&mut programmed, |ports| ports.iter().any(|p| p.service == "web-0" && p.endpoints.len() == count)).await?;
                if count == 1 {
                    removal.push(begun.elapsed());
                }
            }
        }
        rows.push(vec![wanted.to_string(), (wanted * 2).to_string(), ms(removal.percentile(50.0)), ms(removal.percentile(99.0))]);
    }
    println!(
        "From an Endpoints update through the API (one endpoint removed) to the proxy's nftables transaction done, {} changes per row (includes the proxy's {} ms burst window):\n",
        args.changes,
        proxy::Config::default().burst_window.as_millis()
    );
    print_table(&["Services", "endpoints", "p50 ms", "p99 ms"], &rows);
    Ok(())
}

async fn wait_programmed(
    programmed: &mut tokio::sync::watch::Receiver<Arc<Vec<ServicePort>>>,
    done: impl Fn(&[ServicePort]) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(60), programmed.wait_for(|ports| done(ports)))
        .await
        .context("the proxy did not program the change within 60 s")?
        .context("the proxy stopped")?;
    Ok(())
}
