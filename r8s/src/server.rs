//! (Filled in by its own work.)

#[derive(clap::Args)]
pub struct ServerArgs {}

pub fn run(_args: ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
