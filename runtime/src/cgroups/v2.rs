//! cgroup v2: one unified hierarchy, `<mount>/<root>/<path>`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::fs::{self, CgroupError};
use super::{shares_to_weight, CgroupManager, CgroupPath, Resources, Stats};

/// Controllers enabled for the children of r8s's cgroups, those of them
/// that the hierarchy has (a hybrid host's cgroup2 mount may have none).
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Debug)]
pub struct CgroupV2 {
    mount: PathBuf,
    root: String,
}

impl CgroupV2 {
    pub fn new(mount: PathBuf, root: &str) -> Self {
        Self { mount, root: root.to_string() }
    }

    fn root_dir(&self) -> PathBuf {
        self.mount.join(&self.root)
    }

    fn dir(&self, path: &CgroupPath) -> Result<PathBuf, CgroupError> {
        fs::below(&self.root_dir(), path)
    }

    /// `+memory +cpu +pids`, less what the hierarchy's root does not offer.
    fn enabled_controllers(&self) -> Result<String, CgroupError> {
        let available = fs::read(&self.mount, "cgroup.controllers")?;
        let available: Vec<&str> = available.split_whitespace().collect();
        let enabled: Vec<String> =
            CONTROLLERS.iter().filter(|c| available.contains(c)).map(|c| format!("+{c}")).collect();
        Ok(enabled.join(" "))
    }

    fn apply(&self, dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
        if let Some(limit) = resources.memory_limit {
            fs::write(dir, "memory.max", &limit.to_string())?;
            fs::write(dir, "memory.swap.max", "0")?;
        }
        if resources.cpu_quota.is_some() || resources.cpu_period.is_some() {
            let quota = resources.cpu_quota.map_or("max".to_string(), |q| q.to_string());
            let period = resources.cpu_period.unwrap_or(100_000);
            fs::write(dir, "cpu.max", &format!("{quota} {period}"))?;
        }
        if let Some(shares) = resources.cpu_shares {
            fs::write(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
        }
        if let Some(limit) = resources.pids_limit {
            fs::write(dir, "pids.max", &limit.to_string())?;
        }
        Ok(())
    }
}

impl CgroupManager for CgroupV2 {
    fn create(&self, path: &CgroupPath, resources: &Resources) -> Result<(), CgroupError> {
        let dir = self.dir(path)?;
        std::fs::create_dir_all(&dir).map_err(fs::io_error("create", &dir))?;
        // Every ancestor from the mount down must pass the controllers on.
        let enable = self.enabled_controllers()?;
        let mut parent = self.mount.clone();
        for component in Path::new(&self.root).join(path).parent().into_iter().flat_map(|p| p.components()) {
            parent.push(component);
            if !enable.is_empty() {
                fs::write(&parent, "cgroup.subtree_control", &enable)?;
            }
        }
        self.apply(&dir, resources)
    }

    fn add_process(&self, path: &CgroupPath, pid: Pid) -> Result<(), CgroupError> {
        fs::write(&self.dir(path)?, "cgroup.procs", &pid.to_string())
    }

    fn processes(&self, path: &CgroupPath) -> Result<Vec<Pid>, CgroupError> {
        fs::read_pids(&self.dir(path)?)
    }

    fn set_frozen(&self, path: &CgroupPath, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.dir(path)?;
        fs::write(&dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        let deadline = Instant::now() + Duration::from_secs(5);
        // `frozen 1` in cgroup.events once every process stopped.
        while frozen && fs::read_key(&dir, "cgroup.events", "frozen")? != Some(1) {
            if Instant::now() > deadline {
                return Err(CgroupError::FreezeTimeout(dir));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn kill_all(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        let dir = self.dir(path)?;
        // Kernels since 5.14 kill a whole cgroup in one write.
        if dir.join("cgroup.kill").exists() {
            return fs::write(&dir, "cgroup.kill", "1");
        }
        self.set_frozen(path, true)?;
        for pid in self.processes(path)? {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        self.set_frozen(path, false)
    }

    fn stats(&self, path: &CgroupPath) -> Result<Stats, CgroupError> {
        let dir = self.dir(path)?;
        Ok(Stats {
            memory_usage_bytes: fs::read_number(&dir, "memory.current")?.unwrap_or(0),
            memory_limit_bytes: fs::read_number(&dir, "memory.max")?,
            cpu_usage_nanos: fs::read_key(&dir, "cpu.stat", "usage_usec")?.unwrap_or(0) * 1000,
            pids_current: fs::read_number(&dir, "pids.current")?.unwrap_or(0),
            oom_kills: fs::read_key(&dir, "memory.events", "oom_kill")?.unwrap_or(0),
        })
    }

    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        fs::remove_up_to(&self.dir(path)?, &self.root_dir())
    }

    fn remove_root(&self) -> Result<(), CgroupError> {
        let root = self.root_dir();
        fs::remove_up_to(&root, &root)
    }

    fn directories(&self, path: &CgroupPath) -> Vec<PathBuf> {
        self.dir(path).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    //! Against a directory laid out like a cgroup2 mount (plain files).

    use super::*;
    use crate::cgroups::detect;

    fn fake_cgroup2() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        dir
    }

    fn write_files(dir: &Path, files: &[(&str, &str)]) {
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    #[test]
    fn limits_are_written_in_v2_terms() {
        let mount = fake_cgroup2();
        let cgroups = detect(mount.path(), "r8s-test").unwrap();
        let resources = Resources {
            memory_limit: Some(64 << 20),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpu_shares: Some(1024),
            pids_limit: Some(100),
        };
        cgroups.create(Path::new("pod-a/ctr-1"), &resources).unwrap();
        let dir = mount.path().join("r8s-test/pod-a/ctr-1");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), (64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("pids.max"), "100");
        let subtree = std::fs::read_to_string(mount.path().join("r8s-test/pod-a/cgroup.subtree_control")).unwrap();
        assert_eq!(subtree, "+memory +cpu +pids");
        assert!(!mount.path().join("r8s-test/pod-a/ctr-1/cgroup.subtree_control").exists());
    }

    #[test]
    fn only_controllers_the_hierarchy_has_are_enabled() {
        let mount = fake_cgroup2();
        std::fs::write(mount.path().join("cgroup.controllers"), "hugetlb pids\n").unwrap();
        let cgroups = detect(mount.path(), "r8s-test").unwrap();
        cgroups.create(Path::new("pod/c"), &Resources::default()).unwrap();
        let subtree = std::fs::read_to_string(mount.path().join("r8s-test/pod/cgroup.subtree_control")).unwrap();
        assert_eq!(subtree, "+pids");
    }

    #[test]
    fn stats_and_oom_kills_are_read_back() {
        let mount = fake_cgroup2();
        let cgroups = detect(mount.path(), "r8s-test").unwrap();
        cgroups.create(Path::new("c"), &Resources::default()).unwrap();
        let dir = mount.path().join("r8s-test/c");
        write_files(&dir, &[
            ("memory.current", "4096\n"),
            ("memory.max", "max\n"),
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\n"),
            ("pids.current", "3\n"),
            ("memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
            ("cgroup.procs", "12\n13\n"),
        ]);
        let stats = cgroups.stats(Path::new("c")).unwrap();
        assert_eq!(stats, Stats {
            memory_usage_bytes: 4096,
            memory_limit_bytes: None,
            cpu_usage_nanos: 1_500_000,
            pids_current: 3,
            oom_kills: 1,
        });
        assert_eq!(cgroups.processes(Path::new("c")).unwrap(), vec![Pid::from_raw(12), Pid::from_raw(13)]);
    }

    #[test]
    fn freezing_waits_for_frozen_event() {
        let mount = fake_cgroup2();
        let cgroups = detect(mount.path(), "r8s-test").unwrap();
        cgroups.create(Path::new("c"), &Resources::default()).unwrap();
        let dir = mount.path().join("r8s-test/c");
        write_files(&dir, &[("cgroup.events", "populated 1\nfrozen 1\n")]);
        cgroups.set_frozen(Path::new("c"), true).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "1");
    }

    #[test]
    fn paths_escaping_the_root_are_refused() {
        let mount = fake_cgroup2();
        let cgroups = detect(mount.path(), "r8s-test").unwrap();
        let err = cgroups.create(Path::new("../escape"), &Resources::default()).unwrap_err();
        assert!(matches!(err, CgroupError::BadPath(_)));
        assert!(!mount.path().join("escape").exists());
    }
}
