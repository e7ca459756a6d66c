//! `launch`: the fork chain from the shim to the container's init, and the
//! init's own setup sequence.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Linux;

use super::namespaces::NamespacePlan;
use super::seccomp;
use super::rootfs::{self, RootfsLayout};
use super::{process, SetupError, SetupMessage, ShimReply};
use crate::cgroups::{CgroupManager, CgroupPath, Resources};
use crate::channel::{channel, Receiver, Sender};
use crate::config::{ContainerSpec, Start};
use crate::state::StateDir;
use crate::syscall::{LinuxSyscall, Syscall};

/// What the shim hands to `launch`.
pub struct Launch<'a> {
    pub spec: &'a ContainerSpec,
    pub state: &'a StateDir,
    pub cgroups: &'a dyn CgroupManager,
    /// Created by `launch` while its child makes the namespaces.
    pub cgroup_path: &'a CgroupPath,
    pub resources: &'a Resources,
    /// The container's stdin, stdout and stderr.
    pub stdio: [OwnedFd; 3],
    /// Whether the init waits at the start FIFO before it executes the program.
    pub start: Start,
}

/// A container whose init is set up and waits to be started.
pub struct Launched {
    pub init: Pid,
    /// Further messages from the init (an `execve` failure after start); the
    /// end of the channel means the program was executed.
    pub messages: Receiver<SetupMessage>,
}

/// Forks the init (through the stage, when the spec needs one), answers the
/// children's requests, and returns once the init is ready or has failed.
/// Must be called from a single-threaded process: the children run ordinary
/// Rust after `fork`.
///
/// Without namespaces to join, a user namespace or a time namespace, the
/// shim's own child is the init: the shim moves only its future children into
/// a new PID namespace (`unshare(CLONE_NEWPID)` leaves the caller where it
/// is), and the child makes the other namespaces itself. Otherwise a stage
/// makes them and forks the init, which its PID namespace needs.
pub fn launch(launch: Launch) -> Result<Launched, SetupError> {
    let linux = launch.spec.oci.linux().clone().unwrap_or_default();
    let plan = NamespacePlan::from_spec(&linux)?;
    let direct = plan.init_can_be_forked_directly();
    if direct {
        plan.create_pid_namespace_for_children(&LinuxSyscall)?;
    }
    let (to_shim, mut from_children) = channel::<SetupMessage>()?;
    let (mut to_stage, from_shim) = channel::<ShimReply>()?;
    // SAFETY: the caller is single-threaded (see above).
    let child = match unsafe { nix::unistd::fork() }
        .map_err(|errno| SetupError::Sys { what: "fork".into(), errno })?
    {
        ForkResult::Child => {
            drop(from_children);
            drop(to_stage);
            let mut to_shim = to_shim;
            if direct {
                run_child(&mut to_shim, |to_shim| direct_init(&launch, &plan, to_shim, from_shim))
            } else {
                run_child(&mut to_shim, |to_shim| stage(&launch, &plan, to_shim, from_shim))
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(to_shim);
    drop(from_shim);
    // The cgroup is made here while the child makes the namespaces (the
    // network namespace alone takes about half a millisecond): the child
    // joins it only once it exists.
    if let Err(error) = launch.cgroups.create(launch.cgroup_path, launch.resources) {
        drop(to_stage);
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(error.into());
    }
    to_stage.send(&ShimReply::CgroupReady)?;
    let (stage, mut init) = if direct { (None, Some(child)) } else { (Some(child), None) };
    let result = loop {
        match from_children.recv() {
            Ok(SetupMessage::NeedIdMaps) => {
                write_id_maps(child, &linux)?;
                to_stage.send(&ShimReply::IdMapsWritten)?;
            }
            Ok(SetupMessage::InitPid(pid)) => init = Some(Pid::from_raw(pid)),
            Ok(SetupMessage::Ready) => break Ok(()),
            Ok(SetupMessage::Failed { reason, not_found }) => {
                break Err(if not_found { SetupError::NotFound(reason) } else { SetupError::InContainer(reason) })
            }
            Err(e) => break Err(SetupError::InContainer(format!("the container's setup process ended: {e}"))),
        }
    };
    if let Some(stage) = stage {
        // The stage exits by itself after forking the init and sending its pid.
        let _ = nix::sys::wait::waitpid(stage, None);
        // The init can report Ready before its parent, the stage, has sent its
        // pid: once the stage is gone, the pid has arrived if it was ever sent.
        while init.is_none() {
            match from_children.recv_arrived() {
                Ok(Some(SetupMessage::InitPid(pid))) => init = Some(Pid::from_raw(pid)),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    match (result, init) {
        (Ok(()), Some(init)) => Ok(Launched { init, messages: from_children }),
        (Ok(()), None) => {
            // An init we cannot name may still be waiting for start in the
            // container's cgroup: it must not outlive the failed create.
            let _ = launch.cgroups.kill_all(launch.cgroup_path);
            Err(SetupError::InContainer("the init's pid was never reported".into()))
        }
        (Err(e), init) => {
            if let Some(init) = init {
                let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(init, None);
            }
            Err(e)
        }
    }
}

/// Runs `body` in a forked child and exits; a failure is reported to the shim.
fn run_child(
    to_shim: &mut Sender<SetupMessage>,
    body: impl FnOnce(&mut Sender<SetupMessage>) -> Result<(), SetupError>,
) -> ! {
    let code = match body(to_shim) {
        Ok(()) => 0,
        Err(error) => {
            let not_found = matches!(error, SetupError::NotFound(_));
            let _ = to_shim.send(&SetupMessage::Failed { reason: error.to_string(), not_found });
            if not_found { 127 } else { 1 }
        }
    };
    // SAFETY: _exit ends the forked child without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

fn write_id_maps(stage: Pid, linux: &Linux) -> Result<(), SetupError> {
    let format = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    for (file, maps) in [("uid_map", linux.uid_mappings()), ("gid_map", linux.gid_mappings())] {
        let path = format!("/proc/{stage}/{file}");
        std::fs::write(&path, format(maps))
            .map_err(|source| SetupError::Io { what: format!("writing {path}"), source })?;
    }
    Ok(())
}

/// The stage: namespaces, then fork the init.
fn stage(
    launch: &Launch,
    plan: &NamespacePlan,
    to_shim: &mut Sender<SetupMessage>,
    mut from_shim: Receiver<ShimReply>,
) -> Result<(), SetupError> {
    let sys = LinuxSyscall;
    // Into the container's cgroup while still the host's root (before any
    // user namespace) and in the host's mounts; the init inherits it at fork.
    join_cgroup(launch, &mut from_shim)?;
    plan.join(&sys)?;
    if plan.create_user {
        plan.create_user_namespace(&sys)?;
        to_shim.send(&SetupMessage::NeedIdMaps)?;
        match from_shim.recv()? {
            ShimReply::IdMapsWritten => {}
            other => return Err(SetupError::Invalid(format!("expected the id maps, got {other:?}"))),
        }
        let root = nix::unistd::Uid::from_raw(0);
        let root_group = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root_group, root_group, root_group)
            .and_then(|()| nix::unistd::setresuid(root, root, root))
            .map_err(|errno| SetupError::Sys { what: "becoming root in the user namespace".into(), errno })?;
    }
    plan.create_others(&sys)?;
    // SAFETY: the stage is single-threaded.
    match unsafe { nix::unistd::fork() }.map_err(|errno| SetupError::Sys { what: "fork".into(), errno })? {
        ForkResult::Child => run_child(to_shim, |to_shim| init(launch, plan, &sys, to_shim)),
        ForkResult::Parent { child } => {
            to_shim.send(&SetupMessage::InitPid(child.as_raw()))?;
            Ok(())
        }
    }
}

/// The shim's child as the init: already the first process of its PID
/// namespace, it makes the others while the shim makes the cgroup.
fn direct_init(
    launch: &Launch,
    plan: &NamespacePlan,
    to_shim: &mut Sender<SetupMessage>,
    mut from_shim: Receiver<ShimReply>,
) -> Result<(), SetupError> {
    let sys = LinuxSyscall;
    plan.create_others_but_pid(&sys)?;
    join_cgroup(launch, &mut from_shim)?;
    init(launch, plan, &sys, to_shim)
}

/// Waits until the shim has made the container's cgroup, then moves the
/// caller into it.
fn join_cgroup(launch: &Launch, from_shim: &mut Receiver<ShimReply>) -> Result<(), SetupError> {
    match from_shim.recv()? {
        ShimReply::CgroupReady => {}
        other => return Err(SetupError::Invalid(format!("expected the cgroup, got {other:?}"))),
    }
    Ok(launch.cgroups.add_self(launch.cgroup_path)?)
}

/// The init: root filesystem, hostname, program, wait for start, execve.
fn init(
    launch: &Launch,
    plan: &NamespacePlan,
    sys: &dyn Syscall,
    to_shim: &mut Sender<SetupMessage>,
) -> Result<(), SetupError> {
    let spec = &launch.spec.oci;
    let process = spec.process().clone().ok_or_else(|| SetupError::Invalid("no process".into()))?;
    let linux = spec.linux().clone().unwrap_or_default();
    nix::unistd::setsid().map_err(|errno| SetupError::Sys { what: "setsid".into(), errno })?;
    // The FIFO is opened (as a path only) while the state directory is still
    // visible; after the pivot it is reached through /proc/self/fd.
    let start_fifo = match launch.start {
        Start::OnRequest => Some(
            nix::fcntl::open(&launch.state.start_fifo(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|errno| SetupError::Sys { what: "opening the start FIFO".into(), errno })?,
        ),
        Start::AtOnce => None,
    };
    if plan.create_mount {
        let layout = RootfsLayout {
            source: &launch.spec.rootfs,
            mountpoint: &launch.state.rootfs(),
            upper: &launch.state.upper(),
            work: &launch.state.work(),
        };
        rootfs::prepare(sys, &layout, spec.mounts().as_deref().unwrap_or_default())?;
        rootfs::pivot(sys, layout.mountpoint)?;
        rootfs::protect_paths(
            sys,
            linux.masked_paths().as_deref().unwrap_or_default(),
            linux.readonly_paths().as_deref().unwrap_or_default(),
        )?;
        if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
            rootfs::make_root_readonly(sys)?;
        }
    }
    if let (true, Some(hostname)) = (plan.create_uts, spec.hostname()) {
        sys.sethostname(hostname)
            .map_err(|errno| SetupError::Sys { what: format!("setting hostname {hostname:?}"), errno })?;
    }
    process::enter_cwd(&process)?;
    let executable = process::resolve(&process)?;
    let [stdin, stdout, stderr] = &launch.stdio;
    nix::unistd::dup2_stdin(stdin)
        .and_then(|()| nix::unistd::dup2_stdout(stdout))
        .and_then(|()| nix::unistd::dup2_stderr(stderr))
        .map_err(|errno| SetupError::Sys { what: "setting up stdio".into(), errno })?;
    if process.terminal().unwrap_or(false) && !matches!(launch.spec.output, crate::config::Output::Inherit) {
        // The shim's terminal (see shim::stdio); the init leads its session.
        process::take_controlling_terminal(stdin.as_fd())?;
    }
    // Made in the container's cgroup (inherited from the stage), so that it
    // is the namespace's root.
    plan.create_cgroup_namespace(sys)?;
    // Compiled while the creator is still busy with `start`, not after it.
    let seccomp = seccomp::filters(launch.spec.seccomp)?;
    to_shim.send(&SetupMessage::Ready)?;
    if let Some(fifo) = &start_fifo {
        wait_for_start(fifo)?;
    }
    process::apply_rlimits(&process)?;
    process::drop_privileges(&process, &seccomp)?;
    Err(process::exec(&executable))
}

/// Blocks until `start` opens the FIFO for reading, then tells it we are going.
fn wait_for_start(fifo: &OwnedFd) -> Result<(), SetupError> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let writer = nix::fcntl::open(Path::new(&path), OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|errno| SetupError::Sys { what: "opening the start FIFO".into(), errno })?;
    nix::unistd::write(&writer, b"0").map_err(|errno| SetupError::Sys { what: "writing the start FIFO".into(), errno })?;
    Ok(())
}
