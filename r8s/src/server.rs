//! `r8s server`: one control-plane server. It runs the store (the embedded raft
//! backend, or etcd with `--datastore-endpoint`), the Kubernetes API server on
//! top of it, and the scheduler and controllers, which talk to the API server
//! over HTTP like any other client. It writes a kubeconfig for the cluster and
//! runs until SIGTERM or SIGINT, then shuts the store down cleanly.
//!
//! Forming a cluster of raft servers: start the first server alone, then start
//! the others with `--join` pointing at any member; each is added as a learner,
//! and made a voter once it has caught up.
//!
//! ```text
//! r8s server --node-id 1 --data-dir /var/lib/r8s/s1 --raft-addr 10.0.0.1:7380
//! r8s server --node-id 2 --data-dir /var/lib/r8s/s2 --raft-addr 10.0.0.2:7380 --join 10.0.0.1:7380
//! r8s server --node-id 3 --data-dir /var/lib/r8s/s3 --raft-addr 10.0.0.3:7380 --join 10.0.0.1:7380
//! ```
//!
//! A restarted server finds its log in `--data-dir` and rejoins by itself;
//! `--join` only matters on the first start. Once everything is up the server
//! prints `ready api=<url> raft=<addr>` on stdout (tests wait for that line).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use store::compaction::{AutoCompaction, DEFAULT_COMPACTION_INTERVAL};
use store::etcd::EtcdStore;
use store::raft::{RaftConfig, RaftStore};
use store::Store;
use tokio::signal::unix::{signal, SignalKind};

use crate::control::ControlPlaneFlags;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// This server's id in the raft cluster: unique, and never reused for another server.
    #[arg(long, default_value_t = 1)]
    node_id: u64,
    /// Where the raft log, snapshots and the kubeconfig live.
    #[arg(long, default_value = "/var/lib/r8s/server")]
    data_dir: PathBuf,
    /// host:port for raft and store RPCs; the other servers reach this one there.
    #[arg(long, default_value = "127.0.0.1:7380")]
    raft_addr: String,
    /// On the first start, join the cluster that the server at this address is a
    /// member of, instead of starting a new one.
    #[arg(long)]
    join: Option<String>,
    /// Snapshot the store after this many log entries, and drop the log before it.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Log entries kept before the last snapshot, for followers that lag a little.
    #[arg(long, default_value_t = 1_000)]
    logs_to_keep: u64,
    /// Keep the cluster's state in etcd at these client URLs (comma-separated)
    /// instead of the embedded raft store.
    #[arg(long, value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// host:port the Kubernetes API is served on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: String,
    /// Where to write the kubeconfig for this cluster (default: DATA_DIR/kubeconfig.yaml).
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Serve the API only: no scheduler and no controllers in this process.
    #[arg(long)]
    no_control_plane: bool,
    /// The address agents and pods reach this server at: the endpoint of the
    /// `kubernetes` Service (and of `kube-dns`). Without it those have no endpoints.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Serve the cluster DNS (UDP and TCP) on host:port, e.g. 172.30.0.1:53, and
    /// keep the `kube-dns` Service (10.96.0.10) pointing at it. Off when not given.
    #[arg(long)]
    cluster_dns_listen: Option<SocketAddr>,
    /// The domain the cluster DNS serves.
    #[arg(long, default_value = dns::DEFAULT_DOMAIN)]
    cluster_domain: String,
    /// Run inside this network namespace (a pinned file, or NAME under
    /// `/run/netns`), entered at start.
    #[arg(long)]
    netns: Option<String>,
    #[command(flatten)]
    control: ControlPlaneFlags,
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    crate::init_logging();
    if let Some(netns) = &args.netns {
        // Before any thread exists: `setns` moves only the calling thread.
        crate::netns::enter(netns)?;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

/// The store the server runs on, and how to stop it.
enum Backend {
    Raft(Arc<RaftStore>),
    Etcd { store: Arc<EtcdStore>, _compaction: AutoCompaction },
}

impl Backend {
    async fn open(args: &ServerArgs) -> anyhow::Result<Backend> {
        if !args.datastore_endpoint.is_empty() {
            let store = Arc::new(EtcdStore::connect(&args.datastore_endpoint).await?);
            // etcd keeps every revision until told otherwise; compact as the
            // Kubernetes API server does for it.
            let compaction = AutoCompaction::start(Arc::downgrade(&store), DEFAULT_COMPACTION_INTERVAL);
            return Ok(Backend::Etcd { store, _compaction: compaction });
        }
        let mut config = RaftConfig::new(args.node_id, &args.data_dir, &args.raft_addr);
        config.join = args.join.clone();
        config.snapshot_every = args.snapshot_every;
        config.logs_to_keep = args.logs_to_keep;
        let store = RaftStore::open(config)
            .await
            .with_context(|| format!("cannot start the store in {}", args.data_dir.display()))?;
        Ok(Backend::Raft(store))
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Raft(store) => store.clone(),
            Backend::Etcd { store, .. } => store.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Backend::Raft(store) => format!("raft={}", store.addr()),
            Backend::Etcd { .. } => "etcd".into(),
        }
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        if let Backend::Raft(store) = self {
            store.shutdown().await.context("the store did not shut down cleanly")?;
        }
        Ok(())
    }
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let backend = Backend::open(&args).await?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let api_address = listener.local_addr()?;
    let url = format!("http://{api_address}");
    let dns_sockets = match args.cluster_dns_listen {
        Some(address) => Some(dns::Sockets::bind(address).await.with_context(|| format!("cannot serve DNS on {address}"))?),
        None => None,
    };
    let system_services = apiserver::system_services::SystemServices {
        advertise_address: args.advertise_address,
        dns_port: dns_sockets.as_ref().map(|s| s.local_addr()).transpose()?.map(|a| a.port()),
    };
    let api_config = apiserver::Config { system_services: Some(system_services), ..Default::default() };
    let api = tokio::spawn(apiserver::serve(backend.store(), listener, api_config));

    let kubeconfig = args.write_kubeconfig.clone().unwrap_or_else(|| args.data_dir.join("kubeconfig.yaml"));
    crate::kubeconfig::write(&kubeconfig, "r8s", &url)?;
    tracing::info!(%url, kubeconfig = %kubeconfig.display(), "API server listening");

    let control = async {
        if args.no_control_plane {
            return std::future::pending().await;
        }
        let client = client::connect::from_url(&url)?;
        args.control.run(client).await
    };
    let cluster_dns = async {
        let Some(sockets) = dns_sockets else { return std::future::pending().await };
        let config = dns::Config { domain: args.cluster_domain.clone(), ..Default::default() };
        dns::run(client::connect::from_url(&url)?, config, sockets).await.context("the cluster DNS failed")
    };
    println!("ready api={url} {}", backend.describe());

    let outcome = tokio::select! {
        _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); Ok(()) }
        _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); Ok(()) }
        result = api => result.context("the API server stopped").and_then(|r| r.context("the API server failed")),
        result = control => result.context("the control plane failed"),
        result = cluster_dns => result,
    };
    backend.shutdown().await?;
    tracing::info!("stopped");
    outcome
}
