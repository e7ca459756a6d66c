//! (Filled in by its own work.)

#[derive(clap::Args)]
pub struct RuntimeArgs {}

pub fn run(_args: RuntimeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
