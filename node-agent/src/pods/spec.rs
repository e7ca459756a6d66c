//! A pod's spec turned into CRI requests: the sandbox config and each
//! container's config (resources, security context, mounts, labels).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use api::Quantity;
use client::k8s_openapi::api::core::v1::{Container, Pod, PodSpec, SecurityContext};

use super::labels;
use crate::cri::api as cri;

/// CFS period the kubelet uses (100 ms).
pub const CPU_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MIN_QUOTA: i64 = 1_000;

/// Why a container config cannot be made (shown as `CreateContainerConfigError`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("container's runAsUser breaks non-root policy (pod: \"{pod}\", container: {container})")]
    RunAsUserRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {container})")]
    RunsAsRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: \"{pod}\", container: {container})")]
    NonNumericUser { user: String, pod: String, container: String },
    #[error("invalid quantity {value:?} for {resource}: {reason}")]
    Quantity { resource: String, value: String, reason: String },
}

/// `name_namespace(uid)`, how the kubelet names a pod in messages.
pub fn pod_full_name(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// `/var/log/pods/<namespace>_<name>_<uid>`, the pod's log directory.
pub fn pod_log_dir(root: &Path, pod: &Pod) -> PathBuf {
    root.join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    ))
}

pub fn sandbox_config(pod: &Pod, log_root: &Path, attempt: u32) -> cri::PodSandboxConfig {
    let meta = &pod.metadata;
    let (name, namespace, uid) = (meta.name.clone().unwrap_or_default(), meta.namespace.clone().unwrap_or_default(), meta.uid.clone().unwrap_or_default());
    let spec = pod.spec.clone().unwrap_or_default();
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| cri::PortMapping {
            protocol: protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let pod_security = spec.security_context.clone().unwrap_or_default();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name: name.clone(), uid: uid.clone(), namespace: namespace.clone(), attempt }),
        hostname: spec.hostname.clone().unwrap_or(name.clone()),
        log_directory: pod_log_dir(log_root, pod).to_string_lossy().into_owned(),
        port_mappings,
        labels: labels::pod_labels(&namespace, &name, &uid),
        annotations: meta.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(&spec)),
                run_as_user: pod_security.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: pod_security.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: pod_security.supplemental_groups.unwrap_or_default(),
                ..Default::default()
            }),
            sysctls: pod_security.sysctls.unwrap_or_default().into_iter().map(|s| (s.name, s.value)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Host or pod namespaces, as the pod asks (a container's own PID namespace
/// unless the pod shares one).
fn namespace_options(spec: &PodSpec) -> cri::NamespaceOption {
    let mode = |host: Option<bool>, otherwise: cri::NamespaceMode| if host.unwrap_or(false) { cri::NamespaceMode::Node } else { otherwise } as i32;
    let pid_default = if spec.share_process_namespace.unwrap_or(false) { cri::NamespaceMode::Pod } else { cri::NamespaceMode::Container };
    cri::NamespaceOption {
        network: mode(spec.host_network, cri::NamespaceMode::Pod),
        pid: mode(spec.host_pid, pid_default),
        ipc: mode(spec.host_ipc, cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

fn protocol(name: Option<&str>) -> cri::Protocol {
    match name {
        Some("UDP") => cri::Protocol::Udp,
        Some("SCTP") => cri::Protocol::Sctp,
        _ => cri::Protocol::Tcp,
    }
}

fn parse(resource: &str, quantity: &client::k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Result<Quantity, ConfigError> {
    Quantity::parse(&quantity.0).map_err(|e| ConfigError::Quantity { resource: resource.into(), value: quantity.0.clone(), reason: e.to_string() })
}

/// Requests to cpu shares, limits to CFS quota and the memory limit, as the kubelet.
pub fn linux_resources(container: &Container) -> Result<cri::LinuxContainerResources, ConfigError> {
    let resources = container.resources.clone().unwrap_or_default();
    let get = |list: &Option<std::collections::BTreeMap<_, _>>, name: &str| list.as_ref().and_then(|l: &std::collections::BTreeMap<String, _>| l.get(name)).map(|q| parse(name, q)).transpose();
    let cpu_request = get(&resources.requests, "cpu")?;
    let cpu_limit = get(&resources.limits, "cpu")?;
    let memory_limit = get(&resources.limits, "memory")?;
    // A limit without a request requests the limit (the API defaults it so too).
    let request_millis = cpu_request.or(cpu_limit).map_or(0, |q| q.milli_value());
    let cpu_shares = (request_millis * 1024 / 1000).max(MIN_SHARES);
    let cpu_quota = cpu_limit.map_or(0, |limit| (limit.milli_value() * CPU_PERIOD / 1000).max(MIN_QUOTA));
    Ok(cri::LinuxContainerResources {
        cpu_shares,
        cpu_quota,
        cpu_period: if cpu_quota > 0 { CPU_PERIOD } else { 0 },
        memory_limit_in_bytes: memory_limit.map_or(0, |m| m.value()),
        ..Default::default()
    })
}

/// The image's user, from CRI's ImageStatus.
#[derive(Debug, Clone, Default)]
pub struct ImageUser {
    pub uid: Option<i64>,
    pub username: String,
}

/// The container's security context over the pod's, and the runAsNonRoot check.
pub fn security_context(pod: &Pod, container: &Container, image: &ImageUser) -> Result<cri::LinuxContainerSecurityContext, ConfigError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_level = spec.security_context.clone().unwrap_or_default();
    let own = container.security_context.clone().unwrap_or_default();
    let run_as_user = own.run_as_user.or(pod_level.run_as_user);
    let run_as_group = own.run_as_group.or(pod_level.run_as_group);
    let run_as_non_root = own.run_as_non_root.or(pod_level.run_as_non_root).unwrap_or(false);
    if run_as_non_root {
        check_non_root(pod, container, run_as_user, image)?;
    }
    let SecurityContext { capabilities, privileged, read_only_root_filesystem, allow_privilege_escalation, .. } = own;
    let capabilities = capabilities.unwrap_or_default();
    Ok(cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: capabilities.add.unwrap_or_default(),
            drop_capabilities: capabilities.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged: privileged.unwrap_or(false),
        namespace_options: Some(namespace_options(&spec)),
        run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: pod_level.supplemental_groups.unwrap_or_default(),
        // As the kubelet: no_new_privs only when escalation is explicitly refused.
        no_new_privs: allow_privilege_escalation == Some(false),
        ..Default::default()
    })
}

fn check_non_root(pod: &Pod, container: &Container, run_as_user: Option<i64>, image: &ImageUser) -> Result<(), ConfigError> {
    let root = |pod: &Pod| ConfigError::RunsAsRoot { pod: pod_full_name(pod), container: container.name.clone() };
    if let Some(uid) = run_as_user {
        return if uid == 0 { Err(ConfigError::RunAsUserRoot { pod: pod_full_name(pod), container: container.name.clone() }) } else { Ok(()) };
    }
    match image.uid {
        Some(0) => Err(root(pod)),
        Some(_) => Ok(()),
        None if image.username.is_empty() => Err(root(pod)),
        None => Err(ConfigError::NonNumericUser { user: image.username.clone(), pod: pod_full_name(pod), container: container.name.clone() }),
    }
}

/// What a container config is built from besides the spec.
pub struct ContainerInputs {
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<cri::Mount>,
    pub restart_count: i32,
    pub image_ref: String,
}

pub fn container_config(pod: &Pod, container: &Container, inputs: ContainerInputs, image: &ImageUser) -> Result<cri::ContainerConfig, ConfigError> {
    let meta = &pod.metadata;
    let mut labels = labels::pod_labels(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default(),
    );
    labels.insert(labels::CONTAINER_NAME.into(), container.name.clone());
    let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
    let annotations = HashMap::from([
        (labels::RESTART_COUNT.to_string(), inputs.restart_count.to_string()),
        (labels::TERMINATION_GRACE.to_string(), grace.to_string()),
    ]);
    let attempt = u32::try_from(inputs.restart_count).unwrap_or(0);
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: container.name.clone(), attempt }),
        image: Some(cri::ImageSpec { image: inputs.image_ref, user_specified_image: container.image.clone().unwrap_or_default(), ..Default::default() }),
        command: inputs.command,
        args: inputs.args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: inputs.env.into_iter().map(|(key, value)| cri::KeyValue { key, value }).collect(),
        mounts: inputs.mounts,
        labels,
        annotations,
        log_path: format!("{}/{attempt}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(container)?),
            security_context: Some(security_context(pod, container, image)?),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "spec": spec})).unwrap()
    }

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn resources_become_shares_quota_and_memory() {
        let c = container(serde_json::json!({"name": "c", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}));
        let r = linux_resources(&c).unwrap();
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period, r.memory_limit_in_bytes), (256, 50_000, 100_000, 64 << 20));
        let none = linux_resources(&container(serde_json::json!({"name": "c"}))).unwrap();
        assert_eq!((none.cpu_shares, none.cpu_quota, none.memory_limit_in_bytes), (2, 0, 0));
        let bad = linux_resources(&container(serde_json::json!({"name": "c", "resources": {"limits": {"cpu": "lots"}}})));
        assert!(bad.is_err());
    }

    #[test]
    fn run_as_non_root_is_checked_against_the_image() {
        let p = pod(serde_json::json!({"containers": [], "securityContext": {"runAsNonRoot": true}}));
        let c = container(serde_json::json!({"name": "c"}));
        let root = ImageUser { uid: Some(0), username: String::new() };
        let err = security_context(&p, &c, &root).unwrap_err();
        assert_eq!(err.to_string(), "container has runAsNonRoot and image will run as root (pod: \"web_default(u1)\", container: c)");
        assert!(security_context(&p, &c, &ImageUser { uid: Some(1000), username: String::new() }).is_ok());
        assert!(matches!(security_context(&p, &c, &ImageUser { uid: None, username: "nobody".into() }), Err(ConfigError::NonNumericUser { .. })));
        let as_user = container(serde_json::json!({"name": "c", "securityContext": {"runAsUser": 1000}}));
        let sc = security_context(&p, &as_user, &root).unwrap();
        assert_eq!(sc.run_as_user.map(|u| u.value), Some(1000));
        let as_root = container(serde_json::json!({"name": "c", "securityContext": {"runAsUser": 0}}));
        let err = security_context(&p, &as_root, &ImageUser { uid: Some(1000), username: String::new() }).unwrap_err();
        assert_eq!(err.to_string(), "container's runAsUser breaks non-root policy (pod: \"web_default(u1)\", container: c)");
    }

    #[test]
    fn security_fields_are_carried() {
        let p = pod(serde_json::json!({"containers": [], "hostNetwork": true}));
        let c = container(serde_json::json!({"name": "c", "securityContext": {
            "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "privileged": false,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}));
        let sc = security_context(&p, &c, &ImageUser::default()).unwrap();
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        assert_eq!(sc.capabilities.unwrap().add_capabilities, ["NET_ADMIN"]);
        assert_eq!(sc.namespace_options.unwrap().network, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn sandbox_carries_identity_and_host_ports() {
        let p = pod(serde_json::json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]}));
        let config = sandbox_config(&p, Path::new("/var/log/pods"), 0);
        assert_eq!(config.hostname, "web");
        assert_eq!(config.log_directory, "/var/log/pods/default_web_u1");
        assert_eq!(config.labels[labels::POD_UID], "u1");
        assert_eq!(config.port_mappings.len(), 1);
        assert_eq!(config.port_mappings[0].host_port, 8080);
    }
}
