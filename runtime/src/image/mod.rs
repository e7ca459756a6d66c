//! The image store: content-addressed blobs, layers unpacked once each for
//! overlayfs, and named images. Safe to use from several processes at once
//! (everything lands by atomic rename; removal takes an exclusive lock).
//!
//! ```text
//! <root>/blobs/sha256/<hex>     manifests, configs, layer tars as imported
//! <root>/layers/<hex>/          a layer blob unpacked
//! <root>/images/<hex of name>.json   name → manifest, config, layers, defaults
//! <root>/tmp/                   temporary files and directories
//! <root>/lock                   shared for imports, exclusive for removal
//! ```

mod blobs;
pub mod defaults;
pub mod digest;
mod import;
mod layer;
pub mod registry;

use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use blobs::{BlobStore, BlobWriter};
pub use digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("blob {expected}: content has digest {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual} (truncated?)")]
    BlobSize { digest: Digest, expected: u64, actual: u64 },
    #[error("layer {digest}: {reason}")]
    BadLayer { digest: Digest, reason: String },
    #[error("blob {digest}: unsupported media type {media_type:?}")]
    UnknownMediaType { digest: Digest, media_type: String },
    #[error("{what}: {reason}")]
    BadArchive { what: String, reason: String },
    #[error("invalid image name {0:?}")]
    BadName(String),
    #[error("no image {0}")]
    NotFound(String),
    #[error(transparent)]
    BadDigest(#[from] digest::BadDigest),
}

impl ImageError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
        let what = what.into();
        move |source| ImageError::Io { what, source }
    }
}

/// What an image's config says a container runs by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// A named image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `name:tag`.
    pub name: String,
    /// The digest of the image's config (as Docker's image id).
    pub id: Digest,
    pub manifest: Digest,
    /// Layer blobs, bottom first.
    pub layers: Vec<Digest>,
    pub defaults: ImageDefaults,
    /// Total size of the layer blobs.
    pub size: u64,
}

/// What `prune` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub blobs: usize,
    pub layers: usize,
}

#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    blobs: BlobStore,
}

/// `name` with `:latest` added when it has no tag; refuses names that are
/// not image references.
pub fn normalize_name(name: &str) -> Result<String, ImageError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !valid {
        return Err(ImageError::BadName(name.to_string()));
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    Ok(if last.contains(':') || last.contains('@') { name.to_string() } else { format!("{name}:latest") })
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let blobs = BlobStore::open(root)?;
        for dir in ["layers", "images"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(ImageError::io(format!("creating {}", path.display())))?;
        }
        Ok(Self { root: root.to_path_buf(), blobs })
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    fn lock(&self, exclusive: bool) -> Result<Flock<std::fs::File>, ImageError> {
        let path = self.root.join("lock");
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageError::io("opening the store lock"))?;
        let arg = if exclusive { FlockArg::LockExclusive } else { FlockArg::LockShared };
        Flock::lock(file, arg).map_err(|(_, errno)| ImageError::io("locking the store")(errno.into()))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.root.join("images").join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    /// The image named `name` (`:latest` when untagged).
    pub fn get(&self, name: &str) -> Result<Image, ImageError> {
        let name = normalize_name(name)?;
        crate::state::read_json(&self.record_path(&name))
            .map_err(ImageError::io(format!("reading image {name}")))?
            .ok_or(ImageError::NotFound(name))
    }

    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let entries = std::fs::read_dir(self.root.join("images")).map_err(ImageError::io("listing images"))?;
        let mut images: Vec<Image> = Vec::new();
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "json") {
                if let Some(image) = crate::state::read_json(&entry.path()).map_err(ImageError::io("reading an image"))? {
                    images.push(image);
                }
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// Removes the name `name`; its blobs and layers stay until `prune`.
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        let image = self.get(name)?;
        let _lock = self.lock(true)?;
        std::fs::remove_file(self.record_path(&image.name)).map_err(ImageError::io(format!("removing image {}", image.name)))
    }

    /// Removes blobs and unpacked layers no image refers to.
    pub fn prune(&self) -> Result<Pruned, ImageError> {
        let _lock = self.lock(true)?;
        let images = self.list()?;
        let mut used = std::collections::HashSet::new();
        for image in &images {
            used.insert(image.manifest.clone());
            used.insert(image.id.clone());
            used.extend(image.layers.iter().cloned());
        }
        let mut pruned = Pruned::default();
        for digest in self.blobs.list()? {
            if !used.contains(&digest) {
                self.blobs.remove(&digest)?;
                pruned.blobs += 1;
            }
        }
        let layers = std::fs::read_dir(self.root.join("layers")).map_err(ImageError::io("listing layers"))?;
        for entry in layers.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let in_use = format!("sha256:{name}").parse::<Digest>().is_ok_and(|d| used.contains(&d));
            if !in_use {
                std::fs::remove_dir_all(entry.path()).map_err(ImageError::io(format!("removing layer {name}")))?;
                pruned.layers += 1;
            }
        }
        Ok(pruned)
    }

    /// The unpacked directories of `image`'s layers, bottom first (unpacking
    /// any that are missing): the lower directories of a container's overlay.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        image.layers.iter().map(|digest| self.unpacked(digest)).collect()
    }

    /// The directory of the unpacked layer blob `digest`, unpacked on first use
    /// into a temporary directory that is renamed into place when complete.
    fn unpacked(&self, digest: &Digest) -> Result<PathBuf, ImageError> {
        let dir = self.root.join("layers").join(digest.hex());
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(ImageError::io("creating a temporary layer directory"))?;
        layer::unpack(self.blobs.open_blob(digest)?, digest, tmp.path())?;
        // The root of a layer is the container's /: world-readable.
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(ImageError::io("setting layer permissions"))?;
        match std::fs::rename(tmp.path(), &dir) {
            Ok(()) => {
                let _ = tmp.keep();
                Ok(dir)
            }
            // Another process unpacked it meanwhile; ours is dropped.
            Err(_) if dir.is_dir() => Ok(dir),
            Err(e) => Err(ImageError::io(format!("storing layer {digest}"))(e)),
        }
    }

    fn save(&self, image: &Image) -> Result<(), ImageError> {
        crate::state::write_json(&self.record_path(&image.name), image)
            .map_err(ImageError::io(format!("saving image {}", image.name)))
    }
}
