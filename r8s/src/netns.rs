//! Running a whole r8s process inside a network namespace (a pinned file, or
//! a name under `/run/netns` as `ip netns` names them): `r8s server --netns` and
//! `r8s agent --netns` enter theirs before they start any thread, so every
//! socket they open and every process they start (the runtime, its pods'
//! network) lives there.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// Where `ip netns` (and r8s) pin named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Where a `--netns` value points: a path as it is, a plain name under
/// `/run/netns` (as `ip netns` names them).
pub fn resolve(netns: &str) -> anyhow::Result<PathBuf> {
    if netns.starts_with('/') {
        return Ok(PathBuf::from(netns));
    }
    if netns.is_empty() || netns.contains('/') {
        bail!("network namespace {netns:?} is neither a plain name nor an absolute path");
    }
    Ok(netns_path(netns))
}

/// Moves the calling process into a network namespace (see [`resolve`]).
/// Call it while the process has one thread: `setns` moves only the calling thread.
pub fn enter(netns: &str) -> anyhow::Result<()> {
    let path = resolve(netns)?;
    let file = std::fs::File::open(&path).with_context(|| format!("network namespace {}", path.display()))?;
    // SAFETY: a valid namespace file descriptor; no other thread exists yet.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("entering network namespace {}", path.display()));
    }
    Ok(())
}
