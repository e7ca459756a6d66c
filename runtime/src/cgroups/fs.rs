//! Reading and writing cgroup files, with errors that name the file.

use std::path::{Path, PathBuf};

use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup root {0:?} must start with \"r8s\" and be a relative path of plain names")]
    BadRoot(String),
    #[error("no cgroup filesystem at {0}")]
    NotMounted(PathBuf),
    #[error("cgroup path {0:?} must be relative and stay below the root")]
    BadPath(PathBuf),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("cgroup {0} did not freeze")]
    FreezeTimeout(PathBuf),
}

impl CgroupError {
    /// A process could not be moved because it has exited.
    pub fn is_no_such_process(&self) -> bool {
        matches!(self, CgroupError::Io { source, .. } if source.raw_os_error() == Some(libc::ESRCH))
    }
}

pub fn io_error(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { op, path, source }
}

pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(io_error("write", &path))
}

pub fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(io_error("read", &path))
}

/// A file holding one number; `max` reads as `None`.
pub fn read_number(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    let content = read(dir, file)?;
    let trimmed = content.trim();
    if trimmed == "max" {
        return Ok(None);
    }
    trimmed
        .parse()
        .map(Some)
        .map_err(|_| CgroupError::Parse { path: dir.join(file), content })
}

/// The value of `key` in a flat-keyed file such as `memory.events`.
pub fn read_key(dir: &Path, file: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    let content = read(dir, file)?;
    Ok(content.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    }))
}

pub fn read_pids(dir: &Path) -> Result<Vec<Pid>, CgroupError> {
    let path = dir.join("cgroup.procs");
    match std::fs::read_to_string(&path) {
        Ok(content) => Ok(content
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .map(Pid::from_raw)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error("read", &path)(e)),
    }
}

/// `root/relative`, refusing paths that would leave `root`.
pub fn below(root: &Path, relative: &Path) -> Result<PathBuf, CgroupError> {
    use std::path::Component;
    if relative.as_os_str().is_empty()
        || !relative.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(CgroupError::BadPath(relative.to_path_buf()));
    }
    Ok(root.join(relative))
}

/// Removes `dir` and then its empty parents up to and including `stop`.
/// A cgroup directory is removed with `rmdir` (its files are virtual); a cgroup
/// whose last process is still exiting is busy for a moment, so busy is retried.
pub fn remove_up_to(dir: &Path, stop: &Path) -> Result<(), CgroupError> {
    let mut current = dir.to_path_buf();
    loop {
        // Only the container's own cgroup can be busy with an exiting
        // process; a busy parent has other children and stays.
        let removed = if current == dir { rmdir_retrying(&current) } else { std::fs::remove_dir(&current) };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // A parent still holding other cgroups stays.
            Err(_) if current != dir => return Ok(()),
            Err(e) => return Err(io_error("remove", &current)(e)),
        }
        if current == stop {
            return Ok(());
        }
        match current.parent() {
            Some(parent) if parent.starts_with(stop) => current = parent.to_path_buf(),
            _ => return Ok(()),
        }
    }
}

fn rmdir_retrying(dir: &Path) -> std::io::Result<()> {
    let mut attempts = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
