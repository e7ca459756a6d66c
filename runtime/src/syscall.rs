//! The system calls the executor makes, behind a trait so that unit tests can
//! record them instead of changing the machine (as youki's `Syscall`).

use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

/// The privileged calls of container setup. `LinuxSyscall` makes them for real.
pub trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    fn setns(&self, fd: BorrowedFd<'_>, flags: CloneFlags) -> nix::Result<()>;
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()>;
}

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn setns(&self, fd: BorrowedFd<'_>, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::setns(fd, flags)
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(path, kind, perm, dev)
    }
}

#[cfg(test)]
pub mod recording {
    //! A `Syscall` that records the calls it is asked to make and makes none.

    use super::*;
    use std::cell::RefCell;

    #[derive(Debug, Default)]
    pub struct RecordingSyscall {
        pub calls: RefCell<Vec<String>>,
    }

    impl RecordingSyscall {
        fn record(&self, call: String) -> nix::Result<()> {
            self.calls.borrow_mut().push(call);
            Ok(())
        }
    }

    impl Syscall for RecordingSyscall {
        fn mount(
            &self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> nix::Result<()> {
            self.record(format!(
                "mount {:?} {} {:?} {:?} {:?}",
                source,
                target.display(),
                fstype,
                flags,
                data
            ))
        }
        fn umount(&self, target: &Path, _flags: MntFlags) -> nix::Result<()> {
            self.record(format!("umount {}", target.display()))
        }
        fn pivot_root(&self, new_root: &Path, _put_old: &Path) -> nix::Result<()> {
            self.record(format!("pivot_root {}", new_root.display()))
        }
        fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
            self.record(format!("unshare {flags:?}"))
        }
        fn setns(&self, _fd: BorrowedFd<'_>, flags: CloneFlags) -> nix::Result<()> {
            self.record(format!("setns {flags:?}"))
        }
        fn sethostname(&self, name: &str) -> nix::Result<()> {
            self.record(format!("sethostname {name}"))
        }
        fn mknod(&self, path: &Path, _kind: SFlag, _perm: Mode, dev: u64) -> nix::Result<()> {
            self.record(format!("mknod {} {dev}", path.display()))
        }
    }
}
