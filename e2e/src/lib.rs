//! What whole-cluster tests share: a multi-node cluster made by the real
//! `r8s up --nodes N` (in network namespaces, with a busybox image imported
//! into its own image store), reached from the test through the API
//! listener on loopback, and removed by `r8s down` when dropped, also when
//! the test fails. Each cluster has a unique name, port and roots, so tests
//! run in parallel.
//!
//! Build the binary first: `cargo build -p r8s`, then
//! `cargo nextest run -p r8s-e2e` (as root). `R8S_BIN` overrides the binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use client::k8s_openapi::api::core::v1::{Node, Pod};
use client::kube::api::{LogParams, PostParams};
use client::kube::{Api, Client};

pub const IMAGE: &str = "busybox:1.36";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The r8s binary (`cargo build -p r8s`), or `R8S_BIN`.
pub fn r8s_bin() -> PathBuf {
    if let Ok(path) = std::env::var("R8S_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join("r8s");
    assert!(bin.exists(), "{} is missing: run `cargo build -p r8s` first (or set R8S_BIN)", bin.display());
    bin
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "these tests make namespaces, mounts and cgroups: they need root");
}

/// A cluster of `r8s up --nodes N`, removed with `r8s down` on drop.
pub struct TestCluster {
    pub name: String,
    /// The API on this machine (`http://127.0.0.1:PORT`).
    pub url: String,
    pub kubeconfig: PathBuf,
    /// Holds the image store and the clusters' data root.
    pub dir: tempfile::TempDir,
    /// The clusters' run root (sockets, runtime state).
    pub run_dir: PathBuf,
    up: Option<Child>,
}

impl TestCluster {
    /// Starts `r8s up --nodes {nodes}` and waits until it says the cluster is up.
    pub fn up(nodes: usize) -> Self {
        Self::up_with(nodes, &[])
    }

    /// As [`TestCluster::up`], with more arguments for `r8s up`, e.g.
    /// `--server-arg=--node-grace-seconds=15`.
    pub fn up_with(nodes: usize, up_args: &[&str]) -> Self {
        let mut cluster = Self::prepare();
        let port = cluster.url.rsplit(':').next().expect("a port").to_string();
        let mut args = vec!["--nodes".to_string(), nodes.to_string(), "--listen".into(), format!("127.0.0.1:{port}")];
        args.extend(up_args.iter().map(|a| a.to_string()));
        cluster.start_up(&args);
        cluster
    }

    /// A name, roots, a port and a busybox image for a cluster; nothing runs yet.
    pub fn prepare() -> Self {
        require_root();
        let bin = r8s_bin();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("e2e{}x{n}", std::process::id());
        let dir = tempfile::Builder::new().prefix("r8s-e2e-").tempdir_in("/run").expect("temp dir");
        let run_dir = PathBuf::from(format!("/run/r8s-e2e-{name}"));
        import_busybox(&bin, dir.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        TestCluster {
            url: format!("http://127.0.0.1:{port}"),
            kubeconfig: dir.path().join("clusters").join(&name).join("kubeconfig.yaml"),
            name,
            dir,
            run_dir,
            up: None,
        }
    }

    /// `r8s up --name NAME ARGS...` with this cluster's roots; waits until it
    /// says the cluster is up.
    pub fn start_up(&mut self, args: &[String]) {
        let child = Command::new(r8s_bin())
            .args(["up", "--name", &self.name])
            .args(args)
            .args(self.roots())
            .arg("--image-root")
            .arg(self.dir.path().join("images"))
            .arg("--timeout-seconds")
            .arg("240")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("r8s up");
        let stdout = self.up.insert(child).stdout.take().expect("piped stdout");
        let (said, heard) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("r8s up: {line}");
                if line.starts_with("r8s is up") {
                    let _ = said.send(());
                }
            }
        });
        if heard.recv_timeout(Duration::from_secs(300)).is_err() {
            self.print_logs();
            panic!("r8s up {args:?} did not report the cluster up");
        }
    }

    /// SIGINT to `r8s up`, as Ctrl-C, and a wait until it has stopped the cluster.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut up = self.up.take().expect("r8s up runs");
        // SAFETY: signalling our own child, not yet reaped, by its pid.
        unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
        up.wait().expect("wait for r8s up")
    }

    /// `r8s up --name NAME` again: the stopped cluster resumes.
    pub fn resume(&mut self) {
        self.start_up(&[]);
    }

    /// `--clusters-dir` and `--clusters-run-dir` of this cluster, for `up` and `down`.
    pub fn roots(&self) -> Vec<String> {
        vec![
            "--clusters-dir".into(),
            self.dir.path().join("clusters").display().to_string(),
            "--clusters-run-dir".into(),
            self.run_dir.display().to_string(),
        ]
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("clusters").join(&self.name)
    }

    pub fn client(&self) -> Client {
        client::connect::from_url(&self.url).expect("client")
    }

    /// `r8s down NAME`.
    pub fn down(&mut self) -> Output {
        let output = Command::new(r8s_bin()).args(["down", &self.name]).args(self.roots()).output().expect("r8s down");
        if let Some(mut up) = self.up.take() {
            let _ = up.wait();
        }
        output
    }

    /// The pid of `r8s up` and the pids its pid files name (server, agents).
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self.up.as_ref().map(|c| c.id() as i32).into_iter().collect();
        if let Ok(entries) = std::fs::read_dir(self.data_dir().join("pids")) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                pids.extend(text.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs one process of the cluster by its pid file name (`server-1`,
    /// `agent-n2`, ...), as a crash would (`r8s up` restarts it).
    pub fn kill(&self, process: &str) {
        let text = std::fs::read_to_string(self.data_dir().join("pids").join(format!("{process}.pid"))).expect("pid file");
        let pid: i32 = text.split_whitespace().next().and_then(|p| p.parse().ok()).expect("a pid");
        // SAFETY: signalling a process this test's cluster started, by pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }

    /// SIGSTOPs one process of the cluster by its pid file name, as a hang
    /// would: it stays alive (so nothing restarts it) and does nothing.
    pub fn pause(&self, process: &str) {
        let text = std::fs::read_to_string(self.data_dir().join("pids").join(format!("{process}.pid"))).expect("pid file");
        let pid: i32 = text.split_whitespace().next().and_then(|p| p.parse().ok()).expect("a pid");
        // SAFETY: signalling a process this test's cluster started, by pid.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
    }

    /// The routes the agent of node `n<i>` made to other nodes' pods
    /// (`ip route show proto 82` in the node's namespace): destination → gateway.
    pub fn pod_routes(&self, node: usize) -> Vec<(String, String)> {
        let netns = format!("r8s-{}-n{node}", self.name);
        let output = Command::new("ip").args(["-n", &netns, "route", "show", "proto", "82"]).output().expect("ip route");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let via = words.iter().position(|w| *w == "via")?;
                Some((words.first()?.to_string(), words.get(via + 1)?.to_string()))
            })
            .collect()
    }

    /// SIGKILLs `r8s up`, the server and the agents, as a crash would (the
    /// runtimes, shims and containers stay).
    pub fn crash(&mut self) {
        for pid in self.pids() {
            // SAFETY: signalling processes this test's cluster started, by pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(mut up) = self.up.take() {
            let _ = up.wait();
        }
    }

    /// What of the cluster is still on the machine: namespaces, cgroups,
    /// processes, mounts, directories. Empty once it is gone.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = self.running_traces();
        for root in [self.dir.path().join("clusters"), self.run_dir.clone()] {
            if root.exists() && std::fs::read_dir(&root).is_ok_and(|mut d| d.next().is_some()) {
                found.push(format!("directory {}", root.display()));
            }
        }
        found
    }

    /// What a stopped cluster must not keep: namespaces, cgroups, processes,
    /// mounts and its run directory (its data stays).
    pub fn running_traces(&self) -> Vec<String> {
        let mut found = Vec::new();
        let prefix = format!("r8s-{}", self.name);
        for entry in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == prefix || name.starts_with(&format!("{prefix}-")) {
                found.push(format!("network namespace {name}"));
            }
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let cgroup = hierarchy.path().join("r8s").join(&self.name);
            if cgroup.exists() {
                found.push(format!("cgroup {}", cgroup.display()));
            }
        }
        let roots = [self.dir.path().join("clusters"), self.run_dir.clone()];
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for target in mounts.lines().filter_map(|l| l.split_whitespace().nth(4)) {
            if roots.iter().any(|root| Path::new(target).starts_with(root)) {
                found.push(format!("mount {target}"));
            }
        }
        for pid in self.pids() {
            if Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
                found.push(format!("process {pid}"));
            }
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&self.name) {
                found.push(format!("process {} ({})", entry.file_name().to_string_lossy(), String::from_utf8_lossy(&cmdline).replace('\0', " ")));
            }
        }
        if self.run_dir.exists() && std::fs::read_dir(&self.run_dir).is_ok_and(|mut d| d.next().is_some()) {
            found.push(format!("directory {}", self.run_dir.display()));
        }
        found
    }

    /// Prints the server's and agents' logs (for a failing test).
    pub fn print_logs(&self) {
        for entry in std::fs::read_dir(self.data_dir().join("logs")).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            println!("==== {} (last lines)", entry.path().display());
            for line in tail.into_iter().rev() {
                println!("{line}");
            }
        }
    }

    /// Creates a pod in `default` from its spec, bound to `node`.
    pub async fn create_pod(&self, name: &str, node: &str, spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["nodeName"] = serde_json::json!(node);
        let pod: Pod = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})).expect("pod");
        Api::<Pod>::namespaced(self.client(), "default").create(&PostParams::default(), &pod).await.expect("create pod")
    }

    /// Polls the pod until `check` holds; panics after `limit` with its status.
    pub async fn wait_pod(&self, name: &str, limit: Duration, check: impl Fn(&Pod) -> bool) -> Pod {
        let pods: Api<Pod> = Api::namespaced(self.client(), "default");
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            if let Ok(pod) = pods.get(name).await {
                if check(&pod) {
                    return pod;
                }
                last = Some(pod);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.print_logs();
        panic!("pod {name} did not get there in {limit:?}: {:?}", last.and_then(|p| p.status));
    }

    pub async fn logs(&self, pod: &str) -> String {
        Api::<Pod>::namespaced(self.client(), "default").logs(pod, &LogParams::default()).await.expect("pod logs")
    }

    pub async fn nodes(&self) -> Vec<Node> {
        Api::<Node>::all(self.client()).list(&Default::default()).await.expect("list nodes").items
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.up.is_some() || self.data_dir().exists() {
            let output = self.down();
            if !output.status.success() {
                eprintln!("r8s down {}: {}", self.name, String::from_utf8_lossy(&output.stderr));
            }
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

fn is_zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty())
}

/// A busybox image (Debian's busybox-static) in `<dir>/images`.
fn import_busybox(bin: &Path, dir: &Path) {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("rootfs");
    for sub in ["etc", "tmp", "proc", "sys", "dev", "root", "www"] {
        std::fs::create_dir_all(root.join(sub)).expect("rootfs");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("/bin/busybox (busybox-static)");
    let list = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n").expect("passwd");
    let imported = Command::new(bin).arg("image").arg("--image-root").arg(dir.join("images")).arg("import-rootfs").arg(&root).arg(IMAGE).stdout(Stdio::null()).status().expect("r8s image");
    assert!(imported.success(), "importing the busybox image");
}
