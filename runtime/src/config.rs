//! What a container is made from: an OCI runtime spec plus the few things the
//! spec does not say (where the root filesystem's layers are, the seccomp policy,
//! where the output goes), and r8s's defaults for the spec.

use std::path::PathBuf;

use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxCapabilities, LinuxCpu, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, Process,
};

pub use oci_spec::runtime::{Capability, Mount, Spec};
use serde::{Deserialize, Serialize};

/// Everything needed to create one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Unique among the runtime's containers: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
    pub id: String,
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// Process, hostname, mounts, namespaces, masked and read-only paths,
    /// resources, `linux.cgroupsPath` (relative to the runtime's cgroup root;
    /// the container's id when absent). `root.path` is ignored: see `rootfs`.
    pub oci: Spec,
    /// The system-call filter.
    pub seccomp: SeccompPolicy,
    /// Where stdout and stderr go.
    pub output: Output,
    /// Whether the container gets a stdin that attach clients write to
    /// (Kubernetes' `stdin` and `stdinOnce`). With `process.terminal`, the
    /// shim gives the container a terminal instead of pipes.
    #[serde(default)]
    pub stdin: StdinMode,
}

/// When a created container's program starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Start {
    /// When `start` is called: `create`, then `start`, as the CRI does.
    #[default]
    OnRequest,
    /// As soon as the container is set up, as `runc run` does: no start FIFO
    /// and no round trip to the creator.
    AtOnce,
}

/// The container's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum StdinMode {
    /// `/dev/null`.
    #[default]
    Closed,
    /// Open while the container runs, for any number of attaches in turn.
    Open,
    /// Open until the first attach that wrote to it ends, then closed for good.
    Once,
}

/// The container's `/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Rootfs {
    /// An overlay of read-only layer directories, topmost LAST (the order of an
    /// image's layers), with a writable upper directory of the container's own.
    /// The layers are never changed.
    Overlay { layers: Vec<PathBuf> },
    /// An existing directory used as it is (writes reach it).
    Directory(PathBuf),
}

/// Kubernetes' `seccompProfile.type` values that r8s supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SeccompPolicy {
    /// Docker's default profile: refuses the dangerous system calls with EPERM.
    #[default]
    RuntimeDefault,
    /// No filter.
    Unconfined,
}

/// The container's stdout and stderr.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Output {
    /// A file in the CRI log format, written by the shim.
    Log(PathBuf),
    /// The caller's own stdin, stdout and stderr, passed down as they are (the
    /// foreground `r8s runtime run`).
    Inherit,
    /// Discarded.
    Null,
}

/// Capabilities a container gets unless told otherwise: the set Docker,
/// containerd and runc's `spec` give (Kubernetes' default).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths hidden from the container (containerd's and runc's defaults).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container can read but not write.
pub const DEFAULT_READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// A spec with r8s's defaults running `args`: new mount, UTS, IPC, PID, network
/// and cgroup namespaces, the default mounts, capabilities, masked and
/// read-only paths, `no_new_privileges`, as root in `/`.
pub fn default_spec(args: Vec<String>) -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(None);
    spec.set_root(None);
    // The cgroup filesystem is not mounted in containers (yet).
    let mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts()
        .into_iter()
        .filter(|m| m.typ().as_deref() != Some("cgroup"))
        .collect();
    spec.set_mounts(Some(mounts));

    let mut process = Process::default();
    process.set_args(Some(args));
    let caps: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(caps.clone()));
    capabilities.set_effective(Some(caps.clone()));
    capabilities.set_permitted(Some(caps));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    process.set_capabilities(Some(capabilities));
    spec.set_process(Some(process));

    let namespaces = [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .map(|typ| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        ns
    })
    .collect::<Vec<_>>();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(DEFAULT_MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(DEFAULT_READONLY_PATHS.map(String::from).to_vec())
        .build()
        .expect("every field of the default Linux section is set");
    spec.set_linux(Some(linux));
    spec
}

/// Adds `add` to and removes `drop` from the bounding, effective and permitted
/// sets of `spec`'s process (Kubernetes' `securityContext.capabilities`).
pub fn adjust_capabilities(spec: &mut Spec, add: &[Capability], drop: &[Capability]) {
    let Some(process) = spec.process_mut() else { return };
    let mut caps = process.capabilities().clone().unwrap_or_default();
    let adjust = |set: &Option<Capabilities>| -> Option<Capabilities> {
        let mut set = set.clone().unwrap_or_default();
        set.extend(add.iter().copied());
        set.retain(|c| !drop.contains(c));
        Some(set)
    };
    caps.set_bounding(adjust(caps.bounding()));
    caps.set_effective(adjust(caps.effective()));
    caps.set_permitted(adjust(caps.permitted()));
    process.set_capabilities(Some(caps));
}

/// Resources from a memory limit (bytes), a CPU limit (cores, as a quota of
/// a 100 ms period) and a limit of processes.
pub fn resources(memory: Option<i64>, cpus: Option<f64>, pids: Option<i64>) -> LinuxResources {
    const PERIOD: u64 = 100_000;
    let mut resources = LinuxResources::default();
    if let Some(limit) = memory {
        let mut m = LinuxMemory::default();
        m.set_limit(Some(limit));
        resources.set_memory(Some(m));
    }
    if let Some(cpus) = cpus {
        let mut c = LinuxCpu::default();
        c.set_quota(Some((cpus * PERIOD as f64).round() as i64));
        c.set_period(Some(PERIOD));
        resources.set_cpu(Some(c));
    }
    if let Some(limit) = pids {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        resources.set_pids(Some(p));
    }
    resources
}

/// Checks a container id: it names a directory and a cgroup.
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && id.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_has_docker_capabilities_and_masks() {
        let spec = default_spec(vec!["/bin/true".into()]);
        let caps = spec.process().as_ref().unwrap().capabilities().clone().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        assert!(!caps.bounding().as_ref().unwrap().contains(&Capability::SysAdmin));
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().as_ref().unwrap().contains(&"/proc/kcore".to_string()));
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 6);
    }

    #[test]
    fn capabilities_are_added_and_dropped() {
        let mut spec = default_spec(vec![]);
        adjust_capabilities(&mut spec, &[Capability::NetAdmin], &[Capability::NetRaw]);
        let caps = spec.process().as_ref().unwrap().capabilities().clone().unwrap();
        let eff = caps.effective().as_ref().unwrap();
        assert!(eff.contains(&Capability::NetAdmin));
        assert!(!eff.contains(&Capability::NetRaw));
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("web-1.a_b"));
        assert!(!valid_id("../x"));
        assert!(!valid_id(""));
        assert!(!valid_id("-x"));
    }
}
