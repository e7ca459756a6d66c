//! `r8s-bench lifecycle`: living with a cluster of `r8s up`.
//!
//! - Time to a working cluster, by the time-to-k8s method (minikube's
//!   benchmark): from running `r8s up --nodes 3` to a Deployment of 3 httpd
//!   replicas answering through its Service's DNS name from another pod; with
//!   the stages on the way (nodes Ready, app available). Peers' published
//!   medians (time-to-k8s, minikube v1.36) beside it: they were not run here.
//! - Resume: a stopped 3-node cluster with 30 pods, from `r8s up` until all
//!   30 are Ready again in new containers.
//! - Footprint: a one-node cluster (`--nodes 1`) idle, with no pods and with
//!   30: CPU and RSS of the server, the agent and the runtime together (the
//!   30 pods' shims beside them).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, PostParams};
use kube::Api;

use crate::cluster::UpCluster;
use crate::cri::{busybox_image, IMAGE};
use crate::stats::{ms, print_table, Samples};

#[derive(clap::Args)]
pub struct LifecycleBenchArgs {
    /// Runs of each measurement (medians are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Pods in the resumed and the idle cluster.
    #[arg(long, default_value_t = 30)]
    pods: usize,
}

/// Published medians of the time-to-k8s benchmark (minikube v1.36's
/// results page): command run to a deployed app answering by DNS, seconds.
const PUBLISHED: [(&str, f64); 3] = [("k3d", 19.9), ("kind", 33.0), ("minikube (docker driver)", 50.8)];

pub fn run(args: LifecycleBenchArgs) -> anyhow::Result<()> {
    let r8s = std::env::current_exe()?.with_file_name("r8s");
    if !r8s.is_file() {
        bail!("{} not found: build it first (cargo build --release -p r8s)", r8s.display());
    }
    let dir = tempfile::Builder::new().prefix("r8s-bench-lifecycle-").tempdir_in("/run")?;
    let (_, images) = busybox_image(&r8s, dir.path())?;
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async {
        let mut stages = [Samples::default(), Samples::default(), Samples::default()];
        for run in 0..args.runs {
            let times = time_to_app(&r8s, dir.path(), &images, run).await?;
            for (samples, time) in stages.iter_mut().zip(times) {
                samples.push(time);
            }
        }
        let mut resumes = Samples::default();
        {
            let name = format!("benchresume{}", std::process::id());
            let mut cluster = UpCluster::start_with(&r8s, dir.path(), &images, &name, &["--nodes".into(), "3".into()]).await?;
            sleepers(&cluster, args.pods).await?;
            for _ in 0..args.runs {
                let before = container_ids(&cluster).await?;
                cluster.stop()?;
                let started = Instant::now();
                cluster.resume().await?;
                all_ready_in_new_containers(&cluster, &before, args.pods).await?;
                resumes.push(started.elapsed());
            }
            cluster.down()?;
        }
        let (empty, loaded) = footprint(&r8s, dir.path(), &images, args.pods).await?;

        let seconds = |d: Duration| format!("{:.2}", d.as_secs_f64());
        let mut rows = vec![vec![
            format!("r8s up --nodes 3 (median of {})", args.runs),
            seconds(stages[0].percentile(50.0)),
            seconds(stages[1].percentile(50.0)),
            seconds(stages[2].percentile(50.0)),
        ]];
        for (peer, total) in PUBLISHED {
            rows.push(vec![format!("{peer} (published, not run here)"), "-".into(), "-".into(), format!("{total:.1}")]);
        }
        println!("\nFrom nothing to an app answering by its Service name from another pod, s (time-to-k8s method)\n");
        print_table(&["", "up → nodes Ready", "→ 3 replicas available", "→ answers by DNS name"], &rows);
        println!("\nResume a stopped 3-node cluster with {} pods until all are Ready again in new containers, ms\n", args.pods);
        print_table(
            &["", "p50", "max"],
            &[vec![format!("r8s up (resume, {} runs)", resumes.len()), ms(resumes.percentile(50.0)), ms(resumes.percentile(100.0))]],
        );
        println!("\nA one-node cluster idle (server + agent + runtime; the pods' shims beside them)\n");
        let row = |what: &str, usage: &Footprint| {
            vec![
                what.to_string(),
                format!("{:.2}", usage.daemons.cpu_percent),
                format!("{:.1}", usage.daemons.rss as f64 / (1 << 20) as f64),
                format!("{:.1}", usage.shims_rss as f64 / (1 << 20) as f64),
            ]
        };
        print_table(&["", "CPU % of a core", "RSS MiB", "shims RSS MiB"], &[row("no pods", &empty), row(&format!("{} pods", args.pods), &loaded)]);
        anyhow::Ok(())
    })
}

/// One run of the time-to-k8s measure: (nodes Ready, app available, app
/// answering by DNS), each from the start of `r8s up`.
async fn time_to_app(r8s: &Path, dir: &Path, images: &Path, run: usize) -> anyhow::Result<[Duration; 3]> {
    let started = Instant::now();
    let name = format!("benchttk{}x{run}", std::process::id());
    let mut cluster = UpCluster::start_with(r8s, dir, images, &name, &["--nodes".into(), "3".into()]).await?;
    let ready = started.elapsed();
    let client = cluster.client.clone();
    let script = "busybox mkdir -p /tmp/www && busybox hostname > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www";
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                     "name": "web", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["/bin/busybox", "sh", "-c", script],
                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}
    }))?;
    Api::<Deployment>::namespaced(client.clone(), "default").create(&PostParams::default(), &deployment).await?;
    let service: Service = serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}))?;
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &service).await?;
    // The client pod asks for the name until it answers, as a user's app would.
    // (Not wget -T: Debian's busybox segfaults on it.)
    let ask = "until busybox timeout 2 busybox wget -q -O- http://web.default.svc.cluster.local/; do busybox sleep 0.1; done";
    let asker: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "asker"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "ask", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["/bin/busybox", "sh", "-c", ask]}]}
    }))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &asker).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut available = None;
    loop {
        if available.is_none() && deployments.get("web").await?.status.and_then(|s| s.available_replicas).unwrap_or(0) >= 3 {
            available = Some(started.elapsed());
        }
        let phase = pods.get("asker").await?.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Succeeded" && available.is_some() {
            let answered = started.elapsed();
            cluster.down()?;
            return Ok([ready, available.unwrap_or(answered), answered]);
        }
        if phase == "Failed" || Instant::now() > deadline {
            bail!("the app did not answer by its name (asker: {phase})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Deployment of `count` sleepers, until all run.
async fn sleepers(cluster: &UpCluster, count: usize) -> anyhow::Result<()> {
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sleepers"},
        "spec": {"replicas": count, "selector": {"matchLabels": {"app": "sleepers"}},
                 "template": {"metadata": {"labels": {"app": "sleepers"}}, "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                     "name": "sleep", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}}}
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while deployments.get("sleepers").await?.status.and_then(|s| s.available_replicas).unwrap_or(0) < count as i32 {
        if Instant::now() > deadline {
            bail!("the sleepers were not all available after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The container id of each sleeper pod's container.
async fn container_ids(cluster: &UpCluster) -> anyhow::Result<Vec<String>> {
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), "default").list(&ListParams::default().labels("app=sleepers")).await?;
    Ok(pods.items.iter().filter_map(container_id).collect())
}

fn container_id(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()?.container_id.clone()
}

/// Waits until `count` sleepers are Ready, none in a container of `before`.
async fn all_ready_in_new_containers(cluster: &UpCluster, before: &[String], count: usize) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = pods.list(&ListParams::default().labels("app=sleepers")).await.map(|l| l.items).unwrap_or_default();
        let fresh = list
            .iter()
            .filter(|pod| container_id(pod).is_some_and(|id| !before.contains(&id)))
            .filter(|pod| pod.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True"))
            .count();
        if fresh >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{fresh} of {count} pods Ready again after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Footprint {
    daemons: crate::agent::Usage,
    shims_rss: u64,
}

/// A one-node cluster's idle use with no pods, then with `pods` sleepers.
async fn footprint(r8s: &Path, dir: &Path, images: &Path, pods: usize) -> anyhow::Result<(Footprint, Footprint)> {
    let name = format!("benchidle{}", std::process::id());
    let mut cluster = UpCluster::start_with(r8s, dir, images, &name, &["--nodes".into(), "1".into()]).await?;
    // Let start-up work (image checks, first syncs) settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let empty = measure(&cluster, dir).await?;
    sleepers(&cluster, pods).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded = measure(&cluster, dir).await?;
    cluster.down()?;
    Ok((empty, loaded))
}

async fn measure(cluster: &UpCluster, dir: &Path) -> anyhow::Result<Footprint> {
    let server = cluster.pid_of(dir, "server-1").context("the server's pid")?;
    let agent = cluster.pid_of(dir, "agent-n1").context("the agent's pid")?;
    let socket = cluster.run_dir.join(&cluster.name).join("n1").join("cri.sock").display().to_string();
    let (mut runtime, mut shims) = (None, Vec::new());
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let cmdline = String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).unwrap_or_default()).replace('\0', " ");
        if cmdline.contains(" runtime ") && cmdline.contains(" serve ") && cmdline.contains(&socket) {
            runtime = Some(pid);
        } else if cmdline.contains(" runtime shim ") && cmdline.contains(&cluster.run_dir.display().to_string()) {
            shims.push(pid);
        }
    }
    let runtime = runtime.context("the runtime's pid")?;
    let daemons = crate::agent::usage(&[server, agent, runtime]).await?;
    let shims_rss = shims.iter().filter_map(|p| crate::api::rss_of(&format!("/proc/{p}/status")).ok()).sum();
    Ok(Footprint { daemons, shims_rss })
}
