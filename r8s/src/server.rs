//! `r8s server`: one control-plane server. For now it runs the replicated store
//! (the embedded raft backend) until SIGTERM or SIGINT, then shuts it down
//! cleanly; the API server will run in the same process.
//!
//! Forming a cluster: start the first server alone, then start the others with
//! `--join` pointing at any member; each is added as a learner, and made a voter
//! once it has caught up.
//!
//! ```text
//! r8s server --node-id 1 --data-dir /var/lib/r8s/s1 --raft-addr 10.0.0.1:7380
//! r8s server --node-id 2 --data-dir /var/lib/r8s/s2 --raft-addr 10.0.0.2:7380 --join 10.0.0.1:7380
//! r8s server --node-id 3 --data-dir /var/lib/r8s/s3 --raft-addr 10.0.0.3:7380 --join 10.0.0.1:7380
//! ```
//!
//! A restarted server finds its log in `--data-dir` and rejoins by itself;
//! `--join` only matters on the first start. Once the store is up the server
//! prints `ready <raft-addr>` on stdout (tests wait for that line).

use std::path::PathBuf;

use anyhow::Context;
use store::raft::{RaftConfig, RaftStore};
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args)]
pub struct ServerArgs {
    /// This server's id in the cluster: unique, and never reused for another server.
    #[arg(long)]
    node_id: u64,
    /// Where the raft log and snapshots live.
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
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    crate::init_logging();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut config = RaftConfig::new(args.node_id, &args.data_dir, &args.raft_addr);
    config.join = args.join;
    config.snapshot_every = args.snapshot_every;
    config.logs_to_keep = args.logs_to_keep;
    let store = RaftStore::open(config)
        .await
        .with_context(|| format!("cannot start the store in {}", args.data_dir.display()))?;
    println!("ready {}", store.addr());
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
    }
    store
        .shutdown()
        .await
        .context("the store did not shut down cleanly")?;
    tracing::info!("stopped");
    Ok(())
}
