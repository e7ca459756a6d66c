//! The CRI service's operations, in r8s's terms: sandboxes, containers, exec
//! and stats over the runtime, the image store and the pod network. The gRPC
//! layer ([`super::grpc`]) only translates messages.
//!
//! Names are reserved in memory while a sandbox or container is made (CRI
//! names are unique: pod name, namespace, uid and attempt; container name
//! and attempt within a sandbox). The on-disk records are the truth after a
//! restart, and [`CriService::recover`] removes what a crash left half-made.
//!
//! Containers' states are kept in memory and every change is published as
//! a CRI container event with a snapshot of the whole sandbox
//! ([`super::live`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1::{self as cri, ContainerConfig, ContainerEventType, LinuxContainerResources, PodSandboxConfig};
use tracing::{info, warn};

use super::container_spec::{self, SANDBOX_ANNOTATION};
use super::convert;
use super::error::{io, CriError};
use super::live::{Live, LiveContainers};
use ::cri::events::EventHub;
use super::records::{ContainerRecord, ContainerRecords};
use crate::cgroups::{Resources, Stats};
use crate::image::registry::{Credentials, PullOptions, Reference};
use crate::image::{Image, ImageError, ImageStore};
use crate::network::PodNetwork;
use crate::runtime::{ExecSpec, Runtime, RuntimeConfig, RuntimeError, Status};
use crate::sandbox::{now_nanos, SandboxError, SandboxRecord, SandboxSettings, Sandboxes};

type Result<T, E = CriError> = std::result::Result<T, E>;

/// Where the CRI service keeps things and what it runs.
#[derive(Debug, Clone)]
pub struct CriConfig {
    /// Sandboxes and container records (default `/run/r8s/cri`).
    pub root: PathBuf,
    pub runtime: RuntimeConfig,
    /// The image store (default `/var/lib/r8s/images`).
    pub image_root: PathBuf,
    /// Where pods' network namespaces are pinned (default `/run/r8s/netns`).
    pub netns_dir: PathBuf,
    /// The node's `/etc` (hosts and resolv.conf of hostNetwork pods).
    pub node_etc: PathBuf,
    /// Registries pulled from over plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
}

impl CriConfig {
    pub fn new(runtime: RuntimeConfig) -> Self {
        Self {
            root: PathBuf::from("/run/r8s/cri"),
            runtime,
            image_root: PathBuf::from("/var/lib/r8s/images"),
            netns_dir: PathBuf::from("/run/r8s/netns"),
            node_etc: PathBuf::from("/etc"),
            insecure_registries: Vec::new(),
        }
    }
}

/// The service; cheap to clone.
#[derive(Clone)]
pub struct CriService {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<Runtime>,
    images: ImageStore,
    sandboxes: Sandboxes,
    containers: ContainerRecords,
    image_root: PathBuf,
    insecure_registries: Vec<String>,
    /// CRI name keys being made or in use → id.
    names: Mutex<HashMap<String, String>>,
    live: LiveContainers,
    events: EventHub,
}

/// Runs blocking work (files, cgroups, processes) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// A new random id: 64 hex digits, as containerd's.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(io("reading /dev/urandom"))?;
    Ok(hex::encode(bytes))
}

fn sandbox_name_key(config: &PodSandboxConfig) -> Result<String> {
    let m = config.metadata.as_ref().ok_or_else(|| CriError::InvalidArgument("pod sandbox metadata is missing".into()))?;
    if m.name.is_empty() || m.namespace.is_empty() {
        return Err(CriError::InvalidArgument("pod sandbox metadata needs a name and a namespace".into()));
    }
    Ok(format!("sandbox/{}/{}/{}/{}", m.name, m.namespace, m.uid, m.attempt))
}

/// Frees a reserved name on drop unless the creation succeeded.
struct Reservation<'a> {
    names: &'a Mutex<HashMap<String, String>>,
    key: String,
    keep: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.names.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
        }
    }
}

impl CriService {
    /// Opens the state, the runtime, the image store, and finds every
    /// sandbox and container again ([`Self::recover`]).
    pub async fn new(config: CriConfig, network: Option<Arc<dyn PodNetwork>>) -> Result<Self> {
        let runtime = Arc::new(Runtime::new(config.runtime.clone())?);
        let images = ImageStore::open(&config.image_root)?;
        let settings = SandboxSettings {
            root: config.root.join("sandboxes"),
            netns_dir: config.netns_dir.clone(),
            node_etc: config.node_etc.clone(),
        };
        let sandboxes = Sandboxes::new(settings, runtime.clone(), network)?;
        let containers = ContainerRecords::open(&config.root.join("containers"))?;
        let inner = Inner {
            live: LiveContainers::new(&config.runtime.state_root),
            runtime,
            images,
            sandboxes,
            containers,
            image_root: config.image_root.clone(),
            insecure_registries: config.insecure_registries.clone(),
            names: Mutex::new(HashMap::new()),
            events: EventHub::default(),
        };
        let service = Self { inner: Arc::new(inner) };
        service.recover().await?;
        Ok(service)
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    pub fn image_root(&self) -> &std::path::Path {
        &self.inner.image_root
    }

    pub fn has_network(&self) -> bool {
        self.inner.sandboxes.has_network()
    }

    pub fn events(&self) -> &EventHub {
        &self.inner.events
    }

    /// Publishes a change of `id` (a container, or a sandbox's own id) with
    /// a snapshot of its sandbox and every container in it.
    fn publish(&self, id: &str, kind: ContainerEventType, sandbox_id: &str) {
        let Ok(sandbox) = self.inner.sandboxes.get(sandbox_id) else { return };
        let containers_statuses = self
            .inner
            .containers
            .matching(|c| c.sandbox_id == sandbox_id)
            .iter()
            .map(|record| convert::container_status(record, self.inner.live.get(&record.id).0.as_ref()))
            .collect();
        self.inner.events.publish(cri::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: 0,
            pod_sandbox_status: Some(convert::sandbox_status(&sandbox)),
            containers_statuses,
        });
    }

    /// Watches a container's shim: when it ends, the exit it recorded
    /// settles the container's state and is published.
    fn watch_exit(&self, id: String, sandbox_id: String, shim: i32) {
        let service = self.clone();
        tokio::spawn(async move {
            if let Ok(pidfd) = crate::shim::pidfd_open(nix::unistd::Pid::from_raw(shim)) {
                // SAFETY: an OwnedFd keeps its one descriptor open and the same until it is dropped with the AsyncFd.
                let registered = unsafe { tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) };
                if let Ok(pidfd) = registered {
                    let _ = pidfd.readable().await;
                }
            }
            let inner = service.inner.clone();
            let settled_id = id.clone();
            if tokio::task::spawn_blocking(move || inner.live.settle(&settled_id)).await.unwrap_or(false) {
                service.publish(&id, ContainerEventType::ContainerStoppedEvent, &sandbox_id);
            }
        });
    }

    /// Removes half-made sandboxes, containers whose creation never finished
    /// (a runtime container without a record, or the reverse) and records of
    /// sandboxes that are gone; then re-reserves the names in use.
    pub async fn recover(&self) -> Result<()> {
        self.inner.sandboxes.recover().await?;
        let inner = self.inner.clone();
        let running = blocking(move || {
            let sandboxes: HashMap<String, SandboxRecord> =
                inner.sandboxes.list().into_iter().map(|s| (s.id.clone(), s)).collect();
            let records = inner.containers.list();
            let recorded: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
            for info in inner.runtime.list()? {
                let ours = info.bundle.spec.oci.annotations().as_ref().is_some_and(|a| a.contains_key(SANDBOX_ANNOTATION));
                if ours && !recorded.contains(info.id.as_str()) {
                    warn!(container = %info.id, "removing a container whose creation did not finish");
                    inner.runtime.delete(&info.id, true)?;
                }
            }
            let mut names = inner.names.lock().unwrap_or_else(|e| e.into_inner());
            let mut running = Vec::new();
            for record in &records {
                let info = inner.runtime.info(&record.id);
                let Some(info) = info.ok().filter(|_| sandboxes.contains_key(&record.sandbox_id)) else {
                    warn!(container = %record.id, "forgetting a container that the runtime or its sandbox no longer has");
                    let _ = inner.runtime.delete(&record.id, true);
                    inner.containers.remove(&record.id)?;
                    continue;
                };
                if let (true, Some(pids)) = (info.status != Status::Stopped, &info.pids) {
                    running.push((record.id.clone(), record.sandbox_id.clone(), pids.shim));
                }
                inner.live.set(&record.id, Live { status: info.status, exit: info.exit });
                names.insert(ContainerRecord::name_key(&record.sandbox_id, &record.config), record.id.clone());
            }
            for sandbox in sandboxes.values() {
                names.insert(sandbox_name_key(&sandbox.config)?, sandbox.id.clone());
            }
            info!(sandboxes = sandboxes.len(), containers = names.len() - sandboxes.len(), "CRI state recovered");
            Ok(running)
        })
        .await?;
        for (id, sandbox_id, shim) in running {
            self.watch_exit(id, sandbox_id, shim);
        }
        Ok(())
    }

    fn reserve(&self, key: String, id: &str, what: &str) -> Result<Reservation<'_>> {
        let mut names = self.inner.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = names.get(&key) {
            return Err(CriError::AlreadyExists(format!("{what} is already in use by {existing}")));
        }
        names.insert(key.clone(), id.to_string());
        Ok(Reservation { names: &self.inner.names, key, keep: false })
    }

    fn release(&self, key: &str) {
        self.inner.names.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    // ---- sandboxes ----

    pub async fn run_sandbox(&self, config: PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        if !runtime_handler.is_empty() && runtime_handler != "r8s" {
            return Err(CriError::InvalidArgument(format!("unknown runtime handler {runtime_handler:?} (r8s has only the default one)")));
        }
        let key = sandbox_name_key(&config)?;
        let id = new_id()?;
        let mut reservation = self.reserve(key.clone(), &id, &format!("pod sandbox name {key:?}"))?;
        self.inner.sandboxes.create(&id, &config).await?;
        reservation.keep = true;
        self.publish(&id, ContainerEventType::ContainerCreatedEvent, &id);
        self.publish(&id, ContainerEventType::ContainerStartedEvent, &id);
        Ok(id)
    }

    pub fn sandbox(&self, id: &str) -> Result<SandboxRecord> {
        Ok(self.inner.sandboxes.get(id)?)
    }

    pub fn sandboxes(&self) -> Vec<SandboxRecord> {
        self.inner.sandboxes.list()
    }

    /// Stops every container of the sandbox, then the sandbox. A sandbox
    /// that is gone is not an error (CRI: idempotent).
    pub async fn stop_sandbox(&self, id: &str) -> Result<()> {
        match self.inner.sandboxes.get(id) {
            Err(SandboxError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        for container in self.containers_of(id)? {
            self.stop_container(&container.id, 0).await?;
        }
        self.inner.sandboxes.stop(id).await?;
        self.publish(id, ContainerEventType::ContainerStoppedEvent, id);
        Ok(())
    }

    /// Removes every container of the sandbox, then the sandbox.
    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let sandbox = match self.inner.sandboxes.get(id) {
            Err(SandboxError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        for container in self.containers_of(id)? {
            self.remove_container(&container.id).await?;
        }
        // Published while the sandbox can still be described.
        self.publish(id, ContainerEventType::ContainerDeletedEvent, id);
        self.inner.sandboxes.remove(id).await?;
        self.release(&sandbox_name_key(&sandbox.config)?);
        Ok(())
    }

    fn containers_of(&self, sandbox_id: &str) -> Result<Vec<ContainerRecord>> {
        Ok(self.inner.containers.matching(|c| c.sandbox_id == sandbox_id))
    }

    /// The pod cgroup's usage.
    pub async fn sandbox_stats(&self, id: &str) -> Result<(SandboxRecord, Stats, Vec<(ContainerRecord, Stats)>)> {
        let sandbox = self.sandbox(id)?;
        let inner = self.inner.clone();
        blocking(move || {
            let pod = inner.runtime.cgroups().stats(&sandbox.cgroup_parent)?;
            let mut containers = Vec::new();
            for record in inner.containers.matching(|c| c.sandbox_id == sandbox.id) {
                if let Ok(stats) = inner.runtime.stats(&record.id) {
                    containers.push((record, stats));
                }
            }
            Ok((sandbox, pod, containers))
        })
        .await
    }

    // ---- containers ----

    /// An image by name (as given, or fully qualified as a pull names it:
    /// `busybox` finds `docker.io/library/busybox:latest`) or by id
    /// (`sha256:<hex>`, or the hex alone).
    pub fn find_image(&self, reference: &str) -> Result<Option<Image>> {
        let qualified = Reference::parse(reference).ok().map(|r| r.to_string());
        for name in std::iter::once(reference).chain(qualified.as_deref()) {
            match self.inner.images.get(name) {
                Ok(image) => return Ok(Some(image)),
                Err(ImageError::NotFound(_) | ImageError::BadName(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        Ok(self.inner.images.list()?.into_iter().find(|image| image.id.hex() == hex))
    }

    /// Pulls `reference` from its registry with `credentials` (PullImage).
    pub async fn pull_image(&self, reference: &str, credentials: Credentials) -> Result<Image> {
        let options = PullOptions { credentials, insecure_registries: self.inner.insecure_registries.clone(), ..Default::default() };
        let span = tracing::info_span!("pull", image = reference);
        let pulled = tracing::Instrument::instrument(self.inner.images.pull(reference, &options), span).await;
        pulled.map_err(|source| CriError::Pull { reference: reference.to_string(), source })
    }

    pub async fn create_container(&self, sandbox_id: &str, config: ContainerConfig) -> Result<String> {
        let sandbox = match self.inner.sandboxes.get(sandbox_id) {
            Err(SandboxError::NotFound(_)) => return Err(CriError::NotFound(format!("no pod sandbox {sandbox_id:?}"))),
            other => other?,
        };
        if !sandbox.is_ready() {
            return Err(CriError::FailedPrecondition(format!("pod sandbox {sandbox_id} is not ready (stopped or its pause process is gone)")));
        }
        let metadata = config.metadata.as_ref().ok_or_else(|| CriError::InvalidArgument("container metadata is missing".into()))?;
        if metadata.name.is_empty() {
            return Err(CriError::InvalidArgument("container metadata needs a name".into()));
        }
        let reference = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        if reference.is_empty() {
            return Err(CriError::InvalidArgument("the container config names no image".into()));
        }
        let image = self.find_image(&reference)?.ok_or_else(|| CriError::NotFound(format!("image {reference:?} is not in the image store")))?;
        let id = new_id()?;
        let key = ContainerRecord::name_key(sandbox_id, &config);
        let mut reservation = self.reserve(key, &id, &format!("container name {:?} (attempt {}) in pod sandbox {sandbox_id}", metadata.name, metadata.attempt))?;
        let inner = self.inner.clone();
        let container_id = id.clone();
        let shim = blocking(move || {
            let layers = inner.images.layer_dirs(&image)?;
            let built = container_spec::build(&container_id, &config, &sandbox, &image, layers)?;
            let record = ContainerRecord {
                id: container_id.clone(),
                sandbox_id: sandbox.id.clone(),
                config,
                image_ref: image.id.to_string(),
                image_name: image.name.clone(),
                log_path: built.log_path,
                created_at: now_nanos(),
                started_at: None,
            };
            let created = inner.runtime.create(built.spec)?;
            // The record commits the creation (see `recover`).
            if let Err(error) = inner.containers.save(&record) {
                let _ = inner.runtime.delete(&container_id, true);
                return Err(error);
            }
            inner.live.set(&container_id, Live { status: created.status, exit: None });
            Ok(created.pids.map(|p| p.shim))
        })
        .await?;
        reservation.keep = true;
        self.publish(&id, ContainerEventType::ContainerCreatedEvent, sandbox_id);
        if let Some(shim) = shim {
            self.watch_exit(id.clone(), sandbox_id.to_string(), shim);
        }
        Ok(id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let inner = self.inner.clone();
        let container_id = id.to_string();
        let record = blocking(move || {
            let mut record = inner.containers.get(&container_id)?;
            inner.runtime.start(&container_id)?;
            record.started_at = Some(now_nanos());
            inner.containers.save(&record)?;
            Ok(record)
        })
        .await?;
        // Only from Created: the watch may have seen it end already.
        let started = self.inner.live.transition(id, |live| (live.status == Status::Created).then(|| Live { status: Status::Running, exit: None }));
        if started {
            self.publish(id, ContainerEventType::ContainerStartedEvent, &record.sandbox_id);
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `timeout` seconds (0: at once, as CRI says).
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let inner = self.inner.clone();
        let container_id = id.to_string();
        let (record, exit) = blocking(move || {
            let record = inner.containers.get(&container_id)?;
            let timeout = Duration::from_secs(timeout.max(0) as u64);
            match inner.runtime.stop(&container_id, crate::Signal::SIGTERM, timeout) {
                Ok(exit) => Ok((record, Some(exit))),
                // The shim died without an exit: nothing is left running.
                Err(RuntimeError::ShimDied(_)) => Ok((record, None)),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        let stopped = self.inner.live.transition(id, |live| (live.status != Status::Stopped).then(|| Live { status: Status::Stopped, exit }));
        if stopped {
            self.publish(id, ContainerEventType::ContainerStoppedEvent, &record.sandbox_id);
        }
        Ok(())
    }

    /// Removes the container (killing it if it runs). Gone already is fine.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let record = match self.inner.containers.get(id) {
            Err(CriError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        let inner = self.inner.clone();
        let container_id = id.to_string();
        blocking(move || {
            match inner.runtime.delete(&container_id, true) {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            inner.containers.remove(&container_id)
        })
        .await?;
        self.inner.live.remove(id);
        self.publish(id, ContainerEventType::ContainerDeletedEvent, &record.sandbox_id);
        self.release(&ContainerRecord::name_key(&record.sandbox_id, &record.config));
        Ok(())
    }

    /// A container's record and its state (`None`: the runtime has lost it).
    pub fn container(&self, id: &str) -> Result<(ContainerRecord, Option<Live>)> {
        let record = self.inner.containers.get(id)?;
        let (live, settled) = self.inner.live.get(id);
        if settled {
            self.publish(id, ContainerEventType::ContainerStoppedEvent, &record.sandbox_id);
        }
        Ok((record, live))
    }

    /// Every container, with its state.
    pub fn containers(&self) -> Result<Vec<(ContainerRecord, Option<Live>)>> {
        self.inner
            .containers
            .matching(|_| true)
            .into_iter()
            .map(|r| self.container(&r.id))
            .filter(|r| !matches!(r, Err(CriError::NotFound(_))))
            .collect()
    }

    pub async fn update_resources(&self, id: &str, resources: LinuxContainerResources) -> Result<()> {
        self.inner.containers.get(id)?;
        let inner = self.inner.clone();
        let id = id.to_string();
        blocking(move || {
            let info = match inner.runtime.info(&id) {
                Err(RuntimeError::NotFound(_)) => return Err(CriError::NotFound(format!("container {id} is gone from the runtime"))),
                other => other?,
            };
            let resources = Resources::from_oci(&container_spec::oci_resources(&resources));
            Ok(inner.runtime.cgroups().create(&info.bundle.cgroup_path, &resources)?)
        })
        .await
    }

    pub async fn container_stats(&self, id: &str) -> Result<(ContainerRecord, Stats)> {
        let record = self.inner.containers.get(id)?;
        let inner = self.inner.clone();
        let id = id.to_string();
        let stats = blocking(move || Ok(inner.runtime.stats(&id)?)).await?;
        Ok((record, stats))
    }

    /// Runs `args` in the container; returns (exit code, stdout, stderr).
    /// `timeout` 0 means none.
    pub async fn exec_sync(&self, id: &str, args: Vec<String>, timeout: i64) -> Result<(i32, Vec<u8>, Vec<u8>)> {
        if args.is_empty() {
            return Err(CriError::InvalidArgument("exec needs a command".into()));
        }
        let service = self.clone();
        let container_id = id.to_string();
        let command = blocking(move || service.exec_command(&container_id, args, false)).await?;
        let mut command = tokio::process::Command::from(command);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let child = command.spawn().map_err(io("starting exec"))?;
        let output = child.wait_with_output();
        let output = if timeout > 0 {
            tokio::time::timeout(Duration::from_secs(timeout as u64), output)
                .await
                .map_err(|_| CriError::DeadlineExceeded(format!("exec in container {id} did not finish within {timeout}s")))?
        } else {
            output.await
        }
        .map_err(io("running exec"))?;
        let code = output.status.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&output.status).unwrap_or(0));
        Ok((code, output.stdout, output.stderr))
    }

    /// Checks that the container can be attached to now (so that a bad
    /// request fails at Attach, not later in the stream); whether it has a
    /// terminal.
    pub fn check_attach(&self, id: &str) -> Result<bool> {
        let (record, live) = self.container(id)?;
        match live.map(|l| l.status) {
            Some(Status::Running) => Ok(record.config.tty),
            _ => Err(CriError::FailedPrecondition(format!("container {id} is not running"))),
        }
    }

    /// A connection to the container's stdio (see [`crate::attach`]).
    pub async fn attach(&self, id: &str) -> Result<tokio::net::UnixStream> {
        self.check_attach(id)?;
        let inner = self.inner.clone();
        let id = id.to_string();
        let stream = blocking(move || Ok(inner.runtime.attach(&id)?)).await?;
        stream.set_nonblocking(true).map_err(io("attaching"))?;
        tokio::net::UnixStream::from_std(stream).map_err(io("attaching"))
    }

    /// ReopenContainerLog: the kubelet renamed the log away; the running
    /// container's output goes to a new file at the log path from now on.
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        self.check_attach(id)?;
        let inner = self.inner.clone();
        let id = id.to_string();
        blocking(move || Ok(inner.runtime.reopen_log(&id)?)).await
    }

    /// The command that runs `args` inside the running container.
    pub fn exec_command(&self, id: &str, args: Vec<String>, tty: bool) -> Result<std::process::Command> {
        self.inner.containers.get(id)?;
        let spec = ExecSpec { args, tty, ..Default::default() };
        match self.inner.runtime.exec_command(id, &spec) {
            Err(RuntimeError::WrongState { .. }) => Err(CriError::FailedPrecondition(format!("container {id} is not running"))),
            other => Ok(other?),
        }
    }
}
