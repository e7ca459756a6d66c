//! `r8s runtime exec-init`: runs a process inside a running container. This
//! process (freshly executed, single-threaded) joins the container's cgroup
//! and namespaces, forks (a new PID namespace applies to children), and the
//! child takes the container's capabilities, seccomp filter and
//! no_new_privs, then executes the program. The parent waits and exits with
//! the child's code, relaying a terminal when asked.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::pty::OpenptyResult;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Process;

use crate::cgroups;
use crate::executor::{enter_existing, process, SetupError};
use crate::state::{self, Bundle, Pids, StateDir};
use crate::syscall::LinuxSyscall;

/// Exit code when the exec could not be set up (as `docker exec`'s 126/127).
const SETUP_FAILED: i32 = 126;
const NOT_FOUND: i32 = 127;

/// The main of `r8s runtime exec-init`; `process_json` is the OCI process
/// that `Runtime::exec_command` encoded.
pub fn run(state_dir: &Path, process_json: &str, tty: bool) -> ! {
    let entered = serde_json::from_str::<Process>(process_json)
        .map_err(|e| SetupError::Invalid(format!("the process to exec: {e}")))
        .and_then(|process| enter_and_run(&StateDir::new(state_dir.to_path_buf()), &process, tty));
    let code = match entered {
        Ok(code) => code,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "r8s exec: {error}");
            if matches!(error, SetupError::NotFound(_)) { NOT_FOUND } else { SETUP_FAILED }
        }
    };
    std::process::exit(code)
}

fn enter_and_run(state: &StateDir, process: &Process, tty: bool) -> Result<i32, SetupError> {
    let io = |what: &'static str| move |source| SetupError::Io { what: what.into(), source };
    let bundle: Bundle = state::read_json(&state.bundle_file())
        .map_err(io("reading bundle.json"))?
        .ok_or_else(|| SetupError::Invalid("no such container".into()))?;
    let pids: Pids = state::read_json(&state.pids_file())
        .map_err(io("reading state.json"))?
        .ok_or_else(|| SetupError::Invalid("the container is not running".into()))?;
    let cgroups = cgroups::detect(&bundle.cgroup_mount, &bundle.cgroup_root)?;
    cgroups.add_self(&bundle.cgroup_path)?;
    enter_existing(&LinuxSyscall, Pid::from_raw(pids.init))?;
    let pty = if tty {
        Some(nix::pty::openpty(None, None).map_err(|errno| SetupError::Sys { what: "openpty".into(), errno })?)
    } else {
        None
    };
    // SAFETY: this process is single-threaded.
    match unsafe { nix::unistd::fork() }.map_err(|errno| SetupError::Sys { what: "fork".into(), errno })? {
        ForkResult::Child => {
            let error = child(process, bundle.spec.seccomp, pty);
            let _ = writeln!(std::io::stderr(), "r8s exec: {error}");
            let code = if matches!(error, SetupError::NotFound(_)) { NOT_FOUND } else { SETUP_FAILED };
            // SAFETY: ends the forked child without the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            if let Some(pty) = pty {
                drop(pty.slave);
                relay_terminal(&pty.master);
            }
            Ok(exit_code(child))
        }
    }
}

/// In the container: terminal, working directory, privileges, execve.
fn child(process: &Process, seccomp: crate::config::SeccompPolicy, pty: Option<OpenptyResult>) -> SetupError {
    let run = || -> Result<(), SetupError> {
        if let Some(pty) = pty {
            attach_terminal(pty.slave)?;
        }
        process::enter_cwd(process)?;
        let executable = process::resolve(process)?;
        process::apply_rlimits(process)?;
        process::drop_privileges(process, &crate::executor::seccomp::filters(seccomp)?)?;
        Err(process::exec(&executable))
    };
    match run() {
        Ok(()) => SetupError::Invalid("exec returned".into()),
        Err(e) => e,
    }
}

/// Makes `slave` the controlling terminal and stdio of a new session.
fn attach_terminal(slave: OwnedFd) -> Result<(), SetupError> {
    let sys = |what: &'static str| move |errno| SetupError::Sys { what: what.into(), errno };
    nix::unistd::setsid().map_err(sys("setsid"))?;
    process::take_controlling_terminal(slave.as_fd())?;
    nix::unistd::dup2_stdin(&slave)
        .and_then(|()| nix::unistd::dup2_stdout(&slave))
        .and_then(|()| nix::unistd::dup2_stderr(&slave))
        .map_err(sys("attaching the terminal"))
}

/// Copies our stdin to the terminal and the terminal to our stdout until the
/// process closes it.
fn relay_terminal(master: &OwnedFd) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stdin = std::io::stdin();
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            return;
        }
        let master_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let stdin_ready = stdin_open && fds[1].revents().is_some_and(|r| !r.is_empty());
        drop(fds);
        if master_ready {
            match nix::unistd::read(master, &mut buf) {
                Ok(n) if n > 0 => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
                }
                // EIO once the last process holding the terminal is gone.
                _ => return,
            }
        }
        if stdin_ready {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = nix::unistd::write(master, &buf[..n]);
                }
                _ => stdin_open = false,
            }
        }
    }
}

fn exit_code(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Err(nix::Error::EINTR) | Ok(_) => continue,
            Err(_) => return SETUP_FAILED,
        }
    }
}
