//! The shim: one small process per container (the re-executed r8s binary,
//! `r8s runtime shim`, or forked by a single-threaded creator), in a session
//! of its own so that it outlives whoever created the container. It creates
//! the container's cgroup, launches the init, tells the creator the outcome,
//! then copies the container's output into the CRI log and to attach clients
//! (and their input to its stdin, see [`crate::attach`]), reaps the init and
//! records how it ended in `exit.json`.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::cgroups::{self, CgroupManager, Resources};
use crate::channel::{Receiver, Sender};
use crate::attach::{self, hub::Hub};
use crate::config::{ContainerSpec, Output, Start, StdinMode};
use crate::executor::{self, Launch, SetupError, SetupMessage};
use crate::logs::{CriLogWriter, Stream};
use crate::state::{self, Bundle, ExitStatus, Pids, StateDir};

/// The descriptor on which the shim answers its creator.
pub const REPLY_FD: i32 = 3;

/// The shim's answer to the creator.
#[derive(Debug, Serialize, Deserialize)]
pub enum CreateReply {
    Created(Pids),
    Failed { reason: String, not_found: bool },
}

/// Who made the shim, which decides whether it detaches and where it finds
/// the bundle.
pub enum Creator<'a> {
    /// A long-lived service executed `r8s runtime shim`: the shim forks once
    /// more and the first process exits, so the service never has a child
    /// that lives as long as the container (re-parented to the nearest
    /// subreaper or init instead).
    Service,
    /// A short-lived, single-threaded process (`r8s runtime run`) forked the
    /// shim: it reaps the shim or exits soon, so the shim needs no second fork,
    /// and it hands over the bundle it has just written.
    ShortLived(&'a Bundle),
}

/// The shim's main; never returns.
pub fn run(state_dir: &Path, creator: Creator) -> ! {
    // SAFETY: REPLY_FD was set up by the creator for us alone.
    let mut reply = Sender::<CreateReply>::from_fd(unsafe { OwnedFd::from_raw_fd(REPLY_FD) });
    // The container's processes must not inherit the creator's pipe.
    let _ = nix::fcntl::fcntl(reply.as_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    if let Creator::Service = creator {
        // SAFETY: the shim is single-threaded.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Parent { .. }) => std::process::exit(0),
            Ok(ForkResult::Child) => {}
            Err(errno) => {
                let _ = reply.send(&CreateReply::Failed { reason: format!("fork: {errno}"), not_found: false });
                std::process::exit(1);
            }
        }
    }
    let _ = nix::unistd::setsid();
    let state = StateDir::new(state_dir.to_path_buf());
    let bundle = match creator {
        Creator::Service => read_bundle(&state).map(std::borrow::Cow::Owned),
        Creator::ShortLived(bundle) => Ok(std::borrow::Cow::Borrowed(bundle)),
    };
    let code = match bundle.and_then(|bundle| supervise(&state, &bundle, &mut reply)) {
        Ok(()) => 0,
        Err(error) => {
            let _ = reply.send(&CreateReply::Failed {
                not_found: matches!(error, SetupError::NotFound(_)),
                reason: error.to_string(),
            });
            1
        }
    };
    std::process::exit(code)
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io { what: what.to_string(), source }
}

fn sys(what: &str) -> impl FnOnce(nix::Error) -> SetupError + '_ {
    move |errno| SetupError::Sys { what: what.to_string(), errno }
}

/// The container's stdio as the init gets it, and the shim's ends of it.
struct Stdio {
    container: [OwnedFd; 3],
    /// `None` when the container has the caller's own stdio.
    shim: Option<ShimEnds>,
}

/// What the shim copies and serves: output to the log and to attach clients,
/// attach clients' input to the container's stdin.
struct ShimEnds {
    /// Read ends of stdout and stderr, or the terminal's master as stdout.
    outputs: Vec<(Stream, File)>,
    log: Option<Log>,
    stdin: Option<attach::hub::Stdin>,
    /// The terminal's master, for resizes.
    terminal: Option<OwnedFd>,
}

/// The container's CRI log and where it lives, to open it there again after
/// the kubelet renamed it away (CRI ReopenContainerLog).
struct Log {
    path: PathBuf,
    writer: CriLogWriter<File>,
}

impl Log {
    fn open(path: &Path) -> std::io::Result<File> {
        File::options().create(true).append(true).open(path)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        self.writer.set_output(Self::open(&self.path)?);
        Ok(())
    }
}

fn open_null() -> Result<OwnedFd, SetupError> {
    File::options().read(true).write(true).open("/dev/null").map(OwnedFd::from).map_err(io("opening /dev/null"))
}

fn dup(fd: std::os::fd::BorrowedFd) -> Result<OwnedFd, SetupError> {
    fd.try_clone_to_owned().map_err(io("duplicating a descriptor"))
}

fn stdio(spec: &ContainerSpec) -> Result<Stdio, SetupError> {
    let log = match &spec.output {
        Output::Inherit => {
            return Ok(Stdio {
                container: [dup(std::io::stdin().as_fd())?, dup(std::io::stdout().as_fd())?, dup(std::io::stderr().as_fd())?],
                shim: None,
            })
        }
        Output::Null => None,
        Output::Log(path) => Some(Log {
            path: path.clone(),
            writer: CriLogWriter::new(Log::open(path).map_err(io("opening the log file"))?),
        }),
    };
    let once = spec.stdin == StdinMode::Once;
    let terminal = spec.oci.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    if terminal {
        let pty = nix::pty::openpty(None, None).map_err(sys("openpty"))?;
        for fd in [&pty.master, &pty.slave] {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).map_err(sys("fcntl"))?;
        }
        let stdin = match spec.stdin {
            StdinMode::Closed => None,
            StdinMode::Open | StdinMode::Once => Some(attach::hub::Stdin { file: File::from(dup(pty.master.as_fd())?), once }),
        };
        return Ok(Stdio {
            container: [dup(pty.slave.as_fd())?, dup(pty.slave.as_fd())?, pty.slave],
            shim: Some(ShimEnds {
                outputs: vec![(Stream::Stdout, File::from(dup(pty.master.as_fd())?))],
                log,
                stdin,
                terminal: Some(pty.master),
            }),
        });
    }
    let (out_read, out_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let (err_read, err_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let (container_stdin, stdin) = match spec.stdin {
        StdinMode::Closed => (open_null()?, None),
        StdinMode::Open | StdinMode::Once => {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
            (read, Some(attach::hub::Stdin { file: File::from(write), once }))
        }
    };
    Ok(Stdio {
        container: [container_stdin, out_write, err_write],
        shim: Some(ShimEnds {
            outputs: vec![(Stream::Stdout, File::from(out_read)), (Stream::Stderr, File::from(err_read))],
            log,
            stdin,
            terminal: None,
        }),
    })
}

fn read_bundle(state: &StateDir) -> Result<Bundle, SetupError> {
    state::read_json(&state.bundle_file())
        .map_err(io("reading bundle.json"))?
        .ok_or_else(|| SetupError::Invalid("bundle.json is missing".into()))
}

fn supervise(state: &StateDir, bundle: &Bundle, reply: &mut Sender<CreateReply>) -> Result<(), SetupError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(sys("becoming a subreaper"))?;
    let cgroups = cgroups::detect(&bundle.cgroup_mount, &bundle.cgroup_root)?;
    let resources = bundle
        .spec
        .oci
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .map(Resources::from_oci)
        .unwrap_or_default();
    for dir in [state.rootfs(), state.upper(), state.work()] {
        std::fs::create_dir_all(&dir).map_err(io("creating the root filesystem directories"))?;
    }
    let mut owned_by_the_container = vec![state.upper(), state.work()];
    if bundle.start == Start::OnRequest {
        nix::unistd::mkfifo(&state.start_fifo(), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(sys("creating the start FIFO"))?;
        owned_by_the_container.push(state.start_fifo());
    }
    give_to_container_root(bundle, &owned_by_the_container)?;
    let Stdio { container, shim } = stdio(&bundle.spec)?;
    let launched = executor::launch(Launch {
        spec: &bundle.spec,
        state,
        cgroups: cgroups.as_ref(),
        cgroup_path: &bundle.cgroup_path,
        resources: &resources,
        stdio: container,
        start: bundle.start,
    })?;
    // Listening before the creator hears of the container, so that an attach
    // right after create finds the socket.
    let copying = match shim {
        Some(ends) => {
            let hub = Hub::bind(state.path(), ends.stdin, ends.terminal).map_err(io("listening for attach"))?;
            Some((ends.outputs, ends.log, hub))
        }
        None => None,
    };
    let pids = Pids {
        shim: std::process::id() as i32,
        init: launched.init.as_raw(),
        created_at: state::now_rfc3339(),
    };
    state::write_json(&state.pids_file(), &pids).map_err(io("writing state.json"))?;
    reply.send(&CreateReply::Created(pids))?;
    // From here on nobody listens to our stdio; the container has its own copies.
    let null = open_null()?;
    for fd in 0..=REPLY_FD {
        // SAFETY: dup2 onto the standard descriptors and the reply fd, which we own.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    let (exit, hub) = wait_for_exit(launched.init, launched.messages, copying, cgroups.as_ref(), &bundle.cgroup_path)?;
    let written = state::write_json(&state.exit_file(), &exit).map_err(io("writing exit.json"));
    // Attach clients see the end only once the exit can be read.
    if let Some(hub) = hub {
        hub.finish();
    }
    written
}

/// In a user namespace the container's root is an unprivileged host user:
/// it gets the files it must write (the overlay's upper and work
/// directories, the start FIFO).
fn give_to_container_root(bundle: &Bundle, paths: &[std::path::PathBuf]) -> Result<(), SetupError> {
    let Some(linux) = bundle.spec.oci.linux().as_ref() else { return Ok(()) };
    let host_id = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter().flatten().find(|m| m.container_id() == 0).map(|m| m.host_id())
    };
    let (Some(uid), Some(gid)) = (host_id(linux.uid_mappings()), host_id(linux.gid_mappings())) else {
        return Ok(());
    };
    for path in paths {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io("giving files to the container's root"))?;
    }
    Ok(())
}

/// The shim's copying: output sources, the log, the attach clients.
type ShimIo = (Vec<(Stream, File)>, Option<Log>, Hub);

/// Copies output into the log and to attach clients, and input from them,
/// until the init exits; then reaps it. The attach clients are handed back
/// to be told the end once the exit is recorded.
fn wait_for_exit(
    init: Pid,
    mut messages: Receiver<SetupMessage>,
    io: Option<ShimIo>,
    cgroups: &dyn CgroupManager,
    cgroup_path: &Path,
) -> Result<(ExitStatus, Option<Hub>), SetupError> {
    let pidfd = pidfd_open(init)?;
    let (mut outputs, mut log, mut hub) = match io {
        Some((outputs, log, hub)) => (outputs, log, Some(hub)),
        None => (Vec::new(), None, None),
    };
    let mut reason = None;
    let mut messages_open = true;
    let mut status = None;
    let mut buf = vec![0u8; 64 * 1024];
    // Until the init is gone and every output reached its end.
    while status.is_none() || !outputs.is_empty() {
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        fds.extend(outputs.iter().map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLIN)));
        let messages_at = fds.len();
        if messages_open {
            fds.push(PollFd::new(messages.as_fd(), PollFlags::POLLIN));
        }
        let hub_at = fds.len();
        if let Some(hub) = &hub {
            fds.extend(hub.poll_fds());
        }
        // Once the init is gone, output still buffered is drained, but a
        // process that escaped the container's PID namespace holding a pipe
        // open must not keep us forever.
        let timeout = if status.is_some() { PollTimeout::from(1000u16) } else { PollTimeout::NONE };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(errno) => return Err(sys("poll")(errno)),
        }
        let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
        drop(fds);
        if let Some(hub) = hub.as_mut() {
            hub.ready(&revents[hub_at..], &mut || log.as_mut().map_or(Ok(()), Log::reopen));
        }
        if !revents[0].is_empty() && status.is_none() {
            status = Some(reap(init)?);
        }
        let mut closed = Vec::new();
        for (i, (stream, output)) in outputs.iter_mut().enumerate() {
            if revents[1 + i].is_empty() {
                continue;
            }
            let n = match output.read(&mut buf) {
                Ok(n) => n,
                // A terminal's master is non-blocking (it is also the stdin).
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => continue,
                // EIO: the terminal's last user is gone.
                Err(_) => 0,
            };
            if let Some(Log { writer, .. }) = log.as_mut() {
                let _ = if n == 0 { writer.finish(*stream) } else { writer.write(*stream, &buf[..n]) };
            }
            if n == 0 {
                closed.push(i);
            } else if let Some(hub) = hub.as_mut() {
                let channel = if *stream == Stream::Stdout { attach::STDOUT } else { attach::STDERR };
                hub.broadcast(channel, &buf[..n]);
            }
        }
        for i in closed.into_iter().rev() {
            outputs.remove(i);
        }
        if messages_open && revents.get(messages_at).is_some_and(|r| !r.is_empty()) {
            match messages.try_recv() {
                Ok(Some(SetupMessage::Failed { reason: r, .. })) => reason = Some(r),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => messages_open = false,
            }
        }
    }
    let status = match status {
        Some(status) => status,
        None => reap(init)?,
    };
    reap_orphans();
    let (code, signal) = match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, signal, _) => (128 + signal as i32, Some(signal as i32)),
        _ => (255, None),
    };
    // Only a SIGKILL can be the OOM killer's; the cgroup is asked only then.
    let killed = signal == Some(Signal::SIGKILL as i32);
    let oom_killed = killed && cgroups.stats(cgroup_path).is_ok_and(|s| s.oom_kills > 0);
    let exit = ExitStatus {
        code,
        signal,
        oom_killed,
        reason,
        finished_at: state::now_rfc3339(),
    };
    Ok((exit, hub))
}

fn reap(init: Pid) -> Result<WaitStatus, SetupError> {
    loop {
        match waitpid(init, None) {
            Err(nix::Error::EINTR) => continue,
            other => return other.map_err(sys("waiting for the init")),
        }
    }
}

/// Processes re-parented to the shim (it is a subreaper) are reaped too.
fn reap_orphans() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// A descriptor that becomes readable when `pid` exits; works for any process,
/// not only children.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, SetupError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(sys("pidfd_open")(nix::Error::last()));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
