//! The node's container log files, kept as the kubelet keeps them: a running
//! container's log that grows past the size limit is renamed away
//! (`0.log` → `0.log.20261207-231502`) and the runtime is told to reopen it
//! (CRI `ReopenContainerLog`); of the renamed files only the newest
//! `max_files - 1` stay. The log directory of a pod the node no longer has
//! goes with the pod.
//!
//! Layout: `<log_dir>/<namespace>_<name>_<uid>/<container>/<attempt>.log`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cri::{api as cri, Cri};
use crate::pods::labels;

/// How often logs are looked at (the kubelet's `containerLogMonitorInterval`).
const MONITOR_INTERVAL: Duration = Duration::from_secs(10);

/// The kubelet's `--container-log-max-size` and `--container-log-max-files`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    pub max_size: u64,
    /// The current file counts: 5 keeps it and four rotated ones. At least 2
    /// (the kubelet refuses less too).
    pub max_files: usize,
}

impl Default for LogPolicy {
    fn default() -> Self {
        Self { max_size: 10 * 1024 * 1024, max_files: 5 }
    }
}

/// What to do with one container's log files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Rename the current file away and have the runtime reopen it.
    pub rotate: bool,
    /// Rotated files to delete, oldest first.
    pub remove: Vec<String>,
}

/// Decides for a log of `size` bytes whose rotated files are `rotated` (names,
/// any order): rotation names sort by time.
pub fn plan(size: u64, rotated: &[String], policy: LogPolicy) -> Plan {
    let rotate = size > policy.max_size;
    let mut rotated: Vec<&String> = rotated.iter().collect();
    rotated.sort();
    // After a rotation one more rotated file exists.
    let after = rotated.len() + usize::from(rotate);
    let keep = policy.max_files.saturating_sub(1);
    let excess = after.saturating_sub(keep).min(rotated.len());
    Plan { rotate, remove: rotated[..excess].iter().map(|name| name.to_string()).collect() }
}

/// The pod UID a pod log directory (`<namespace>_<name>_<uid>`) is named for.
pub fn pod_uid_of(dir_name: &str) -> Option<&str> {
    dir_name.rsplit_once('_').map(|(_, uid)| uid).filter(|uid| !uid.is_empty())
}

/// Removes the log directories of pods that are not in `known` (UIDs).
pub fn remove_stale_pod_dirs(log_dir: &Path, known: &HashSet<String>) {
    for entry in std::fs::read_dir(log_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(uid) = pod_uid_of(&name) else { continue };
        if known.contains(uid) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => tracing::info!(dir = %entry.path().display(), "removed the logs of a pod the node no longer has"),
            Err(error) => tracing::warn!(dir = %entry.path().display(), %error, "could not remove a gone pod's logs"),
        }
    }
}

/// Rotates the logs of running containers every interval, for ever.
pub async fn maintain(cri: Cri, log_dir: PathBuf, policy: LogPolicy) {
    let mut tick = tokio::time::interval(MONITOR_INTERVAL);
    loop {
        tick.tick().await;
        for log in current_logs(&log_dir) {
            if let Err(error) = keep_in_bounds(&cri, &log, policy).await {
                tracing::warn!(log = %log.path.display(), %error, "could not rotate a container log");
            }
        }
    }
}

/// One container's current log file, and who it belongs to.
struct ContainerLog {
    path: PathBuf,
    pod_uid: String,
    container: String,
    attempt: u32,
}

fn current_logs(log_dir: &Path) -> Vec<ContainerLog> {
    let mut logs = Vec::new();
    for pod in std::fs::read_dir(log_dir).into_iter().flatten().flatten() {
        let pod_name = pod.file_name().to_string_lossy().into_owned();
        let Some(uid) = pod_uid_of(&pod_name) else { continue };
        for container in std::fs::read_dir(pod.path()).into_iter().flatten().flatten() {
            let container_name = container.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(container.path()).into_iter().flatten().flatten() {
                let file_name = file.file_name().to_string_lossy().into_owned();
                let Some(attempt) = file_name.strip_suffix(".log").and_then(|n| n.parse().ok()) else { continue };
                logs.push(ContainerLog { path: file.path(), pod_uid: uid.to_string(), container: container_name.clone(), attempt });
            }
        }
    }
    logs
}

async fn keep_in_bounds(cri: &Cri, log: &ContainerLog, policy: LogPolicy) -> Result<(), crate::Error> {
    let io_error = |source| crate::Error::Io { path: log.path.display().to_string(), source };
    let size = std::fs::metadata(&log.path).map_err(io_error)?.len();
    let file_name = log.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!("{file_name}.");
    let dir = log.path.parent().unwrap_or(Path::new("/"));
    let rotated: Vec<String> = std::fs::read_dir(dir)
        .map_err(io_error)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    let plan = plan(size, &rotated, policy);
    if plan.rotate {
        // Only a running container's log grows; the runtime must reopen it.
        let Some(container_id) = running_container(cri, log).await? else { return Ok(()) };
        let stamp = chrono_stamp();
        std::fs::rename(&log.path, dir.join(format!("{prefix}{stamp}"))).map_err(io_error)?;
        cri.runtime.reopen_container_log(&container_id).await.map_err(crate::cri::CriError::from)?;
    }
    for name in plan.remove {
        std::fs::remove_file(dir.join(&name)).map_err(io_error)?;
    }
    Ok(())
}

/// The id of the running container that writes `log`.
async fn running_container(cri: &Cri, log: &ContainerLog) -> Result<Option<String>, crate::Error> {
    let filter = cri::ContainerFilter {
        state: Some(cri::ContainerStateValue { state: cri::ContainerState::ContainerRunning as i32 }),
        label_selector: [(labels::POD_UID.to_string(), log.pod_uid.clone())].into(),
        ..Default::default()
    };
    let containers = cri.runtime.list_containers(Some(filter)).await.map_err(crate::cri::CriError::from)?;
    Ok(containers
        .into_iter()
        .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == log.container && m.attempt == log.attempt))
        .map(|c| c.id))
}

/// `20261207-231502`, the kubelet's rotation suffix (UTC).
fn chrono_stamp() -> String {
    let now = client::k8s_openapi::jiff::Timestamp::now();
    now.strftime("%Y%m%d-%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LogPolicy = LogPolicy { max_size: 100, max_files: 3 };

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_small_log_stays() {
        assert_eq!(plan(100, &[], POLICY), Plan::default());
    }

    #[test]
    fn a_large_log_rotates_and_the_oldest_rotated_files_go() {
        let rotated = names(&["0.log.20260101-000002", "0.log.20260101-000001"]);
        assert_eq!(plan(101, &rotated, POLICY), Plan { rotate: true, remove: names(&["0.log.20260101-000001"]) });
        assert_eq!(plan(101, &[], POLICY), Plan { rotate: true, remove: vec![] });
    }

    #[test]
    fn excess_rotated_files_go_even_without_a_rotation() {
        let rotated = names(&["0.log.3", "0.log.1", "0.log.2"]);
        assert_eq!(plan(5, &rotated, POLICY), Plan { rotate: false, remove: names(&["0.log.1"]) });
    }

    #[test]
    fn two_files_keep_one_rotated_file() {
        let policy = LogPolicy { max_size: 10, max_files: 2 };
        assert_eq!(plan(11, &names(&["0.log.1"]), policy), Plan { rotate: true, remove: names(&["0.log.1"]) });
    }

    #[test]
    fn pod_directories_name_their_uid() {
        assert_eq!(pod_uid_of("default_web-1_0b6f-11"), Some("0b6f-11"));
        assert_eq!(pod_uid_of("kube_system_x_abc"), Some("abc"));
        assert_eq!(pod_uid_of("junk"), None);
        assert_eq!(pod_uid_of("a_"), None);
    }
}
