//! Content-addressed blobs: `blobs/sha256/<hex>`, written to a temporary file
//! and renamed into place only once the content matched its digest.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingReader};
use super::ImageError;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

impl BlobStore {
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let store = Self { dir: root.join("blobs/sha256"), tmp: root.join("tmp") };
        for dir in [&store.dir, &store.tmp] {
            std::fs::create_dir_all(dir).map_err(ImageError::io(format!("creating {}", dir.display())))?;
        }
        Ok(store)
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        std::fs::read(self.path(digest)).map_err(ImageError::io(format!("reading blob {digest}")))
    }

    /// Stores `content`, which must hash to `expected` (and be `size` long,
    /// when known).
    pub fn put_verified(&self, expected: &Digest, size: Option<u64>, content: impl Read) -> Result<(), ImageError> {
        if self.contains(expected) {
            return Ok(());
        }
        let (tmp, actual, written) = self.write_tmp(content)?;
        if let Some(size) = size.filter(|s| *s != written) {
            return Err(ImageError::BlobSize { digest: expected.clone(), expected: size, actual: written });
        }
        if &actual != expected {
            return Err(ImageError::DigestMismatch { expected: expected.clone(), actual });
        }
        self.commit(tmp, expected)
    }

    /// Stores `content` under its own digest.
    pub fn put(&self, content: impl Read) -> Result<Digest, ImageError> {
        let (tmp, digest, _) = self.write_tmp(content)?;
        if self.contains(&digest) {
            return Ok(digest);
        }
        self.commit(tmp, &digest)?;
        Ok(digest)
    }

    fn write_tmp(&self, content: impl Read) -> Result<(tempfile::TempPath, Digest, u64), ImageError> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.tmp).map_err(ImageError::io("creating a temporary blob"))?;
        let mut reader = HashingReader::new(content);
        io::copy(&mut reader, tmp.as_file_mut()).map_err(ImageError::io("writing a blob"))?;
        tmp.as_file().sync_all().map_err(ImageError::io("syncing a blob"))?;
        let written = reader.bytes;
        Ok((tmp.into_temp_path(), reader.digest(), written))
    }

    fn commit(&self, tmp: tempfile::TempPath, digest: &Digest) -> Result<(), ImageError> {
        // Renaming onto an existing blob (a concurrent import) is fine: same content.
        tmp.persist(self.path(digest)).map_err(|e| ImageError::io(format!("storing blob {digest}"))(e.error))
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, ImageError> {
        File::open(self.path(digest)).map_err(ImageError::io(format!("opening blob {digest}")))
    }

    /// Every stored blob.
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        let entries = std::fs::read_dir(&self.dir).map_err(ImageError::io("listing blobs"))?;
        Ok(entries
            .flatten()
            .filter_map(|e| format!("sha256:{}", e.file_name().to_string_lossy()).parse().ok())
            .collect())
    }

    pub fn remove(&self, digest: &Digest) -> Result<(), ImageError> {
        std::fs::remove_file(self.path(digest)).map_err(ImageError::io(format!("removing blob {digest}")))
    }
}
