//! `r8s control`: the scheduler and the controllers against an API server, each
//! behind its own Lease so that several control planes can run and one acts.
//! `r8s server` runs the same beside its API server ([`ControlPlaneFlags::run`]).

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use client::leader::LeaderElection;
use kube::Client;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Args)]
pub struct ControlArgs {
    /// The API server.
    #[arg(long, env = "R8S_SERVER", default_value = "http://127.0.0.1:6443")]
    server: String,
    #[command(flatten)]
    settings: ControlPlaneFlags,
}

/// How the control plane behaves; `r8s control` and `r8s server` both take these.
#[derive(Args, Clone, Debug)]
pub struct ControlPlaneFlags {
    /// Who this control plane is in leader election (default: host name and pid).
    #[arg(long)]
    identity: Option<String>,
    /// Seconds without a Lease renewal before a node is unreachable; longer
    /// than the agents' renewal interval (10 s).
    #[arg(long, default_value_t = 40)]
    node_grace_seconds: u64,
    /// Seconds pods stay on an unreachable node when they set no toleration.
    #[arg(long, default_value_t = 300)]
    default_toleration_seconds: i64,
    /// Give each Node a pod CIDR (`spec.podCIDR`) from `--cluster-cidr`.
    #[arg(long)]
    allocate_node_cidrs: bool,
    /// The range node pod CIDRs come from.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// The prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
}

impl ControlPlaneFlags {
    /// Runs the scheduler and the controllers against the API server at `client`.
    pub async fn run(&self, client: Client) -> anyhow::Result<()> {
        // Agents renew their Lease every LEASE_RENEW: a grace period no longer
        // than that marks healthy nodes unreachable between two renewals and
        // evicts their pods.
        let renew = node_agent::node::LEASE_RENEW.as_secs();
        if self.node_grace_seconds <= renew {
            bail!("--node-grace-seconds must be longer than the agents' lease renewal interval ({renew} s), got {}", self.node_grace_seconds);
        }
        let identity = self.identity.clone().unwrap_or_else(default_identity);
        let mut settings = controller::manager::Settings::default();
        settings.node_lifecycle.grace_period = Duration::from_secs(self.node_grace_seconds);
        settings.node_lifecycle.default_toleration_seconds = self.default_toleration_seconds;
        if self.allocate_node_cidrs {
            let cluster_cidr = self.cluster_cidr.parse().with_context(|| format!("--cluster-cidr {:?}", self.cluster_cidr))?;
            settings.node_ipam = Some(controller::nodeipam::Settings::new(cluster_cidr, self.node_cidr_mask_size)?);
        }
        run_control_plane(client, identity, settings).await
    }
}

pub fn run(args: ControlArgs) -> anyhow::Result<()> {
    crate::init_logging();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let client = client::connect::from_url(&args.server)?;
        tokio::select! {
            result = args.settings.run(client) => result,
            _ = terminate.recv() => Ok(()),
            _ = interrupt.recv() => Ok(()),
        }
    })
}

/// Runs the scheduler and the controller manager, each while it holds its Lease
/// in kube-system; a lost Lease makes that part campaign again.
async fn run_control_plane(client: Client, identity: String, settings: controller::manager::Settings) -> anyhow::Result<()> {
    let scheduler = async {
        loop {
            let election = LeaderElection::new("kube-scheduler", identity.clone());
            let scheduler_settings = scheduler::Settings::default();
            if let Err(error) = election.run(client.clone(), scheduler::run(client.clone(), scheduler_settings)).await {
                tracing::warn!(%error, "scheduler stopped; campaigning again");
            }
        }
    };
    let controllers = async {
        loop {
            let election = LeaderElection::new("kube-controller-manager", identity.clone());
            if let Err(error) = election.run(client.clone(), controller::manager::run(client.clone(), settings.clone())).await {
                tracing::warn!(%error, "controllers stopped; campaigning again");
            }
        }
    };
    tokio::join!(scheduler, controllers);
    Ok(())
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}_{}", host.trim(), std::process::id())
}
