//! `r8s control`: the scheduler and the controllers against an API server, each
//! behind its own Lease so that several control planes can run and one acts.
//! [`run_control_plane`] is what a server process runs beside its API server.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use client::leader::LeaderElection;
use kube::Client;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Args)]
pub struct ControlArgs {
    /// The API server.
    #[arg(long, env = "R8S_SERVER", default_value = "http://127.0.0.1:6443")]
    server: String,
    /// Who this control plane is in leader election (default: host name and pid).
    #[arg(long)]
    identity: Option<String>,
    /// Seconds without a Lease renewal before a node is unreachable.
    #[arg(long, default_value_t = 40)]
    node_grace_seconds: u64,
    /// Seconds pods stay on an unreachable node when they set no toleration.
    #[arg(long, default_value_t = 300)]
    default_toleration_seconds: i64,
}

pub fn run(args: ControlArgs) -> anyhow::Result<()> {
    crate::init_logging();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let client = client::connect::from_url(&args.server)?;
        let identity = args.identity.clone().unwrap_or_else(default_identity);
        let mut settings = controller::manager::Settings::default();
        settings.node_lifecycle.grace_period = Duration::from_secs(args.node_grace_seconds);
        settings.node_lifecycle.default_toleration_seconds = args.default_toleration_seconds;
        tokio::select! {
            result = run_control_plane(client, identity, settings) => result,
            _ = terminate.recv() => Ok(()),
            _ = interrupt.recv() => Ok(()),
        }
    })
}

/// Runs the scheduler and the controller manager, each while it holds its Lease
/// in kube-system; a lost Lease makes that part campaign again.
pub async fn run_control_plane(client: Client, identity: String, settings: controller::manager::Settings) -> anyhow::Result<()> {
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
