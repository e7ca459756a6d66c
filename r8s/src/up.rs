//! `r8s up`: a whole cluster on this machine, in the foreground: one node on
//! the machine's own network by default, or `--nodes N` (and `--servers S`)
//! in network namespaces. The first `r8s up` of a name makes the cluster;
//! Ctrl-C stops it and keeps its state; the next `r8s up` of the name
//! resumes it. See [`crate::cluster`].

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::state::Request;

#[derive(clap::Args)]
pub struct UpArgs {
    /// The cluster's name: its files are `<clusters-dir>/NAME`, its network
    /// namespaces `r8s-NAME` and `r8s-NAME-n<i>`, its Nodes `NAME-n<i>`.
    #[arg(long, default_value = "local")]
    name: String,
    /// host:port of the Kubernetes API on this machine (default 127.0.0.1:6443
    /// for a new cluster; a resumed one keeps its own).
    #[arg(long)]
    listen: Option<String>,
    /// Run a cluster of this many nodes, each in a network namespace of its own.
    #[arg(long)]
    nodes: Option<usize>,
    /// With --nodes: this many API servers (raft members) in the hub namespace;
    /// 3 tolerate losing one.
    #[arg(long, requires = "nodes")]
    servers: Option<usize>,
    /// With --nodes: the range of the nodes' pod CIDRs (a /24 per node; default 10.244.0.0/16).
    #[arg(long, requires = "nodes")]
    cluster_cidr: Option<String>,
    /// A one-node cluster's pod CIDR (default 10.88.0.0/16).
    #[arg(long, conflicts_with = "nodes")]
    pod_cidr: Option<String>,
    /// A one-node cluster's Node name (default: the host name).
    #[arg(long, conflicts_with = "nodes")]
    node_name: Option<String>,
    /// A one-node cluster's raft port.
    #[arg(long, default_value = "127.0.0.1:7380", conflicts_with = "nodes")]
    raft_addr: String,
    /// How long to wait for the servers and nodes to be ready.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
    /// The image store the nodes' runtimes share.
    #[arg(long, env = "R8S_IMAGE_ROOT", default_value = crate::image_cmd::DEFAULT_IMAGE_ROOT)]
    image_root: PathBuf,
    /// More arguments for `r8s server` (repeat the flag), e.g. `--server-arg=--node-grace-seconds=15`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    #[command(flatten)]
    roots: crate::cluster::Roots,
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    crate::cluster::up::run(crate::cluster::up::Options {
        layout: crate::cluster::Layout::new(&args.name, &args.roots)?,
        request: Request {
            nodes: args.nodes,
            servers: args.servers,
            cluster_cidr: args.cluster_cidr,
            pod_cidr: args.pod_cidr,
            node_name: args.node_name,
            listen: args.listen,
        },
        image_root: args.image_root,
        server_args: args.server_args,
        timeout: Duration::from_secs(args.timeout_seconds),
        raft_addr: args.raft_addr,
    })
}
