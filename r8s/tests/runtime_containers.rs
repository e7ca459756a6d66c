//! Real containers, run as root: each test gets its own state root, image
//! store and cgroup root (`r8s-test-<pid>-<n>`), removed afterwards even when
//! the test fails.

mod runtime_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use runtime::config::{adjust_capabilities, resources};
use runtime::{Runtime, RuntimeError, Signal, Status};
use runtime_support::TestEnv;

fn sh(script: &str) -> Vec<&str> {
    vec!["/bin/sh", "-c", script]
}

#[test]
fn pid_one_hostname_and_host_isolation() {
    let env = TestEnv::new();
    let script = "echo pid=$$; hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
                  ls /proc | grep -c '^[0-9]'; test -e /work && echo HOST-FILES-VISIBLE; echo done";
    let (exit, out) = env.run(env.spec("iso", &sh(script)));
    assert_eq!(exit.code, 0, "{out}");
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("host-iso\n"), "{out}");
    assert!(out.contains("/bin/sh -c"), "{out}");
    // Only the shell and the pipeline's processes are visible.
    let processes: u32 = out.lines().nth(3).unwrap().trim().parse().unwrap();
    assert!(processes <= 4, "{out}");
    assert!(!out.lines().any(|l| l == "HOST-FILES-VISIBLE"), "{out}");
}

/// A time namespace with offsets: the container's boot-time clock (what
/// /proc/uptime shows) and monotonic clock are shifted; the host's are not.
#[test]
fn a_time_namespace_shifts_the_containers_clocks() {
    const DAY: i64 = 86_400;
    let env = TestEnv::new();
    let mut spec = env.spec("clock", &sh("cat /proc/uptime /proc/self/timens_offsets"));
    let linux = spec.oci.linux_mut().as_mut().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    namespaces.push(serde_json::from_value(serde_json::json!({ "type": "time" })).unwrap());
    linux.set_namespaces(Some(namespaces));
    let offsets = serde_json::json!({ "boottime": { "secs": 10 * DAY }, "monotonic": { "secs": DAY } });
    linux.set_time_offsets(Some(serde_json::from_value(offsets).unwrap()));
    let host_uptime = || -> f64 {
        std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    let before = host_uptime();
    let (exit, out) = env.run(spec);
    let after = host_uptime();
    assert_eq!(exit.code, 0, "{out}");
    let uptime: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let shift = 10.0 * DAY as f64;
    assert!(uptime >= before + shift && uptime <= after + shift, "{uptime} not {before}..{after} + 10 days: {out}");
    let offsets: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert!(offsets.contains(&vec!["monotonic", "86400", "0"]), "{out}");
    assert!(offsets.contains(&vec!["boottime", "864000", "0"]), "{out}");
}

#[test]
fn root_is_an_overlay_and_the_image_stays_unchanged() {
    let env = TestEnv::new();
    let (exit, out) = env.run(env.spec("w1", &sh("head -1 /proc/mounts; echo data > /etc/written; rm /bin/ls; echo ok")));
    assert_eq!(exit.code, 0, "{out}");
    assert!(out.starts_with("overlay / overlay"), "{out}");
    for layer in &env.layers {
        assert!(!layer.join("etc/written").exists());
        assert!(layer.join("bin/ls").symlink_metadata().is_ok());
    }
    let (_, out) = env.run(env.spec("w2", &sh("cat /etc/written 2>&1; ls -l /bin/ls >/dev/null && echo ls-present")));
    assert!(out.contains("No such file") && out.contains("ls-present"), "{out}");
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    let env = TestEnv::new();
    let mut spec = env.spec("hog", &["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]);
    spec.oci.linux_mut().as_mut().unwrap().set_resources(Some(resources(Some(32 << 20), None, None)));
    let (exit, out) = env.run(spec);
    assert!(exit.oom_killed, "{exit:?} {out}");
    assert_eq!(exit.signal, Some(9));
    assert_eq!(exit.code, 137);
}

#[test]
fn fork_bomb_hits_the_pids_limit() {
    let env = TestEnv::new();
    let script = "i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done; echo spawned";
    let mut spec = env.spec("bomb", &sh(script));
    spec.oci.linux_mut().as_mut().unwrap().set_resources(Some(resources(None, None, Some(20))));
    env.runtime.create(spec).unwrap();
    env.runtime.start("bomb").unwrap();
    let exit = env.runtime.wait("bomb").unwrap();
    let out = env.output("bomb");
    assert!(out.contains("can't fork"), "{out}");
    assert_ne!(exit.code, 0, "the shell gives up when fork fails: {out}");
    // The host keeps working meanwhile.
    assert!(Command::new("/bin/true").status().unwrap().success());
    env.runtime.delete("bomb", false).unwrap();
}

#[test]
fn seccomp_refuses_mount_keyctl_and_new_namespaces() {
    let env = TestEnv::new();
    let (exit, out) = env.run(env.spec("sec", &["/bin/probe"]));
    assert_eq!(exit.code, 0, "{out}");
    let eperm = libc::EPERM.to_string();
    for call in ["keyctl", "add_key", "mount", "umount2", "unshare_user", "clone_newns"] {
        let line = out.lines().find(|l| l.starts_with(&format!("{call} "))).unwrap_or_else(|| panic!("{call}: {out}"));
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!((fields[1], fields[2]), ("-1", eperm.as_str()), "{line}");
    }
    assert!(out.contains("getpid 1 0"), "{out}");
}

#[test]
fn masked_and_read_only_paths() {
    let env = TestEnv::new();
    let script = "wc -c < /proc/keys; wc -c < /proc/timer_list; ls /sys/firmware | wc -l; \
                  cat /proc/kcore 2>/dev/null | wc -c; \
                  echo x > /proc/sys/kernel/hostname 2>/dev/null || echo proc-sys-ro; \
                  touch /sys/x 2>/dev/null || echo sys-ro";
    let (_, out) = env.run(env.spec("mask", &sh(script)));
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(&lines[..4], ["0", "0", "0", "0"], "{out}");
    assert!(out.contains("proc-sys-ro") && out.contains("sys-ro"), "{out}");
}

fn capability_line(out: &str, name: &str) -> u64 {
    let line = out.lines().find(|l| l.starts_with(name)).unwrap();
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn dropped_capabilities_are_absent() {
    use runtime::config::Capability;
    let env = TestEnv::new();
    let (_, out) = env.run(env.spec("caps", &["/bin/grep", "^Cap", "/proc/self/status"]));
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    const CAP_NET_RAW: u64 = 1 << 13;
    const CAP_CHOWN: u64 = 1;
    let bounding = capability_line(&out, "CapBnd:");
    assert_eq!(bounding, 0xa80425fb, "Docker's default set: {out}");
    assert_eq!(bounding & CAP_SYS_ADMIN, 0);

    let mut spec = env.spec("caps2", &["/bin/grep", "^Cap", "/proc/self/status"]);
    adjust_capabilities(&mut spec.oci, &[], &[Capability::NetRaw, Capability::Chown]);
    let (_, out) = env.run(spec);
    for set in ["CapBnd:", "CapEff:", "CapPrm:"] {
        assert_eq!(capability_line(&out, set) & (CAP_NET_RAW | CAP_CHOWN), 0, "{set} {out}");
    }
}

#[test]
fn volumes_are_bound_read_only_when_asked() {
    let env = TestEnv::new();
    let volume = env.dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("in"), "from-host").unwrap();
    let mut spec = env.spec("vol", &sh("cat /ro/in; echo; echo x > /ro/new 2>/dev/null || echo ro-refused; echo y > /rw/new"));
    let mount = |dest: &str, ro: bool| -> runtime::config::Mount {
        let mut options = vec!["rbind".to_string()];
        if ro {
            options.push("ro".into());
        }
        serde_json::from_value(serde_json::json!({
            "destination": dest, "type": "bind", "source": volume, "options": options
        }))
        .unwrap()
    };
    let mut mounts = spec.oci.mounts().clone().unwrap();
    mounts.push(mount("/ro", true));
    mounts.push(mount("/rw", false));
    spec.oci.set_mounts(Some(mounts));
    let (exit, out) = env.run(spec);
    assert_eq!(exit.code, 0, "{out}");
    assert!(out.contains("from-host") && out.contains("ro-refused"), "{out}");
    assert_eq!(std::fs::read_to_string(volume.join("new")).unwrap(), "y\n");
}

#[test]
fn exec_runs_inside_and_stop_kills_after_the_timeout() {
    let env = TestEnv::new();
    env.runtime.create(env.spec("svc", &["/bin/sleep", "1000"])).unwrap();
    env.runtime.start("svc").unwrap();
    assert_eq!(env.runtime.info("svc").unwrap().status, Status::Running);

    let exec = runtime::ExecSpec { args: sh("echo pid=$$; hostname; cat /proc/1/cmdline; echo; grep CapBnd /proc/self/status").iter().map(|s| s.to_string()).collect(), ..Default::default() };
    let out = env.runtime.exec_command("svc", &exec).unwrap().stderr(Stdio::inherit()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("host-svc") && text.contains("/bin/sleep"), "{text}");
    assert!(!text.contains("pid=1\n"), "{text}");
    assert!(text.contains("00000000a80425fb"), "exec has the container's capabilities: {text}");

    let missing = runtime::ExecSpec { args: vec!["/no/such".into()], ..Default::default() };
    let status = env.runtime.exec_command("svc", &missing).unwrap().stderr(Stdio::null()).status().unwrap();
    assert_eq!(status.code(), Some(127));

    // sleep as PID 1 has no SIGTERM handler, so the kernel ignores SIGTERM:
    // stop must fall back to SIGKILL.
    let exit = env.runtime.stop("svc", Signal::SIGTERM, Duration::from_millis(300)).unwrap();
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    env.runtime.delete("svc", false).unwrap();
}

/// Several at once: the init fails (and exits) while the shim may still be
/// moving it into its cgroup; the init's own reason must win over the shim
/// finding it gone (this raced once: "Broken pipe").
#[test]
fn a_missing_program_fails_create_with_the_reason_and_leaves_nothing() {
    let env = TestEnv::new();
    let ids: Vec<String> = (0..6).map(|i| format!("nope-{i}")).collect();
    std::thread::scope(|scope| {
        for id in &ids {
            let env = &env;
            scope.spawn(move || {
                match env.runtime.create(env.spec(id, &["no-such-program"])).unwrap_err() {
                    RuntimeError::Create { reason, not_found: true, .. } => {
                        assert!(reason.contains("executable file not found in $PATH"), "{reason}")
                    }
                    other => panic!("{other}"),
                }
            });
        }
    });
    for id in &ids {
        assert!(!env.runtime.config().state_root.join(id).exists());
        assert!(env.cgroup_dirs(id).iter().all(|d| !d.exists()));
    }
}

#[test]
fn nothing_is_left_after_removal() {
    let env = TestEnv::new();
    let (exit, _) = env.run(env.spec("gone", &["/bin/true"]));
    assert_eq!(exit.code, 0);
    assert!(!env.runtime.config().state_root.join("gone").exists());
    let dirs = env.cgroup_dirs("gone");
    assert!(!dirs.is_empty());
    assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(env.dir.path().to_str().unwrap()), "{mounts}");
    assert!(env.runtime.list().unwrap().is_empty());
}

#[test]
fn the_container_survives_its_creator_and_is_found_again() {
    let env = TestEnv::new();
    let config = env.runtime.config();
    // The foreground `run` is killed while its container runs.
    let mut cli = Command::new(env!("CARGO_BIN_EXE_r8s"))
        .args(["runtime", "run", "--name", "orphan"])
        .arg("--state-root")
        .arg(&config.state_root)
        .arg("--cgroup-root")
        .arg(&config.cgroup_root)
        .arg("--image-root")
        .arg(env.dir.path().join("images"))
        .args(["busybox", "--", "/bin/sleep", "1000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let running = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        env.runtime.info("orphan").is_ok_and(|i| i.status == Status::Running)
    });
    assert!(running);
    cli.kill().unwrap();
    cli.wait().unwrap();
    // A new runtime (as after a restart) sees it running still.
    let again = Runtime::new(config.clone()).unwrap();
    let info = again.info("orphan").unwrap();
    assert_eq!(info.status, Status::Running);
    assert!(nix_alive(info.pids.unwrap().init));
    let exit = again.stop("orphan", Signal::SIGKILL, Duration::from_secs(5)).unwrap();
    assert_eq!(exit.signal, Some(9));
    again.delete("orphan", false).unwrap();
}

fn nix_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn the_cli_runs_an_image_and_passes_the_exit_code() {
    let env = TestEnv::new();
    let config = env.runtime.config();
    let out = Command::new(env!("CARGO_BIN_EXE_r8s"))
        .args(["runtime", "run", "--memory", "64Mi", "--cpus", "0.5", "--pids", "100"])
        .arg("--state-root")
        .arg(&config.state_root)
        .arg("--cgroup-root")
        .arg(&config.cgroup_root)
        .arg("--image-root")
        .arg(env.dir.path().join("images"))
        .args(["busybox", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));
    assert!(env.runtime.list().unwrap().is_empty());
    drop(env.store.list().unwrap());
}

#[test]
fn a_user_namespace_maps_root_to_an_unprivileged_host_user() {
    let env = TestEnv::new();
    let mut spec = env.spec("userns", &sh("id -u; cat /proc/self/uid_map; touch /created; ls -ln /created"));
    let linux = spec.oci.linux_mut().as_mut().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    namespaces.push(serde_json::from_value(serde_json::json!({ "type": "user" })).unwrap());
    linux.set_namespaces(Some(namespaces));
    let map = serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    linux.set_uid_mappings(Some(serde_json::from_value(map.clone()).unwrap()));
    linux.set_gid_mappings(Some(serde_json::from_value(map).unwrap()));
    let id = spec.id.clone();
    env.runtime.create(spec).unwrap();
    let upper = env.runtime.config().state_root.join(&id).join("upper");
    env.runtime.start(&id).unwrap();
    let exit = env.runtime.wait(&id).unwrap();
    let out = env.output(&id);
    assert_eq!(exit.code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "0", "{out}");
    assert!(lines[1].split_whitespace().eq(["0", "100000", "65536"]), "{out}");
    // The file the container's root made belongs to the mapped host user.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(upper.join("created")).unwrap().uid(), 100000);
    env.runtime.delete(&id, false).unwrap();
}

#[test]
fn exec_with_a_terminal_and_pause_resume_with_stats() {
    let env = TestEnv::new();
    let mut spec = env.spec("term", &["/bin/sleep", "1000"]);
    spec.oci.linux_mut().as_mut().unwrap().set_resources(Some(resources(Some(64 << 20), None, Some(50))));
    env.runtime.create(spec).unwrap();
    env.runtime.start("term").unwrap();

    let exec = runtime::ExecSpec { args: vec!["/bin/tty".into()], tty: true, ..Default::default() };
    let out = env.runtime.exec_command("term", &exec).unwrap().stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"), "{out:?}");

    let stats = env.runtime.stats("term").unwrap();
    assert_eq!(stats.memory_limit_bytes, Some(64 << 20));
    assert!(stats.pids_current >= 1 && stats.memory_usage_bytes > 0, "{stats:?}");

    env.runtime.set_paused("term", true).unwrap();
    let freezer = env.cgroup_dirs("term").into_iter().find(|d| d.starts_with("/sys/fs/cgroup/freezer")).unwrap();
    assert_eq!(std::fs::read_to_string(freezer.join("freezer.state")).unwrap().trim(), "FROZEN");
    env.runtime.set_paused("term", false).unwrap();
    assert_eq!(std::fs::read_to_string(freezer.join("freezer.state")).unwrap().trim(), "THAWED");
    env.runtime.stop("term", Signal::SIGKILL, Duration::from_secs(5)).unwrap();
    env.runtime.delete("term", false).unwrap();
}
