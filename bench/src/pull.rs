//! `r8s-bench pull`: pulling an image from Debian's `docker-registry` on
//! loopback into an empty store, with `r8s image pull` beside `skopeo copy`
//! (to an OCI layout: downloads only) and `podman pull` (downloads and
//! unpacks, as r8s does), plus r8s pulling an image it already holds. Two
//! images: busybox, and busybox with a 64 MiB incompressible layer so that
//! moving bytes dominates.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use runtime::image::ImageStore;

use crate::stats::{ms, print_table, Samples};

#[derive(clap::Args)]
pub struct PullBenchArgs {
    /// Pulls timed per tool and image.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// The r8s binary (default: next to r8s-bench).
    #[arg(long)]
    r8s: Option<PathBuf>,
    /// Size of the extra layer of the second image, in MiB.
    #[arg(long, default_value_t = 64)]
    big_mib: usize,
}

pub fn run(args: PullBenchArgs) -> anyhow::Result<()> {
    let r8s = args.r8s.clone().unwrap_or(std::env::current_exe()?.with_file_name("r8s"));
    if !r8s.is_file() {
        bail!("{} not found: build it first (cargo build --release -p r8s) or pass --r8s", r8s.display());
    }
    let dir = tempfile::Builder::new().prefix("r8s-bench-pull-").tempdir()?;
    let registry = Registry::start(dir.path())?;
    let busybox = push_image(dir.path(), &registry, "busybox", 0)?;
    let big = push_image(dir.path(), &registry, "busybox-big", args.big_mib)?;
    let podman = which("podman");
    let mut rows = Vec::new();
    for (label, reference) in [("busybox", &busybox), (&*format!("busybox + {} MiB", args.big_mib), &big)] {
        let size = registry_size(&registry.storage(), reference)?;
        let mut add = |tool: &str, samples: Samples| {
            rows.push(vec![label.to_string(), format!("{:.1}", size as f64 / 1e6), tool.to_string(), ms(samples.percentile(50.0)), ms(samples.percentile(90.0))]);
        };
        let scratch = dir.path().join("scratch");
        let r8s_pull = |store: &Path| {
            let mut c = Command::new(&r8s);
            c.args(["image", "pull", reference, "--image-root"]).arg(store);
            c
        };
        add("r8s image pull", time(args.runs, &scratch, r8s_pull)?);
        let warm = dir.path().join("warm");
        run_ok(&mut r8s_pull(&warm))?;
        add("r8s image pull, already stored", time_in_place(args.runs, || r8s_pull(&warm))?);
        let source = format!("docker://{reference}");
        add("skopeo copy (to an OCI layout)", time(args.runs, &scratch, |target| {
            let mut c = Command::new("skopeo");
            c.args(["copy", "--quiet", "--src-tls-verify=false", &source]).arg(format!("oci:{}:image", target.display()));
            c
        })?);
        if podman {
            add("podman pull", time(args.runs, &scratch, |target| {
                let mut c = Command::new("podman");
                c.arg("--root").arg(target.join("root")).arg("--runroot").arg(target.join("run"));
                c.args(["--storage-driver", "vfs", "pull", "--quiet", "--tls-verify=false", reference]);
                c
            })?);
        }
    }
    println!("Pull from docker-registry 2.8 on loopback into an empty store, {} runs each (MB: compressed bytes moved)\n", args.runs);
    print_table(&["image", "MB", "tool", "median ms", "p90 ms"], &rows);
    if !podman {
        println!("\n(podman not installed: no podman row)");
    }
    Ok(())
}

/// Runs the command `make(target)` `runs` times, each into a fresh empty `target`.
fn time(runs: usize, target: &Path, make: impl Fn(&Path) -> Command) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..runs {
        remove_tree(target)?;
        std::fs::create_dir_all(target)?;
        let mut command = make(target);
        let started = Instant::now();
        run_ok(&mut command)?;
        samples.push(started.elapsed());
    }
    remove_tree(target)?;
    Ok(samples)
}

fn time_in_place(runs: usize, make: impl Fn() -> Command) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..runs {
        let mut command = make();
        let started = Instant::now();
        run_ok(&mut command)?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

fn run_ok(command: &mut Command) -> anyhow::Result<()> {
    let output = command.stdout(Stdio::null()).output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Removes `dir`; podman's vfs storage holds read-only directories, so
/// permissions are opened first.
fn remove_tree(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let _ = Command::new("chmod").args(["-R", "u+rwx"]).arg(dir).status();
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

fn which(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Makes an image of a busybox root filesystem (plus `extra_mib` of random
/// bytes) with r8s's own store, whose blob directory is an OCI image layout
/// once it has an index, and pushes it with skopeo (which gzips the layer,
/// as registries usually hold them). Returns its reference.
fn push_image(dir: &Path, registry: &Registry, name: &str, extra_mib: usize) -> anyhow::Result<String> {
    let rootfs = dir.join(format!("{name}-rootfs"));
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("copying /bin/busybox (busybox-static)")?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    if extra_mib > 0 {
        let mut random = std::fs::File::open("/dev/urandom")?;
        let mut file = std::fs::File::create(rootfs.join("data"))?;
        std::io::copy(&mut std::io::Read::take(&mut random, (extra_mib as u64) << 20), &mut file)?;
    }
    let layout = dir.join(format!("{name}-layout"));
    let store = ImageStore::open(&layout)?;
    let image = store.import_rootfs(&rootfs, name)?;
    let manifest_size = store.blobs().read(&image.manifest)?.len();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.manifest.to_string(), "size": manifest_size,
    }]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    let reference = format!("{}/bench/{name}:1", registry.host);
    run_ok(Command::new("skopeo").args(["copy", "--quiet", "--dest-tls-verify=false"]).arg(format!("oci:{}", layout.display())).arg(format!("docker://{reference}")))?;
    Ok(reference)
}

/// The bytes of the blobs of the registry's repository of `reference`.
fn registry_size(storage: &Path, reference: &str) -> anyhow::Result<u64> {
    let repository = reference.split_once('/').map(|(_, r)| r).unwrap_or(reference).rsplit_once(':').map_or(reference, |(r, _)| r);
    let layers = storage.join("docker/registry/v2/repositories").join(repository).join("_layers/sha256");
    let mut total = 0;
    for entry in std::fs::read_dir(&layers).with_context(|| format!("reading {}", layers.display()))? {
        let hex = entry?.file_name().to_string_lossy().into_owned();
        let blob = storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(&hex).join("data");
        total += std::fs::metadata(blob)?.len();
    }
    Ok(total)
}

/// `docker-registry serve` on a free loopback port, stopped on drop.
struct Registry {
    dir: PathBuf,
    host: String,
    child: Child,
}

impl Registry {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("registry");
        std::fs::create_dir_all(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), config)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            // It logs every 404 a pusher's existence checks cause, even at level error.
            .stderr(Stdio::null())
            .spawn()
            .context("starting docker-registry (Debian package docker-registry: bash scripts/setup.sh)")?;
        let registry = Registry { dir, host, child };
        for _ in 0..200 {
            if TcpStream::connect(&registry.host).is_ok() {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!("docker-registry did not listen on {}", registry.host)
    }

    fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
