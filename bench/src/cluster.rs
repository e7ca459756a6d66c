//! `r8s-bench cluster`: a whole multi-node cluster made by `r8s up --nodes N`
//! (each node a network namespace with its own agent and runtime).
//!
//! - From starting `r8s up` to all nodes Ready, then from creating a Deployment
//!   of 30 busybox replicas to all 30 available; beside it, `podman run -d` of
//!   30 busybox containers at once (the same podman set-up as `r8s-bench
//!   agent`).
//! - From a pod turning not ready (its deletion: the container keeps serving
//!   through its grace period) to its address leaving the Service's rotation:
//!   the Endpoints object updated, and no more answers from it through the
//!   cluster IP, requested over and over from inside a node's namespace.
//!
//! Request rate and latency through the proxy are `r8s-bench proxy`'s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use runtime::network::NetNs;

use crate::agent::Podman;
use crate::cri::{busybox_image, IMAGE};
use crate::stats::{ms, print_table, Samples};

/// Consecutive answers without the removed pod that count as it being gone.
const GONE_AFTER: usize = 30;
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct ClusterBenchArgs {
    /// Clusters started, one after the other.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Nodes per cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Replicas of the Deployment (and podman containers).
    #[arg(long, default_value_t = 30)]
    replicas: usize,
    /// Pods taken out of a Service one at a time, in the last cluster.
    #[arg(long, default_value_t = 10)]
    removals: usize,
    /// The r8s binary (default: `r8s` beside this benchmark).
    #[arg(long)]
    r8s: Option<PathBuf>,
    /// Skip the podman column.
    #[arg(long)]
    no_podman: bool,
}

pub fn run(args: ClusterBenchArgs) -> anyhow::Result<()> {
    let r8s = match &args.r8s {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("r8s"),
    };
    if !r8s.is_file() {
        bail!("{} not found: build it first (cargo build --release -p r8s) or pass --r8s", r8s.display());
    }
    let dir = tempfile::Builder::new().prefix("r8s-bench-cluster-").tempdir_in("/run")?;
    let (rootfs, images) = busybox_image(&r8s, dir.path())?;
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async {
        let (mut ready, mut available, mut total, mut down) = (Samples::default(), Samples::default(), Samples::default(), Samples::default());
        let mut removals = Removals::default();
        for run in 0..args.runs {
            let mut cluster = UpCluster::start(&r8s, dir.path(), &images, args.nodes, run).await?;
            ready.push(cluster.ready);
            let took = deployment_available(&cluster, args.replicas).await?;
            available.push(took);
            total.push(cluster.ready + took);
            if run + 1 == args.runs {
                // Its down waits for the deleted pods' grace periods: not counted.
                removals = leave_rotation(&cluster, args.removals).await?;
                cluster.down()?;
            } else {
                down.push(cluster.down()?);
            }
        }
        let replicas = args.replicas;
        let mut rows = vec![vec![
            format!("r8s up --nodes {} (median of {})", args.nodes, args.runs),
            ms(ready.percentile(50.0)),
            ms(available.percentile(50.0)),
            ms(total.percentile(50.0)),
            if down.len() == 0 { "-".into() } else { ms(down.percentile(50.0)) },
        ]];
        if !args.no_podman {
            let podman = Podman::with_busybox(dir.path(), &rootfs).await?;
            let first = Instant::now();
            let starts = (0..replicas).map(|i| {
                let podman = &podman;
                async move { podman.start(&format!("c{i}")).await }
            });
            for outcome in futures::future::join_all(starts).await {
                outcome?;
            }
            rows.push(vec!["podman 4.3 run -d (runc), all at once".into(), "-".into(), ms(first.elapsed()), ms(first.elapsed()), "-".into()]);
        }
        println!("\nA cluster from nothing, ms: nodes Ready, then a Deployment of {replicas} busybox replicas available\n");
        print_table(&["", "up → all nodes Ready", &format!("{replicas} replicas → available"), "up → available", &format!("r8s down ({replicas} pods)")], &rows);
        println!("\npodman: {replicas} `podman run -d` started together, until the last returned (container running).");
        println!("\nA pod deleted (it keeps serving through its grace period) → out of the Service's rotation, ms ({} pods)\n", removals.rotation.len());
        print_table(
            &["from the delete request to", "p50", "p99", "max"],
            &[
                vec!["Endpoints without it (API, polled)".into(), ms(removals.endpoints.percentile(50.0)), ms(removals.endpoints.percentile(99.0)), ms(removals.endpoints.percentile(100.0))],
                vec!["no more answers through the cluster IP (node 1)".into(), ms(removals.rotation.percentile(50.0)), ms(removals.rotation.percentile(99.0)), ms(removals.rotation.percentile(100.0))],
            ],
        );
        println!("\nRequest rate and latency through the node proxy vs pod IPs: see `r8s-bench proxy`.");
        anyhow::Ok(())
    })
}

/// A cluster of `r8s up --nodes N`, removed with `r8s down` (also on drop).
pub(crate) struct UpCluster {
    r8s: PathBuf,
    pub name: String,
    roots: Vec<String>,
    pub run_dir: PathBuf,
    images: PathBuf,
    up: Option<Child>,
    pub client: kube::Client,
    /// From starting `r8s up` to it saying all nodes are Ready.
    pub ready: Duration,
}

impl UpCluster {
    pub async fn start(r8s: &Path, dir: &Path, images: &Path, nodes: usize, run: usize) -> anyhow::Result<Self> {
        Self::start_with(r8s, dir, images, &format!("bench{}x{run}", std::process::id()), &["--nodes".into(), nodes.to_string()]).await
    }

    /// `r8s up --name NAME ARGS...` with roots under `dir`, timed until it says the cluster is up.
    pub async fn start_with(r8s: &Path, dir: &Path, images: &Path, name: &str, args: &[String]) -> anyhow::Result<Self> {
        let run_dir = PathBuf::from(format!("/run/r8s-bench-{name}"));
        let roots = vec![
            "--clusters-dir".to_string(),
            dir.join("clusters").display().to_string(),
            "--clusters-run-dir".to_string(),
            run_dir.display().to_string(),
        ];
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}");
        let mut cluster = UpCluster {
            r8s: r8s.to_path_buf(),
            name: name.to_string(),
            roots,
            run_dir,
            images: images.to_path_buf(),
            up: None,
            client: client::connect::from_url(&url)?,
            ready: Duration::ZERO,
        };
        let mut args = args.to_vec();
        args.extend(["--listen".to_string(), format!("127.0.0.1:{port}")]);
        cluster.ready = cluster.launch(&args).await?;
        Ok(cluster)
    }

    /// Starts `r8s up` with `args`; how long until it said the cluster is up.
    async fn launch(&mut self, args: &[String]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut child = Command::new(&self.r8s)
            .args(["up", "--name", &self.name])
            .args(args)
            .args(&self.roots)
            .arg("--image-root")
            .arg(&self.images)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting r8s up")?;
        let stdout = child.stdout.take().context("r8s up's stdout")?;
        self.up = Some(child);
        let (said, heard) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("r8s is up") {
                    let _ = said.send(Instant::now());
                }
            }
        });
        let up_at = tokio::task::spawn_blocking(move || heard.recv_timeout(Duration::from_secs(300))).await?.context("r8s up did not report the cluster up")?;
        Ok(up_at.duration_since(started))
    }

    /// Ctrl-C for `r8s up`: the cluster stops and keeps its state; how long it took.
    pub fn stop(&mut self) -> anyhow::Result<Duration> {
        let mut up = self.up.take().context("r8s up does not run")?;
        let started = Instant::now();
        // SAFETY: signalling our own child, not yet reaped, by its pid.
        unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
        let status = up.wait()?;
        if !status.success() {
            bail!("r8s up ended with {status} on SIGINT");
        }
        Ok(started.elapsed())
    }

    /// `r8s up --name NAME` again: the stopped cluster resumes; how long
    /// until it said the cluster is up.
    pub async fn resume(&mut self) -> anyhow::Result<Duration> {
        self.launch(&[]).await
    }

    /// The pid that the cluster's pid file `process` names.
    pub fn pid_of(&self, dir: &Path, process: &str) -> Option<u32> {
        let text = std::fs::read_to_string(dir.join("clusters").join(&self.name).join("pids").join(format!("{process}.pid"))).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// `r8s down`; how long it took.
    pub fn down(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let output = Command::new(&self.r8s).args(["down", &self.name]).args(&self.roots).output()?;
        let took = started.elapsed();
        if let Some(mut up) = self.up.take() {
            let _ = up.wait();
        }
        if !output.status.success() {
            bail!("r8s down {}: {}", self.name, String::from_utf8_lossy(&output.stderr));
        }
        Ok(took)
    }
}

impl Drop for UpCluster {
    fn drop(&mut self) {
        if self.up.is_some() || self.roots.get(1).is_some_and(|clusters| Path::new(clusters).join(&self.name).exists()) {
            if let Err(error) = self.down() {
                eprintln!("cleanup: {error}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// Creates a Deployment of `replicas` sleepers; time until all are available.
async fn deployment_available(cluster: &UpCluster, replicas: usize) -> anyhow::Result<Duration> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sleepers"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "sleepers"}},
            "template": {"metadata": {"labels": {"app": "sleepers"}}, "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "sleep", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]
            }}
        }
    }))?;
    let started = Instant::now();
    deployments.create(&PostParams::default(), &deployment).await?;
    let deadline = started + Duration::from_secs(300);
    loop {
        let available = deployments.get("sleepers").await?.status.and_then(|s| s.available_replicas).unwrap_or(0);
        if available as usize >= replicas {
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            bail!("{available} of {replicas} replicas available after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Default)]
struct Removals {
    endpoints: Samples,
    rotation: Samples,
}

/// One answer through the cluster IP: when its request started and which pod
/// answered (`None`: the request failed).
type Answer = (Instant, Option<String>);

/// `count` + 2 httpd pods (each answering its own name) behind a Service;
/// deletes them one by one (always leaving two) and times each one out of
/// the Endpoints and out of the answers seen from node 1.
async fn leave_rotation(cluster: &UpCluster, count: usize) -> anyhow::Result<Removals> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(cluster.client.clone(), "default");
    let script = "busybox mkdir -p /tmp/www && busybox hostname > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www";
    let names: Vec<String> = (0..count + 2).map(|i| format!("web-{i}")).collect();
    for name in &names {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {
                // httpd is the container's pid 1 and ignores SIGTERM: it keeps
                // serving until the grace period ends, long after the removal.
                "terminationGracePeriodSeconds": 60,
                "containers": [{"name": "web", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["/bin/busybox", "sh", "-c", script],
                                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]
            }
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?;
    let cluster_ip = services.create(&PostParams::default(), &service).await?.spec.and_then(|s| s.cluster_ip).context("no cluster IP")?;
    let address: SocketAddr = format!("{cluster_ip}:80").parse()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while ready_addresses(&endpoints).await?.len() < names.len() {
        if Instant::now() > deadline {
            bail!("the web pods were not all ready after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let node = NetNs::open(format!("/run/netns/r8s-{}-n1", cluster.name))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (answers_tx, answers) = mpsc::channel::<Answer>();
    let requester = {
        let stop = stop.clone();
        node.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                if answers_tx.send((started, fetch(address))).is_err() {
                    return;
                }
            }
        })?
    };
    let answers = Arc::new(std::sync::Mutex::new(answers));
    let mut removals = Removals::default();
    for victim in names.iter().take(count) {
        let ip = pods.get(victim).await?.status.and_then(|s| s.pod_ip).context("no pod IP")?;
        // Wait until the victim answers, so that it is known to be in rotation.
        let receiver = answers.clone();
        let wanted = victim.clone();
        tokio::task::spawn_blocking(move || {
            let answers = receiver.lock().expect("answers");
            answers.iter().find(|(_, who)| who.as_deref() == Some(&wanted)).context("the requester stopped")
        })
        .await??;
        let deleted = Instant::now();
        pods.delete(victim, &DeleteParams::default()).await?;
        let receiver = answers.clone();
        let wanted = victim.clone();
        let gone = tokio::task::spawn_blocking(move || gone_at(&receiver.lock().expect("answers"), &wanted, deleted));
        let mut endpoints_done = None;
        while endpoints_done.is_none() {
            if !ready_addresses(&endpoints).await?.contains(&ip) {
                endpoints_done = Some(deleted.elapsed());
            } else if deleted.elapsed() > Duration::from_secs(60) {
                bail!("{victim} still in the Endpoints a minute after its deletion");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        removals.endpoints.push(endpoints_done.unwrap_or_default());
        removals.rotation.push(gone.await??.saturating_duration_since(deleted));
    }
    stop.store(true, Ordering::Relaxed);
    drop(answers);
    let _ = requester.join();
    Ok(removals)
}

/// Reads answers until [`GONE_AFTER`] in a row came from others than `victim`
/// (a failed request counts as the victim's: its address may still be in
/// the rules); returns when the first of those requests started.
fn gone_at(answers: &mpsc::Receiver<Answer>, victim: &str, since: Instant) -> anyhow::Result<Instant> {
    let mut clean_since: Option<Instant> = None;
    let mut clean = 0;
    let give_up = since + Duration::from_secs(60);
    for (started, who) in answers.iter() {
        if started < since {
            continue;
        }
        if who.as_deref().is_none_or(|w| w == victim) {
            clean_since = None;
            clean = 0;
        } else {
            clean_since.get_or_insert(started);
            clean += 1;
            if clean >= GONE_AFTER {
                return clean_since.context("no answer");
            }
        }
        if started > give_up {
            bail!("{victim} still answered a minute after its deletion");
        }
    }
    bail!("the requester stopped")
}

/// One HTTP GET; the body's first line (the answering pod's name).
fn fetch(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, IO_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    body.lines().next().map(|l| l.trim().to_string())
}

async fn ready_addresses(endpoints: &Api<Endpoints>) -> anyhow::Result<Vec<String>> {
    let Some(found) = endpoints.get_opt("web").await? else { return Ok(Vec::new()) };
    Ok(found.subsets.into_iter().flatten().flat_map(|s| s.addresses.into_iter().flatten()).map(|a| a.ip).collect())
}
