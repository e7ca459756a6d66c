//! (Filled in by its own work.)

#[derive(clap::Args)]
pub struct StoreBenchArgs {}

pub fn run(_args: StoreBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
