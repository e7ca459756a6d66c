//! cgroups: one per container below a per-pod parent, all under r8s's own root
//! (`<controller>/<root>/...` on v1, `<root>/...` on v2). Only what r8s creates
//! is ever written or removed.

mod fs;
pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use fs::CgroupError;

/// Where cgroup filesystems are mounted on a normal host.
pub const DEFAULT_MOUNT: &str = "/sys/fs/cgroup";

/// Resource limits of one container, in cgroup terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory_limit: Option<i64>,
    /// CPU time per period, µs (from limits).
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// Relative CPU weight in v1 shares, 2..262144 (from requests).
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
}

impl Resources {
    /// The limits r8s supports out of an OCI `linux.resources`.
    pub fn from_oci(resources: &LinuxResources) -> Self {
        let memory = resources.memory().as_ref();
        let cpu = resources.cpu().as_ref();
        Self {
            memory_limit: memory.and_then(|m| m.limit()).filter(|l| *l > 0),
            cpu_quota: cpu.and_then(|c| c.quota()).filter(|q| *q > 0),
            cpu_period: cpu.and_then(|c| c.period()),
            cpu_shares: cpu.and_then(|c| c.shares()),
            pids_limit: resources.pids().as_ref().map(|p| p.limit()).filter(|l| *l > 0),
        }
    }
}

/// Usage read back from a container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub memory_usage_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_usage_nanos: u64,
    pub pids_current: u64,
    /// Processes the kernel killed for running out of memory.
    pub oom_kills: u64,
}

/// A cgroup path relative to the runtime's root, e.g. `pod-abc/ctr-1`.
pub type CgroupPath = Path;

/// The cgroup operations the runtime needs; one implementation per cgroup version.
pub trait CgroupManager: Send + Sync + std::fmt::Debug {
    /// Creates the cgroup (and missing parents) and applies `resources`.
    fn create(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError>;
    /// Moves `pid` into the cgroup.
    fn add_process(&self, path: &CgroupPath, pid: Pid) -> Result<(), CgroupError>;
    /// Moves the calling process, which must be single-threaded, into the
    /// cgroup. Cheaper than [`CgroupManager::add_process`] on v1 (see there).
    fn add_self(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        self.add_process(path, nix::unistd::getpid())
    }
    /// Every process in the cgroup.
    fn processes(&self, path: &CgroupPath) -> Result<Vec<Pid>, CgroupError>;
    /// Stops (true) or resumes (false) every process of the cgroup.
    fn set_frozen(&self, path: &CgroupPath, frozen: bool) -> Result<(), CgroupError>;
    fn stats(&self, path: &CgroupPath) -> Result<Stats, CgroupError>;
    /// Removes the cgroup, then its parents up to the root if they are empty.
    /// A cgroup that does not exist is not an error.
    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError>;
    /// Removes the runtime's root cgroup when it is empty (tests call this).
    fn remove_root(&self) -> Result<(), CgroupError>;
    /// The directories that make up this cgroup (one per hierarchy).
    fn directories(&self, path: &CgroupPath) -> Vec<PathBuf>;

    /// Kills every process of the cgroup with SIGKILL. The cgroup is frozen
    /// meanwhile so that no process can fork away from the signal.
    fn kill_all(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        self.set_frozen(path, true)?;
        for pid in self.processes(path)? {
            // A process that has exited meanwhile is fine.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        self.set_frozen(path, false)
    }
}

/// The cgroup manager for this host: v2 when the unified hierarchy is mounted
/// at `mount`, v1 (one hierarchy per controller) otherwise. `root` is the name
/// of r8s's own subtree (`r8s`; tests use `r8s-test-<id>`).
pub fn detect(mount: &Path, root: &str) -> Result<Box<dyn CgroupManager>, CgroupError> {
    // `r8s`, `r8s-test-1` or a subtree such as `r8s/<cluster>/<node>` (one
    // per node of `r8s up --nodes`): plain names, never leaving the r8s tree.
    let plain = |part: &str| !part.is_empty() && part != "." && part != "..";
    if !root.starts_with("r8s") || !root.split('/').all(plain) {
        return Err(CgroupError::BadRoot(root.to_string()));
    }
    if mount.join("cgroup.controllers").exists() {
        Ok(Box::new(v2::CgroupV2::new(mount.to_path_buf(), root)))
    } else if mount.join("memory").is_dir() {
        Ok(Box::new(v1::CgroupV1::new(mount.to_path_buf(), root)))
    } else {
        Err(CgroupError::NotMounted(mount.to_path_buf()))
    }
}

/// v2's cpu.weight (1..10000) for v1's cpu.shares (2..262144), the conversion
/// Kubernetes and runc use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_to_weight() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn only_r8s_roots_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(detect(dir.path(), "system"), Err(CgroupError::BadRoot(_))));
        assert!(matches!(detect(dir.path(), "r8s/../x"), Err(CgroupError::BadRoot(_))));
        assert!(matches!(detect(dir.path(), "r8s//x"), Err(CgroupError::BadRoot(_))));
        assert!(!matches!(detect(dir.path(), "r8s/c1/n1"), Err(CgroupError::BadRoot(_))));
    }
}
