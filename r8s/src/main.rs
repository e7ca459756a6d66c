//! `r8s`: the one binary. Each subcommand lives in its own module and only wires
//! a library crate to the command line.

mod agent;
mod balancer;
mod cluster;
mod control;
mod down;
mod image_cmd;
mod kubeconfig;
mod netns;
mod progress;
mod runtime_cmd;
mod runtime_serve;
mod server;
mod sim;
mod up;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the API server, store and scheduler
/// allocate small objects from many threads at once, where glibc's arenas
/// spent a fifth of the scheduler benchmark's time and contended on locks.
/// Built without transparent huge pages (`no_thp`): zeroing a 2 MiB page at
/// the first allocation cost every short-lived process (shim, stage, init)
/// about half a millisecond.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "r8s", version, about = "A small, real Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane server: the replicated store, the API server, the scheduler and controllers.
    Server(server::ServerArgs),
    /// Run and inspect containers with r8s's own runtime.
    Runtime(runtime_cmd::RuntimeArgs),
    /// Manage the runtime's image store.
    Image(image_cmd::ImageArgs),
    /// Run the scheduler and the controllers against an API server.
    Control(control::ControlArgs),
    /// Run hollow (simulated) nodes against an API server.
    Sim(sim::SimArgs),
    /// Run the node agent: join the cluster and run this node's pods.
    Agent(agent::AgentArgs),
    /// Run a whole cluster on this machine: one node on its network, or with
    /// --nodes N, N nodes in network namespaces of their own; resume it later.
    Up(up::UpArgs),
    /// Remove a cluster of `r8s up` and all it made, its data too, also after a crash.
    Down(down::DownArgs),
}

/// `r8s runtime ...` parsed alone. The runtime executes this binary for every
/// container's shim, every pod's pause process and every exec, and building
/// the whole command line first (every subcommand's flags) would cost each of
/// them about 0.3 ms on the way to a running container.
#[derive(Parser)]
#[command(name = "r8s runtime", version, about = "Run and inspect containers with r8s's own runtime.")]
struct RuntimeCli {
    #[command(flatten)]
    args: runtime_cmd::RuntimeArgs,
}

fn main() -> anyhow::Result<()> {
    if std::env::args_os().nth(1).is_some_and(|first| first == "runtime") {
        let args = std::iter::once("r8s runtime".into()).chain(std::env::args_os().skip(2));
        return runtime_cmd::run(RuntimeCli::parse_from(args).args);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::run(args),
        Command::Runtime(args) => runtime_cmd::run(args),
        Command::Image(args) => image_cmd::run(args),
        Command::Control(args) => control::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Up(args) => up::run(args),
        Command::Down(args) => down::run(args),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); colours only on a
/// terminal (`r8s up --nodes` sends each process's log to a file).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
