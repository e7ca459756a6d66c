//! `r8s-bench`: each subcommand measures one part of r8s beside its peers, in the
//! same run, and prints one table (Markdown, ready for BENCHMARKS.md).

mod agent;
mod api;
mod cluster;
mod cri;
mod dns;
mod lifecycle;
mod proxy;
mod pull;
mod runtime;
mod scheduler;
mod stats;
mod store;

use clap::{Parser, Subcommand};

/// The same allocator as the `r8s` binary, so that what runs in process here
/// (API server, store, scheduler, controllers) runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "r8s-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store write throughput and latency: embedded raft (1 and 3 servers) vs etcd.
    Store(store::StoreBenchArgs),
    /// The API server over raft and etcd: creates, a 10,000-pod list, 1,000 watchers, memory.
    Api(api::ApiBenchArgs),
    /// Container create/start/wait/delete: r8s vs runc vs crun.
    Runtime(runtime::RuntimeBenchArgs),
    /// CRI: RunPodSandbox to a started container, 1 and 50 pods, with and without networking.
    Cri(cri::CriBenchArgs),
    /// Pod create to Running on a one-node cluster, 1 pod and a burst of 100, idle CPU and memory: r8s vs podman.
    Agent(agent::AgentBenchArgs),
    /// Service requests through the node proxy vs straight to pod IPs, and Endpoints change to rules programmed.
    Proxy(proxy::ProxyBenchArgs),
    /// Image pull from a loopback registry into an empty store: r8s vs skopeo and podman.
    Pull(pull::PullBenchArgs),
    /// Cluster DNS: A lookups per second and latency, r8s vs dnsmasq.
    Dns(dns::DnsBenchArgs),
    /// r8s up --nodes 3 to Ready and a 30-replica Deployment available (vs podman), and a deleted pod out of a Service's rotation.
    Cluster(cluster::ClusterBenchArgs),
    /// Pods scheduled and bound per second, and a big Deployment's rollout, on hollow nodes.
    Scheduler(scheduler::SchedulerBenchArgs),
    /// r8s up --nodes 3 to an app answering by DNS name (time-to-k8s), resuming a stopped cluster, idle footprint.
    Lifecycle(lifecycle::LifecycleBenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Store(args) => store::run(args),
        Command::Api(args) => api::run(args),
        Command::Runtime(args) => runtime::run(args),
        Command::Cri(args) => cri::run(args),
        Command::Scheduler(args) => scheduler::run(args),
        Command::Dns(args) => dns::run(args),
        Command::Proxy(args) => proxy::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Pull(args) => pull::run(args),
        Command::Lifecycle(args) => lifecycle::run(args),
    }
}
