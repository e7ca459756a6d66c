//! Getting images into the store: a directory as a one-layer image (as
//! `docker import`), an OCI image layout (directory or tar) and a
//! `docker save` tar. Every blob is verified against its digest; a layer
//! that cannot be unpacked fails the import before the name is recorded.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::digest::Digest;
use super::{normalize_name, Image, ImageDefaults, ImageError, ImageStore};

pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(super) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(super) const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Layer media types r8s can unpack (the compression is detected from the content).
const LAYER_MEDIA_TYPES: [&str; 7] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    #[serde(default)]
    pub(super) media_type: String,
    pub(super) digest: Digest,
    pub(super) size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Manifest {
    pub(super) config: Descriptor,
    pub(super) layers: Vec<Descriptor>,
}

impl Index {
    /// The entry for this machine (linux and its architecture; an entry
    /// without a platform fits any), as containerd picks one.
    pub(super) fn for_this_platform(self, what: &str) -> Result<Descriptor, ImageError> {
        let arch = oci_architecture();
        self.manifests
            .into_iter()
            .find(|m| m.platform.as_ref().is_none_or(|p| p.os == "linux" && p.architecture == arch))
            .ok_or_else(|| bad_archive(what, format!("no manifest for linux/{arch}")))
    }
}

/// The part of an image config that r8s uses.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

/// An entry of a `docker save` manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::BadArchive { what: what.to_string(), reason: e.to_string() })
}

fn bad_archive(what: impl Into<String>, reason: impl Into<String>) -> ImageError {
    ImageError::BadArchive { what: what.into(), reason: reason.into() }
}

impl ImageStore {
    /// Makes a one-layer image named `name` from the directory `dir`.
    pub fn import_rootfs(&self, dir: &Path, name: &str) -> Result<Image, ImageError> {
        let name = normalize_name(name)?;
        if !dir.is_dir() {
            return Err(bad_archive(dir.display().to_string(), "not a directory"));
        }
        let _lock = self.lock(false)?;
        let mut tar_file = tempfile::NamedTempFile::new_in(self.root.join("tmp")).map_err(ImageError::io("creating a layer"))?;
        {
            let mut builder = tar::Builder::new(tar_file.as_file_mut());
            builder.follow_symlinks(false);
            archive_dir(&mut builder, dir, Path::new(""), &mut HashMap::new())
                .and_then(|()| builder.finish())
                .map_err(ImageError::io(format!("archiving {}", dir.display())))?;
        }
        let layer = self.blobs.put(File::open(tar_file.path()).map_err(ImageError::io("reading the layer"))?)?;
        let layer_size = tar_file.as_file().metadata().map_err(ImageError::io("reading the layer"))?.len();
        let config = serde_json::json!({
            "architecture": oci_architecture(),
            "os": "linux",
            "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] },
            "rootfs": { "type": "layers", "diff_ids": [layer.to_string()] },
            "history": [{ "created_by": format!("r8s image import-rootfs {}", dir.display()) }],
        });
        let config_bytes = serde_json::to_vec(&config).map_err(|e| ImageError::io("encoding")(std::io::Error::other(e)))?;
        let config_digest = self.blobs.put(&config_bytes[..])?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len() },
            "layers": [{ "mediaType": OCI_LAYER_TAR, "digest": layer.to_string(), "size": layer_size }],
        });
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::io("encoding")(std::io::Error::other(e)))?;
        let manifest_digest = self.blobs.put(&manifest_bytes[..])?;
        self.finish_import(name, manifest_digest)
    }

    /// Imports every image of an OCI image layout or a `docker save` archive,
    /// each a directory or a tar. `name` names the image when the archive
    /// holds exactly one (and is required when it names none).
    pub fn import_archive(&self, path: &Path, name: Option<&str>) -> Result<Vec<Image>, ImageError> {
        let _lock = self.lock(false)?;
        let extracted;
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            extracted = self.extract(path)?;
            extracted.path().to_path_buf()
        };
        let found = if dir.join("index.json").is_file() {
            self.copy_oci_layout(&dir)?
        } else if dir.join("manifest.json").is_file() {
            self.copy_docker_save(&dir)?
        } else {
            return Err(bad_archive(path.display().to_string(), "neither an OCI image layout (index.json) nor a docker save archive (manifest.json)"));
        };
        if found.is_empty() {
            return Err(bad_archive(path.display().to_string(), "holds no image"));
        }
        if name.is_some() && found.len() > 1 {
            return Err(bad_archive(path.display().to_string(), "holds several images: a name cannot be given"));
        }
        found
            .into_iter()
            .map(|(archive_name, manifest)| {
                let name = name
                    .map(str::to_string)
                    .or(archive_name)
                    .ok_or_else(|| bad_archive(path.display().to_string(), "an image has no name: give one"))?;
                self.finish_import(normalize_name(&name)?, manifest)
            })
            .collect()
    }

    fn extract(&self, archive: &Path) -> Result<tempfile::TempDir, ImageError> {
        let tmp = tempfile::Builder::new()
            .prefix("archive-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(ImageError::io("creating a temporary directory"))?;
        let file = File::open(archive).map_err(ImageError::io(format!("opening {}", archive.display())))?;
        let mut reader = BufReader::new(file);
        let gzip = reader.fill_buf().map_err(ImageError::io("reading the archive"))?.starts_with(&[0x1f, 0x8b]);
        let input: Box<dyn Read> = if gzip { Box::new(flate2::read::GzDecoder::new(reader)) } else { Box::new(reader) };
        // tar's unpack refuses entries that would land outside `tmp`.
        tar::Archive::new(input)
            .unpack(tmp.path())
            .map_err(|e| bad_archive(archive.display().to_string(), e.to_string()))?;
        Ok(tmp)
    }

    /// Copies a blob of an OCI layout into the store, verifying it.
    fn copy_layout_blob(&self, layout: &Path, descriptor: &Descriptor) -> Result<(), ImageError> {
        let path = layout.join("blobs/sha256").join(descriptor.digest.hex());
        let file = File::open(&path).map_err(ImageError::io(format!("blob {} missing from the archive", descriptor.digest)))?;
        self.blobs.put_verified(&descriptor.digest, Some(descriptor.size), file)
    }

    /// (name from the annotations, manifest digest) for each image of a layout.
    fn copy_oci_layout(&self, layout: &Path) -> Result<Vec<(Option<String>, Digest)>, ImageError> {
        let index_bytes = std::fs::read(layout.join("index.json")).map_err(ImageError::io("reading index.json"))?;
        let index: Index = parse("index.json", &index_bytes)?;
        let mut found = Vec::new();
        for descriptor in index.manifests {
            let name = descriptor.annotations.get(REF_NAME).cloned();
            let manifest = self.resolve_layout_manifest(layout, descriptor)?;
            // A bare tag ("latest") is not a name.
            found.push((name.filter(|n| n.contains(':') || n.contains('/') || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')), manifest));
        }
        Ok(found)
    }

    /// Follows an index to this machine's manifest and copies the image's blobs.
    fn resolve_layout_manifest(&self, layout: &Path, descriptor: Descriptor) -> Result<Digest, ImageError> {
        match descriptor.media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                self.copy_layout_blob(layout, &descriptor)?;
                let index: Index = parse(&format!("blob {}", descriptor.digest), &self.blobs.read(&descriptor.digest)?)?;
                let chosen = index.for_this_platform(&format!("index {}", descriptor.digest))?;
                self.resolve_layout_manifest(layout, chosen)
            }
            OCI_MANIFEST | DOCKER_MANIFEST | "" => {
                self.copy_layout_blob(layout, &descriptor)?;
                let manifest: Manifest = parse(&format!("manifest {}", descriptor.digest), &self.blobs.read(&descriptor.digest)?)?;
                self.copy_layout_blob(layout, &manifest.config)?;
                for layer in &manifest.layers {
                    check_layer_media_type(layer)?;
                    self.copy_layout_blob(layout, layer)?;
                }
                Ok(descriptor.digest)
            }
            other => Err(ImageError::UnknownMediaType { digest: descriptor.digest, media_type: other.to_string() }),
        }
    }

    /// A `docker save` directory: its configs and layer tars are stored and
    /// an OCI manifest is made for each image.
    fn copy_docker_save(&self, dir: &Path) -> Result<Vec<(Option<String>, Digest)>, ImageError> {
        let bytes = std::fs::read(dir.join("manifest.json")).map_err(ImageError::io("reading manifest.json"))?;
        let entries: Vec<DockerSaveEntry> = parse("manifest.json", &bytes)?;
        let mut found = Vec::new();
        for entry in entries {
            let stored = |relative: &str| -> Result<(Digest, u64), ImageError> {
                let path = inside(dir, relative)?;
                let file = File::open(&path).map_err(ImageError::io(format!("{relative} missing from the archive")))?;
                let size = file.metadata().map_err(ImageError::io(format!("reading {relative}")))?.len();
                // Newer docker names files by digest: check them.
                let digest = match relative.strip_prefix("blobs/sha256/") {
                    Some(hex) => {
                        let expected: Digest = format!("sha256:{hex}").parse()?;
                        self.blobs.put_verified(&expected, Some(size), file)?;
                        expected
                    }
                    None => self.blobs.put(file)?,
                };
                Ok((digest, size))
            };
            let (config, config_size) = stored(&entry.config)?;
            let layers = entry.layers.iter().map(|l| stored(l)).collect::<Result<Vec<_>, _>>()?;
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": { "mediaType": OCI_CONFIG, "digest": config.to_string(), "size": config_size },
                "layers": layers.iter().map(|(d, s)| serde_json::json!({
                    "mediaType": OCI_LAYER_TAR, "digest": d.to_string(), "size": s })).collect::<Vec<_>>(),
            });
            let manifest = self.blobs.put(&serde_json::to_vec(&manifest).unwrap_or_default()[..])?;
            let tags = entry.repo_tags.unwrap_or_default();
            if tags.is_empty() {
                found.push((None, manifest.clone()));
            }
            for tag in tags {
                found.push((Some(tag), manifest.clone()));
            }
        }
        Ok(found)
    }

    /// Unpacks the layers of a stored manifest and records the name.
    pub(super) fn finish_import(&self, name: String, manifest_digest: Digest) -> Result<Image, ImageError> {
        let manifest: Manifest = parse(&format!("manifest {manifest_digest}"), &self.blobs.read(&manifest_digest)?)?;
        let config: ConfigFile = parse(&format!("config {}", manifest.config.digest), &self.blobs.read(&manifest.config.digest)?)?;
        let run = config.config.unwrap_or_default();
        let image = Image {
            name,
            id: manifest.config.digest.clone(),
            manifest: manifest_digest,
            layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
            defaults: ImageDefaults {
                entrypoint: run.entrypoint.unwrap_or_default(),
                cmd: run.cmd.unwrap_or_default(),
                env: run.env.unwrap_or_default(),
                working_dir: run.working_dir.filter(|w| !w.is_empty()),
                user: run.user.filter(|u| !u.is_empty()),
            },
            size: manifest.layers.iter().map(|l| l.size).sum(),
        };
        self.layer_dirs(&image)?;
        self.save(&image)?;
        Ok(image)
    }
}

/// Appends the tree below `root/relative` to `builder`, sorted, with hard
/// links as links to the first path of each inode (`tar`'s own
/// `append_dir_all` would store each as a separate copy).
fn archive_dir<W: std::io::Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    relative: &Path,
    seen: &mut HashMap<(u64, u64), PathBuf>,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut entries: Vec<_> = std::fs::read_dir(root.join(relative))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = relative.join(entry.file_name());
        let meta = entry.path().symlink_metadata()?;
        if meta.is_file() && meta.nlink() > 1 {
            if let Some(first) = seen.get(&(meta.dev(), meta.ino())) {
                let mut header = tar::Header::new_gnu();
                header.set_metadata(&meta);
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder.append_link(&mut header, &path, first)?;
                continue;
            }
            seen.insert((meta.dev(), meta.ino()), path.clone());
        }
        builder.append_path_with_name(entry.path(), &path)?;
        if meta.is_dir() {
            archive_dir(builder, root, &path, seen)?;
        }
    }
    Ok(())
}

pub(super) fn check_layer_media_type(layer: &Descriptor) -> Result<(), ImageError> {
    if LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str()) {
        Ok(())
    } else {
        Err(ImageError::UnknownMediaType { digest: layer.digest.clone(), media_type: layer.media_type.clone() })
    }
}

/// `dir/relative`, refusing paths that leave `dir`.
fn inside(dir: &Path, relative: &str) -> Result<PathBuf, ImageError> {
    let path = Path::new(relative);
    if path.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
        Ok(dir.join(path))
    } else {
        Err(bad_archive("manifest.json", format!("path {relative:?} leaves the archive")))
    }
}

/// This machine's architecture in OCI's words.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
