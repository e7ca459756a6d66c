//! (Filled in by its own work.)

#[derive(clap::Args)]
pub struct ImageArgs {}

pub fn run(_args: ImageArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
