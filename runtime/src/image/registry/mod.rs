//! Pulling images from OCI distribution registries (Docker Hub, quay.io, a
//! `docker-registry` on loopback) into the image store: resolve the
//! reference to a manifest (this machine's entry of an index), download the
//! config and layers that are not stored yet (several at once), each
//! verified against its digest, then unpack and name the image as an import
//! does. Two pulls of one image at once are safe: every blob and layer
//! lands by atomic rename, and identical content wins either way.

mod auth;
mod client;
mod reference;

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::import::{check_layer_media_type, parse, Descriptor, Index, Manifest};
use super::import::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use super::{Digest, Image, ImageError, ImageStore};
pub use auth::{BadAuth, Credentials};
pub use reference::{BadReference, Reference};

/// Manifests are small; a registry that sends more is not sending one (containerd's limit).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_MEDIA_TYPES: [&str; 2] = ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    BadReference(#[from] BadReference),
    #[error("registry {registry}: {reason}")]
    Unauthenticated { registry: String, reason: String },
    #[error("registry {registry}: {reason}")]
    Denied { registry: String, reason: String },
    #[error("{what}: not found")]
    NotFound { what: String },
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("a pull task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How far a pull got.
#[derive(Debug, Clone, Copy)]
pub enum PullEvent<'a> {
    /// The manifest is read: the image has this many blobs (config and
    /// layers) of this many bytes in all.
    Manifest { blobs: usize, bytes: u64 },
    /// Bytes of a blob arrived: `received` of its `size` so far.
    Receiving { digest: &'a Digest, received: u64, size: u64 },
    /// A blob is stored, or was there already.
    Stored { digest: &'a Digest, size: u64, present: bool },
    /// Every blob is there; the layers are being unpacked.
    Unpacking,
}

/// Told how far a pull got, as it goes.
pub type Progress = Arc<dyn Fn(PullEvent<'_>) + Send + Sync>;

#[derive(Clone)]
pub struct PullOptions {
    pub credentials: Credentials,
    /// Registries (`host` or `host:port`) spoken to over plain HTTP; loopback
    /// ones (`localhost`, `127.0.0.1`, `[::1]`) always are, as Docker does.
    pub insecure_registries: Vec<String>,
    /// How many blobs download at once.
    pub parallel_downloads: usize,
    pub progress: Option<Progress>,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self { credentials: Credentials::default(), insecure_registries: Vec::new(), parallel_downloads: 3, progress: None }
    }
}

impl PullOptions {
    fn tell(&self, event: PullEvent<'_>) {
        if let Some(progress) = &self.progress {
            progress(event);
        }
    }

    fn plain_http(&self, registry: &str) -> bool {
        let host = registry.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(registry, |(h, _)| h);
        let loopback = host == "localhost" || host == "[::1]" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
        loopback || self.insecure_registries.iter().any(|r| r == registry || r == host)
    }
}

impl ImageStore {
    /// Pulls `reference` (`busybox`, `host:port/repo:tag`, `repo@sha256:...`)
    /// and names it by its full reference (`docker.io/library/busybox:latest`).
    pub async fn pull(&self, reference: &str, options: &PullOptions) -> Result<Image, PullError> {
        let reference = Reference::parse(reference)?;
        let session = client::Session::new(&reference, options.credentials.clone(), options.plain_http(&reference.registry));
        // Shared with imports, exclusive for prune: nothing pulled is pruned mid-way.
        let store = self.clone();
        let _lock = tokio::task::spawn_blocking(move || store.lock(false)).await??;

        let (mut digest, mut media_type, mut bytes) = self.fetch_manifest(&session, &reference, &reference.manifest_reference()).await?;
        if let Some(pinned) = &reference.digest {
            if &digest != pinned {
                return Err(ImageError::DigestMismatch { expected: pinned.clone(), actual: digest }.into());
            }
        }
        if matches!(media_type.as_str(), OCI_INDEX | DOCKER_MANIFEST_LIST) {
            let index: Index = parse(&format!("index {digest}"), &bytes)?;
            let chosen = index.for_this_platform(&format!("{reference} (index {digest})"))?;
            (digest, media_type, bytes) = self.fetch_manifest(&session, &reference, &chosen.digest.to_string()).await?;
            if digest != chosen.digest {
                return Err(ImageError::DigestMismatch { expected: chosen.digest, actual: digest }.into());
            }
        }
        if !matches!(media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST) {
            return Err(ImageError::UnknownMediaType { digest, media_type }.into());
        }
        let manifest: Manifest = parse(&format!("manifest {digest}"), &bytes)?;
        if !CONFIG_MEDIA_TYPES.contains(&manifest.config.media_type.as_str()) {
            let config = manifest.config;
            return Err(ImageError::UnknownMediaType { digest: config.digest, media_type: config.media_type }.into());
        }
        manifest.layers.iter().try_for_each(check_layer_media_type)?;
        let blobs = std::iter::once(&manifest.config).chain(&manifest.layers);
        options.tell(PullEvent::Manifest { blobs: manifest.layers.len() + 1, bytes: blobs.map(|b| b.size).sum() });

        // Collected first: a stream that maps with a closure is not Send here.
        let downloads: Vec<_> =
            std::iter::once(&manifest.config).chain(&manifest.layers).map(|blob| self.download(&session, blob, options)).collect();
        futures::stream::iter(downloads)
            .buffer_unordered(options.parallel_downloads.max(1))
            .try_collect::<()>()
            .await?;
        // The manifest last: a stored manifest means a complete image.
        self.blobs.put_verified(&digest, None, &bytes[..])?;
        options.tell(PullEvent::Unpacking);
        let (store, name) = (self.clone(), reference.to_string());
        Ok(tokio::task::spawn_blocking(move || store.finish_import(name, digest)).await??)
    }

    /// A manifest or index by tag or digest: (its digest, media type, content).
    async fn fetch_manifest(&self, session: &client::Session, reference: &Reference, by: &str) -> Result<(Digest, String, Vec<u8>), PullError> {
        let what = if by.starts_with("sha256:") { format!("{}@{by}", reference.repository_name()) } else { reference.to_string() };
        let mut response = session.get(&format!("manifests/{by}"), ACCEPT_MANIFESTS, &what).await?;
        let mut media_type = client::content_type(&response);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| registry_error(reference, format!("reading manifest {what}: {e}")))? {
            if bytes.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(registry_error(reference, format!("manifest {what} is over {MAX_MANIFEST_BYTES} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        // Registries that answer application/json: the manifest names its own
        // type, or (OCI's mediaType being optional) its shape tells.
        if !media_type.starts_with("application/vnd.") {
            #[derive(serde::Deserialize)]
            struct Shape {
                #[serde(default, rename = "mediaType")]
                media_type: String,
                manifests: Option<serde_json::Value>,
                config: Option<serde_json::Value>,
            }
            let shape: Shape = parse(&format!("manifest {what}"), &bytes)?;
            media_type = match (shape.media_type.is_empty(), shape.manifests, shape.config) {
                (false, _, _) => shape.media_type,
                (true, Some(_), _) => OCI_INDEX.to_string(),
                (true, None, Some(_)) => OCI_MANIFEST.to_string(),
                (true, None, None) => shape.media_type,
            };
        }
        Ok((Digest::of(&bytes), media_type, bytes))
    }

    /// Stores blob `blob` unless it is there already, streamed to disk and
    /// refused unless its size and digest match.
    async fn download(&self, session: &client::Session, blob: &Descriptor, options: &PullOptions) -> Result<(), PullError> {
        let present = self.blobs.contains(&blob.digest);
        if !present {
            let mut response = session.get(&format!("blobs/{}", blob.digest), "*/*", &format!("blob {}", blob.digest)).await?;
            let mut writer = self.blobs.writer()?;
            while let Some(chunk) = response.chunk().await.map_err(|e| PullError::Registry {
                registry: session.registry().to_string(),
                reason: format!("downloading blob {}: {e}", blob.digest),
            })? {
                let actual = writer.written() + chunk.len() as u64;
                if actual > blob.size {
                    return Err(ImageError::BlobSize { digest: blob.digest.clone(), expected: blob.size, actual }.into());
                }
                std::io::Write::write_all(&mut writer, &chunk).map_err(ImageError::io(format!("writing blob {}", blob.digest)))?;
                options.tell(PullEvent::Receiving { digest: &blob.digest, received: actual, size: blob.size });
            }
            let (expected, size) = (blob.digest.clone(), blob.size);
            tokio::task::spawn_blocking(move || writer.commit_verified(&expected, Some(size))).await??;
        }
        tracing::debug!(digest = %blob.digest, size = blob.size, present, "blob stored");
        options.tell(PullEvent::Stored { digest: &blob.digest, size: blob.size, present });
        Ok(())
    }
}

fn registry_error(reference: &Reference, reason: String) -> PullError {
    PullError::Registry { registry: reference.registry.clone(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_use_plain_http() {
        let options = PullOptions { insecure_registries: vec!["registry.lan:5000".into(), "other.lan".into()], ..Default::default() };
        for plain in ["localhost", "localhost:5000", "127.0.0.1:41234", "[::1]:5000", "registry.lan:5000", "other.lan:443"] {
            assert!(options.plain_http(plain), "{plain}");
        }
        for tls in ["docker.io", "quay.io", "registry.lan", "10.0.0.1:5000"] {
            assert!(!options.plain_http(tls), "{tls}");
        }
    }
}
