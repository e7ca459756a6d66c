//! A runtime `ContainerSpec` from CRI's `ContainerConfig`, inside its sandbox:
//! the image's defaults, the pod's shared namespaces and `/etc` files, the
//! container's mounts, resources and security context.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use k8s_cri::v1::{
    security_profile::ProfileType, ContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, MountPropagation,
    NamespaceMode,
};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxResources, Mount, Spec, User};

use super::CriError;
use crate::config::{adjust_capabilities, Capability, ContainerSpec, Output, SeccompPolicy, StdinMode};
use crate::image::{defaults, Image};
use crate::sandbox::{SandboxRecord, Sharing};

/// OCI annotations that mark the runtime containers the CRI service made.
pub const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

fn invalid(message: impl Into<String>) -> CriError {
    CriError::InvalidArgument(message.into())
}

/// Everything CreateContainer decided, for the runtime.
pub struct Built {
    pub spec: ContainerSpec,
    /// Where the container's log goes, when the pod has a log directory.
    pub log_path: Option<PathBuf>,
}

pub fn build(
    id: &str,
    config: &ContainerConfig,
    sandbox: &SandboxRecord,
    image: &Image,
    layers: Vec<PathBuf>,
) -> Result<Built, CriError> {
    refuse_unsupported(config)?;
    let mut oci = crate::default_spec(Vec::new());
    let mut process = oci.process().clone().unwrap_or_default();
    process.set_env(Some(config.envs.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect()));
    process.set_terminal(Some(config.tty));
    oci.set_process(Some(process));
    defaults::apply_image(&mut oci, image, &layers, &config.command, &config.args)?;
    if oci.process().as_ref().and_then(|p| p.args().as_ref()).is_none_or(|a| a.is_empty()) {
        return Err(invalid(format!("no command given and image {} has none", image.name)));
    }
    if !config.working_dir.is_empty() {
        if let Some(process) = oci.process_mut() {
            process.set_cwd(PathBuf::from(&config.working_dir));
        }
    }
    let hostname = sandbox.config.hostname.clone();
    oci.set_hostname((!hostname.is_empty()).then_some(hostname));

    let security = config.linux.as_ref().and_then(|l| l.security_context.clone()).unwrap_or_default();
    join_pod_namespaces(&mut oci, sandbox, &security)?;
    add_mounts(&mut oci, config, sandbox)?;
    let seccomp = apply_security(&mut oci, &security)?;
    let mut linux = oci.linux().clone().unwrap_or_default();
    if let Some(resources) = config.linux.as_ref().and_then(|l| l.resources.as_ref()) {
        linux.set_resources(Some(oci_resources(resources)));
    }
    linux.set_cgroups_path(Some(sandbox.cgroup_parent.join(id)));
    oci.set_linux(Some(linux));

    let mut annotations = config.annotations.clone();
    annotations.insert(SANDBOX_ANNOTATION.into(), sandbox.id.clone());
    oci.set_annotations(Some(annotations));

    let log_dir = &sandbox.config.log_directory;
    let log_path = (!log_dir.is_empty() && !config.log_path.is_empty()).then(|| Path::new(log_dir).join(&config.log_path));
    let output = match &log_path {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(super::error::io(format!("creating log directory {}", dir.display())))?;
            }
            Output::Log(path.clone())
        }
        None => Output::Null,
    };
    Ok(Built {
        spec: ContainerSpec { id: id.to_string(), rootfs: defaults::rootfs(layers), oci, seccomp, output, stdin: stdin_mode(config) },
        log_path,
    })
}

/// Kubernetes' `stdin` and `stdinOnce`.
fn stdin_mode(config: &ContainerConfig) -> StdinMode {
    match (config.stdin, config.stdin_once) {
        (false, _) => StdinMode::Closed,
        (true, false) => StdinMode::Open,
        (true, true) => StdinMode::Once,
    }
}

fn refuse_unsupported(config: &ContainerConfig) -> Result<(), CriError> {
    if !config.devices.is_empty() || !config.cdi_devices.is_empty() {
        return Err(CriError::Unimplemented("devices are not supported".into()));
    }
    Ok(())
}

/// Network, IPC and UTS of the pause; PID as the pod says; the rest new.
fn join_pod_namespaces(oci: &mut Spec, sandbox: &SandboxRecord, security: &LinuxContainerSecurityContext) -> Result<(), CriError> {
    let pid_mode = security.namespace_options.as_ref().map(|o| o.pid);
    let pid = match pid_mode.map(NamespaceMode::try_from) {
        None => sandbox.namespaces.pid,
        Some(Ok(NamespaceMode::Pod)) => Sharing::Pod,
        Some(Ok(NamespaceMode::Container)) => Sharing::Container,
        Some(Ok(NamespaceMode::Node)) => Sharing::Node,
        Some(_) => return Err(CriError::Unimplemented("PID namespace mode TARGET is not supported".into())),
    };
    if pid == Sharing::Pod && sandbox.namespaces.pid != Sharing::Pod {
        return Err(invalid("the container shares the pod's PID namespace, but the sandbox has none (shareProcessNamespace is off)"));
    }
    let pause = &sandbox.pause;
    let host_network = sandbox.namespaces.host_network();
    let mut namespaces = Vec::new();
    let mut add = |typ: LinuxNamespaceType, path: Option<PathBuf>| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        ns.set_path(path);
        namespaces.push(ns);
    };
    add(LinuxNamespaceType::Mount, None);
    add(LinuxNamespaceType::Cgroup, None);
    if !host_network {
        add(LinuxNamespaceType::Network, Some(pause.namespace("net")));
        add(LinuxNamespaceType::Uts, Some(pause.namespace("uts")));
    }
    if sandbox.namespaces.ipc == Sharing::Pod {
        add(LinuxNamespaceType::Ipc, Some(pause.namespace("ipc")));
    }
    match pid {
        Sharing::Pod => add(LinuxNamespaceType::Pid, Some(pause.namespace("pid"))),
        Sharing::Container => add(LinuxNamespaceType::Pid, None),
        Sharing::Node => {}
    }
    let mut linux = oci.linux().clone().unwrap_or_default();
    linux.set_namespaces(Some(namespaces));
    oci.set_linux(Some(linux));
    Ok(())
}

/// The pod's `/etc` files, then the container's own mounts (which win).
fn add_mounts(oci: &mut Spec, config: &ContainerConfig, sandbox: &SandboxRecord) -> Result<(), CriError> {
    let mut mounts = oci.mounts().clone().unwrap_or_default();
    let own: Vec<&str> = config.mounts.iter().map(|m| m.container_path.as_str()).collect();
    for (host, target) in &sandbox.etc_files {
        if !own.contains(&target.as_str()) {
            mounts.push(bind(host, target, false, "rprivate"));
        }
    }
    for m in &config.mounts {
        if !m.container_path.starts_with('/') || m.host_path.is_empty() {
            return Err(invalid(format!("mount {:?} → {:?}: needs a host path and an absolute container path", m.host_path, m.container_path)));
        }
        if m.image.is_some() || !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(CriError::Unimplemented(format!("mount {}: image volumes and id-mapped mounts are not supported", m.container_path)));
        }
        if !Path::new(&m.host_path).exists() {
            return Err(invalid(format!("mount {}: host path {} does not exist", m.container_path, m.host_path)));
        }
        let propagation = match MountPropagation::try_from(m.propagation) {
            Ok(MountPropagation::PropagationHostToContainer) => "rslave",
            Ok(MountPropagation::PropagationBidirectional) => "rshared",
            _ => "rprivate",
        };
        mounts.push(bind(Path::new(&m.host_path), &m.container_path, m.readonly, propagation));
    }
    oci.set_mounts(Some(mounts));
    Ok(())
}

fn bind(host: &Path, target: &str, readonly: bool, propagation: &str) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(target));
    mount.set_source(Some(host.to_path_buf()));
    mount.set_typ(Some("bind".into()));
    let mut options = vec!["rbind".to_string(), propagation.to_string()];
    if readonly {
        options.push("ro".into());
    }
    mount.set_options(Some(options));
    mount
}

/// User, capabilities, read-only root, masks, no_new_privs and the seccomp policy.
fn apply_security(oci: &mut Spec, security: &LinuxContainerSecurityContext) -> Result<SeccompPolicy, CriError> {
    if security.privileged {
        return Err(CriError::Unimplemented("privileged containers are not supported".into()));
    }
    let parse = |names: &[String]| -> Result<Vec<Capability>, CriError> {
        names
            .iter()
            .map(|name| {
                let full = if name.starts_with("CAP_") { name.clone() } else { format!("CAP_{name}") };
                Capability::from_str(&full).map_err(|_| invalid(format!("unknown capability {name:?}")))
            })
            .collect()
    };
    if let Some(caps) = &security.capabilities {
        let add = parse(&caps.add_capabilities)?;
        let drop = if caps.drop_capabilities.iter().any(|c| c == "ALL") {
            crate::config::DEFAULT_CAPABILITIES.iter().copied().filter(|c| !add.contains(c)).collect()
        } else {
            parse(&caps.drop_capabilities)?
        };
        adjust_capabilities(oci, &add, &drop);
    }
    if let Some(process) = oci.process_mut() {
        let mut user = process.user().clone();
        if let Some(uid) = &security.run_as_user {
            user.set_uid(u32::try_from(uid.value).map_err(|_| invalid(format!("runAsUser {} is out of range", uid.value)))?);
        }
        if let Some(gid) = &security.run_as_group {
            user.set_gid(u32::try_from(gid.value).map_err(|_| invalid(format!("runAsGroup {} is out of range", gid.value)))?);
        }
        if !security.supplemental_groups.is_empty() {
            let groups = security.supplemental_groups.iter().map(|g| u32::try_from(*g)).collect::<Result<Vec<_>, _>>();
            user.set_additional_gids(Some(groups.map_err(|_| invalid("a supplemental group is out of range"))?));
        }
        if !security.run_as_username.is_empty() {
            return Err(CriError::Unimplemented("runAsUserName is not supported; give a numeric runAsUser".into()));
        }
        process.set_user(User::clone(&user));
        if security.no_new_privs {
            process.set_no_new_privileges(Some(true));
        }
    }
    if security.readonly_rootfs {
        let mut root = oci.root().clone().unwrap_or_default();
        root.set_readonly(Some(true));
        oci.set_root(Some(root));
    }
    let mut linux = oci.linux().clone().unwrap_or_default();
    // The kubelet sends the default masks unless procMount is Unmasked.
    if !security.masked_paths.is_empty() || !security.readonly_paths.is_empty() {
        linux.set_masked_paths(Some(security.masked_paths.clone()));
        linux.set_readonly_paths(Some(security.readonly_paths.clone()));
    }
    oci.set_linux(Some(linux));
    match security.seccomp.as_ref().map(|s| ProfileType::try_from(s.profile_type)) {
        None | Some(Ok(ProfileType::RuntimeDefault)) => Ok(SeccompPolicy::RuntimeDefault),
        Some(Ok(ProfileType::Unconfined)) => Ok(SeccompPolicy::Unconfined),
        Some(_) => Err(CriError::Unimplemented("Localhost seccomp profiles are not supported".into())),
    }
}

/// CRI's Linux resources in OCI terms (the fields cgroups apply).
pub fn oci_resources(resources: &LinuxContainerResources) -> LinuxResources {
    let mut out = LinuxResources::default();
    if resources.memory_limit_in_bytes > 0 {
        let mut memory = LinuxMemory::default();
        memory.set_limit(Some(resources.memory_limit_in_bytes));
        out.set_memory(Some(memory));
    }
    let mut cpu = LinuxCpu::default();
    cpu.set_quota((resources.cpu_quota > 0).then_some(resources.cpu_quota));
    cpu.set_period((resources.cpu_period > 0).then_some(resources.cpu_period as u64));
    cpu.set_shares((resources.cpu_shares > 0).then_some(resources.cpu_shares as u64));
    out.set_cpu(Some(cpu));
    out
}
