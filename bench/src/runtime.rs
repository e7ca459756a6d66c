//! (Filled in by its own work.)

#[derive(clap::Args)]
pub struct RuntimeBenchArgs {}

pub fn run(_args: RuntimeBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
