//! `r8s down [NAME]`: removes a multi-node cluster of `r8s up --nodes` and
//! everything it made (processes, containers, mounts, cgroups, network
//! namespaces with their devices and nftables rules, files). A running
//! `r8s up` is asked to stop first; after a crash the leftovers are found on
//! disk. Running it again, or for a cluster that is not there, does nothing.

use crate::cluster::{teardown, up, Layout, Roots};

#[derive(clap::Args)]
pub struct DownArgs {
    /// The cluster (`r8s up --nodes N --name NAME`).
    #[arg(default_value = "local")]
    name: String,
    #[command(flatten)]
    roots: Roots,
}

pub fn run(args: DownArgs) -> anyhow::Result<()> {
    crate::init_logging();
    let layout = Layout::new(&args.name, &args.roots)?;
    let report = teardown::remove(&layout, true);
    if let Some(pid) = report.stopped_up {
        println!("cluster {}: stopped its r8s up (pid {pid}), which removed it", layout.name);
    } else if report.is_empty() && report.problems.is_empty() {
        println!("cluster {} is not there; nothing to remove", layout.name);
    }
    up::report(&layout.name, &report);
    if !report.problems.is_empty() {
        anyhow::bail!("cluster {} was not removed completely", layout.name);
    }
    Ok(())
}
