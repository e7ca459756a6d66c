//! `r8s image ...`: the runtime's image store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use runtime::image::registry::{Credentials, PullEvent, PullOptions};
use runtime::image::{defaults, Digest, ImageStore};

use crate::progress::{self, Progress, Step};

pub const DEFAULT_IMAGE_ROOT: &str = "/var/lib/r8s/images";

#[derive(clap::Args)]
pub struct ImageArgs {
    /// The image store.
    #[arg(long, env = "R8S_IMAGE_ROOT", default_value = DEFAULT_IMAGE_ROOT, global = true)]
    image_root: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(clap::Subcommand)]
enum ImageCommand {
    /// Make a one-layer image from a directory (as `docker import`).
    ImportRootfs { dir: PathBuf, name: String },
    /// Import an OCI image layout or a `docker save` archive (directory or tar).
    Import {
        path: PathBuf,
        /// Name for the image (required when the archive names none).
        name: Option<String>,
    },
    /// Pull an image from its registry (`busybox`, `host:port/repo:tag`, `repo@sha256:...`).
    Pull {
        reference: String,
        #[arg(long, env = "R8S_REGISTRY_USERNAME")]
        username: Option<String>,
        /// The password (or a token) for `--username`.
        #[arg(long, env = "R8S_REGISTRY_PASSWORD", requires = "username", hide_env_values = true)]
        password: Option<String>,
        /// A registry (`host` or `host:port`) spoken to over plain HTTP; repeatable.
        /// Loopback registries always are.
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
    },
    /// List images.
    Ls,
    /// Remove an image's name.
    Rm { name: String },
    /// Remove blobs and layers no image uses.
    Prune,
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let store = ImageStore::open(&args.image_root)?;
    match args.command {
        ImageCommand::ImportRootfs { dir, name } => {
            let image = store.import_rootfs(&dir, &name)?;
            println!("{} {}", image.name, image.id);
        }
        ImageCommand::Import { path, name } => {
            for image in store.import_archive(&path, name.as_deref())? {
                println!("{} {}", image.name, image.id);
            }
        }
        ImageCommand::Pull { reference, username, password, insecure_registries } => {
            let credentials = username.map(|u| Credentials::basic(u, password.unwrap_or_default())).unwrap_or_default();
            let shown = Arc::new(Mutex::new(PullShown::new(Progress::stdout().step(format!("pulling {reference}")))));
            let progress = {
                let shown = shown.clone();
                Arc::new(move |event: PullEvent<'_>| shown.lock().unwrap_or_else(|p| p.into_inner()).update(event))
            };
            let options = PullOptions { credentials, insecure_registries, progress: Some(progress), ..Default::default() };
            let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
            let image = tokio.block_on(store.pull(&reference, &options)).with_context(|| format!("failed to pull image {reference:?}"))?;
            if let Ok(shown) = Arc::try_unwrap(shown) {
                shown.into_inner().unwrap_or_else(|p| p.into_inner()).finish();
            }
            println!("{} {}", image.name, image.id);
        }
        ImageCommand::Ls => {
            println!("{:<40} {:<20} {:>12}", "NAME", "ID", "SIZE");
            for image in store.list()? {
                println!("{:<40} {:<20} {:>12}", image.name, &image.id.hex()[..12], image.size);
            }
        }
        ImageCommand::Rm { name } => store.remove(&name)?,
        ImageCommand::Prune => {
            let pruned = store.prune()?;
            println!("removed {} blobs and {} layers", pruned.blobs, pruned.layers);
        }
    }
    Ok(())
}

/// The root filesystem and spec of a container of `image` running `command`
/// (the image's entrypoint and cmd when empty).
pub fn container_from_image(
    root: &Path,
    image: &str,
    command: &[String],
) -> anyhow::Result<(runtime::Rootfs, runtime::config::Spec)> {
    let store = ImageStore::open(root)?;
    let image = store.get(image)?;
    let layers = store.layer_dirs(&image).context("unpacking the image's layers")?;
    let mut spec = runtime::default_spec(Vec::new());
    defaults::apply_image(&mut spec, &image, &layers, command, &[])?;
    Ok((defaults::rootfs(layers), spec))
}

/// A pull's progress on a terminal: bytes received of the image's total and
/// the rate, redrawn at most ten times a second, then the unpacking.
struct PullShown {
    step: Step,
    total: u64,
    blobs: usize,
    stored: usize,
    received: HashMap<Digest, u64>,
    started: Instant,
    drawn: Instant,
    downloaded: u64,
}

impl PullShown {
    fn new(step: Step) -> Self {
        let now = Instant::now();
        Self { step, total: 0, blobs: 0, stored: 0, received: HashMap::new(), started: now, drawn: now, downloaded: 0 }
    }

    fn update(&mut self, event: PullEvent<'_>) {
        match event {
            PullEvent::Manifest { blobs, bytes } => (self.blobs, self.total) = (blobs, bytes),
            PullEvent::Receiving { digest, received, .. } => {
                self.received.insert(digest.clone(), received);
                if self.drawn.elapsed() < Duration::from_millis(100) {
                    return;
                }
            }
            PullEvent::Stored { digest, size, present } => {
                self.stored += 1;
                if !present {
                    self.downloaded += size;
                }
                self.received.insert(digest.clone(), size);
            }
            PullEvent::Unpacking => {
                self.step.update("unpacking the layers");
                return;
            }
        }
        self.drawn = Instant::now();
        let received: u64 = self.received.values().sum();
        let detail = format!(
            "{} of {}, {}, {}/{} blobs",
            progress::size(received),
            progress::size(self.total),
            progress::rate(received, self.started.elapsed()),
            self.stored,
            self.blobs
        );
        self.step.update(&detail);
    }

    fn finish(self) {
        let took = self.started.elapsed();
        let detail = format!("{} downloaded in {} ({})", progress::size(self.downloaded), progress::seconds(took), progress::rate(self.downloaded, took));
        self.step.done(&detail);
    }
}
