//! The cgroup v2 driver against the kernel's real cgroup2 filesystem (needs
//! root). On this hybrid host that is `/sys/fs/cgroup/unified`, which offers
//! no resource controllers (they are bound to v1), so the test covers what
//! cgroup2 itself does: directories, moving a process, freezing, killing,
//! removal. Everything lives under `r8s-test-v2-<pid>`, removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::unistd::Pid;
use runtime::cgroups::{detect, CgroupManager, Resources};

/// The host's cgroup2 mount: the hybrid one, or a unified host's only one.
fn cgroup2_mount() -> PathBuf {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|m| m.join("cgroup.controllers").exists())
        .expect("a cgroup2 filesystem at /sys/fs/cgroup/unified or /sys/fs/cgroup")
}

/// Our subtree and the processes we put in it; both gone on drop.
struct Subtree {
    cgroups: Box<dyn CgroupManager>,
    root: PathBuf,
    children: Vec<Child>,
}

impl Drop for Subtree {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.cgroups.remove_root();
    }
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(child.id() as i32)
}

#[test]
fn a_process_is_moved_frozen_killed_and_its_cgroup_removed() {
    let mount = cgroup2_mount();
    let name = format!("r8s-test-v2-{}", std::process::id());
    let mut subtree = Subtree { cgroups: detect(&mount, &name).unwrap(), root: mount.join(&name), children: Vec::new() };
    let path = Path::new("pod/ctr");
    subtree.cgroups.create(path, &Resources::default()).unwrap();
    let dir = subtree.root.join("pod/ctr");
    assert_eq!(subtree.cgroups.directories(path), vec![dir.clone()], "the v2 driver, below its root");
    assert!(dir.join("cgroup.procs").exists(), "a real cgroup, with the kernel's files");

    subtree.children.push(Command::new("sleep").arg("600").spawn().unwrap());
    let pid = pid_of(&subtree.children[0]);
    subtree.cgroups.add_process(path, pid).unwrap();
    assert_eq!(subtree.cgroups.processes(path).unwrap(), vec![pid]);
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(membership.lines().any(|l| l == format!("0::/{name}/pod/ctr")), "{membership}");

    subtree.cgroups.set_frozen(path, true).unwrap();
    let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    subtree.cgroups.set_frozen(path, false).unwrap();

    subtree.cgroups.kill_all(path).unwrap();
    let status = subtree.children[0].wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    subtree.cgroups.remove(path).unwrap();
    assert!(!subtree.root.join("pod").exists(), "the container's and the emptied pod's cgroups are gone");
    subtree.cgroups.remove_root().unwrap();
    assert!(!subtree.root.exists());
}
