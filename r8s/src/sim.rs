//! `r8s sim`: hollow nodes (like Kubernetes' kubemark) against an API server, for
//! testing and measuring scheduling and control at scale. Each registers a Node,
//! renews its Lease and acts out the lives of the pods bound to it, without
//! containers, through the API only.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use node_agent::hollow::{HollowNodes, HollowSettings};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Args)]
pub struct SimArgs {
    /// The API server.
    #[arg(long, env = "R8S_SERVER", default_value = "http://127.0.0.1:6443")]
    server: String,
    /// How many hollow nodes to run.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Nodes are named `<prefix>-<i>`.
    #[arg(long, default_value = "hollow")]
    prefix: String,
    /// Milliseconds from binding to Running and Ready.
    #[arg(long, default_value_t = 100)]
    ready_delay_ms: u64,
    /// Allocatable CPU of each node.
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Allocatable memory of each node.
    #[arg(long, default_value = "16Gi")]
    memory: String,
    /// Pods each node takes.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let names = (0..args.nodes).map(|i| format!("{}-{i}", args.prefix)).collect();
    let settings = HollowSettings {
        cpu: args.cpu,
        memory: args.memory,
        max_pods: args.max_pods,
        ready_delay: Duration::from_millis(args.ready_delay_ms),
        ..Default::default()
    };
    serve(&args.server, names, settings)
}

/// Runs the hollow nodes `names` against `server` until SIGTERM or SIGINT
/// (`r8s sim`, and `r8s agent --simulate` for one node).
pub fn serve(server: &str, names: Vec<String>, settings: HollowSettings) -> anyhow::Result<()> {
    crate::init_logging();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let client = client::connect::from_url(server)?;
        let nodes = HollowNodes::start_named(client, names, settings)
            .await
            .with_context(|| format!("cannot register hollow nodes with {server}"))?;
        println!("ready {} hollow node(s)", nodes.names().len());
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        Ok(())
    })
}
