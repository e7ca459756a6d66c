//! `r8s runtime serve`: the CRI service alone, on a unix socket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use runtime::cri::{self, CriConfig, CriServer, CriService};
use runtime::network::{BridgeConfig, BridgeNetwork, PodNetwork};
use runtime::RuntimeConfig;
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The CRI socket.
    #[arg(long, env = "R8S_CRI_SOCKET", default_value = cri::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Pod sandboxes and container records.
    #[arg(long, default_value = "/run/r8s/cri")]
    cri_root: PathBuf,
    /// Where pods' network namespaces are pinned.
    #[arg(long, default_value = "/run/r8s/netns")]
    netns_dir: PathBuf,
    /// The node's pod CIDR: pods get addresses from it on bridge `--bridge`.
    #[arg(long, default_value = "10.88.0.0/16")]
    pod_cidr: String,
    #[arg(long, default_value = "r8s0")]
    bridge: String,
    /// The address ledger of the pod network.
    #[arg(long, default_value = "/var/lib/r8s/network")]
    network_state_dir: PathBuf,
    /// The node's network namespace, when the node is one (tests, `r8s up`).
    #[arg(long)]
    node_netns: Option<PathBuf>,
    /// No pod network: each pod gets a network namespace with loopback only.
    #[arg(long)]
    disable_network: bool,
    /// Where Exec's streaming server listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    streaming_address: SocketAddr,
    /// A registry (`host` or `host:port`) to pull from over plain HTTP; repeatable.
    /// Loopback registries always are.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
}

/// How long calls in flight may finish after SIGTERM.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(2);

pub fn run(runtime: RuntimeConfig, image_root: PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    crate::init_logging();
    let tokio = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let served = tokio.block_on(serve(runtime, image_root, args));
    // Blocking work still running (a StopContainer waiting out a pod's grace
    // period) is abandoned rather than waited for, as the calls were above.
    tokio.shutdown_background();
    served
}

async fn serve(runtime: RuntimeConfig, image_root: PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    let network: Option<Arc<dyn PodNetwork>> = if args.disable_network {
        None
    } else {
        let cidr = args.pod_cidr.parse().with_context(|| format!("pod CIDR {:?}", args.pod_cidr))?;
        let mut config = BridgeConfig::new(cidr, &args.network_state_dir);
        config.bridge = args.bridge.clone();
        config.node_netns = args.node_netns.clone();
        Some(Arc::new(BridgeNetwork::new(config).await.context("setting up the pod network")?))
    };
    let mut config = CriConfig::new(runtime);
    config.root = args.cri_root;
    config.image_root = image_root;
    config.netns_dir = args.netns_dir;
    config.insecure_registries = args.insecure_registries;
    let service = CriService::new(config, network).await.context("starting the CRI service")?;
    let streaming = cri::streaming::Streaming::start(service.clone(), args.streaming_address).await?;
    tracing::info!(socket = %args.socket.display(), streaming = %streaming.address(), "serving CRI");
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let events = service.clone();
    let served = cri::serve(CriServer { service, streaming: Some(streaming) }, &args.socket, async {
        let _ = stopped.await;
    });
    tokio::pin!(served);
    tokio::select! {
        result = &mut served => return Ok(result?),
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    let _ = stop.send(());
    // Event streams never end by themselves: end them, so they do not hold up the shutdown.
    events.events().close();
    // A graceful shutdown waits for calls in flight, and a StopContainer can
    // wait out a pod's whole termination grace period: give them a moment,
    // then go. Containers are the shims' business and keep their state.
    match tokio::time::timeout(IN_FLIGHT_GRACE, served).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("CRI calls still in flight were abandoned"),
    }
    tracing::info!("CRI service stopped; pods keep running");
    Ok(())
}
