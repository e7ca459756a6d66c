//! A multi-node cluster on one machine (`r8s up --nodes N --name C`): where
//! everything of cluster `C` lives, so that `r8s up` makes it there and
//! `r8s down` finds all of it again, also after a crash.
//!
//! - network namespaces: the hub `r8s-C` (bridge `r8sbr0`, 172.30.0.1/24, the
//!   API server) and one per node `r8s-C-n<i>` (eth0 172.30.0.(10+i));
//! - cgroups: `<hierarchy>/r8s/C/n<i>` per node's runtime, and
//!   `<hierarchy>/r8s/C/daemons` holding every process `r8s up` starts
//!   (found there by `r8s down` even if their pid files are stale);
//! - files: `<data root>/C` (store, agents' volumes, kubeconfig, logs, the
//!   list of namespaces, pid files) and `<run root>/C` (sockets, runtime
//!   state, pods' pinned namespaces).
//!
//! [`topology`] builds the network, [`teardown`] removes everything, [`up`]
//! runs the cluster in the foreground.

pub mod teardown;
pub mod topology;
pub mod up;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub const DEFAULT_DATA_ROOT: &str = "/var/lib/r8s/clusters";
pub const DEFAULT_RUN_ROOT: &str = "/run/r8s/clusters";
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// The roots a cluster's files live under (flags of both `up` and `down`).
#[derive(clap::Args, Clone, Debug)]
pub struct Roots {
    /// Where each cluster's store, volumes, kubeconfig and logs live (`<root>/<name>`).
    #[arg(long, default_value = DEFAULT_DATA_ROOT)]
    pub clusters_dir: PathBuf,
    /// Where each cluster's sockets and runtime state live (`<root>/<name>`).
    #[arg(long, default_value = DEFAULT_RUN_ROOT)]
    pub clusters_run_dir: PathBuf,
}

/// The names and places of one cluster.
#[derive(Debug, Clone)]
pub struct Layout {
    pub name: String,
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
}

/// One node of the cluster.
#[derive(Debug, Clone)]
pub struct NodeSlot {
    /// `n1`, `n2`, ...: names its namespace, directories and cgroup.
    pub id: String,
    /// The Node's name: `<cluster>-n<i>`.
    pub node_name: String,
    pub address: Ipv4Addr,
}

impl Layout {
    /// Checks the name: a DNS label (it becomes part of Node names), short
    /// enough for namespace names, and not ending like a node namespace
    /// (`-n<digits>`), so no cluster's names can be another cluster's.
    pub fn new(name: &str, roots: &Roots) -> anyhow::Result<Self> {
        let label = !name.is_empty()
            && name.len() <= 40
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !label {
            bail!("cluster name {name:?} must be 1-40 lowercase letters, digits and '-', starting and ending with a letter or digit");
        }
        if looks_like_node_suffix(name) {
            bail!("cluster name {name:?} must not end in -n<number>: node namespaces are named that way");
        }
        Ok(Self { name: name.to_string(), data_dir: roots.clusters_dir.join(name), run_dir: roots.clusters_run_dir.join(name) })
    }

    pub fn hub_netns(&self) -> String {
        format!("r8s-{}", self.name)
    }

    pub fn node_netns(&self, node: &NodeSlot) -> String {
        format!("r8s-{}-{}", self.name, node.id)
    }

    /// Whether `netns` is the name of one of this cluster's node namespaces.
    pub fn is_node_netns(&self, netns: &str) -> bool {
        netns.strip_prefix(&format!("r8s-{}-", self.name)).is_some_and(|rest| {
            rest.strip_prefix('n').is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
        })
    }

    pub fn nodes(&self, count: usize) -> Vec<NodeSlot> {
        (1..=count)
            .map(|i| NodeSlot {
                id: format!("n{i}"),
                node_name: format!("{}-n{i}", self.name),
                address: topology::node_address(i),
            })
            .collect()
    }

    /// The cluster's cgroup subtree, relative to each hierarchy.
    pub fn cgroup_root(&self) -> String {
        format!("r8s/{}", self.name)
    }

    /// The runtime cgroup root of one node.
    pub fn node_cgroup_root(&self, node: &NodeSlot) -> String {
        format!("{}/{}", self.cgroup_root(), node.id)
    }

    /// The cgroup (on one hierarchy) that `r8s up` and its processes are in.
    pub fn daemons_cgroup(&self) -> PathBuf {
        tracking_hierarchy().join(self.cgroup_root()).join("daemons")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig.yaml")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    pub fn node_data_dir(&self, node: &NodeSlot) -> PathBuf {
        self.data_dir.join("nodes").join(&node.id)
    }

    pub fn node_run_dir(&self, node: &NodeSlot) -> PathBuf {
        self.run_dir.join(&node.id)
    }

    /// The namespaces the cluster made (written before each is made).
    fn netns_list(&self) -> PathBuf {
        self.data_dir.join("netns")
    }

    pub fn pid_file(&self, process: &str) -> PathBuf {
        self.data_dir.join("pids").join(format!("{process}.pid"))
    }

    /// The processes of every pid file (`up`, `server`, `agent-n1`, ...).
    pub fn recorded_processes(&self) -> Vec<ProcessId> {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join("pids")) else { return Vec::new() };
        entries.flatten().filter_map(|e| ProcessId::read(&e.path())).collect()
    }

    /// Records a namespace before it is made, so `down` removes it even if `up` dies.
    pub fn record_netns(&self, netns: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let path = self.netns_list();
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(file, "{netns}")?;
        Ok(())
    }

    pub fn recorded_netns(&self) -> Vec<String> {
        std::fs::read_to_string(self.netns_list()).unwrap_or_default().lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
    }
}

fn looks_like_node_suffix(name: &str) -> bool {
    name.rsplit_once("-n").is_some_and(|(_, digits)| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
}

/// The hierarchy whose `r8s/<cluster>/daemons` cgroup tracks a cluster's
/// processes: the unified one on cgroup v2, else v1's `pids`.
fn tracking_hierarchy() -> PathBuf {
    let mount = Path::new(CGROUP_MOUNT);
    if mount.join("cgroup.controllers").exists() {
        mount.to_path_buf()
    } else {
        mount.join("pids")
    }
}

/// Every cgroup hierarchy mounted under /sys/fs/cgroup (v1 controllers, the
/// unified one), or the one v2 mount.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mount = Path::new(CGROUP_MOUNT);
    if mount.join("cgroup.controllers").exists() {
        return vec![mount.to_path_buf()];
    }
    std::fs::read_dir(mount).map(|dir| dir.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default()
}

/// A process as a pid file names it: the pid and its start time (field 22 of
/// /proc/PID/stat), so a reused pid is never taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    pub fn of(pid: i32) -> Option<Self> {
        Some(Self { pid, start_time: start_time(pid)? })
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("{} {}\n", self.pid, self.start_time)).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut parts = text.split_whitespace();
        Some(Self { pid: parts.next()?.parse().ok()?, start_time: parts.next()?.parse().ok()? })
    }

    /// Still the same process, and an r8s one.
    pub fn is_alive_r8s(&self) -> bool {
        start_time(self.pid) == Some(self.start_time) && is_r8s(self.pid)
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process runs the r8s binary.
fn is_r8s(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().trim_end_matches(" (deleted)").to_string()))
        .is_some_and(|name| name == "r8s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Roots {
        Roots { clusters_dir: "/d".into(), clusters_run_dir: "/r".into() }
    }

    #[test]
    fn names_are_checked() {
        assert!(Layout::new("dev", &roots()).is_ok());
        assert!(Layout::new("e2e-42", &roots()).is_ok());
        for bad in ["", "Dev", "a/b", "-a", "a-", "x-n1", "a_b"] {
            assert!(Layout::new(bad, &roots()).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn node_namespaces_belong_to_one_cluster() {
        let layout = Layout::new("dev", &roots()).unwrap();
        let nodes = layout.nodes(2);
        assert_eq!(layout.node_netns(&nodes[1]), "r8s-dev-n2");
        assert_eq!(nodes[1].node_name, "dev-n2");
        assert!(layout.is_node_netns("r8s-dev-n12"));
        assert!(!layout.is_node_netns("r8s-dev-x-n1"));
        assert!(!layout.is_node_netns("r8s-dev"));
        assert_eq!(layout.node_cgroup_root(&nodes[0]), "r8s/dev/n1");
    }

    #[test]
    fn this_process_is_found_by_its_start_time() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert_eq!(start_time(me.pid), Some(me.start_time));
        let stale = ProcessId { start_time: me.start_time + 1, ..me };
        assert!(!stale.is_alive_r8s());
    }
}
