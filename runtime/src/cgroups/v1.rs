//! cgroup v1: one hierarchy per controller, `<mount>/<controller>/<root>/<path>`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::fs::{self, CgroupError};
use super::{CgroupManager, CgroupPath, Resources, Stats};

/// The hierarchies r8s puts every container in. cpu and cpuacct may be one
/// co-mounted hierarchy or two (as here); both work.
const CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];

#[derive(Debug)]
pub struct CgroupV1 {
    mount: PathBuf,
    root: String,
    /// The controllers of `CONTROLLERS` that are distinct hierarchies
    /// (co-mounted controllers share one directory): found once, as every
    /// operation walks them.
    hierarchies: Vec<&'static str>,
}

impl CgroupV1 {
    pub fn new(mount: PathBuf, root: &str) -> Self {
        let hierarchies = distinct_hierarchies(&mount);
        Self { mount, root: root.to_string(), hierarchies }
    }

    fn root_of(&self, controller: &str) -> PathBuf {
        self.mount.join(controller).join(&self.root)
    }

    fn dir(&self, controller: &str, path: &CgroupPath) -> Result<PathBuf, CgroupError> {
        fs::below(&self.root_of(controller), path)
    }

    fn hierarchies(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.hierarchies.iter().copied()
    }

    fn apply(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
        if let Some(limit) = resources.memory_limit {
            let dir = self.dir("memory", path)?;
            fs::write(&dir, "memory.limit_in_bytes", &limit.to_string())?;
            // No swap beyond the limit: a container over its limit is OOM-killed
            // rather than swapped out.
            if dir.join("memory.memsw.limit_in_bytes").exists() {
                fs::write(&dir, "memory.memsw.limit_in_bytes", &limit.to_string())?;
            }
        }
        let cpu = self.dir("cpu", path)?;
        if let Some(period) = resources.cpu_period {
            fs::write(&cpu, "cpu.cfs_period_us", &period.to_string())?;
        }
        if let Some(quota) = resources.cpu_quota {
            fs::write(&cpu, "cpu.cfs_quota_us", &quota.to_string())?;
        }
        if let Some(shares) = resources.cpu_shares {
            fs::write(&cpu, "cpu.shares", &shares.to_string())?;
        }
        if let Some(limit) = resources.pids_limit {
            fs::write(&self.dir("pids", path)?, "pids.max", &limit.to_string())?;
        }
        Ok(())
    }
}

/// The controllers whose directories under `mount` are distinct: `cpu` and
/// `cpuacct` are often links to one co-mounted `cpu,cpuacct` directory. A
/// directory is told by its device and inode (one `stat` each, where resolving
/// the links would read every component of the path).
fn distinct_hierarchies(mount: &Path) -> Vec<&'static str> {
    let mut seen: Vec<(u64, u64)> = Vec::new();
    CONTROLLERS
        .into_iter()
        .filter(|controller| match std::fs::metadata(mount.join(controller)) {
            Ok(dir) => {
                let id = (dir.dev(), dir.ino());
                let new = !seen.contains(&id);
                seen.push(id);
                new
            }
            Err(_) => true,
        })
        .collect()
}

impl CgroupManager for CgroupV1 {
    fn create(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
        for controller in self.hierarchies() {
            let dir = self.dir(controller, path)?;
            std::fs::create_dir_all(&dir).map_err(fs::io_error("create", &dir))?;
        }
        self.apply(path, resources)
    }

    fn add_process(&self, path: &CgroupPath, pid: Pid) -> Result<(), CgroupError> {
        for controller in self.hierarchies() {
            fs::write(&self.dir(controller, path)?, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Writing "0" (the caller) to `tasks` moves one thread without the
    /// kernel's global threadgroup lock, whose first writer after a quiet
    /// spell waits for an RCU grace period: about 0.3 ms here instead of
    /// 10-20 ms for a pid written to `cgroup.procs`.
    fn add_self(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        for controller in self.hierarchies() {
            fs::write(&self.dir(controller, path)?, "tasks", "0")?;
        }
        Ok(())
    }

    fn processes(&self, path: &CgroupPath) -> Result<Vec<Pid>, CgroupError> {
        fs::read_pids(&self.dir("pids", path)?)
    }

    fn set_frozen(&self, path: &CgroupPath, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.dir("freezer", path)?;
        let wanted = if frozen { "FROZEN" } else { "THAWED" };
        let deadline = Instant::now() + Duration::from_secs(5);
        // Freezing takes effect asynchronously: FREEZING until every task stopped.
        loop {
            fs::write(&dir, "freezer.state", wanted)?;
            if fs::read(&dir, "freezer.state")?.trim() == wanted {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CgroupError::FreezeTimeout(dir));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stats(&self, path: &CgroupPath) -> Result<Stats, CgroupError> {
        let memory = self.dir("memory", path)?;
        let limit = fs::read_number(&memory, "memory.limit_in_bytes")?;
        Ok(Stats {
            memory_usage_bytes: fs::read_number(&memory, "memory.usage_in_bytes")?.unwrap_or(0),
            // v1 reports "no limit" as a huge page-aligned number.
            memory_limit_bytes: limit.filter(|l| *l < i64::MAX as u64 / 2),
            cpu_usage_nanos: fs::read_number(&self.dir("cpuacct", path)?, "cpuacct.usage")?.unwrap_or(0),
            pids_current: fs::read_number(&self.dir("pids", path)?, "pids.current")?.unwrap_or(0),
            oom_kills: fs::read_key(&memory, "memory.oom_control", "oom_kill")?.unwrap_or(0),
        })
    }

    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        for controller in self.hierarchies() {
            fs::remove_up_to(&self.dir(controller, path)?, &self.root_of(controller))?;
        }
        Ok(())
    }

    fn remove_root(&self) -> Result<(), CgroupError> {
        for controller in self.hierarchies() {
            let root = self.root_of(controller);
            fs::remove_up_to(&root, &root)?;
        }
        Ok(())
    }

    fn directories(&self, path: &CgroupPath) -> Vec<PathBuf> {
        self.hierarchies()
            .filter_map(|c| self.dir(c, path).ok())
            .collect()
    }
}
