//! The pause process: the r8s binary re-executed as `r8s runtime pause`. It
//! enters or creates the pod's shared namespaces (network, IPC, UTS and, with
//! `shareProcessNamespace`, PID), then forks the process that holds them and
//! sleeps until it is told to stop. Containers of the pod join its
//! namespaces through `/proc/<pid>/ns/*`.
//!
//! The first process answers its creator on fd 3 with the holder's pid and
//! exits, so the holder is detached from the CRI service and outlives it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::SandboxError;

/// The descriptor on which the pause answers its creator.
const REPLY_FD: i32 = 3;

/// Which namespaces the pause makes or enters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PauseOptions {
    /// Enter this (pinned) network namespace; `None`: the node's.
    pub netns: Option<PathBuf>,
    /// A new IPC namespace (not `hostIPC`).
    pub new_ipc: bool,
    /// A new UTS namespace with this hostname (not `hostNetwork`).
    pub hostname: Option<String>,
    /// A new PID namespace whose init is the pause (`shareProcessNamespace`).
    pub new_pid: bool,
}

impl PauseOptions {
    /// The command-line arguments of `r8s runtime pause`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec!["runtime".to_string(), "pause".to_string()];
        if let Some(netns) = &self.netns {
            args.push("--netns".into());
            args.push(netns.display().to_string());
        }
        if self.new_ipc {
            args.push("--ipc".into());
        }
        if let Some(hostname) = &self.hostname {
            args.push("--hostname".into());
            args.push(hostname.clone());
        }
        if self.new_pid {
            args.push("--pid".into());
        }
        args
    }
}

/// A running pause process, recognised again by its start time (pids are reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseProcess {
    pub pid: i32,
    /// `starttime` of `/proc/<pid>/stat`, in clock ticks since boot.
    pub start_time: u64,
}

impl PauseProcess {
    /// Whether this very process still runs (not a zombie, not a reused pid).
    pub fn is_alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start)) if state != 'Z' && start == self.start_time)
    }

    /// `/proc/<pid>/ns/<kind>`: the namespace containers join.
    pub fn namespace(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid))
    }

    /// Kills the pause (and so every process of a PID namespace it is the
    /// init of) and waits until it has exited. Nothing to do when it is gone.
    pub fn kill(&self) -> Result<(), SandboxError> {
        if !self.is_alive() {
            return Ok(());
        }
        let pid = Pid::from_raw(self.pid);
        let pidfd = crate::shim::pidfd_open(pid).ok();
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        if let Some(pidfd) = pidfd {
            let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&pidfd), PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, PollTimeout::from(5000u16));
        }
        if self.is_alive() {
            return Err(SandboxError::Pause(format!("pause process {} did not exit after SIGKILL", self.pid)));
        }
        Ok(())
    }
}

/// `(state, starttime)` of a process from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    // starttime is field 22 of the line, the 20th after the name.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Starts `binary runtime pause ...` and returns the detached holder.
/// Blocking (fork, exec, a pipe read).
pub fn spawn(binary: &Path, options: &PauseOptions) -> Result<PauseProcess, SandboxError> {
    let failed = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| SandboxError::Pause(format!("{what}: {e}"))
    };
    let (reply_read, reply_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::Pause(format!("pipe: {e}")))?;
    let mut command = Command::new(binary);
    command.args(options.to_args()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    crate::channel::pass_fd(&mut command, &reply_write, REPLY_FD);
    let mut first = command.spawn().map_err(failed(&format!("starting {}", binary.display())))?;
    drop(reply_write);
    let mut answer = String::new();
    let read = File::from(reply_read).read_to_string(&mut answer);
    let _ = first.wait();
    read.map_err(failed("reading the pause's answer"))?;
    let answer = answer.trim();
    let pid: i32 = match answer.strip_prefix("pid ") {
        Some(pid) => pid.parse().map_err(|_| SandboxError::Pause(format!("pause answered {answer:?}")))?,
        None if answer.is_empty() => return Err(SandboxError::Pause("the pause process ended without an answer".into())),
        None => return Err(SandboxError::Pause(answer.trim_start_matches("error ").to_string())),
    };
    match proc_stat(pid) {
        Some((_, start_time)) => Ok(PauseProcess { pid, start_time }),
        None => Err(SandboxError::Pause(format!("the pause process {pid} exited at once"))),
    }
}

/// The main of `r8s runtime pause`; never returns.
pub fn run(options: &PauseOptions) -> ! {
    // SAFETY: fd 3 was set up by `spawn` for us alone.
    let mut reply = File::from(unsafe { OwnedFd::from_raw_fd(REPLY_FD) });
    let _ = nix::fcntl::fcntl(&reply, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    if let Err(error) = enter_namespaces(options) {
        let _ = writeln!(reply, "error {error}");
        std::process::exit(1);
    }
    // SAFETY: the pause is single-threaded.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => {
            let _ = writeln!(reply, "pid {child}");
            std::process::exit(0)
        }
        Ok(ForkResult::Child) => {
            drop(reply);
            let _ = nix::unistd::setsid();
            hold()
        }
        Err(errno) => {
            let _ = writeln!(reply, "error fork: {errno}");
            std::process::exit(1)
        }
    }
}

fn enter_namespaces(options: &PauseOptions) -> Result<(), String> {
    if let Some(path) = &options.netns {
        let netns = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("joining {}: {e}", path.display()))?;
        loopback_up().map_err(|e| format!("setting lo up: {e}"))?;
    }
    let mut flags = CloneFlags::empty();
    flags.set(CloneFlags::CLONE_NEWIPC, options.new_ipc);
    flags.set(CloneFlags::CLONE_NEWUTS, options.hostname.is_some());
    // A new PID namespace applies to the child forked next: the holder is its init.
    flags.set(CloneFlags::CLONE_NEWPID, options.new_pid);
    nix::sched::unshare(flags).map_err(|e| format!("creating namespaces {flags:?}: {e}"))?;
    if let Some(hostname) = &options.hostname {
        nix::unistd::sethostname(hostname).map_err(|e| format!("setting hostname {hostname:?}: {e}"))?;
    }
    Ok(())
}

/// Brings `lo` of the current network namespace up (an `ioctl`, no netlink).
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq we own.
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let socket = OwnedFd::from_raw_fd(socket);
        let mut request: libc::ifreq = std::mem::zeroed();
        request.ifr_name[0] = b'l' as libc::c_char;
        request.ifr_name[1] = b'o' as libc::c_char;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Holds the namespaces: reaps children (as the init of a shared PID
/// namespace) and exits on SIGTERM or SIGINT.
fn hold() -> ! {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(signal);
    }
    // Blocked signals are delivered to sigwait even to a namespace's init.
    let _ = signals.thread_block();
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap_children(),
            Ok(_) => std::process::exit(0),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn reap_children() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_recognised() {
        let pid = std::process::id() as i32;
        let (state, start) = proc_stat(pid).unwrap();
        assert_ne!(state, 'Z');
        assert!(PauseProcess { pid, start_time: start }.is_alive());
        assert!(!PauseProcess { pid, start_time: start + 1 }.is_alive());
    }

    #[test]
    fn options_become_arguments() {
        let options = PauseOptions { netns: Some("/run/x".into()), new_ipc: true, hostname: Some("web".into()), new_pid: false };
        assert_eq!(options.to_args(), ["runtime", "pause", "--netns", "/run/x", "--ipc", "--hostname", "web"]);
    }
}
