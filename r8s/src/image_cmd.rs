//! `r8s image ...`: the runtime's image store.

use std::path::Path;

pub const DEFAULT_IMAGE_ROOT: &str = "/var/lib/r8s/images";

#[derive(clap::Args)]
pub struct ImageArgs {}

pub fn run(_args: ImageArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn container_from_image(
    _root: &Path,
    _image: &str,
    _command: &[String],
) -> anyhow::Result<(runtime::Rootfs, runtime::config::Spec)> {
    anyhow::bail!("not built yet")
}
