//! Removing everything a cluster made, in an order that lets each step
//! succeed: processes first (they hold mounts, namespaces and cgroups), then
//! mounts under the cluster's directories (pods' pinned namespaces, overlay
//! root filesystems), the network namespaces (the bridge, veths, pod bridges
//! and nftables tables go with them), the cgroup subtree, and the files.
//!
//! It works from what is on disk, not from a live `r8s up`: after a crash it
//! finds the processes in the cluster's cgroup and its pid files, and the
//! namespaces in the cluster's list and by their names. Running it again
//! finds nothing left to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{cgroup_hierarchies, Layout, ProcessId};
use crate::netns::NETNS_DIR;

/// What was removed, for the user.
#[derive(Debug, Default)]
pub struct Report {
    /// A running `r8s up` of the cluster was asked to stop (and removed the cluster itself).
    pub stopped_up: Option<i32>,
    pub processes: usize,
    pub mounts: usize,
    pub netns: Vec<String>,
    pub cgroups: usize,
    /// Steps that failed; the cluster may not be fully gone.
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.processes == 0 && self.mounts == 0 && self.netns.is_empty() && self.cgroups == 0
    }
}

/// Removes the cluster. `graceful`: give a running `r8s up` time to stop its
/// own cluster first (SIGTERM), as Ctrl-C would.
pub fn remove(layout: &Layout, graceful: bool) -> Report {
    let mut report = Report::default();
    if graceful {
        report.stopped_up = stop_up(layout);
    }
    report.processes = kill_processes(layout, &mut report.problems);
    report.mounts = unmount_under(&[&layout.data_dir, &layout.run_dir], &mut report.problems);
    report.netns = remove_namespaces(layout, &mut report.problems);
    report.cgroups = remove_cgroups(layout, &mut report.problems);
    for dir in [&layout.data_dir, &layout.run_dir] {
        if let Err(error) = std::fs::remove_dir_all(dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                report.problems.push(format!("removing {}: {error}", dir.display()));
            }
        }
    }
    report
}

/// SIGTERM to a live `r8s up` of this cluster, and a wait for it to finish;
/// returns its pid if there was one.
fn stop_up(layout: &Layout) -> Option<i32> {
    let up = ProcessId::read(&layout.pid_file("up")).filter(ProcessId::is_alive_r8s)?;
    if up.pid == std::process::id() as i32 {
        return None;
    }
    // SAFETY: signalling a process checked above to be this cluster's `r8s up`.
    unsafe { libc::kill(up.pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.is_alive_r8s() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(up.pid)
}

/// Pids in `dir` and every cgroup below it.
fn cgroup_pids(dir: &Path, pids: &mut Vec<i32>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            cgroup_pids(&entry.path(), pids);
        }
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
}

/// SIGKILLs every process in the cluster's cgroup subtree (on every
/// hierarchy) and the r8s processes its pid files name, until none is left.
fn kill_processes(layout: &Layout, problems: &mut Vec<String>) -> usize {
    let me = std::process::id() as i32;
    let mut killed = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut pids = Vec::new();
        for hierarchy in cgroup_hierarchies() {
            cgroup_pids(&hierarchy.join(layout.cgroup_root()), &mut pids);
        }
        for id in layout.recorded_processes().into_iter().filter(ProcessId::is_alive_r8s) {
            pids.push(id.pid);
        }
        pids.retain(|pid| *pid != me && *pid > 1);
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            return killed.len();
        }
        if Instant::now() > deadline {
            problems.push(format!("processes still running after SIGKILL: {pids:?}"));
            return killed.len();
        }
        for pid in pids {
            // SAFETY: the pid is in this cluster's own cgroup or is its r8s process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed.insert(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// Unpins the cluster's namespaces: those listed, and any by its names.
fn remove_namespaces(layout: &Layout, problems: &mut Vec<String>) -> Vec<String> {
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
        if !path.exists() {
            continue;
        }
        match runtime::network::netns::remove_pinned(&path) {
            Ok(()) => removed.push(name),
            Err(error) => problems.push(error.to_string()),
        }
    }
    removed
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/run/a\\040b"), PathBuf::from("/run/a b"));
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }
}
