//! Unpacking a layer (tar, gzip or zstd) into its own directory, the way
//! overlayfs wants it: whiteouts become character devices 0/0, opaque
//! directories get `trusted.overlay.opaque=y`. Ownership, modes, symlinks,
//! hard links and extended attributes are kept. Entries that would write
//! outside the directory, and device nodes, are refused; the caller unpacks
//! into a temporary directory so that a refused layer leaves nothing.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};
use tar::EntryType;

use super::digest::Digest;
use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpacks the layer blob `blob` (named `digest` in errors) into `dest`,
/// an empty directory.
pub fn unpack(blob: File, digest: &Digest, dest: &Path) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::BadLayer { digest: digest.clone(), reason };
    let mut reader = BufReader::new(blob);
    let magic = reader.fill_buf().map_err(|e| bad(format!("reading: {e}")))?.to_vec();
    let decompressed: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(reader).map_err(|e| bad(format!("zstd: {e}")))?)
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(decompressed);
    for entry in archive.entries().map_err(|e| bad(format!("reading the tar: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("reading the tar: {e}")))?;
        let raw_path = entry.path_bytes().into_owned();
        let Some(path) = clean_path(&raw_path) else {
            return Err(bad(format!("entry {:?} escapes the layer", String::from_utf8_lossy(&raw_path))));
        };
        if path.as_os_str().is_empty() {
            continue; // "./" itself
        }
        unpack_entry(&mut entry, &path, dest).map_err(|reason| bad(format!("entry {}: {reason}", path.display())))?;
    }
    Ok(())
}

/// The entry path relative to the layer, or `None` if it is absolute or
/// climbs out with `..`.
fn clean_path(raw: &[u8]) -> Option<PathBuf> {
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(clean)
}

/// Creates the missing parents of `relative` in `dest`, refusing to go
/// through anything that is not a real directory (a symlink planted by an
/// earlier entry, pointing anywhere).
fn ensure_parents(dest: &Path, relative: &Path) -> Result<(), String> {
    let mut current = dest.to_path_buf();
    let parents: Vec<_> = relative.parent().map(|p| p.components().collect()).unwrap_or_default();
    for part in parents {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!("writes through the symlink {}", current.strip_prefix(dest).unwrap_or(&current).display()))
            }
            Ok(_) => return Err(format!("{} is not a directory", current.display())),
            Err(_) => std::fs::create_dir(&current).map_err(|e| format!("creating {}: {e}", current.display()))?,
        }
    }
    Ok(())
}

fn remove_existing(target: &Path, keep_directory: bool) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(target) else { return Ok(()) };
    let removed = if meta.is_dir() {
        if keep_directory {
            return Ok(());
        }
        std::fs::remove_dir_all(target)
    } else {
        std::fs::remove_file(target)
    };
    removed.map_err(|e| format!("replacing {}: {e}", target.display()))
}

fn unpack_entry<R: Read>(entry: &mut tar::Entry<R>, path: &Path, dest: &Path) -> Result<(), String> {
    ensure_parents(dest, path)?;
    let target = dest.join(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = target.parent().unwrap_or(dest);
    if name == OPAQUE_MARKER {
        return xattr::set(parent, "trusted.overlay.opaque", b"y").map_err(|e| format!("marking opaque: {e}"));
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        let whiteout = parent.join(hidden);
        remove_existing(&whiteout, false)?;
        return nix::sys::stat::mknod(&whiteout, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(|e| format!("creating the whiteout: {e}"));
    }
    let header = entry.header().clone();
    let kind = header.entry_type();
    remove_existing(&target, kind == EntryType::Directory)?;
    match kind {
        EntryType::Directory => {
            if !target.is_dir() {
                std::fs::create_dir(&target).map_err(|e| e.to_string())?;
            }
        }
        EntryType::Regular | EntryType::Continuous => {
            let mut file = File::create(&target).map_err(|e| e.to_string())?;
            std::io::copy(entry, &mut file).map_err(|e| format!("writing: {e}"))?;
        }
        EntryType::Symlink => {
            let link = entry.link_name().map_err(|e| e.to_string())?.ok_or("symlink without target")?;
            // The target is not checked: nothing is ever written through it
            // (see ensure_parents), and inside the container it resolves there.
            std::os::unix::fs::symlink(&link, &target).map_err(|e| e.to_string())?;
        }
        EntryType::Link => {
            let link = entry.link_name_bytes().ok_or("hard link without target")?.into_owned();
            let source = clean_path(&link).ok_or_else(|| format!("hard link to {:?} escapes the layer", String::from_utf8_lossy(&link)))?;
            ensure_parents(dest, &source)?;
            std::fs::hard_link(dest.join(&source), &target)
                .map_err(|e| format!("hard link to {}: {e}", source.display()))?;
            return Ok(());
        }
        EntryType::Fifo => {
            nix::unistd::mkfifo(&target, Mode::from_bits_truncate(0o600)).map_err(|e| e.to_string())?;
        }
        EntryType::Char | EntryType::Block => return Err("device nodes are not allowed in layers".into()),
        // Metadata entries are consumed by the tar reader; others carry nothing to unpack.
        _ => return Ok(()),
    }
    apply_metadata(entry, &header, &target, kind == EntryType::Symlink)
}

fn apply_metadata<R: Read>(entry: &mut tar::Entry<R>, header: &tar::Header, target: &Path, is_symlink: bool) -> Result<(), String> {
    let uid = header.uid().map_err(|e| e.to_string())? as u32;
    let gid = header.gid().map_err(|e| e.to_string())? as u32;
    std::os::unix::fs::lchown(target, Some(uid), Some(gid)).map_err(|e| format!("chown: {e}"))?;
    if let Ok(Some(extensions)) = entry.pax_extensions() {
        for extension in extensions.flatten() {
            let Ok(key) = extension.key() else { continue };
            if let (Some(name), false) = (key.strip_prefix("SCHILY.xattr."), is_symlink) {
                xattr::set(target, name, extension.value_bytes()).map_err(|e| format!("xattr {name}: {e}"))?;
            }
        }
    }
    if !is_symlink {
        // After chown, which clears setuid bits.
        let mode = header.mode().map_err(|e| e.to_string())? & 0o7777;
        std::fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| format!("chmod: {e}"))?;
    }
    if let Ok(mtime) = header.mtime() {
        let time = nix::sys::time::TimeSpec::new(mtime as i64, 0);
        let _ = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            target,
            &time,
            &time,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> tempfile::NamedTempFile {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        let bytes = builder.into_inner().unwrap();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        file
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(1000);
        h.set_gid(1001);
        h
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, content: &[u8]) {
        let mut h = header(EntryType::Regular, 0o640, content.len() as u64);
        b.append_data(&mut h, path, content).unwrap();
    }

    fn raw_path_entry(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: EntryType) {
        // append_data refuses ".." itself, so the name is written raw.
        let mut h = header(kind, 0o644, 0);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }

    fn unpack_into(file: &tempfile::NamedTempFile) -> (tempfile::TempDir, Result<(), ImageError>) {
        let dest = tempfile::tempdir().unwrap();
        let result = unpack(File::open(file.path()).unwrap(), &Digest::of(b"x"), dest.path());
        (dest, result)
    }

    #[test]
    fn files_links_and_whiteouts_are_unpacked() {
        let tar = layer(|b| {
            file(b, "etc/hostname", b"box\n");
            let mut h = header(EntryType::Symlink, 0o777, 0);
            b.append_link(&mut h, "etc/name", "hostname").unwrap();
            let mut h = header(EntryType::Link, 0o640, 0);
            b.append_link(&mut h, "etc/hard", "etc/hostname").unwrap();
            file(b, "var/.wh.cache", b"");
            file(b, "opt/.wh..wh..opq", b"");
        });
        let (dest, result) = unpack_into(&tar);
        result.unwrap();
        let d = dest.path();
        assert_eq!(std::fs::read(d.join("etc/hostname")).unwrap(), b"box\n");
        let meta = std::fs::metadata(d.join("etc/hostname")).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1000, 1001, 0o640));
        assert_eq!(std::fs::read_link(d.join("etc/name")).unwrap(), Path::new("hostname"));
        assert_eq!(std::fs::metadata(d.join("etc/hard")).unwrap().ino(), meta.ino());
        let whiteout = std::fs::symlink_metadata(d.join("var/cache")).unwrap();
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(whiteout.rdev(), 0);
        assert_eq!(xattr::get(d.join("opt"), "trusted.overlay.opaque").unwrap(), Some(b"y".to_vec()));
    }

    #[test]
    fn escaping_entries_are_refused() {
        for path in ["../evil", "a/../../evil", "/etc/evil"] {
            let tar = layer(|b| raw_path_entry(b, path, EntryType::Regular));
            let (_dest, result) = unpack_into(&tar);
            let err = result.unwrap_err().to_string();
            assert!(err.contains("escapes the layer"), "{path}: {err}");
        }
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let tar = layer(|b| {
            let mut h = header(EntryType::Symlink, 0o777, 0);
            b.append_link(&mut h, "evil", outside.path()).unwrap();
            file(b, "evil/planted", b"x");
        });
        let (_dest, result) = unpack_into(&tar);
        assert!(result.unwrap_err().to_string().contains("writes through the symlink evil"));
        assert!(!outside.path().join("planted").exists());
    }

    #[test]
    fn device_nodes_are_refused() {
        let tar = layer(|b| {
            let mut h = header(EntryType::Char, 0o666, 0);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            b.append_data(&mut h, "dev/null", std::io::empty()).unwrap();
        });
        let (_dest, result) = unpack_into(&tar);
        assert!(result.unwrap_err().to_string().contains("device nodes are not allowed"));
    }

    #[test]
    fn gzip_and_zstd_layers_unpack() {
        let plain = layer(|b| file(b, "hello", b"hi"));
        let bytes = std::fs::read(plain.path()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        let zst = zstd::encode_all(&bytes[..], 1).unwrap();
        for compressed in [gz.finish().unwrap(), zst] {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut file, &compressed).unwrap();
            let (dest, result) = unpack_into(&file);
            result.unwrap();
            assert_eq!(std::fs::read(dest.path().join("hello")).unwrap(), b"hi");
        }
    }
}
