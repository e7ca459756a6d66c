//! `r8s down [NAME]`: removes a cluster of `r8s up` and everything it made
//! (processes, containers, mounts, cgroups, network namespaces with their
//! devices and nftables rules, a one-node cluster's bridge and table, files
//! and data). A running `r8s up` is asked to stop first; after a crash the
//! leftovers are found on disk. Running it again, or for a cluster that is
//! not there, does nothing.

use crate::cluster::{teardown, Layout, Roots};

#[derive(clap::Args)]
pub struct DownArgs {
    /// The cluster (`r8s up --name NAME`).
    #[arg(default_value = "local")]
    name: String,
    #[command(flatten)]
    roots: Roots,
}

pub fn run(args: DownArgs) -> anyhow::Result<()> {
    crate::init_logging();
    let layout = Layout::new(&args.name, &args.roots)?;
    let existed = layout.data_dir.exists() || layout.run_dir.exists();
    let report = teardown::remove(&layout, true);
    if let Some(pid) = report.stopped_up {
        println!("cluster {}: stopped its r8s up (pid {pid})", layout.name);
    }
    match report.summary() {
        Some(summary) => println!("cluster {} removed: {summary}", layout.name),
        None if existed => println!("cluster {} removed", layout.name),
        None => println!("cluster {} is not there; nothing to remove", layout.name),
    }
    for problem in &report.problems {
        eprintln!("r8s down {}: {problem}", layout.name);
    }
    if !report.problems.is_empty() {
        anyhow::bail!("cluster {} was not removed completely", layout.name);
    }
    Ok(())
}
