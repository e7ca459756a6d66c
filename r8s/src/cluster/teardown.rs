//! Stopping a cluster (its processes, containers, mounts, namespaces, cgroups
//! and run directory go; its data stays, to resume from) and removing one
//! (the data too), in an order that lets each step succeed: processes first
//! (they hold mounts, namespaces and cgroups), then mounts under the
//! cluster's directories (pods' pinned namespaces, overlay root filesystems,
//! the node namespaces' pins), the links under `/run/netns`, the cgroup
//! subtree, a one-node cluster's bridge and nftables table, and the files.
//!
//! It works from what is on disk, not from a live `r8s up`: after a crash it
//! finds the processes in the cluster's cgroup, its pid files and the command
//! lines that name its directories, and the namespaces in the cluster's list.
//! Running it again finds nothing left to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{cgroup_hierarchies, ClusterProcess, Layout, ProcessId};
use crate::netns::NETNS_DIR;

/// What was stopped and removed, for the user.
#[derive(Debug, Default)]
pub struct Report {
    /// A running `r8s up` of the cluster was asked to stop (and stopped the cluster itself).
    pub stopped_up: Option<i32>,
    pub processes: usize,
    pub mounts: usize,
    pub netns: Vec<String>,
    pub cgroups: usize,
    /// A one-node cluster's objects in the machine's network (`bridge r8s0`, ...).
    pub host_network: Vec<String>,
    /// Steps that failed; the cluster may not be fully gone.
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.processes == 0 && self.mounts == 0 && self.netns.is_empty() && self.cgroups == 0 && self.host_network.is_empty()
    }

    /// One line saying what went, or `None` when nothing did.
    pub fn summary(&self) -> Option<String> {
        (!self.is_empty()).then(|| {
            let mut text = format!("{} processes, {} mounts, {} network namespaces, {} cgroups", self.processes, self.mounts, self.netns.len(), self.cgroups);
            if !self.host_network.is_empty() {
                text.push_str(&format!(", {}", self.host_network.join(", ")));
            }
            text
        })
    }
}

/// `r8s down`: removes the cluster and its data. `graceful`: give a running
/// `r8s up` of it time to stop its own cluster first (SIGTERM), as Ctrl-C would.
pub fn remove(layout: &Layout, graceful: bool) -> Report {
    let mut report = Report::default();
    if graceful {
        report.stopped_up = stop_up(layout);
    }
    release(layout, &mut report);
    if let Err(error) = std::fs::remove_dir_all(&layout.data_dir) {
        if error.kind() != std::io::ErrorKind::NotFound {
            report.problems.push(format!("removing {}: {error}", layout.data_dir.display()));
        }
    }
    report
}

/// Ends whatever of the cluster still runs (SIGKILL) and releases all it
/// holds on the machine, keeping its data: what a stop ends with, and what
/// a crash left behind before a resume.
pub fn release(layout: &Layout, report: &mut Report) {
    report.processes += kill(layout, |_| true, &mut report.problems);
    report.mounts += unmount_under(&[&layout.data_dir, &layout.run_dir], &mut report.problems);
    report.netns.extend(remove_namespace_links(layout, &mut report.problems));
    report.cgroups += remove_cgroups(layout, &mut report.problems);
    report.host_network.extend(remove_host_network(layout, &mut report.problems));
    for dir in [layout.run_dir.clone(), layout.data_dir.join("pids")] {
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                report.problems.push(format!("removing {}: {error}", dir.display()));
            }
        }
    }
}

/// SIGKILLs the processes that run the cluster (server, agents, runtimes, a
/// dead `r8s up`'s leftovers) and leaves its containers and their shims, for
/// a resume that adopts them.
pub fn kill_daemons(layout: &Layout, problems: &mut Vec<String>) -> usize {
    kill(layout, |process| process.role.is_daemon(), problems)
}

/// Stops the containers of every node: SIGTERM to every process in the
/// nodes' cgroups, SIGKILL to those left after `grace`. The agents must be
/// stopped first, or they would restart them.
pub fn stop_containers(layout: &Layout, grace: Duration) -> usize {
    let node_pids = || {
        let mut pids = Vec::new();
        for hierarchy in cgroup_hierarchies() {
            for entry in std::fs::read_dir(hierarchy.join(layout.cgroup_root())).into_iter().flatten().flatten() {
                if entry.file_name() != "daemons" && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    cgroup_pids(&entry.path(), &mut pids);
                }
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    };
    let pids = node_pids();
    for pid in &pids {
        // SAFETY: the pid is in one of this cluster's node cgroups.
        unsafe { libc::kill(*pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while !node_pids().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in node_pids() {
        // SAFETY: as above; these outlived their grace period.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    pids.len()
}

/// SIGTERM to a live `r8s up` of this cluster, and a wait for it to finish;
/// returns its pid if there was one.
fn stop_up(layout: &Layout) -> Option<i32> {
    let up = ProcessId::read(&layout.pid_file("up")).filter(ProcessId::is_alive_r8s)?;
    if up.pid == std::process::id() as i32 {
        return None;
    }
    // SAFETY: signalling a process checked above to be this cluster's `r8s up`
    // (SIGCONT too, in case it was stopped: it must see the SIGTERM).
    unsafe {
        libc::kill(up.pid, libc::SIGTERM);
        libc::kill(up.pid, libc::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while up.is_alive_r8s() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(up.pid)
}

/// Pids in `dir` and every cgroup below it.
pub fn cgroup_pids(dir: &Path, pids: &mut Vec<i32>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            cgroup_pids(&entry.path(), pids);
        }
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
}

/// SIGKILLs the cluster's processes that `chosen` picks until none is left.
fn kill(layout: &Layout, chosen: impl Fn(&ClusterProcess) -> bool, problems: &mut Vec<String>) -> usize {
    let mut killed = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let targets: Vec<ClusterProcess> = layout.processes().into_iter().filter(|p| chosen(p)).filter(|p| !is_zombie(p.pid)).collect();
        if targets.is_empty() {
            return killed.len();
        }
        if Instant::now() > deadline {
            problems.push(format!("processes still running after SIGKILL: {:?}", targets.iter().map(|p| p.pid).collect::<Vec<_>>()));
            return killed.len();
        }
        for target in targets {
            // SAFETY: the pid is one of this cluster's processes (its cgroup,
            // its pid files, or an r8s process naming its directories).
            unsafe { libc::kill(target.pid, libc::SIGKILL) };
            killed.insert(target.pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A zombie waits for its parent to reap it: it holds nothing and cannot be killed.
fn is_zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// Unmounts (lazily, deepest first) every mount of this mount namespace under `dirs`.
fn unmount_under(dirs: &[&PathBuf], problems: &mut Vec<String>) -> usize {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .map(unescape_mount_path)
        .filter(|target| dirs.iter().any(|dir| target.starts_with(dir)))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.as_os_str().len()));
    targets.dedup();
    let mut count = 0;
    for target in targets {
        let Ok(path) = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: a valid C string naming a mount under the cluster's own directories.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {
            count += 1;
        } else {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINVAL) && error.raw_os_error() != Some(libc::ENOENT) {
                problems.push(format!("unmounting {}: {error}", target.display()));
            }
        }
    }
    count
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("0");
            out.push(u8::from_str_radix(digits, 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

/// Removes the cluster's entries under `/run/netns`: the links to its pins,
/// and pins that an older r8s made there. The pins in the run directory
/// went with the mounts already.
fn remove_namespace_links(layout: &Layout, problems: &mut Vec<String>) -> Vec<String> {
    let mut names = layout.recorded_netns();
    names.push(layout.hub_netns());
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        names.extend(entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| layout.is_node_netns(n)));
    }
    names.sort();
    names.dedup();
    let mut removed = Vec::new();
    for name in names {
        let path = Path::new(NETNS_DIR).join(&name);
        let Ok(metadata) = std::fs::symlink_metadata(&path) else { continue };
        let outcome = if metadata.file_type().is_symlink() {
            std::fs::remove_file(&path).map_err(|e| e.to_string())
        } else {
            runtime::network::netns::remove_pinned(&path).map_err(|e| hidden_pin_advice(&path, e.to_string()))
        };
        match outcome {
            Ok(()) => removed.push(name),
            Err(problem) => problems.push(problem),
        }
    }
    removed
}

/// What to say about a pin under `/run/netns` that cannot be removed: the
/// usual cause is that `/run/netns` was bind-mounted over it later (as `ip
/// netns add` does), which hides the pin; r8s leaves that mount alone.
fn hidden_pin_advice(path: &Path, error: String) -> String {
    if error.contains("Device or resource busy") {
        format!(
            "{}: {error}. It is hidden beneath a later bind mount of {NETNS_DIR} (made by `ip netns add`), which r8s does not touch; \
             the namespace stays until that mount goes (`umount {NETNS_DIR}` once no other namespace is pinned in it). It does not block this cluster.",
            path.display()
        )
    } else {
        error
    }
}

/// Removes the cluster's cgroup subtree on every hierarchy, deepest first.
fn remove_cgroups(layout: &Layout, problems: &mut Vec<String>) -> usize {
    fn remove_tree(dir: &Path, count: &mut usize, problems: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path(), count, problems);
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => *count += 1,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => problems.push(format!("removing cgroup {}: {error}", dir.display())),
        }
    }
    let mut count = 0;
    let root = layout.cgroup_root();
    for hierarchy in cgroup_hierarchies() {
        remove_tree(&hierarchy.join(&root), &mut count, problems);
        // The parent of every cluster's subtree goes with the last cluster;
        // while another cluster uses it, the rmdir fails and it stays.
        if let Some(parent) = Path::new(&root).parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::remove_dir(hierarchy.join(parent));
        }
    }
    count
}

/// One object a one-node cluster makes in the machine's own network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostObject {
    Bridge(String),
    NftTable(String),
}

impl HostObject {
    pub fn line(&self) -> String {
        match self {
            HostObject::Bridge(name) => format!("bridge {name}"),
            HostObject::NftTable(name) => format!("nftables ip {name}"),
        }
    }

    fn parse(line: &str) -> Option<HostObject> {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["bridge", name] => Some(HostObject::Bridge(name.to_string())),
            ["nftables", "ip", name] => Some(HostObject::NftTable(name.to_string())),
            _ => None,
        }
    }
}

/// Records the machine-wide objects a one-node cluster is about to make.
pub fn record_host_network(layout: &Layout, objects: &[HostObject]) -> anyhow::Result<()> {
    let text: String = objects.iter().map(|o| o.line() + "\n").collect();
    let path = layout.host_network_file();
    std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Removes the machine-wide objects the cluster recorded, unless a one-node
/// cluster of another name runs now and uses the same ones.
fn remove_host_network(layout: &Layout, problems: &mut Vec<String>) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(layout.host_network_file()) else { return Vec::new() };
    let objects: Vec<HostObject> = text.lines().filter_map(HostObject::parse).collect();
    if objects.is_empty() {
        return Vec::new();
    }
    if let Some(other) = other_running_host_cluster(layout) {
        problems.push(format!("left {} alone: cluster {other} runs on this machine's network and uses them", objects.iter().map(HostObject::line).collect::<Vec<_>>().join(", ")));
        return Vec::new();
    }
    let mut removed = Vec::new();
    for object in objects {
        let outcome = match &object {
            HostObject::Bridge(name) => std::process::Command::new("ip").args(["link", "delete", name, "type", "bridge"]).output(),
            HostObject::NftTable(name) => std::process::Command::new("nft").args(["delete", "table", "ip", name]).output(),
        };
        match outcome {
            Ok(output) if output.status.success() => removed.push(object.line()),
            Ok(output) => {
                let message = String::from_utf8_lossy(&output.stderr);
                // Already gone is fine.
                if !message.contains("No such file") && !message.contains("Cannot find device") && !message.contains("does not exist") {
                    problems.push(format!("removing {}: {}", object.line(), message.trim()));
                }
            }
            Err(error) => problems.push(format!("removing {}: {error}", object.line())),
        }
    }
    let _ = std::fs::remove_file(layout.host_network_file());
    removed
}

/// The name of another cluster whose `r8s up` runs and which made objects
/// in the machine's network.
fn other_running_host_cluster(layout: &Layout) -> Option<String> {
    let clusters_dir = layout.data_dir.parent()?;
    std::fs::read_dir(clusters_dir).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        let up = ProcessId::read(&dir.join("pids").join("up.pid"))?;
        (name != layout.name && dir.join("host-network").exists() && up.is_alive_r8s()).then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/run/a\\040b"), PathBuf::from("/run/a b"));
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }

    #[test]
    fn host_objects_round_trip_through_their_lines() {
        for object in [HostObject::Bridge("r8s0".into()), HostObject::NftTable("r8s".into())] {
            assert_eq!(HostObject::parse(&object.line()), Some(object));
        }
        assert_eq!(HostObject::parse("route 10.0.0.0/8"), None);
    }

    #[test]
    fn a_hidden_pin_is_explained() {
        let advice = hidden_pin_advice(Path::new("/run/netns/r8s-dev"), "unlink: Device or resource busy (os error 16)".into());
        assert!(advice.contains("hidden beneath a later bind mount of /run/netns"), "{advice}");
        assert_eq!(hidden_pin_advice(Path::new("/x"), "other".into()), "other");
    }
}
