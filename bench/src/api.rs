//! `r8s-bench api`: the real API server, started in this process on loopback
//! over the embedded raft store (one server) and over etcd, driven over HTTP/1.1
//! with keep-alive: pod creates with 1 and 64 clients, the full list of 10,000
//! pods, 1,000 watchers waiting for one event, and the memory 10,000 pods cost.
//!
//! The client runs in the same process as the server (and, for raft, the
//! store), so the two share the machine's cores; the table says so.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::stats::{print_table, Samples};
use crate::store::backends::{Backend, Started, ETCD};

/// The namespace holding the pods that are listed and whose memory is measured.
const NAMESPACE: &str = "r8s-bench";
/// Creates of the create-rate rows go here, apart from the listed pods.
const RATE_NAMESPACE: &str = "default";
const BACKENDS: [Backend; 2] = [Backend::RaftOne, Backend::Etcd];

#[derive(clap::Args)]
pub struct ApiBenchArgs {
    /// How long each create-rate measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients; one create-rate row per count.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64])]
    clients: Vec<usize>,
    /// Pods stored before listing and measuring memory.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Full lists timed.
    #[arg(long, default_value_t = 10)]
    lists: usize,
    /// Concurrent watchers, each on its own connection.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
}

/// Clients that load the pods to be listed.
const LOAD_CLIENTS: usize = 64;
/// How long a watcher may take to see the event before the run fails.
const WATCH_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    raise_fd_limit()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: ApiBenchArgs) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for backend in BACKENDS {
        let server = ApiServer::start(backend).await?;
        let measured = measure_backend(&server, &args).await;
        server.stop().await;
        results.push(measured?);
    }
    print_results(&results, &args);
    Ok(())
}

/// The API server serving on loopback over one started backend.
struct ApiServer {
    base: String,
    task: JoinHandle<std::io::Result<()>>,
    backend: Backend,
    started: Started,
}

impl ApiServer {
    async fn start(backend: Backend) -> anyhow::Result<Self> {
        let started = backend.start().await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(apiserver::serve(started.store(), listener, apiserver::Config::default()));
        let server = ApiServer { base, task, backend, started };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Waits until the bootstrapped `default` namespace is served.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("{}/api/v1/namespaces/default", self.base);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            anyhow::ensure!(!self.task.is_finished(), "the API server stopped while starting");
            if let Ok(response) = client.get(&url).send().await {
                if response.status() == StatusCode::OK {
                    return Ok(());
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "the API server did not serve {url} within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pods_url(&self, namespace: &str) -> String {
        format!("{}/api/v1/namespaces/{namespace}/pods", self.base)
    }

    /// Stops serving, then stops the backend (killing etcd, removing its files).
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        drop(self.started);
    }
}

/// Every figure measured on one backend.
struct BackendResults {
    backend: &'static str,
    creates: Vec<CreateRate>,
    list: Latency,
    watch: WatchDelay,
    /// This process's RSS before and after storing the pods.
    rss_before: u64,
    rss_after: u64,
    /// RSS of a store that runs as its own process (etcd), with the pods stored.
    store_process_rss: Option<u64>,
}

struct CreateRate {
    per_sec: f64,
    latency: Latency,
}

struct Latency {
    p50: Duration,
    p99: Duration,
}

/// From the create request to when watchers saw the event.
struct WatchDelay {
    median: Duration,
    last: Duration,
}

impl From<&Samples> for Latency {
    fn from(samples: &Samples) -> Self {
        Latency { p50: samples.percentile(50.0), p99: samples.percentile(99.0) }
    }
}

async fn measure_backend(server: &ApiServer, args: &ApiBenchArgs) -> anyhow::Result<BackendResults> {
    let backend = server.backend.name();
    let client = reqwest::Client::new();
    create_namespace(&client, server, NAMESPACE).await?;

    eprintln!("api bench: {backend}: storing {} pods with {LOAD_CLIENTS} clients", args.pods);
    let rss_before = own_rss()?;
    let work = Work::count(args.pods);
    create_pods(&client, &server.pods_url(NAMESPACE), "stored", LOAD_CLIENTS, &work).await?;
    let rss_after = own_rss()?;
    let store_process_rss = child_etcd_rss()?;

    eprintln!("api bench: {backend}: {} full lists", args.lists);
    let list = time_lists(&client, &server.pods_url(NAMESPACE), args.lists, args.pods).await?;

    let mut creates = Vec::new();
    for &clients in &args.clients {
        eprintln!("api bench: {backend}: creates with {clients} clients for {} s", args.seconds);
        let work = Work::until(Instant::now() + Duration::from_secs(args.seconds));
        let prefix = format!("rate-{clients}");
        let started = Instant::now();
        let samples = create_pods(&client, &server.pods_url(RATE_NAMESPACE), &prefix, clients, &work).await?;
        let per_sec = samples.len() as f64 / started.elapsed().as_secs_f64();
        creates.push(CreateRate { per_sec, latency: Latency::from(&samples) });
    }

    eprintln!("api bench: {backend}: {} watchers", args.watchers);
    let watch = time_watchers(server, args.watchers).await?;

    Ok(BackendResults { backend, creates, list, watch, rss_before, rss_after, store_process_rss })
}

async fn create_namespace(client: &reqwest::Client, server: &ApiServer, name: &str) -> anyhow::Result<()> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let response = client.post(format!("{}/api/v1/namespaces", server.base)).json(&body).send().await?;
    expect_status(response, StatusCode::CREATED).await
}

/// A small pod as a Deployment would stamp it out.
fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {
            "containers": [{
                "name": "web",
                "image": "registry.local/nginx:1.27",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}
            }]
        }
    })
}

/// Hands out pod numbers until a count or a deadline is reached.
struct Work {
    next: AtomicUsize,
    limit: usize,
    deadline: Option<Instant>,
}

impl Work {
    fn count(limit: usize) -> Self {
        Work { next: AtomicUsize::new(0), limit, deadline: None }
    }

    fn until(deadline: Instant) -> Self {
        Work { next: AtomicUsize::new(0), limit: usize::MAX, deadline: Some(deadline) }
    }

    fn claim(&self) -> Option<usize> {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.limit).then_some(n)
    }
}

/// `clients` concurrent loops POST pods named `<prefix>-<n>` until `work` runs
/// out; returns the latency of every create.
async fn create_pods(
    client: &reqwest::Client,
    url: &str,
    prefix: &str,
    clients: usize,
    work: &Work,
) -> anyhow::Result<Samples> {
    let loops = (0..clients).map(|_| async {
        let mut samples = Samples::default();
        while let Some(n) = work.claim() {
            let body = pod(&format!("{prefix}-{n}"));
            let started = Instant::now();
            let response = client.post(url).json(&body).send().await?;
            expect_status(response, StatusCode::CREATED).await?;
            samples.push(started.elapsed());
        }
        anyhow::Ok(samples)
    });
    let mut all = Samples::default();
    for samples in futures::future::try_join_all(loops).await? {
        all.extend(samples);
    }
    Ok(all)
}

/// Times `count` full lists, each read to its last byte; checks the first holds
/// every stored pod.
async fn time_lists(client: &reqwest::Client, url: &str, count: usize, pods: usize) -> anyhow::Result<Latency> {
    let mut samples = Samples::default();
    for i in 0..count {
        let started = Instant::now();
        let response = client.get(url).send().await?;
        anyhow::ensure!(response.status() == StatusCode::OK, "list answered {}", response.status());
        let body = response.bytes().await?;
        samples.push(started.elapsed());
        if i == 0 {
            let list: Value = serde_json::from_slice(&body).context("the list is not JSON")?;
            let items = list["items"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(items == pods, "the list holds {items} pods, {pods} were stored");
        }
    }
    Ok(Latency::from(&samples))
}

/// Opens `watchers` watches from the current resource version, each on its own
/// connection, creates one pod, and measures when each watcher saw its ADDED.
async fn time_watchers(server: &ApiServer, watchers: usize) -> anyhow::Result<WatchDelay> {
    let client = reqwest::Client::new();
    let url = server.pods_url(NAMESPACE);
    let revision = current_revision(&client, &url).await?;
    let target = "watched-0";
    let watch_url = format!("{url}?watch=true&resourceVersion={revision}");

    // HTTP/1.1 carries one streaming response per connection, so every
    // watcher holds a connection of its own.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers);
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let client = client.clone();
        let watch_url = watch_url.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move { watch_for(&client, &watch_url, target, ready).await }));
    }
    drop(ready_tx);
    for _ in 0..watchers {
        tokio::time::timeout(WATCH_TIMEOUT, ready_rx.recv())
            .await
            .context("the watchers did not all connect in time")?
            .context("a watcher failed to connect")?;
    }

    let created = Instant::now();
    let response = client.post(&url).json(&pod(target)).send().await?;
    expect_status(response, StatusCode::CREATED).await?;

    let mut samples = Samples::default();
    for task in tasks {
        let seen = tokio::time::timeout(WATCH_TIMEOUT, task).await.context("a watcher did not see the event")???;
        samples.push(seen.saturating_duration_since(created));
    }
    Ok(WatchDelay { median: samples.percentile(50.0), last: samples.percentile(100.0) })
}

/// The resource version of the list right now.
async fn current_revision(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = client.get(format!("{url}?limit=1")).send().await?;
    anyhow::ensure!(response.status() == StatusCode::OK, "list answered {}", response.status());
    let list: Value = response.json().await?;
    list["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_owned)
        .context("the list carries no resourceVersion")
}

/// Watches until the ADDED event of pod `target` arrives; returns when it did.
async fn watch_for(
    client: &reqwest::Client,
    url: &str,
    target: &str,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<Instant> {
    let response = client.get(url).send().await?;
    anyhow::ensure!(response.status() == StatusCode::OK, "watch answered {}", response.status());
    ready.send(()).await?;
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk?);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).context("a watch event is not JSON")?;
            if event["type"] == "ADDED" && event["object"]["metadata"]["name"] == target {
                return Ok(Instant::now());
            }
        }
    }
    anyhow::bail!("the watch ended before the event arrived")
}

async fn expect_status(response: reqwest::Response, expected: StatusCode) -> anyhow::Result<()> {
    let status = response.status();
    if status == expected {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    anyhow::bail!("expected {expected}, got {status}: {body}")
}

/// Raises the soft open-files limit to the hard one: every watcher holds two
/// descriptors here (its client end and the server's end).
fn raise_fd_limit() -> anyhow::Result<()> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        anyhow::ensure!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0, "getrlimit failed");
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            anyhow::ensure!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0, "setrlimit failed");
        }
    }
    Ok(())
}

/// VmRSS in bytes from a `/proc/<pid>/status`.
pub fn rss_of(status_path: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(status_path).with_context(|| format!("reading {status_path}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no VmRSS in {status_path}"))?;
    Ok(kib * 1024)
}

/// This process's RSS after handing freed heap back to the kernel, so that
/// memory a previous backend's run freed does not hide this one's growth.
fn own_rss() -> anyhow::Result<u64> {
    // SAFETY: malloc_trim only releases free pages of glibc's heap.
    unsafe { libc::malloc_trim(0) };
    rss_of("/proc/self/status")
}

/// RSS of the etcd this process started, if one runs (read from /proc: the
/// child whose parent is this process and whose command is `etcd`).
fn child_etcd_rss() -> anyhow::Result<Option<u64>> {
    let me = std::process::id().to_string();
    let mut total = None;
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else { continue };
        let is_etcd = head.ends_with("(etcd");
        let parent = tail.split_whitespace().nth(1);
        if is_etcd && parent == Some(me.as_str()) {
            let rss = rss_of(&path.join("status").to_string_lossy())?;
            total = Some(total.unwrap_or(0) + rss);
        }
    }
    Ok(total)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One table row: a figure per backend, and whether raft/etcd compares like with like.
struct Row {
    label: String,
    values: Vec<Option<f64>>,
    decimals: usize,
    comparable: bool,
}

fn print_results(results: &[BackendResults], args: &ApiBenchArgs) {
    let each = |f: &dyn Fn(&BackendResults) -> Option<f64>| results.iter().map(f).collect::<Vec<_>>();
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut rows = Vec::new();
    for (i, &clients) in args.clients.iter().enumerate() {
        let rate = |r: &BackendResults| r.creates.get(i).map(|c| c.per_sec);
        rows.push(Row { label: format!("pod creates/s, {clients} clients"), values: each(&rate), decimals: 0, comparable: true });
        let p50 = |r: &BackendResults| r.creates.get(i).map(|c| millis(c.latency.p50));
        let p99 = |r: &BackendResults| r.creates.get(i).map(|c| millis(c.latency.p99));
        rows.push(Row { label: format!("create p50 ms, {clients} clients"), values: each(&p50), decimals: 2, comparable: true });
        rows.push(Row { label: format!("create p99 ms, {clients} clients"), values: each(&p99), decimals: 2, comparable: true });
    }
    let pods = args.pods;
    rows.push(Row { label: format!("full list of {pods} pods, p50 ms"), values: each(&|r| Some(millis(r.list.p50))), decimals: 2, comparable: true });
    rows.push(Row { label: format!("full list of {pods} pods, p99 ms"), values: each(&|r| Some(millis(r.list.p99))), decimals: 2, comparable: true });
    let watchers = args.watchers;
    rows.push(Row { label: format!("{watchers} watchers: median saw the event, ms"), values: each(&|r| Some(millis(r.watch.median))), decimals: 2, comparable: true });
    rows.push(Row { label: format!("{watchers} watchers: last saw the event, ms"), values: each(&|r| Some(millis(r.watch.last))), decimals: 2, comparable: true });
    rows.push(Row { label: "process RSS before storing pods, MiB".into(), values: each(&|r| Some(mib(r.rss_before))), decimals: 1, comparable: false });
    rows.push(Row { label: format!("process RSS with {pods} pods, MiB"), values: each(&|r| Some(mib(r.rss_after))), decimals: 1, comparable: false });
    rows.push(Row {
        label: format!("process RSS growth for {pods} pods, MiB"),
        values: each(&|r| Some(mib(r.rss_after.saturating_sub(r.rss_before)))),
        decimals: 1,
        comparable: false,
    });
    rows.push(Row {
        label: format!("etcd process RSS with {pods} pods, MiB"),
        values: each(&|r| r.store_process_rss.map(mib)),
        decimals: 1,
        comparable: false,
    });

    println!(
        "API server over HTTP/1.1 keep-alive on loopback. The client runs in the same process as the API \
         server (and, for raft, the store), so \"process RSS\" counts server + client (+ raft store); etcd runs \
         as its own process, its RSS on its own row. Creates: {} s per row into `{RATE_NAMESPACE}` (already \
         holding the {pods} listed pods in `{NAMESPACE}`); lists: {} full lists of `{NAMESPACE}`; watchers: one \
         connection each, from the current resourceVersion, timed from the create request.",
        args.seconds, args.lists
    );
    println!();
    let mut header: Vec<&str> = vec!["figure"];
    header.extend(results.iter().map(|r| r.backend));
    header.push("raft / etcd");
    let table: Vec<Vec<String>> = rows.iter().map(|row| render(row, results)).collect();
    print_table(&header, &table);
}

/// The row's label, one cell per backend, and raft/etcd when both are there.
fn render(row: &Row, results: &[BackendResults]) -> Vec<String> {
    let cell = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.*}", row.decimals));
    let mut cells = vec![row.label.clone()];
    cells.extend(row.values.iter().map(|&v| cell(v)));
    let value_of = |backend: &str| {
        let index = results.iter().position(|r| r.backend == backend)?;
        row.values[index]
    };
    let ratio = match (value_of(Backend::RaftOne.name()), value_of(ETCD)) {
        (Some(raft), Some(etcd)) if row.comparable && etcd > 0.0 => format!("{:.2}×", raft / etcd),
        _ => "-".to_string(),
    };
    cells.push(ratio);
    cells
}
