//! Pod sandboxes: what the containers of one pod share.
//!
//! A sandbox is a pause process holding the pod's network, IPC and UTS
//! namespaces (and its PID namespace with `shareProcessNamespace`), a pinned
//! network namespace wired up by the [`PodNetwork`], a pod cgroup with the
//! pod's limits, and the pod's `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`. Everything is recorded under one directory per
//! sandbox, so a restarted service finds it again:
//!
//! ```text
//! <root>/<id>/sandbox.json   the record, written last: a sandbox without it is half-made
//! <root>/<id>/hosts hostname resolv.conf
//! <netns dir>/r8s-<id>       the pinned network namespace
//! ```
//!
//! Creation is undone step by step when a step fails, and half-made
//! sandboxes found at start are removed the same way.

pub mod etc_files;
pub mod pause;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1::{NamespaceMode, PodSandboxConfig, Protocol};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::cgroups::{CgroupError, Resources};
use crate::network::{NetNs, NetnsError, NetworkError, PodNetwork, PodNetworkRequest, PortMapping};
use crate::record_cache::RecordCache;
use crate::runtime::Runtime;
pub use pause::{PauseOptions, PauseProcess};

const RECORD: &str = "sandbox.json";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid pod sandbox config: {0}")]
    Invalid(String),
    #[error("no pod sandbox {0}")]
    NotFound(String),
    #[error("pause process: {0}")]
    Pause(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// How the pod shares a namespace, from `NamespaceOption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sharing {
    /// One namespace for the pod, held by the pause.
    Pod,
    /// One per container.
    Container,
    /// The node's own.
    Node,
}

impl Sharing {
    fn from_cri(mode: i32, what: &str) -> Result<Self> {
        match NamespaceMode::try_from(mode) {
            Ok(NamespaceMode::Pod) => Ok(Sharing::Pod),
            Ok(NamespaceMode::Container) => Ok(Sharing::Container),
            Ok(NamespaceMode::Node) => Ok(Sharing::Node),
            Ok(NamespaceMode::Target) => Err(SandboxError::Invalid(format!("{what} namespace mode TARGET is not supported"))),
            Err(_) => Err(SandboxError::Invalid(format!("unknown {what} namespace mode {mode}"))),
        }
    }
}

/// The pod's namespaces, as Kubernetes' hostNetwork, hostPID, hostIPC and
/// shareProcessNamespace set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub network: Sharing,
    pub pid: Sharing,
    pub ipc: Sharing,
}

impl Namespaces {
    pub fn from_config(config: &PodSandboxConfig) -> Result<Self> {
        let options = config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.as_ref());
        // An absent option is the message's default: every mode POD (0).
        let options = options.cloned().unwrap_or_default();
        if options.userns_options.as_ref().is_some_and(|u| u.mode != NamespaceMode::Node as i32) {
            return Err(SandboxError::Invalid("user namespaces (hostUsers: false) are not supported".into()));
        }
        let namespaces = Namespaces {
            network: Sharing::from_cri(options.network, "network")?,
            pid: Sharing::from_cri(options.pid, "PID")?,
            ipc: Sharing::from_cri(options.ipc, "IPC")?,
        };
        if namespaces.network == Sharing::Container || namespaces.ipc == Sharing::Container {
            return Err(SandboxError::Invalid("network and IPC namespaces are per pod or the node's, not per container".into()));
        }
        Ok(namespaces)
    }

    pub fn host_network(&self) -> bool {
        self.network == Sharing::Node
    }
}

/// A sandbox as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: PodSandboxConfig,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub namespaces: Namespaces,
    pub pause: PauseProcess,
    /// The pinned network namespace; `None` on the node's network.
    pub netns: Option<PathBuf>,
    /// The pod's address, when it has its own network.
    pub ip: Option<String>,
    /// The pod cgroup, relative to the runtime's cgroup root.
    pub cgroup_parent: PathBuf,
    /// The pod's files and where they go in each container.
    pub etc_files: Vec<(PathBuf, String)>,
    /// Stopped: the pause is gone and the network released.
    pub stopped: bool,
}

impl SandboxRecord {
    /// READY in CRI's terms: not stopped and the pause still holds the namespaces.
    pub fn is_ready(&self) -> bool {
        !self.stopped && self.pause.is_alive()
    }

    /// The pause's cgroup, inside the pod cgroup.
    pub fn pause_cgroup(&self) -> PathBuf {
        self.cgroup_parent.join(&self.id)
    }
}

/// Where sandboxes live and what they run.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// One directory per sandbox.
    pub root: PathBuf,
    /// Where network namespaces are pinned.
    pub netns_dir: PathBuf,
    /// The node's `/etc`, for hostNetwork pods and the default resolv.conf.
    pub node_etc: PathBuf,
}

/// Creates, stops, removes and finds sandboxes.
pub struct Sandboxes {
    settings: SandboxSettings,
    runtime: Arc<Runtime>,
    network: Option<Arc<dyn PodNetwork>>,
    /// The records of complete sandboxes, as on disk (see [`RecordCache`]).
    records: Arc<RecordCache<SandboxRecord>>,
}

/// What creation has made so far, undone in reverse on failure.
#[derive(Default)]
struct Made {
    dir: Option<PathBuf>,
    cgroups: Vec<PathBuf>,
    netns: Option<NetNs>,
    pause: Option<PauseProcess>,
    network: bool,
}

impl Sandboxes {
    pub fn new(settings: SandboxSettings, runtime: Arc<Runtime>, network: Option<Arc<dyn PodNetwork>>) -> Result<Self> {
        std::fs::create_dir_all(&settings.root).map_err(io(format!("creating {}", settings.root.display())))?;
        let records = Arc::new(RecordCache::new(read_all(&settings.root)?.into_iter().map(|r| (r.id.clone(), r))));
        Ok(Self { settings, runtime, network, records })
    }

    pub fn has_network(&self) -> bool {
        self.network.is_some()
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.settings.root.join(id)
    }

    fn netns_path(&self, id: &str) -> PathBuf {
        self.settings.netns_dir.join(format!("r8s-{id}"))
    }

    /// Makes a sandbox for `config` under `id` (unique, checked by the caller).
    pub async fn create(&self, id: &str, config: &PodSandboxConfig) -> Result<SandboxRecord> {
        let mut made = Made::default();
        match self.try_create(id, config, &mut made).await {
            Ok(record) => Ok(record),
            Err(error) => {
                self.undo(id, made).await;
                Err(error)
            }
        }
    }

    async fn try_create(&self, id: &str, config: &PodSandboxConfig, made: &mut Made) -> Result<SandboxRecord> {
        let namespaces = Namespaces::from_config(config)?;
        let metadata = config.metadata.clone().ok_or_else(|| SandboxError::Invalid("metadata is missing".into()))?;
        let port_mappings = port_mappings(config)?;
        let cgroup_parent = cgroup_parent(config, id)?;
        let resources = pod_resources(config);

        let dir = self.dir(id);
        std::fs::create_dir(&dir).map_err(io(format!("creating {}", dir.display())))?;
        made.dir = Some(dir.clone());

        let runtime = self.runtime.clone();
        let pause_cgroup = cgroup_parent.join(id);
        made.cgroups.push(pause_cgroup.clone());
        let parent = cgroup_parent.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            runtime.cgroups().create(&parent, &resources)?;
            runtime.cgroups().create(&pause_cgroup, &Resources::default())?;
            Ok(())
        })
        .await??;

        let netns = if namespaces.host_network() {
            None
        } else {
            // Off the async workers: the kernel makes namespaces one at a
            // time, and a burst of sandboxes would otherwise stall every
            // other CRI call behind them.
            let path = self.netns_path(id);
            let pinned = tokio::task::spawn_blocking(move || NetNs::create(path)).await??;
            made.netns = Some(pinned.clone());
            Some(pinned.path().to_owned())
        };
        let hostname = if config.hostname.is_empty() { metadata.name.clone() } else { config.hostname.clone() };
        let options = PauseOptions {
            netns: netns.clone(),
            new_ipc: namespaces.ipc == Sharing::Pod,
            hostname: (!namespaces.host_network()).then(|| hostname.clone()),
            new_pid: namespaces.pid == Sharing::Pod,
        };
        let binary = self.runtime.config().binary.clone();
        let runtime = self.runtime.clone();
        let pause_cgroup = cgroup_parent.join(id);
        let pause = tokio::task::spawn_blocking(move || -> Result<PauseProcess> {
            let pause = pause::spawn(&binary, &options)?;
            if let Err(error) = runtime.cgroups().add_process(&pause_cgroup, nix::unistd::Pid::from_raw(pause.pid)) {
                let _ = pause.kill();
                return Err(error.into());
            }
            Ok(pause)
        })
        .await??;
        made.pause = Some(pause);

        let ip = match (&netns, &self.network) {
            (Some(netns), Some(network)) => {
                made.network = true;
                let request = PodNetworkRequest {
                    sandbox_id: id.to_string(),
                    netns: netns.clone(),
                    pod_namespace: metadata.namespace.clone(),
                    pod_name: metadata.name.clone(),
                    port_mappings,
                };
                Some(network.setup(&request).await?.address.addr())
            }
            _ => None,
        };

        let node_etc = self.settings.node_etc.clone();
        let dns = config.dns_config.clone();
        let etc_dir = dir.clone();
        let etc_hostname = hostname.clone();
        let etc_files = tokio::task::spawn_blocking(move || {
            let pod = etc_files::PodEtc {
                hostname: &etc_hostname,
                pod_ip: ip.map(Into::into),
                dns: dns.as_ref(),
                node_etc: &node_etc,
            };
            etc_files::write(&etc_dir, &pod)
        })
        .await?
        .map_err(io("writing the pod's /etc files"))?;

        let record = SandboxRecord {
            id: id.to_string(),
            config: config.clone(),
            created_at: now_nanos(),
            namespaces,
            pause,
            netns,
            ip: ip.map(|ip| ip.to_string()),
            cgroup_parent,
            etc_files: etc_files.into_iter().map(|(path, target)| (path, target.to_string())).collect(),
            stopped: false,
        };
        self.save(&record).await?;
        info!(sandbox = id, pod = %format!("{}/{}", metadata.namespace, metadata.name), ip = ?record.ip, "pod sandbox ready");
        Ok(record)
    }

    async fn undo(&self, id: &str, made: Made) {
        if made.network {
            if let (Some(network), Some(netns)) = (&self.network, &made.netns) {
                if let Err(e) = network.teardown(id, netns.path()).await {
                    warn!(sandbox = id, "undoing the pod network: {e}");
                }
            }
        }
        let runtime = self.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(pause) = made.pause {
                if let Err(e) = pause.kill() {
                    warn!(sandbox = id_of(&made.dir), "undoing the pause: {e}");
                }
            }
            if let Some(netns) = made.netns {
                let _ = netns.remove();
            }
            for cgroup in made.cgroups.iter().rev() {
                let _ = runtime.cgroups().remove(cgroup);
            }
            if let Some(dir) = made.dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        })
        .await;
    }

    async fn save(&self, record: &SandboxRecord) -> Result<()> {
        let path = self.dir(&record.id).join(RECORD);
        let on_disk = record.clone();
        tokio::task::spawn_blocking(move || crate::state::write_json(&path, &on_disk))
            .await?
            .map_err(io("writing the sandbox record"))?;
        self.records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// The sandbox `id`.
    pub fn get(&self, id: &str) -> Result<SandboxRecord> {
        self.records.get(id).ok_or_else(|| SandboxError::NotFound(id.to_string()))
    }

    /// Every complete sandbox, oldest first.
    pub fn list(&self) -> Vec<SandboxRecord> {
        let mut records = self.records.all();
        records.sort_by_key(|r| r.created_at);
        records
    }

    /// Stops the sandbox: kills the pause and releases its network. The
    /// caller stops the pod's containers first. Idempotent.
    pub async fn stop(&self, id: &str) -> Result<SandboxRecord> {
        let mut record = self.get(id)?;
        if let (Some(network), Some(netns)) = (&self.network, &record.netns) {
            network.teardown(id, netns).await?;
        }
        let pause = record.pause;
        tokio::task::spawn_blocking(move || pause.kill()).await??;
        if !record.stopped {
            record.stopped = true;
            self.save(&record).await?;
        }
        Ok(record)
    }

    /// Removes a sandbox: stops it, unpins its network namespace, removes
    /// its cgroups and directory. The caller removes the containers first.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let record = self.stop(id).await?;
        let runtime = self.runtime.clone();
        let records = self.records.clone();
        let (id, dir) = (id.to_string(), self.dir(id));
        tokio::task::spawn_blocking(move || -> Result<()> {
            if let Some(netns) = &record.netns {
                crate::network::netns::remove_pinned(netns)?;
            }
            runtime.cgroups().remove(&record.pause_cgroup())?;
            remove_pod_cgroup(&runtime, &record.cgroup_parent)?;
            // The record goes first: a removal cut short leaves a half-made
            // sandbox, which the next start cleans up.
            std::fs::remove_file(dir.join(RECORD)).map_err(io("removing the sandbox record"))?;
            records.remove(&id);
            std::fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))
        })
        .await?
    }

    /// At start: removes half-made sandboxes (a directory without a record)
    /// and frees network resources of sandboxes that are gone.
    pub async fn recover(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.settings.root).map_err(io("listing sandboxes"))?;
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join(RECORD).exists() {
                continue;
            }
            warn!(sandbox = %id, "removing a half-made pod sandbox");
            let netns = self.netns_path(&id);
            let _ = crate::network::netns::remove_pinned(&netns);
            let _ = std::fs::remove_dir_all(entry.path());
        }
        if let Some(network) = &self.network {
            let live: HashSet<String> = self.list().into_iter().filter(|r| !r.stopped).map(|r| r.id).collect();
            let report = network.garbage_collect(&live).await?;
            if !report.released_addresses.is_empty() || !report.removed_links.is_empty() {
                info!(?report, "freed the network of pod sandboxes that are gone");
            }
        }
        Ok(())
    }
}

/// The records of complete sandboxes on disk, read once at start.
fn read_all(root: &Path) -> Result<Vec<SandboxRecord>> {
    let entries = std::fs::read_dir(root).map_err(io("listing sandboxes"))?;
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join(RECORD);
        if let Some(record) = crate::state::read_json(&path).map_err(io(format!("reading {}", path.display())))? {
            records.push(record);
        }
    }
    Ok(records)
}

/// Removes the pod cgroup. Right after its last processes were killed, the
/// kernel can report it busy for a while (seen under load with cgroup v1,
/// beyond the second the cgroup code itself waits), so this waits longer.
fn remove_pod_cgroup(runtime: &Runtime, path: &Path) -> Result<()> {
    let mut attempts = 0;
    loop {
        match runtime.cgroups().remove(path) {
            Err(CgroupError::Io { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) && attempts < 10 => attempts += 1,
            other => return Ok(other?),
        }
    }
}

fn id_of(dir: &Option<PathBuf>) -> String {
    dir.as_deref().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The pod cgroup: the kubelet's `cgroup_parent` (cgroupfs style, placed
/// under the runtime's own root), or `pods/<id>`.
fn cgroup_parent(config: &PodSandboxConfig, id: &str) -> Result<PathBuf> {
    let given = config.linux.as_ref().map(|l| l.cgroup_parent.trim_matches('/')).unwrap_or_default();
    if given.is_empty() {
        return Ok(Path::new("pods").join(id));
    }
    if given.ends_with(".slice") {
        return Err(SandboxError::Invalid(format!("cgroup parent {given:?}: the systemd cgroup driver is not supported, use cgroupfs paths")));
    }
    if !given.split('/').all(crate::config::valid_id) {
        return Err(SandboxError::Invalid(format!("cgroup parent {given:?} is not a relative path of plain names")));
    }
    Ok(PathBuf::from(given))
}

/// The pod's limits: `resources` of the sandbox config (the sum of its
/// containers' limits plus overhead, as the kubelet computes them).
fn pod_resources(config: &PodSandboxConfig) -> Resources {
    let Some(r) = config.linux.as_ref().and_then(|l| l.resources.as_ref()) else { return Resources::default() };
    Resources {
        memory_limit: (r.memory_limit_in_bytes > 0).then_some(r.memory_limit_in_bytes),
        cpu_quota: (r.cpu_quota > 0).then_some(r.cpu_quota),
        cpu_period: (r.cpu_period > 0).then_some(r.cpu_period as u64),
        cpu_shares: (r.cpu_shares > 0).then_some(r.cpu_shares as u64),
        pids_limit: None,
    }
}

fn port_mappings(config: &PodSandboxConfig) -> Result<Vec<PortMapping>> {
    config
        .port_mappings
        .iter()
        .map(|m| {
            let port = |value: i32, what: &str| {
                u16::try_from(value).map_err(|_| SandboxError::Invalid(format!("{what} {value} is out of range")))
            };
            let protocol = match Protocol::try_from(m.protocol) {
                Ok(Protocol::Tcp) => crate::network::Protocol::Tcp,
                Ok(Protocol::Udp) => crate::network::Protocol::Udp,
                Ok(Protocol::Sctp) => crate::network::Protocol::Sctp,
                Err(_) => return Err(SandboxError::Invalid(format!("unknown protocol {}", m.protocol))),
            };
            let host_ip = match m.host_ip.as_str() {
                "" | "0.0.0.0" => None,
                ip => Some(ip.parse().map_err(|_| SandboxError::Invalid(format!("host IP {ip:?} is not an IPv4 address")))?),
            };
            Ok(PortMapping { protocol, container_port: port(m.container_port, "container port")?, host_port: port(m.host_port, "host port")?, host_ip })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption};

    fn config(options: Option<NamespaceOption>, cgroup_parent: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.into(),
                security_context: Some(LinuxSandboxSecurityContext { namespace_options: options, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn namespace_modes_follow_kubernetes() {
        let host = NamespaceOption { network: 2, pid: 2, ipc: 2, ..Default::default() };
        let ns = Namespaces::from_config(&config(Some(host), "")).unwrap();
        assert!(ns.host_network() && ns.pid == Sharing::Node && ns.ipc == Sharing::Node);
        let shared = NamespaceOption { network: 0, pid: 0, ipc: 0, ..Default::default() };
        assert_eq!(Namespaces::from_config(&config(Some(shared), "")).unwrap().pid, Sharing::Pod);
        let bad = NamespaceOption { network: 1, ..Default::default() };
        assert!(Namespaces::from_config(&config(Some(bad), "")).is_err());
    }

    #[test]
    fn cgroup_parents_stay_below_the_runtime_root() {
        assert_eq!(cgroup_parent(&config(None, "/kubepods/burstable/pod1"), "x").unwrap(), PathBuf::from("kubepods/burstable/pod1"));
        assert_eq!(cgroup_parent(&config(None, ""), "x").unwrap(), PathBuf::from("pods/x"));
        assert!(cgroup_parent(&config(None, "/a/../../etc"), "x").is_err());
        assert!(cgroup_parent(&config(None, "kubepods.slice"), "x").is_err());
    }
}
