//! The container process's identity and limits: rlimits, no_new_privs,
//! capability sets, user and groups, seccomp, then `execve`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use caps::CapSet;
use oci_spec::runtime::{Capabilities, PosixRlimitType, Process};

use super::{seccomp, SetupError};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to `execve`, resolved before the process gives up its privileges.
#[derive(Debug)]
pub struct Executable {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

fn cstring(what: &str, s: &[u8]) -> Result<CString, SetupError> {
    CString::new(s).map_err(|_| SetupError::Invalid(format!("{what} contains a NUL byte")))
}

/// Finds the program of `process` in the container (after the pivot): a path
/// as it is, a bare name in the process's `PATH`. A missing program is
/// reported here, before the container is started, with the reason.
pub fn resolve(process: &Process) -> Result<Executable, SetupError> {
    let args = process.args().clone().unwrap_or_default();
    let Some(program) = args.first() else {
        return Err(SetupError::Invalid("the process has no arguments".into()));
    };
    let env = process.env().clone().unwrap_or_default();
    let path = if program.contains('/') {
        let candidate = PathBuf::from(program);
        if !is_executable(&candidate) {
            return Err(SetupError::NotFound(format!("exec: {program:?}: no such executable file")));
        }
        candidate
    } else {
        let search = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        search
            .split(':')
            .map(|dir| Path::new(dir).join(program))
            .find(|p| is_executable(p))
            .ok_or_else(|| {
                SetupError::NotFound(format!("exec: {program:?}: executable file not found in $PATH"))
            })?
    };
    Ok(Executable {
        path: cstring("the program path", path.as_os_str().as_bytes())?,
        args: args.iter().map(|a| cstring("an argument", a.as_bytes())).collect::<Result<_, _>>()?,
        env: env.iter().map(|e| cstring("an environment variable", e.as_bytes())).collect::<Result<_, _>>()?,
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Makes `terminal` the controlling terminal of the caller's session (the
/// caller must lead a new session, after `setsid`).
pub fn take_controlling_terminal(terminal: std::os::fd::BorrowedFd) -> Result<(), SetupError> {
    // SAFETY: TIOCSCTTY on a terminal descriptor; 0: do not steal it.
    if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&terminal), libc::TIOCSCTTY, 0) } < 0 {
        return Err(SetupError::Sys { what: "making the terminal controlling".into(), errno: nix::Error::last() });
    }
    Ok(())
}

/// Goes to the process's working directory, creating it if missing (as runc).
pub fn enter_cwd(process: &Process) -> Result<(), SetupError> {
    let cwd = process.cwd();
    std::fs::create_dir_all(cwd)
        .and_then(|()| std::env::set_current_dir(cwd))
        .map_err(|e| SetupError::Io { what: format!("entering working directory {}", cwd.display()), source: e })
}

/// Applies the spec's rlimits, each capped at the current hard limit: raising
/// a hard limit needs CAP_SYS_RESOURCE, which the runtime may not have.
pub fn apply_rlimits(process: &Process) -> Result<(), SetupError> {
    for rlimit in process.rlimits().iter().flatten() {
        let resource = rlimit_resource(rlimit.typ());
        let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct it is given.
        unsafe { libc::getrlimit(resource, &mut current) };
        let hard = rlimit.hard().min(current.rlim_max);
        let new = libc::rlimit { rlim_cur: rlimit.soft().min(hard), rlim_max: hard };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(resource, &new) } != 0 {
            return Err(SetupError::Sys { what: format!("setting {:?}", rlimit.typ()), errno: nix::Error::last() });
        }
    }
    Ok(())
}

fn rlimit_resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn to_caps(set: &Option<Capabilities>) -> caps::CapsHashSet {
    set.iter()
        .flatten()
        // oci-spec displays "NAME", caps parses "CAP_NAME".
        .filter_map(|c| format!("CAP_{c}").parse::<caps::Capability>().ok())
        .collect()
}

fn caps_error(what: &str) -> impl FnOnce(caps::errors::CapsError) -> SetupError + '_ {
    move |e| SetupError::Capabilities(format!("{what}: {e}"))
}

/// Becomes the process's user with its capabilities and filters, in the order
/// that keeps the needed privileges until they are no longer needed:
/// bounding set, no_new_privs, (seccomp while CAP_SYS_ADMIN is held if
/// no_new_privs is off), user and groups, capability sets, (seccomp).
pub fn drop_privileges(process: &Process, filters: &[seccompiler::BpfProgram]) -> Result<(), SetupError> {
    let capabilities = process.capabilities().clone().unwrap_or_default();
    let bounding = to_caps(capabilities.bounding());
    for cap in caps::all() {
        if !bounding.contains(&cap) {
            // Capabilities the running kernel does not know are not an error.
            caps::drop(None, CapSet::Bounding, cap).or_else(|e| {
                if caps::runtime::thread_all_supported().contains(&cap) { Err(e) } else { Ok(()) }
            }).map_err(caps_error("dropping from the bounding set"))?;
        }
    }
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if no_new_privs {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|errno| SetupError::Sys { what: "setting no_new_privs".into(), errno })?;
    }
    if !no_new_privs {
        seccomp::install(filters)?;
    }
    set_user(process)?;
    caps::set(None, CapSet::Effective, &caps::CapsHashSet::new()).map_err(caps_error("clearing effective"))?;
    caps::set(None, CapSet::Permitted, &to_caps(capabilities.permitted())).map_err(caps_error("setting permitted"))?;
    caps::set(None, CapSet::Inheritable, &to_caps(capabilities.inheritable())).map_err(caps_error("setting inheritable"))?;
    caps::set(None, CapSet::Effective, &to_caps(capabilities.effective())).map_err(caps_error("setting effective"))?;
    // Ambient capabilities must be permitted and inheritable; others are skipped.
    caps::clear(None, CapSet::Ambient).map_err(caps_error("clearing ambient"))?;
    for cap in to_caps(capabilities.ambient()) {
        caps::raise(None, CapSet::Ambient, cap).map_err(caps_error("raising ambient"))?;
    }
    if no_new_privs {
        seccomp::install(filters)?;
    }
    Ok(())
}

/// setgroups, setgid, setuid, keeping the permitted capabilities across the
/// uid change so that the capability sets can be set afterwards.
fn set_user(process: &Process) -> Result<(), SetupError> {
    let user = process.user();
    let sys = |what: &'static str| move |errno| SetupError::Sys { what: what.into(), errno };
    nix::sys::prctl::set_keepcaps(true).map_err(sys("keeping capabilities"))?;
    let groups: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    // setgroups is refused in a user namespace whose setgroups file says deny.
    match nix::unistd::setgroups(&groups) {
        Err(nix::Error::EPERM) if groups.is_empty() => {}
        other => other.map_err(sys("setting additional groups"))?,
    }
    let gid = nix::unistd::Gid::from_raw(user.gid());
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresgid(gid, gid, gid).map_err(sys("setting the group id"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(sys("setting the user id"))?;
    nix::sys::prctl::set_keepcaps(false).map_err(sys("clearing keepcaps"))
}

/// Replaces the process with the container's program. Returns only on failure.
pub fn exec(executable: &Executable) -> SetupError {
    match nix::unistd::execve(&executable.path, &executable.args, &executable.env) {
        Err(errno) => SetupError::Sys {
            what: format!("exec {}", executable.path.to_string_lossy()),
            errno,
        },
        Ok(never) => match never {},
    }
}
