//! Running a whole r8s process inside a named network namespace
//! (`/run/netns/NAME`, as `ip netns` names them): `r8s server --netns` and
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

/// Moves the calling process into the named network namespace. Call it while
/// the process has one thread: `setns` moves only the calling thread.
pub fn enter(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains('/') {
        bail!("network namespace name {name:?} is not a plain name");
    }
    let path = netns_path(name);
    let file = std::fs::File::open(&path).with_context(|| format!("network namespace {name} ({})", path.display()))?;
    // SAFETY: a valid namespace file descriptor; no other thread exists yet.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("entering network namespace {name}"));
    }
    Ok(())
}
