//! Namespaces: which to join (by path) and which to create, from the spec.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::syscall::Syscall;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("opening namespace {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("joining namespace {path}: {errno}")]
    Join { path: PathBuf, errno: nix::Error },
    #[error("creating namespaces {flags:?}: {errno}")]
    Create { flags: CloneFlags, errno: nix::Error },
    #[error("setting time namespace offsets: {0}")]
    TimeOffsets(std::io::Error),
}

/// The namespaces of a spec, with the ones to join already open.
pub struct NamespacePlan {
    /// (kind, path, open file), user namespace first.
    join: Vec<(CloneFlags, PathBuf, File)>,
    /// The namespaces to create, without the user namespace.
    create: CloneFlags,
    pub create_user: bool,
    pub create_mount: bool,
    pub create_uts: bool,
    /// Made by the init itself, once it is in the container's cgroup.
    create_cgroup: bool,
    time_offsets: Option<String>,
}

/// CLONE_NEWTIME, which nix's `CloneFlags` does not name: `from_bits_truncate`
/// would drop it (and then `contains` of the empty set is always true).
const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);

fn flag(typ: LinuxNamespaceType) -> CloneFlags {
    // oci-spec numbers its namespace types with their clone flags.
    CloneFlags::from_bits_retain(typ as i32)
}

impl NamespacePlan {
    pub fn from_spec(linux: &Linux) -> Result<Self, NamespaceError> {
        let mut plan = NamespacePlan {
            join: Vec::new(),
            create: CloneFlags::empty(),
            create_user: false,
            create_mount: false,
            create_uts: false,
            create_cgroup: false,
            time_offsets: None,
        };
        for ns in linux.namespaces().iter().flatten() {
            let kind = flag(ns.typ());
            match ns.path() {
                Some(path) => {
                    let file = File::open(path)
                        .map_err(|source| NamespaceError::Open { path: path.clone(), source })?;
                    plan.join.push((kind, path.clone(), file));
                }
                None if ns.typ() == LinuxNamespaceType::User => plan.create_user = true,
                None => plan.create |= kind,
            }
        }
        // Joining a user namespace first gives the rights to join the others.
        plan.join.sort_by_key(|(kind, _, _)| *kind != CloneFlags::CLONE_NEWUSER);
        plan.create_mount = plan.create.contains(CloneFlags::CLONE_NEWNS);
        plan.create_uts = plan.create.contains(CloneFlags::CLONE_NEWUTS);
        plan.create_cgroup = plan.create.contains(CloneFlags::CLONE_NEWCGROUP);
        plan.create.remove(CloneFlags::CLONE_NEWCGROUP);
        if plan.create.contains(CLONE_NEWTIME) {
            plan.time_offsets = linux.time_offsets().as_ref().map(|offsets| {
                offsets
                    .iter()
                    .map(|(clock, o)| format!("{clock} {} {}\n", o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0)))
                    .collect()
            });
        }
        Ok(plan)
    }

    /// True when the shim's own child can be the init, with no stage between:
    /// nothing to join (a joined mount namespace may not show the cgroup
    /// filesystem), no user namespace (it must own the PID namespace, and its
    /// maps are written while the stage waits), no time namespace (its offsets
    /// must be set before its first process starts).
    pub fn init_can_be_forked_directly(&self) -> bool {
        self.join.is_empty() && !self.create_user && !self.create.contains(CLONE_NEWTIME)
    }

    /// Makes the caller's next child the first process of a new PID namespace,
    /// if the spec asks for one; the caller stays where it is.
    pub fn create_pid_namespace_for_children(&self, sys: &dyn Syscall) -> Result<(), NamespaceError> {
        let flags = CloneFlags::CLONE_NEWPID;
        if !self.create.contains(flags) {
            return Ok(());
        }
        sys.unshare(flags).map_err(|errno| NamespaceError::Create { flags, errno })
    }

    /// Creates the new namespaces but the PID namespace, from the process that
    /// is already the first of it.
    pub fn create_others_but_pid(&self, sys: &dyn Syscall) -> Result<(), NamespaceError> {
        let flags = self.create.difference(CloneFlags::CLONE_NEWPID);
        if flags.is_empty() {
            return Ok(());
        }
        sys.unshare(flags).map_err(|errno| NamespaceError::Create { flags, errno })
    }

    /// Creates the cgroup namespace (from the init, in its cgroup).
    pub fn create_cgroup_namespace(&self, sys: &dyn Syscall) -> Result<(), NamespaceError> {
        if !self.create_cgroup {
            return Ok(());
        }
        let flags = CloneFlags::CLONE_NEWCGROUP;
        sys.unshare(flags).map_err(|errno| NamespaceError::Create { flags, errno })
    }

    /// Joins the namespaces to join.
    pub fn join(&self, sys: &dyn Syscall) -> Result<(), NamespaceError> {
        for (kind, path, file) in &self.join {
            sys.setns(file.as_fd(), *kind)
                .map_err(|errno| NamespaceError::Join { path: path.clone(), errno })?;
        }
        Ok(())
    }

    /// Creates a new user namespace (its maps are written from outside).
    pub fn create_user_namespace(&self, sys: &dyn Syscall) -> Result<(), NamespaceError> {
        let flags = CloneFlags::CLONE_NEWUSER;
        sys.unshare(flags).map_err(|errno| NamespaceError::Create { flags, errno })
    }

    /// Creates the other new namespaces. A new PID (or time) namespace applies
    /// to the children forked afterwards.
    pub fn create_others(&self, sys: &dyn Syscall) -> Result<(), NamespaceError> {
        if self.create.is_empty() {
            return Ok(());
        }
        sys.unshare(self.create)
            .map_err(|errno| NamespaceError::Create { flags: self.create, errno })?;
        if let Some(offsets) = &self.time_offsets {
            std::fs::write("/proc/self/timens_offsets", offsets).map_err(NamespaceError::TimeOffsets)?;
        }
        Ok(())
    }
}

/// Joins every namespace of the running process `pid` that differs from the
/// caller's (for exec): user first, mount last.
pub fn enter_existing(sys: &dyn Syscall, pid: nix::unistd::Pid) -> Result<(), NamespaceError> {
    const ORDER: [(&str, CloneFlags); 8] = [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("time", CLONE_NEWTIME),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut opened = Vec::new();
    for (name, kind) in ORDER {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let own = PathBuf::from(format!("/proc/self/ns/{name}"));
        // Same namespace as ours (e.g. the host's user namespace): nothing to do.
        if let (Ok(theirs), Ok(ours)) = (std::fs::metadata(&path), std::fs::metadata(&own)) {
            use std::os::unix::fs::MetadataExt;
            if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
                continue;
            }
        }
        // All are opened before any is joined: after joining the mount
        // namespace, /proc is the container's.
        let file = File::open(&path).map_err(|source| NamespaceError::Open { path: path.clone(), source })?;
        opened.push((kind, path, file));
    }
    for (kind, path, file) in opened {
        sys.setns(file.as_fd(), kind).map_err(|errno| NamespaceError::Join { path, errno })?;
    }
    Ok(())
}
