//! Named network namespaces, and running code inside one.
//!
//! A namespace is kept alive by bind-mounting its `nsfs` file onto a plain file
//! (as `ip netns add` does under `/run/netns`), so it outlives the thread that
//! created it. Code runs inside a namespace on a dedicated OS thread that calls
//! `setns`: a thread's network namespace is per thread, so the rest of the
//! process (and every tokio worker) stays where it was. Sockets opened and
//! processes spawned by that thread belong to the namespace for their lifetime.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::thread;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Why a namespace could not be made, opened or entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("network namespace {path}: {action}: {errno}")]
    Sys { path: PathBuf, action: &'static str, errno: Errno },
    #[error("network namespace {0} already exists")]
    AlreadyExists(PathBuf),
    #[error("the thread running in network namespace {0} panicked")]
    ThreadPanicked(PathBuf),
}

impl NetnsError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io { path: path.to_owned(), source }
    }

    fn sys(path: &Path, action: &'static str, errno: Errno) -> Self {
        Self::Sys { path: path.to_owned(), action, errno }
    }
}

/// A network namespace pinned by a bind mount at `path`.
///
/// The handle does not remove the namespace when dropped: sandboxes outlive
/// the runtime process. Call [`NetNs::remove`] (tests wrap it in a guard).
#[derive(Debug, Clone)]
pub struct NetNs {
    path: PathBuf,
}

impl NetNs {
    /// Creates a new, empty network namespace pinned at `path` (its parent
    /// directory is created if needed). The namespace has only a `lo`, down.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, NetnsError> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| NetnsError::io(dir, e))?;
        }
        match File::options().write(true).create_new(true).open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetnsError::AlreadyExists(path))
            }
            Err(e) => return Err(NetnsError::io(&path, e)),
        }
        if let Err(err) = pin_new_namespace(&path) {
            // Only the empty mount point was made: take it away again.
            let _ = fs::remove_file(&path);
            return Err(err);
        }
        Ok(Self { path })
    }

    /// Refers to a namespace pinned at `path` by someone else (checked to exist).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, NetnsError> {
        let path = path.into();
        File::open(&path).map_err(|e| NetnsError::io(&path, e))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unpins the namespace and deletes its file. The namespace itself goes
    /// away with the last process or socket in it. Idempotent.
    pub fn remove(&self) -> Result<(), NetnsError> {
        remove_pinned(&self.path)
    }

    /// Runs `f` on a new OS thread that has entered this namespace, and waits
    /// for it. Blocking: from async code use [`run_in_netns`].
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.spawn(f)?
            .join()
            .map_err(|_| NetnsError::ThreadPanicked(self.path.clone()))?
    }

    /// Starts `f` on a new OS thread inside this namespace (a server a test
    /// runs "in a pod", say) and returns at once.
    pub fn spawn<T, F>(&self, f: F) -> Result<thread::JoinHandle<Result<T, NetnsError>>, NetnsError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let target = File::open(&self.path).map_err(|e| NetnsError::io(&self.path, e))?;
        let path = self.path.clone();
        thread::Builder::new()
            .name("r8s-netns".into())
            .spawn(move || {
                enter(&target, &path)?;
                Ok(f())
            })
            .map_err(|e| NetnsError::io(&self.path, e))
    }
}

/// Unpins the namespace at `path` and deletes the file; missing is fine.
pub fn remove_pinned(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (already unmounted); ENOENT: gone.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(NetnsError::sys(path, "unmount", e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetnsError::io(path, e)),
    }
}

/// Runs `f` inside the network namespace at `netns` (or in the process's own
/// namespace when `None`) on a dedicated OS thread, without blocking the
/// async runtime.
pub async fn run_in_netns<T, F>(netns: Option<&Path>, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let Some(path) = netns else {
        return tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| NetnsError::ThreadPanicked(PathBuf::from("(own namespace)")));
    };
    let target = File::open(path).map_err(|e| NetnsError::io(path, e))?;
    let owned_path = path.to_owned();
    let (done, result) = tokio::sync::oneshot::channel();
    thread::Builder::new()
        .name("r8s-netns".into())
        .spawn(move || {
            let outcome = enter(&target, &owned_path).map(|()| f());
            // The receiver is gone only if the caller was cancelled.
            let _ = done.send(outcome);
        })
        .map_err(|e| NetnsError::io(path, e))?;
    result.await.map_err(|_| NetnsError::ThreadPanicked(path.to_owned()))?
}

/// Moves the calling thread into the namespace open as `target`.
fn enter(target: &File, path: &Path) -> Result<(), NetnsError> {
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::sys(path, "setns", e))
}

/// Makes a new namespace on a short-lived thread and bind-mounts it onto `path`.
fn pin_new_namespace(path: &Path) -> Result<(), NetnsError> {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetnsError::sys(path, "unshare", e))?;
                // thread-self, not self: only this thread is in the new namespace.
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| NetnsError::sys(path, "bind mount", e))
            })
            .join()
            .map_err(|_| NetnsError::ThreadPanicked(path.to_owned()))?
    })
}
