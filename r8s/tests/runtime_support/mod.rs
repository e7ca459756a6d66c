//! Shared by the runtime tests: a busybox image in a private store, a
//! runtime with its own state root and cgroup root, all removed on drop.

#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use runtime::image::{defaults, ImageStore};
use runtime::{ContainerSpec, ExitStatus, Output, Runtime, RuntimeConfig, SeccompPolicy, StdinMode};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A probe built as a static binary: prints `<call> <ret> <errno>` for
/// system calls that busybox has no applet for.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
static void report(const char *name, long r) { printf("%s %ld %d\n", name, r, r < 0 ? errno : 0); }
int main(void) {
    report("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
    report("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -1));
    report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("umount2", umount2("/proc", MNT_DETACH));
    report("unshare_user", unshare(CLONE_NEWUSER));
    report("clone_newns", syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
    report("getpid", getpid());
    return 0;
}
"#;

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub runtime: Runtime,
    pub store: ImageStore,
    pub layers: Vec<PathBuf>,
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("r8s-test-").tempdir().unwrap();
        let rootfs = dir.path().join("busybox");
        build_busybox_rootfs(&rootfs);
        let store = ImageStore::open(&dir.path().join("images")).unwrap();
        let image = store.import_rootfs(&rootfs, "busybox").unwrap();
        let layers = store.layer_dirs(&image).unwrap();
        let mut config = RuntimeConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_r8s")));
        config.state_root = dir.path().join("state");
        config.cgroup_root = format!("r8s-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let runtime = Runtime::new(config).unwrap();
        TestEnv { dir, runtime, store, layers }
    }

    pub fn spec(&self, id: &str, args: &[&str]) -> ContainerSpec {
        let mut oci = runtime::default_spec(args.iter().map(|s| s.to_string()).collect());
        oci.set_hostname(Some(format!("host-{id}")));
        ContainerSpec {
            id: id.to_string(),
            rootfs: defaults::rootfs(self.layers.clone()),
            oci,
            seccomp: SeccompPolicy::RuntimeDefault,
            output: Output::Log(self.log_path(id)),
            stdin: StdinMode::Closed,
        }
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.log"))
    }

    /// Creates, starts and waits for the container; returns its exit and output.
    pub fn run(&self, spec: ContainerSpec) -> (ExitStatus, String) {
        let id = spec.id.clone();
        self.runtime.create(spec).unwrap();
        self.runtime.start(&id).unwrap();
        let exit = self.runtime.wait(&id).unwrap();
        self.runtime.delete(&id, false).unwrap();
        (exit, self.output(&id))
    }

    pub fn output(&self, id: &str) -> String {
        let log = std::fs::read(self.log_path(id)).unwrap_or_default();
        let mut out = Vec::new();
        runtime::logs::print_log(&log[..], &mut out, &mut Vec::new()).unwrap();
        let mut err = Vec::new();
        runtime::logs::print_log(&log[..], &mut Vec::new(), &mut err).unwrap();
        String::from_utf8_lossy(&[out, err].concat()).into_owned()
    }

    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        self.runtime.cgroups().directories(Path::new(id))
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Ok(containers) = self.runtime.list() {
            for c in containers {
                let _ = self.runtime.delete(&c.id, true);
            }
        }
        let _ = self.runtime.cgroups().remove_root();
    }
}

pub fn build_busybox_rootfs(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    for dir in ["etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n").unwrap();
    let source = root.join("probe.c");
    std::fs::write(&source, PROBE_C).unwrap();
    let built = Command::new("cc").args(["-static", "-O1", "-o"]).arg(root.join("bin/probe")).arg(&source).status().unwrap();
    assert!(built.success(), "building the static probe with cc");
    std::fs::remove_file(source).unwrap();
}

