//! `r8s-bench runtime`: run `/bin/true` in a container (create, start, wait,
//! delete) from the same busybox root filesystem with r8s, runc and crun,
//! one at a time and 10 in parallel, beside the floor of `unshare` alone.
//!
//! Each runtime is run through its CLI (`r8s runtime run`, `runc run`,
//! `crun run`), so each sample includes starting the runtime's own binary.
//! r8s runs twice: from the same directory as runc and crun (`--rootfs`), and
//! from its image store, where every container gets an overlay mount of its
//! own over the image's layers (as pods do), which costs more.
//! crun refuses hybrid cgroups while cgroup2 holds a controller, so the runs
//! happen inside a private mount namespace with the cgroup2 mount detached
//! (this benchmark re-executes itself there, `compare`; the host's mounts
//! stay as they are), all runtimes alike.
//!
//! This VM's speed drifts by a quarter within minutes, so the runtimes take
//! turns: every round runs each of them once (or one batch of 10 each), in
//! an order that rotates from round to round, and drift lands on all alike.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::stats::{ms, print_table, Samples};

const PARALLELISM: usize = 10;
/// Pause before each parallel batch: the kernel tears network namespaces down
/// in a work queue after their last process is gone, and the previous batch's
/// must not run during the next one.
const SETTLE: Duration = Duration::from_millis(500);
/// r8s's cgroups for the benchmark, and the parent of runc's and crun's.
const CGROUP_ROOT: &str = "r8s-bench";

#[derive(clap::Args)]
pub struct RuntimeBenchArgs {
    /// Containers per runtime and mode.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// The r8s binary (default: `r8s` beside this benchmark).
    #[arg(long)]
    r8s: Option<PathBuf>,
    #[command(subcommand)]
    worker: Option<Worker>,
}

#[derive(clap::Subcommand)]
enum Worker {
    /// (internal) Runs the comparison from inside the private mount namespace
    /// and prints the table.
    #[command(hide = true)]
    Compare {
        #[arg(long)]
        dir: PathBuf,
    },
}

pub fn run(args: RuntimeBenchArgs) -> anyhow::Result<()> {
    let r8s = match args.r8s {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("r8s"),
    };
    if !r8s.is_file() {
        bail!("{} not found: build it first (cargo build --release -p r8s) or pass --r8s", r8s.display());
    }
    if let Some(Worker::Compare { dir }) = args.worker {
        return Bench::at(dir).compare(&r8s, args.runs);
    }
    let dir = tempfile::Builder::new().prefix("r8s-bench-").tempdir()?;
    let bench = Bench::at(dir.path().to_path_buf());
    let _run = Tmpfs::mount(&bench.run_dir())?;
    bench.prepare(&r8s)?;
    let result = bench.compare_in_private_mount_namespace(&r8s, args.runs);
    bench.remove_cgroups();
    result
}

/// Where r8s's container gets its root filesystem.
#[derive(Clone, Copy)]
enum R8sRoot {
    Image,
    Directory,
}

/// Makes the command for one run of a runtime.
type CommandFactory<'a> = Box<dyn Fn() -> anyhow::Result<Command> + Sync + 'a>;

struct Bench {
    dir: PathBuf,
    next: AtomicUsize,
}

impl Bench {
    fn at(dir: PathBuf) -> Self {
        Bench { dir, next: AtomicUsize::new(0) }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Holds the state roots of all three runtimes: a tmpfs, as `/run` is on
    /// most systems, where r8s (`/run/r8s`), crun (`/run/crun`) and runc
    /// (`/run/runc`) keep their state by default. This machine's `/run` is on
    /// its ext4 root, mounted `discard` without a journal: there every freed
    /// block of a deleted state file or directory waits for a discard request
    /// to the disk (0.1 to 0.9 ms each, several per container), which would
    /// measure the disk more than the runtimes. Images and bundles stay on disk.
    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn state_root(&self, runtime: &str) -> PathBuf {
        self.run_dir().join(runtime)
    }

    /// A busybox root filesystem, an image of it for r8s, and an OCI spec for
    /// runc and crun (`runc spec`, running /bin/true without a terminal).
    fn prepare(&self, r8s: &Path) -> anyhow::Result<()> {
        let rootfs = self.rootfs();
        std::fs::create_dir_all(rootfs.join("bin"))?;
        for dir in ["proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(dir))?;
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("copying /bin/busybox (busybox-static)")?;
        for applet in ["true", "sh"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
        }
        check(Command::new(r8s).args(["image", "import-rootfs"]).arg(&rootfs).arg("bench-busybox").arg("--image-root").arg(self.dir.join("images")))?;
        check(Command::new("runc").arg("spec").current_dir(&self.dir))?;
        let path = self.dir.join("config.json");
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        spec["process"]["args"] = serde_json::json!(["/bin/true"]);
        spec["process"]["terminal"] = serde_json::json!(false);
        spec["root"]["path"] = serde_json::json!(rootfs);
        std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
        Ok(())
    }

    /// A bundle for container `id` of `runtime`: the shared spec with its
    /// own cgroup below r8s-bench.
    fn bundle(&self, runtime: &str, id: &str) -> anyhow::Result<PathBuf> {
        let bundle = self.dir.join("bundles").join(id);
        std::fs::create_dir_all(&bundle)?;
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(self.dir.join("config.json"))?)?;
        spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{CGROUP_ROOT}/{runtime}/{id}"));
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec)?)?;
        Ok(bundle)
    }

    fn id(&self, runtime: &str) -> String {
        format!("r8s-bench-{runtime}-{}-{}", std::process::id(), self.next.fetch_add(1, Ordering::SeqCst))
    }

    /// `r8s runtime run` of `/bin/true`, from the image store (an overlay
    /// mount over its layer, as pods get) or from the same directory that runc
    /// and crun run from.
    fn r8s(&self, r8s: &Path, root: R8sRoot) -> Command {
        let mut command = Command::new(r8s);
        command
            .args(["runtime", "run", "--name", &self.id("r8s")])
            .arg("--state-root")
            .arg(self.state_root("r8s"))
            .args(["--cgroup-root", CGROUP_ROOT])
            .arg("--image-root")
            .arg(self.dir.join("images"));
        match root {
            R8sRoot::Image => command.arg("bench-busybox"),
            R8sRoot::Directory => command.arg("--rootfs").arg(self.rootfs()),
        };
        command.args(["--", "/bin/true"]);
        command
    }

    fn oci_runtime(&self, runtime: &'static str) -> anyhow::Result<Command> {
        let id = self.id(runtime);
        let bundle = self.bundle(runtime, &id)?;
        let mut command = Command::new(runtime);
        command.arg("--root").arg(self.state_root(runtime)).arg("run").arg("--bundle").arg(bundle).arg(id);
        Ok(command)
    }

    fn compare(&self, r8s: &Path, runs: usize) -> anyhow::Result<()> {
        let floor = || {
            let mut c = Command::new("unshare");
            c.args(["--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "/bin/true"]);
            Ok(c)
        };
        let runtimes: Vec<(&'static str, CommandFactory)> = vec![
            ("floor: unshare --fork --pid --mount --uts --ipc --net /bin/true", Box::new(floor)),
            ("crun run", Box::new(|| self.oci_runtime("crun"))),
            ("runc run", Box::new(|| self.oci_runtime("runc"))),
            ("r8s runtime run --rootfs (the same directory as crun and runc)", Box::new(|| Ok(self.r8s(r8s, R8sRoot::Directory)))),
            ("r8s runtime run IMAGE (overlay rootfs from the image store)", Box::new(|| Ok(self.r8s(r8s, R8sRoot::Image)))),
        ];
        // Each round runs every runtime once, `batch` containers at a time,
        // in an order that rotates from round to round.
        let take_turns = |rounds: usize, batch: usize, pause: Duration| -> anyhow::Result<Vec<Samples>> {
            let mut all = vec![Samples::default(); runtimes.len()];
            for round in 0..rounds {
                for turn in 0..runtimes.len() {
                    let which = (round + turn) % runtimes.len();
                    std::thread::sleep(pause);
                    all[which].extend(samples(measure(batch, batch, |_| (runtimes[which].1)())?));
                }
            }
            Ok(all)
        };
        let sequential = take_turns(runs, 1, Duration::ZERO)?;
        let parallel = take_turns(runs.div_ceil(PARALLELISM), PARALLELISM, SETTLE)?;
        println!("`/bin/true` in a container, {runs} runs each, milliseconds (lower is better):\n");
        let ratio = |samples: &Samples, base: &Samples| {
            format!("{:.2}x", samples.percentile(50.0).as_secs_f64() / base.percentile(50.0).as_secs_f64())
        };
        let (crun_sequential, crun_parallel) = (&sequential[1], &parallel[1]);
        let table: Vec<Vec<String>> = runtimes
            .iter()
            .zip(sequential.iter().zip(&parallel))
            .map(|((name, _), (one, many))| {
                vec![
                    name.to_string(),
                    ms(one.percentile(50.0)),
                    ms(one.percentile(90.0)),
                    ratio(one, crun_sequential),
                    ms(many.percentile(50.0)),
                    ms(many.percentile(90.0)),
                    ratio(many, crun_parallel),
                ]
            })
            .collect();
        print_table(
            &["runtime", "1 at a time p50", "p90", "p50 vs crun", &format!("{PARALLELISM} parallel p50"), "p90", "p50 vs crun"],
            &table,
        );
        Ok(())
    }

    /// Runs `compare` again in a private mount namespace without the cgroup2 mount.
    fn compare_in_private_mount_namespace(&self, r8s: &Path, runs: usize) -> anyhow::Result<()> {
        let me = std::env::current_exe()?;
        let script = format!(
            "umount /sys/fs/cgroup/unified && exec '{}' runtime --r8s '{}' --runs {runs} compare --dir '{}'",
            me.display(),
            r8s.display(),
            self.dir.display()
        );
        let status = Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).status()?;
        if !status.success() {
            bail!("the comparison failed: {status}");
        }
        Ok(())
    }

    /// Removes the cgroups the benchmark's containers left (their parents).
    fn remove_cgroups(&self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
        for hierarchy in hierarchies.flatten() {
            let root = hierarchy.path().join(CGROUP_ROOT);
            for runtime in ["runc", "crun", ""] {
                let _ = std::fs::remove_dir(root.join(runtime));
            }
        }
    }
}

/// Runs `runs` commands, `parallel` at a time, and times each to its exit.
fn measure(runs: usize, parallel: usize, command: impl Fn(usize) -> anyhow::Result<Command> + Sync) -> anyhow::Result<Vec<Duration>> {
    let next = AtomicUsize::new(0);
    let results: Vec<anyhow::Result<Vec<Duration>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..parallel)
            .map(|_| {
                scope.spawn(|| {
                    let mut samples = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= runs {
                            break;
                        }
                        let mut command = command(n)?;
                        command.stdin(Stdio::null()).stdout(Stdio::null());
                        let start = Instant::now();
                        let status = command.status()?;
                        samples.push(start.elapsed());
                        if !status.success() {
                            bail!("{command:?} failed: {status}");
                        }
                    }
                    Ok(samples)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))).collect()
    });
    let mut all = Vec::new();
    for samples in results {
        all.extend(samples?);
    }
    Ok(all)
}

fn samples(durations: Vec<Duration>) -> Samples {
    let mut samples = Samples::default();
    for d in durations {
        samples.push(d);
    }
    samples
}

fn check(command: &mut Command) -> anyhow::Result<()> {
    let status = command.stdout(Stdio::null()).status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// A tmpfs of the benchmark's own, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
        let (target, options) = (c(&path.to_string_lossy()), c("size=256m,mode=0755"));
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let mounted = unsafe { libc::mount(c("tmpfs").as_ptr(), target.as_ptr(), c("tmpfs").as_ptr(), 0, options.as_ptr().cast()) };
        if mounted != 0 {
            bail!("mounting a tmpfs at {}: {}", path.display(), std::io::Error::last_os_error());
        }
        Ok(Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.0.to_string_lossy().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
