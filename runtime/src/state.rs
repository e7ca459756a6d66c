//! A container's state directory: what the caller, the shim and later callers
//! share. Everything is found again from here after a restart of the caller.
//!
//! ```text
//! <state root>/<id>/
//!   bundle.json   what to run (written by create, read by the shim and exec)
//!   state.json    pids and times (written by the shim once the init is ready)
//!   exit.json     how it ended (written by the shim)
//!   start         FIFO the init waits on until `start`
//!   attach.sock   the shim's attach socket (see `crate::attach`)
//!   rootfs/ upper/ work/   the overlay's mount point, writable layer, work dir
//! ```

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{ContainerSpec, Start};

/// What the shim and exec need to find: the spec and where its cgroup is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub spec: ContainerSpec,
    pub cgroup_mount: PathBuf,
    pub cgroup_root: String,
    /// Relative to the cgroup root.
    pub cgroup_path: PathBuf,
    #[serde(default)]
    pub start: Start,
}

/// The processes of a created container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pids {
    pub shim: i32,
    pub init: i32,
    /// RFC 3339.
    pub created_at: String,
}

/// How a container's init ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or 128 + the signal that killed it.
    pub code: i32,
    pub signal: Option<i32>,
    /// Killed by the kernel for exceeding its memory limit.
    pub oom_killed: bool,
    /// Why the program could not be run, when it could not.
    pub reason: Option<String>,
    /// RFC 3339.
    pub finished_at: String,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
    pub fn bundle_file(&self) -> PathBuf {
        self.dir.join("bundle.json")
    }
    pub fn pids_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn start_fifo(&self) -> PathBuf {
        self.dir.join("start")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a JSON file atomically (a reader sees the old file or the new one).
/// Concurrent writers each use their own temporary file.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
