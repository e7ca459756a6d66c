//! Content-addressed blobs: `blobs/sha256/<hex>`, written to a temporary file
//! and renamed into place only once the content matched its digest.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingWriter};
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
        self.writer_from(content)?.commit_verified(expected, size)
    }

    /// Stores `content` under its own digest.
    pub fn put(&self, content: impl Read) -> Result<Digest, ImageError> {
        self.writer_from(content)?.commit()
    }

    /// A new blob, written piece by piece (a download) and stored once complete.
    pub fn writer(&self) -> Result<BlobWriter, ImageError> {
        let tmp = tempfile::NamedTempFile::new_in(&self.tmp).map_err(ImageError::io("creating a temporary blob"))?;
        Ok(BlobWriter { store: self.clone(), file: HashingWriter::new(tmp), written: 0 })
    }

    fn writer_from(&self, mut content: impl Read) -> Result<BlobWriter, ImageError> {
        let mut writer = self.writer()?;
        io::copy(&mut content, &mut writer).map_err(ImageError::io("writing a blob"))?;
        Ok(writer)
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

/// A blob being written: hashed on the way to a temporary file, which is
/// renamed to its digest only when complete (dropped unfinished, it is removed).
pub struct BlobWriter {
    store: BlobStore,
    file: HashingWriter<tempfile::NamedTempFile>,
    written: u64,
}

impl io::Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Stores the blob if it hashes to `expected` (and is `size` long, when known).
    pub fn commit_verified(self, expected: &Digest, size: Option<u64>) -> Result<(), ImageError> {
        let written = self.written;
        let (store, tmp, actual) = self.finish()?;
        if let Some(size) = size.filter(|s| *s != written) {
            return Err(ImageError::BlobSize { digest: expected.clone(), expected: size, actual: written });
        }
        if &actual != expected {
            return Err(ImageError::DigestMismatch { expected: expected.clone(), actual });
        }
        store.persist(tmp, expected)
    }

    /// Stores the blob under its own digest.
    pub fn commit(self) -> Result<Digest, ImageError> {
        let (store, tmp, digest) = self.finish()?;
        if !store.contains(&digest) {
            store.persist(tmp, &digest)?;
        }
        Ok(digest)
    }

    fn finish(self) -> Result<(BlobStore, tempfile::TempPath, Digest), ImageError> {
        let (tmp, digest) = self.file.finish();
        tmp.as_file().sync_all().map_err(ImageError::io("syncing a blob"))?;
        Ok((self.store, tmp.into_temp_path(), digest))
    }
}

impl BlobStore {
    fn persist(&self, tmp: tempfile::TempPath, digest: &Digest) -> Result<(), ImageError> {
        // Renaming onto an existing blob (a concurrent import) is fine: same content.
        tmp.persist(self.path(digest)).map_err(|e| ImageError::io(format!("storing blob {digest}"))(e.error))
    }
}
