//! The container's root filesystem: the overlay (or directory) root, the spec's
//! mounts, a minimal /dev, `pivot_root` with the old root detached, then the
//! masked and read-only paths.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::Mount;

use super::fs::secure_join;
use super::SetupError;
use crate::config::Rootfs;
use crate::syscall::Syscall;

/// Where the root filesystem comes from and where it is assembled.
pub struct RootfsLayout<'a> {
    pub source: &'a Rootfs,
    /// The (empty) directory the root is mounted on, in the state directory.
    pub mountpoint: &'a Path,
    /// The container's writable layer and overlayfs's work directory.
    pub upper: &'a Path,
    pub work: &'a Path,
}

/// Device nodes every container gets in its /dev: (name, major, minor).
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_SYMLINKS: [(&str, &str); 6] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
    ("/proc/kcore", "core"),
];

fn failed(what: impl Into<String>) -> impl FnOnce(nix::Error) -> SetupError {
    let what = what.into();
    move |errno| SetupError::Sys { what, errno }
}

/// Mounts the root and everything in `mounts` below it; the caller then pivots.
pub fn prepare(sys: &dyn Syscall, layout: &RootfsLayout, mounts: &[Mount]) -> Result<(), SetupError> {
    // Nothing mounted from here on may propagate back to the host.
    sys.mount(None, Path::new("/"), None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
        .map_err(failed("making / a slave mount"))?;
    mount_root(sys, layout)?;
    for mount in mounts {
        mount_one(sys, layout.mountpoint, mount)?;
        if mount.destination() == Path::new("/dev") {
            populate_dev(sys, &layout.mountpoint.join("dev"))?;
        }
    }
    Ok(())
}

fn mount_root(sys: &dyn Syscall, layout: &RootfsLayout) -> Result<(), SetupError> {
    match layout.source {
        Rootfs::Overlay { layers } => {
            if layers.is_empty() {
                return Err(SetupError::Invalid("an overlay root needs at least one layer".into()));
            }
            // overlayfs lists the topmost lower directory first.
            let lower = layers
                .iter()
                .rev()
                .map(|l| l.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            let data = format!(
                "lowerdir={lower},upperdir={},workdir={}",
                layout.upper.display(),
                layout.work.display()
            );
            // `volatile` skips syncing the upper filesystem when the overlay
            // is unmounted: the container's writable layer does not outlive
            // it, and without it every container exit waits for a sync of the
            // whole host filesystem (hundreds of ms under I/O load).
            let volatile = format!("{data},volatile");
            let overlay = |data: &str| {
                sys.mount(Some(Path::new("overlay")), layout.mountpoint, Some("overlay"), MsFlags::empty(), Some(data))
            };
            match overlay(&volatile) {
                // Kernels before 5.10 do not know the option.
                Err(nix::Error::EINVAL) => overlay(&data),
                other => other,
            }
            .map_err(failed(format!("mounting the overlay root ({data})")))
        }
        Rootfs::Directory(dir) => sys
            .mount(Some(dir), layout.mountpoint, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
            .map_err(failed(format!("binding {} as the root", dir.display()))),
    }
}

/// Mount flags and filesystem data from OCI mount options.
fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "private" => propagation |= MsFlags::MS_PRIVATE,
            "rprivate" => propagation |= MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            "slave" => propagation |= MsFlags::MS_SLAVE,
            "rslave" => propagation |= MsFlags::MS_SLAVE | MsFlags::MS_REC,
            "shared" => propagation |= MsFlags::MS_SHARED,
            "rshared" => propagation |= MsFlags::MS_SHARED | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    (flags, propagation, data.join(","))
}

fn mount_one(sys: &dyn Syscall, root: &Path, mount: &Mount) -> Result<(), SetupError> {
    let target = secure_join(root, mount.destination());
    let options = mount.options().clone().unwrap_or_default();
    let (flags, propagation, data) = parse_options(&options);
    let is_bind = flags.contains(MsFlags::MS_BIND) || mount.typ().as_deref() == Some("bind");
    let source = mount.source().clone().unwrap_or_else(|| PathBuf::from("none"));
    create_target(&target, is_bind.then_some(source.as_path()))?;
    let what = format!("mounting {} on {}", source.display(), mount.destination().display());
    if is_bind {
        let bind = MsFlags::MS_BIND | (flags & MsFlags::MS_REC);
        sys.mount(Some(&source), &target, None, bind, None).map_err(failed(what.clone()))?;
        // A bind mount takes its other flags (read-only, nosuid, ...) only when remounted.
        let rest = flags - MsFlags::MS_BIND - MsFlags::MS_REC;
        if !rest.is_empty() {
            sys.mount(None, &target, None, rest | MsFlags::MS_BIND | MsFlags::MS_REMOUNT, None)
                .map_err(failed(format!("{what} (remount {rest:?})")))?;
        }
    } else {
        let data = (!data.is_empty()).then_some(data.as_str());
        sys.mount(Some(&source), &target, mount.typ().as_deref(), flags, data)
            .map_err(failed(what.clone()))?;
    }
    if !propagation.is_empty() {
        sys.mount(None, &target, None, propagation, None).map_err(failed(format!("{what} (propagation)")))?;
    }
    Ok(())
}

/// Creates the mount point: a file when binding a file, a directory otherwise.
fn create_target(target: &Path, bind_source: Option<&Path>) -> Result<(), SetupError> {
    let io = |e| SetupError::Io { what: format!("creating mount point {}", target.display()), source: e };
    if bind_source.is_some_and(|s| !s.is_dir()) {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        if !target.exists() {
            std::fs::File::create(target).map_err(io)?;
        }
        Ok(())
    } else {
        std::fs::create_dir_all(target).map_err(io)
    }
}

/// The device nodes and links of a container's /dev. Without the right to
/// create device nodes (in a user namespace) the host's nodes are bound instead.
fn populate_dev(sys: &dyn Syscall, dev: &Path) -> Result<(), SetupError> {
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        let created = sys.mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), nix::sys::stat::makedev(major, minor));
        match created {
            Ok(()) => {
                // mknod's mode is reduced by the umask; set it exactly.
                nix::sys::stat::fchmodat(
                    nix::fcntl::AT_FDCWD,
                    &path,
                    Mode::from_bits_truncate(0o666),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .ok();
            }
            Err(nix::Error::EPERM) => {
                create_target(&path, Some(Path::new("/dev/null")))?;
                let host = Path::new("/dev").join(name);
                sys.mount(Some(&host), &path, None, MsFlags::MS_BIND, None)
                    .map_err(failed(format!("binding {}", host.display())))?;
            }
            Err(errno) => return Err(failed(format!("creating {}", path.display()))(errno)),
        }
    }
    for (target, name) in DEV_SYMLINKS {
        let link = dev.join(name);
        match std::os::unix::fs::symlink(target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SetupError::Io { what: format!("linking {}", link.display()), source: e }),
        }
    }
    Ok(())
}

/// Makes `root` the process's `/` and detaches the old root entirely (runc's
/// `pivot_root(".", ".")`, which needs no directory for the old root).
pub fn pivot(sys: &dyn Syscall, root: &Path) -> Result<(), SetupError> {
    nix::unistd::chdir(root).map_err(failed(format!("chdir {}", root.display())))?;
    sys.pivot_root(Path::new("."), Path::new(".")).map_err(failed("pivot_root"))?;
    // The old root is now stacked on ".": make sure its unmount stays here.
    sys.mount(None, Path::new("."), None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
        .map_err(failed("making the old root a slave"))?;
    sys.umount(Path::new("."), MntFlags::MNT_DETACH).map_err(failed("detaching the old root"))?;
    nix::unistd::chdir("/").map_err(failed("chdir /"))
}

/// Hides `masked` paths (an empty read-only tmpfs over directories, /dev/null
/// over files) and makes `readonly` paths read-only. Runs after the pivot.
pub fn protect_paths(sys: &dyn Syscall, masked: &[String], readonly: &[String]) -> Result<(), SetupError> {
    for path in masked.iter().map(Path::new) {
        let Ok(meta) = std::fs::metadata(path) else { continue };
        if meta.is_dir() {
            sys.mount(Some(Path::new("tmpfs")), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
        } else {
            sys.mount(Some(Path::new("/dev/null")), path, None, MsFlags::MS_BIND, None)
        }
        .map_err(failed(format!("masking {}", path.display())))?;
    }
    for path in readonly.iter().map(Path::new) {
        if !path.exists() {
            continue;
        }
        sys.mount(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
            .map_err(failed(format!("binding {} read-only", path.display())))?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        sys.mount(None, path, None, flags, None)
            .map_err(failed(format!("making {} read-only", path.display())))?;
    }
    Ok(())
}

/// Remounts `/` read-only (`root.readonly` in the spec).
pub fn make_root_readonly(sys: &dyn Syscall) -> Result<(), SetupError> {
    sys.mount(None, Path::new("/"), None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None)
        .map_err(failed("remounting / read-only"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::recording::RecordingSyscall;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let opts: Vec<String> = ["nosuid", "ro", "rbind", "rprivate", "mode=755", "size=65536k"]
            .map(String::from)
            .to_vec();
        let (flags, propagation, data) = parse_options(&opts);
        assert_eq!(flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(data, "mode=755,size=65536k");
    }

    #[test]
    fn overlay_lists_the_top_layer_first() {
        let sys = RecordingSyscall::default();
        let dir = tempfile::tempdir().unwrap();
        let source = Rootfs::Overlay { layers: vec!["/l/base".into(), "/l/top".into()] };
        let layout = RootfsLayout {
            source: &source,
            mountpoint: dir.path(),
            upper: Path::new("/s/upper"),
            work: Path::new("/s/work"),
        };
        prepare(&sys, &layout, &[]).unwrap();
        let calls = sys.calls.borrow();
        assert!(calls[1].contains("lowerdir=/l/top:/l/base,upperdir=/s/upper,workdir=/s/work,volatile"), "{calls:?}");
    }

    #[test]
    fn read_only_bind_mounts_are_remounted() {
        let sys = RecordingSyscall::default();
        let root = tempfile::tempdir().unwrap();
        let mount: Mount = serde_json::from_value(serde_json::json!({
            "destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "ro"]
        }))
        .unwrap();
        mount_one(&sys, root.path(), &mount).unwrap();
        let calls = sys.calls.borrow();
        assert_eq!(calls.len(), 2);
        assert!(calls[1].contains("MS_RDONLY") && calls[1].contains("MS_REMOUNT"), "{calls:?}");
        assert!(root.path().join("data").is_dir());
    }
}
