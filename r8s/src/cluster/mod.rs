//! A cluster on one machine (`r8s up --name C`): where everything of
//! cluster `C` lives, so that `r8s up` makes it there, a later `r8s up`
//! resumes it, and `r8s down` finds all of it again, also after a crash.
//!
//! - network: a one-node cluster uses the machine's own (its pods on bridge
//!   `r8s0`, nftables table `ip r8s`, both recorded in `host-network`); a
//!   cluster of `--nodes N` has a hub namespace (bridge `r8sbr0`, the API
//!   servers at 172.30.0.1, .2, ...) and one namespace per node (eth0
//!   172.30.0.(10+i)), pinned under `<run root>/C/netns/` and linked from
//!   `/run/netns/r8s-C[-n<i>]` for `ip netns exec`;
//! - cgroups: `<hierarchy>/r8s/C/n<i>` per node's runtime, and
//!   `<hierarchy>/r8s/C/daemons` holding every process `r8s up` starts
//!   (found there by `r8s down` even if their pid files are stale);
//! - files: `<data root>/C` (what the cluster is, `cluster.json`; the store,
//!   agents' volumes, kubeconfig, logs, pid files), kept when the cluster
//!   stops, and `<run root>/C` (sockets, runtime state, pods' pinned
//!   namespaces, the pod address ledger), which goes with the processes.
//!
//! [`state`] says what the cluster is, [`topology`] builds the network,
//! [`teardown`] stops or removes it, [`supervisor`] keeps its processes
//! running, [`up`] runs the cluster in the foreground.

pub mod state;
pub mod supervisor;
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
    /// The Node's name: `<cluster>-n<i>` (a one-node cluster's: the host name).
    pub node_name: String,
    pub address: Ipv4Addr,
}

/// One API server of the cluster.
#[derive(Debug, Clone)]
pub struct ServerSlot {
    /// Its raft id, 1, 2, ...: never reused for another server.
    pub id: u64,
    /// Where it listens in the hub (the API, raft, DNS).
    pub address: Ipv4Addr,
}

impl ServerSlot {
    /// `server-1`, `server-2`, ...: names its process, log and data.
    pub fn process(&self) -> String {
        format!("server-{}", self.id)
    }
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

    /// What the cluster is (`cluster.json`).
    pub fn state_file(&self) -> PathBuf {
        self.data_dir.join("cluster.json")
    }

    /// The hub's name under `/run/netns` (a link to its pin).
    pub fn hub_netns(&self) -> String {
        format!("r8s-{}", self.name)
    }

    /// A node namespace's name under `/run/netns` (a link to its pin).
    pub fn node_netns(&self, node: &NodeSlot) -> String {
        format!("r8s-{}-{}", self.name, node.id)
    }

    /// Where the cluster's own namespaces are pinned: a directory of r8s's,
    /// which nothing else mounts over (a later bind mount of `/run/netns`,
    /// as `ip netns add` makes, would hide pins there and keep their
    /// namespaces alive for ever).
    pub fn netns_dir(&self) -> PathBuf {
        self.run_dir.join("netns")
    }

    pub fn hub_netns_path(&self) -> PathBuf {
        self.netns_dir().join("hub")
    }

    pub fn node_netns_path(&self, node: &NodeSlot) -> PathBuf {
        self.netns_dir().join(&node.id)
    }

    /// The servers of a cluster of `count` servers, in the hub at
    /// 172.30.0.1, .2, ... (nodes start at .11).
    pub fn servers(&self, count: usize) -> Vec<ServerSlot> {
        (1..=count).map(|i| ServerSlot { id: i as u64, address: topology::server_address(i) }).collect()
    }

    pub fn server_data_dir(&self, server: &ServerSlot) -> PathBuf {
        self.data_dir.join("servers").join(server.id.to_string())
    }

    /// The machine-wide network objects a one-node cluster made, one per
    /// line (`bridge r8s0`, `nftables ip r8s`), recorded before they are made.
    pub fn host_network_file(&self) -> PathBuf {
        self.data_dir.join("host-network")
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

    /// The namespaces the cluster linked under `/run/netns` (written before each is made).
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

    /// Records a namespace's `/run/netns` name before it is made, so `down`
    /// removes it even if `up` dies.
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

/// What an r8s process of a cluster does, from its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Up,
    Server,
    Agent,
    /// `r8s runtime serve`, a node's CRI runtime.
    Runtime,
    /// Anything else: shims, pause processes, containers.
    Other,
}

impl Role {
    /// The processes that run the cluster, as opposed to its containers and their shims.
    pub fn is_daemon(self) -> bool {
        !matches!(self, Role::Other)
    }
}

/// The role of a process from its arguments (`argv[1..]`), when it runs r8s.
pub fn role_of(args: &[String]) -> Role {
    match (args.first().map(String::as_str), args.get(1).map(String::as_str)) {
        (Some("up"), _) => Role::Up,
        (Some("server"), _) => Role::Server,
        (Some("agent"), _) => Role::Agent,
        (Some("runtime"), _) if args.iter().any(|a| a == "serve") => Role::Runtime,
        _ => Role::Other,
    }
}

/// A live process of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterProcess {
    pub pid: i32,
    pub role: Role,
}

/// The arguments of a process (`/proc/PID/cmdline` without `argv[0]`).
fn arguments(pid: i32) -> Vec<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.split(|b| *b == 0).skip(1).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

impl Layout {
    /// Every live process of the cluster, however it was started: those in
    /// its cgroup subtree (on any hierarchy), those its pid files name, and
    /// r8s processes whose command line names its directories (one restarted
    /// by hand lands in the shell's cgroup, but names the data it serves).
    /// Never this process.
    pub fn processes(&self) -> Vec<ClusterProcess> {
        let me = std::process::id() as i32;
        let mut pids = Vec::new();
        for hierarchy in cgroup_hierarchies() {
            teardown::cgroup_pids(&hierarchy.join(self.cgroup_root()), &mut pids);
        }
        pids.extend(self.recorded_processes().into_iter().filter(ProcessId::is_alive_r8s).map(|p| p.pid));
        let dirs = [self.data_dir.to_string_lossy().into_owned(), self.run_dir.to_string_lossy().into_owned()];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if is_r8s(pid) && arguments(pid).iter().any(|arg| dirs.iter().any(|dir| names_path_under(arg, dir))) {
                pids.push(pid);
            }
        }
        pids.retain(|pid| *pid != me && *pid > 1);
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter()
            .map(|pid| ClusterProcess { pid, role: if is_r8s(pid) { role_of(&arguments(pid)) } else { Role::Other } })
            .collect()
    }
}

/// Whether a command-line argument (`/x/y`, `--flag=/x/y`) names `dir` or a path under it.
fn names_path_under(arg: &str, dir: &str) -> bool {
    let value = arg.rsplit_once('=').map_or(arg, |(_, value)| value);
    value.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
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
        assert_eq!(layout.node_netns_path(&nodes[1]), PathBuf::from("/r/dev/netns/n2"));
        assert_eq!(layout.servers(3)[2].address, Ipv4Addr::new(172, 30, 0, 3));
        assert_eq!(nodes[1].node_name, "dev-n2");
        assert!(layout.is_node_netns("r8s-dev-n12"));
        assert!(!layout.is_node_netns("r8s-dev-x-n1"));
        assert!(!layout.is_node_netns("r8s-dev"));
        assert_eq!(layout.node_cgroup_root(&nodes[0]), "r8s/dev/n1");
    }

    #[test]
    fn roles_come_from_the_command_line() {
        let args = |line: &str| line.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(role_of(&args("up --nodes 3")), Role::Up);
        assert_eq!(role_of(&args("server --data-dir /d")), Role::Server);
        assert_eq!(role_of(&args("agent --server http://x")), Role::Agent);
        assert_eq!(role_of(&args("runtime --state-root /s serve --socket /c")), Role::Runtime);
        assert_eq!(role_of(&args("runtime shim /s/abc")), Role::Other);
        assert!(!Role::Other.is_daemon() && Role::Runtime.is_daemon());
    }

    #[test]
    fn arguments_that_name_a_directory_are_found() {
        assert!(names_path_under("/d/dev", "/d/dev"));
        assert!(names_path_under("/d/dev/servers/1", "/d/dev"));
        assert!(names_path_under("--runtime-arg=--state-root=/d/dev/n1", "/d/dev"));
        assert!(!names_path_under("/d/dev2/servers", "/d/dev"));
        assert!(!names_path_under("--name", "/d/dev"));
    }

    #[test]
    fn this_process_is_found_by_its_start_time() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert_eq!(start_time(me.pid), Some(me.start_time));
        let stale = ProcessId { start_time: me.start_time + 1, ..me };
        assert!(!stale.is_alive_r8s());
    }
}
