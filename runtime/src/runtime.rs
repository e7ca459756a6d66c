//! The runtime's public face: create, start, wait, kill, stop, delete, list
//! and exec containers. Every call is a short blocking operation on the state
//! directory, the cgroup files or the shim; nothing is kept in memory, so a
//! new `Runtime` (after a restart) sees every container again.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{Process, User};
use serde::{Deserialize, Serialize};

use crate::attach;
use crate::cgroups::{self, CgroupError, CgroupManager, Stats};
use crate::channel::{self, Receiver};
use crate::config::{valid_id, ContainerSpec, Output, Start};
use crate::shim::{self, CreateReply, REPLY_FD};
use crate::state::{self, Bundle, ExitStatus, Pids, StateDir};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid container id {0:?}")]
    InvalidId(String),
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("no container {0}")]
    NotFound(String),
    #[error("container {id} is {status:?}, {wanted}")]
    WrongState { id: String, status: Status, wanted: &'static str },
    #[error("creating container {id}: {reason}")]
    Create { id: String, reason: String, not_found: bool },
    #[error("starting container {id}: {reason}")]
    Start { id: String, reason: String },
    #[error("container {0} has its creator's stdio, which attach cannot serve")]
    NoAttach(String),
    #[error("the shim of container {0} died without recording an exit")]
    ShimDied(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::Error },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Io { what, source }
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> RuntimeError {
    let what = what.into();
    move |errno| RuntimeError::Sys { what, errno }
}

/// Where the runtime keeps its state and cgroups, and the binary it re-executes.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// One directory per container (default `/run/r8s/runtime`).
    pub state_root: PathBuf,
    /// Where cgroup filesystems are mounted (default `/sys/fs/cgroup`).
    pub cgroup_mount: PathBuf,
    /// r8s's own cgroup subtree (default `r8s`; tests use `r8s-test-<id>`).
    pub cgroup_root: String,
    /// The r8s binary, re-executed as `r8s runtime shim` and `r8s runtime exec-init`.
    pub binary: PathBuf,
}

impl RuntimeConfig {
    /// The defaults, re-executing `binary`.
    pub fn new(binary: PathBuf) -> Self {
        Self {
            state_root: PathBuf::from("/run/r8s/runtime"),
            cgroup_mount: PathBuf::from(cgroups::DEFAULT_MOUNT),
            cgroup_root: "r8s".into(),
            binary,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Set up, waiting for `start`.
    Created,
    Running,
    Stopped,
}

/// What `info` and `list` tell about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub status: Status,
    pub pids: Option<Pids>,
    pub exit: Option<ExitStatus>,
    pub bundle: Bundle,
}

/// A process to run in a running container. Unset fields are the container's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// `NAME=value` entries added to (or replacing in) the container's environment.
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// uid and gid.
    pub user: Option<(u32, u32)>,
    /// Run on a new pseudo-terminal, relayed to the exec process's stdio.
    pub tty: bool,
}

pub struct Runtime {
    config: RuntimeConfig,
    cgroups: Box<dyn CgroupManager>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.state_root).map_err(io(format!("creating {}", config.state_root.display())))?;
        let cgroups = cgroups::detect(&config.cgroup_mount, &config.cgroup_root)?;
        Ok(Self { config, cgroups })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    pub fn cgroups(&self) -> &dyn CgroupManager {
        self.cgroups.as_ref()
    }

    fn state_dir(&self, id: &str) -> Result<StateDir> {
        if !valid_id(id) {
            return Err(RuntimeError::InvalidId(id.to_string()));
        }
        Ok(StateDir::new(self.config.state_root.join(id)))
    }

    /// Creates the container: its cgroup, namespaces and root filesystem, with
    /// the init waiting for `start`. A program that does not exist is reported
    /// here (`Create { not_found: true }`). A failed create leaves nothing.
    pub fn create(&self, spec: ContainerSpec) -> Result<ContainerInfo> {
        self.create_with(spec, Start::OnRequest)
    }

    /// Creates the container and starts its program as soon as it is set up,
    /// as `runc run` does: one step where `create` and `start` take two.
    pub fn create_started(&self, spec: ContainerSpec) -> Result<ContainerInfo> {
        let mut info = self.create_with(spec, Start::AtOnce)?;
        info.status = Status::Running;
        Ok(info)
    }

    fn create_with(&self, spec: ContainerSpec, start: Start) -> Result<ContainerInfo> {
        let id = spec.id.clone();
        let state = self.state_dir(&id)?;
        match std::fs::create_dir(state.path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(RuntimeError::AlreadyExists(id)),
            Err(e) => return Err(io(format!("creating {}", state.path().display()))(e)),
        }
        let cgroup_path = spec
            .oci
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_else(|| PathBuf::from(&id));
        let bundle = Bundle {
            spec,
            cgroup_mount: self.config.cgroup_mount.clone(),
            cgroup_root: self.config.cgroup_root.clone(),
            cgroup_path,
            start,
        };
        let created = state::write_json(&state.bundle_file(), &bundle)
            .map_err(io("writing bundle.json"))
            .and_then(|()| self.spawn_shim(&state, &bundle));
        match created {
            Ok(pids) => Ok(ContainerInfo { id, status: Status::Created, pids: Some(pids), exit: None, bundle }),
            Err(error) => {
                let _ = self.remove_leftovers(&state, &bundle);
                Err(error)
            }
        }
    }

    fn spawn_shim(&self, state: &StateDir, bundle: &Bundle) -> Result<Pids> {
        let (reply_read, reply_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        let quiet = !matches!(bundle.spec.output, Output::Inherit);
        if single_threaded() {
            fork_shim(state, bundle, reply_write, quiet)?;
        } else {
            let mut command = Command::new(&self.config.binary);
            command.args(["runtime", "shim", "--state-dir"]).arg(state.path());
            if quiet {
                command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            }
            channel::pass_fd(&mut command, &reply_write, REPLY_FD);
            let mut first = command.spawn().map_err(io(format!("starting {}", self.config.binary.display())))?;
            drop(reply_write);
            // The first shim process exits as soon as the detached one is forked.
            let _ = first.wait();
        }
        let mut replies = Receiver::<CreateReply>::from_fd(reply_read);
        match replies.recv() {
            Ok(CreateReply::Created(pids)) => Ok(pids),
            Ok(CreateReply::Failed { reason, not_found }) => {
                Err(RuntimeError::Create { id: bundle.spec.id.clone(), reason, not_found })
            }
            Err(e) => Err(RuntimeError::Create {
                id: bundle.spec.id.clone(),
                reason: format!("the shim ended without an answer: {e}"),
                not_found: false,
            }),
        }
    }

    /// Lets a created container's init run its program.
    pub fn start(&self, id: &str) -> Result<()> {
        let info = self.info(id)?;
        if info.status != Status::Created {
            return Err(RuntimeError::WrongState { id: id.into(), status: info.status, wanted: "cannot start" });
        }
        let state = self.state_dir(id)?;
        let fifo = nix::fcntl::open(&state.start_fifo(), OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(sys("opening the start FIFO"))?;
        let init = Pid::from_raw(info.pids.as_ref().map_or(0, |p| p.init));
        // The init writes one byte once it sees a reader; it may also die first.
        loop {
            let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
            let ready = nix::poll::poll(&mut fds, PollTimeout::from(100u16)).map_err(sys("poll"))?;
            if ready > 0 {
                let mut byte = [0u8; 1];
                if matches!(nix::unistd::read(&fifo, &mut byte), Ok(1)) {
                    break;
                }
            }
            if nix::sys::signal::kill(init, None).is_err() {
                let exit = self.wait(id)?;
                let reason = exit.reason.unwrap_or_else(|| format!("its init exited with code {}", exit.code));
                return Err(RuntimeError::Start { id: id.into(), reason });
            }
        }
        std::fs::remove_file(state.start_fifo()).map_err(io("removing the start FIFO"))
    }

    /// The container's status, pids and exit.
    pub fn info(&self, id: &str) -> Result<ContainerInfo> {
        let state = self.state_dir(id)?;
        let bundle: Bundle = state::read_json(&state.bundle_file())
            .map_err(io("reading bundle.json"))?
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let pids: Option<Pids> = state::read_json(&state.pids_file()).map_err(io("reading state.json"))?;
        let exit: Option<ExitStatus> = state::read_json(&state.exit_file()).map_err(io("reading exit.json"))?;
        let status = match (&exit, &pids) {
            (Some(_), _) | (None, None) => Status::Stopped,
            (None, Some(pids)) if !alive(pids.shim) => Status::Stopped,
            (None, Some(_)) if state.start_fifo().exists() => Status::Created,
            (None, Some(_)) => Status::Running,
        };
        Ok(ContainerInfo { id: id.to_string(), status, pids, exit, bundle })
    }

    /// Every container in the state root.
    pub fn list(&self) -> Result<Vec<ContainerInfo>> {
        let entries = std::fs::read_dir(&self.config.state_root).map_err(io("listing the state root"))?;
        let mut containers = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            match self.info(&name) {
                Ok(info) => containers.push(info),
                // A directory being created or deleted meanwhile.
                Err(RuntimeError::NotFound(_) | RuntimeError::InvalidId(_)) => {}
                Err(e) => return Err(e),
            }
        }
        containers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(containers)
    }

    /// Waits until the container's init has exited.
    pub fn wait(&self, id: &str) -> Result<ExitStatus> {
        self.wait_timeout(id, None)?.ok_or_else(|| RuntimeError::ShimDied(id.into()))
    }

    /// Waits at most `timeout` (forever if `None`); `None` if still running.
    pub fn wait_timeout(&self, id: &str, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        let info = self.info(id)?;
        if let Some(exit) = info.exit {
            return Ok(Some(exit));
        }
        let Some(pids) = info.pids else { return Err(RuntimeError::ShimDied(id.into())) };
        // The shim exits right after writing exit.json.
        if let Ok(pidfd) = shim::pidfd_open(Pid::from_raw(pids.shim)) {
            let timeout = match timeout {
                None => PollTimeout::NONE,
                Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
            };
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            loop {
                match nix::poll::poll(&mut fds, timeout) {
                    Err(nix::Error::EINTR) => continue,
                    Ok(0) => return Ok(None),
                    Ok(_) => break,
                    Err(errno) => return Err(sys("poll")(errno)),
                }
            }
            // A shim that `fork_shim` made is this process's child: reap it.
            // Through the pidfd, so that a recycled pid can never make this
            // reap another child; for anyone else's shim it does nothing.
            // SAFETY: siginfo_t is plain data, valid all zero, and waitid
            // only writes into it.
            unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG);
            }
        }
        let state = self.state_dir(id)?;
        match state::read_json::<ExitStatus>(&state.exit_file()).map_err(io("reading exit.json"))? {
            Some(exit) => Ok(Some(exit)),
            None => Err(RuntimeError::ShimDied(id.into())),
        }
    }

    /// Sends `signal` to the container's init.
    pub fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        let info = self.info(id)?;
        match (info.status, info.pids) {
            (Status::Created | Status::Running, Some(pids)) => {
                nix::sys::signal::kill(Pid::from_raw(pids.init), signal).map_err(sys(format!("signalling {id}")))
            }
            (status, _) => Err(RuntimeError::WrongState { id: id.into(), status, wanted: "cannot be signalled" }),
        }
    }

    /// Stops the container: `signal` to the init, then after `timeout` SIGKILL
    /// to every process of its cgroup. Returns how it ended.
    pub fn stop(&self, id: &str, signal: Signal, timeout: Duration) -> Result<ExitStatus> {
        let info = self.info(id)?;
        if info.status == Status::Stopped {
            return self.wait(id);
        }
        // The init may exit between the check and the signal.
        let _ = self.kill(id, signal);
        if let Some(exit) = self.wait_timeout(id, Some(timeout))? {
            return Ok(exit);
        }
        self.cgroups.kill_all(&info.bundle.cgroup_path)?;
        self.wait(id)
    }

    /// Removes a stopped container: its cgroup and state. With `force`, a
    /// running container is killed first.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let info = self.info(id)?;
        if info.status != Status::Stopped {
            if !force {
                return Err(RuntimeError::WrongState { id: id.into(), status: info.status, wanted: "cannot be deleted" });
            }
            self.cgroups.kill_all(&info.bundle.cgroup_path)?;
            let _ = self.wait(id);
        }
        self.remove_leftovers(&self.state_dir(id)?, &info.bundle)
    }

    /// Removes the cgroup and the state directory, the second even when the
    /// first fails.
    fn remove_leftovers(&self, state: &StateDir, bundle: &Bundle) -> Result<()> {
        let cgroup = self.cgroups.remove(&bundle.cgroup_path);
        std::fs::remove_dir_all(state.path()).map_err(io(format!("removing {}", state.path().display())))?;
        Ok(cgroup?)
    }

    /// Freezes (true) or thaws (false) every process of the container.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        let info = self.info(id)?;
        Ok(self.cgroups.set_frozen(&info.bundle.cgroup_path, paused)?)
    }

    /// Memory, CPU and pids usage from the container's cgroup.
    pub fn stats(&self, id: &str) -> Result<Stats> {
        let info = self.info(id)?;
        Ok(self.cgroups.stats(&info.bundle.cgroup_path)?)
    }

    /// A connection to the shim of a running container that serves its stdio
    /// (see [`crate::attach`]).
    pub fn attach(&self, id: &str) -> Result<std::os::unix::net::UnixStream> {
        let info = self.info(id)?;
        if info.status != Status::Running {
            return Err(RuntimeError::WrongState { id: id.into(), status: info.status, wanted: "cannot be attached to" });
        }
        if matches!(info.bundle.spec.output, Output::Inherit) {
            return Err(RuntimeError::NoAttach(id.into()));
        }
        let state = self.state_dir(id)?;
        let dir = attach::open_dir(state.path()).map_err(io(format!("opening {}", state.path().display())))?;
        std::os::unix::net::UnixStream::connect(attach::socket_path(&dir)).map_err(io(format!("attaching to {id}")))
    }

    /// Has the running container's shim close its log and open it again at
    /// the log path (after the file there was renamed away).
    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let stream = self.attach(id)?;
        attach::reopen_log(stream).map_err(io(format!("reopening the log of {id}")))
    }

    /// A command that runs `exec` inside the running container when spawned;
    /// its stdio are the process's, its exit code the process's (127 when the
    /// program does not exist). The caller chooses stdio and waits.
    pub fn exec_command(&self, id: &str, exec: &ExecSpec) -> Result<Command> {
        let info = self.info(id)?;
        if info.status != Status::Running {
            return Err(RuntimeError::WrongState { id: id.into(), status: info.status, wanted: "cannot exec" });
        }
        let base = info.bundle.spec.oci.process().clone().unwrap_or_default();
        let process = exec_process(&base, exec);
        let mut command = Command::new(&self.config.binary);
        command
            .args(["runtime", "exec-init", "--state-dir"])
            .arg(self.state_dir(id)?.path())
            .arg("--process")
            .arg(serde_json::to_string(&process).map_err(|e| io("encoding the process")(std::io::Error::other(e)))?);
        if exec.tty {
            command.arg("--tty");
        }
        Ok(command)
    }
}

/// Whether this process has one thread (`r8s runtime run`, not the CRI
/// service): then it may fork and run the shim without executing the r8s
/// binary again (a few milliseconds for a binary this size).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

/// Forks the shim from this single-threaded process: it gets what `r8s
/// runtime shim` gets (the reply pipe as fd 3, nothing else open, /dev/null as
/// stdio when `quiet`) and stays this process's child, reaped by
/// [`Runtime::wait`] or re-parented when this process exits.
fn fork_shim(state: &StateDir, bundle: &Bundle, reply_write: std::os::fd::OwnedFd, quiet: bool) -> Result<()> {
    let null = if quiet {
        Some(std::fs::File::options().read(true).write(true).open("/dev/null").map_err(io("opening /dev/null"))?)
    } else {
        None
    };
    // SAFETY: the caller checked that this process is single-threaded, so the
    // child may run ordinary Rust code.
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: fcntl, dup2 and close_range on descriptors of this
            // process, which no other thread uses.
            unsafe {
                // Out of the way first, so that no dup2 below overwrites them.
                let reply = libc::fcntl(reply_write.as_raw_fd(), libc::F_DUPFD, 100);
                let null = null.as_ref().map(|n| libc::fcntl(n.as_raw_fd(), libc::F_DUPFD, 100));
                if let Some(null) = null {
                    for fd in 0..=2 {
                        libc::dup2(null, fd);
                    }
                }
                libc::dup2(reply, REPLY_FD);
                // As an exec's close-on-exec would: the shim outlives us and
                // must not hold our files (locks, pipes, sockets).
                libc::syscall(libc::SYS_close_range, REPLY_FD + 1, u32::MAX, 0);
            }
            shim::run(state.path(), shim::Creator::ShortLived(bundle))
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(reply_write);
            Ok(())
        }
    }
}

/// The container's process with the exec's overrides.
fn exec_process(base: &Process, exec: &ExecSpec) -> Process {
    let mut process = base.clone();
    process.set_args(Some(exec.args.clone()));
    let mut env = base.env().clone().unwrap_or_default();
    for entry in &exec.env {
        let name = entry.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(name));
        env.push(entry.clone());
    }
    process.set_env(Some(env));
    if let Some(cwd) = &exec.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = exec.user {
        let mut user = User::default();
        user.set_uid(uid);
        user.set_gid(gid);
        process.set_user(user);
    }
    process.set_terminal(Some(exec.tty));
    process
}

fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
}

