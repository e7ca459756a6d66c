//! r8s's records and runtime state as CRI messages.

use k8s_cri::v1 as cri;

use super::records::ContainerRecord;
use crate::cgroups::Stats;
use crate::image::registry::{BadAuth, Credentials};
use super::live::Live;
use crate::runtime::Status;
use crate::sandbox::{now_nanos, SandboxRecord, Sharing};

fn rfc3339_nanos(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time).ok().and_then(|t| t.timestamp_nanos_opt()).unwrap_or(0)
}

fn namespace_mode(sharing: Sharing) -> i32 {
    match sharing {
        Sharing::Pod => cri::NamespaceMode::Pod as i32,
        Sharing::Container => cri::NamespaceMode::Container as i32,
        Sharing::Node => cri::NamespaceMode::Node as i32,
    }
}

fn sandbox_state(record: &SandboxRecord) -> i32 {
    if record.is_ready() { cri::PodSandboxState::SandboxReady as i32 } else { cri::PodSandboxState::SandboxNotready as i32 }
}

pub fn sandbox(record: &SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state: sandbox_state(record),
        created_at: record.created_at,
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        runtime_handler: String::new(),
    }
}

pub fn sandbox_status(record: &SandboxRecord) -> cri::PodSandboxStatus {
    let ns = record.namespaces;
    cri::PodSandboxStatus {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state: sandbox_state(record),
        created_at: record.created_at,
        network: Some(cri::PodSandboxNetworkStatus { ip: record.ip.clone().unwrap_or_default(), additional_ips: Vec::new() }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: namespace_mode(ns.network),
                    pid: namespace_mode(ns.pid),
                    ipc: namespace_mode(ns.ipc),
                    ..Default::default()
                }),
            }),
        }),
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        runtime_handler: String::new(),
    }
}

/// State, exit code, reason and message of a container as CRI defines them.
fn state(info: Option<&Live>) -> (cri::ContainerState, i32, &'static str, String, i64) {
    let Some(info) = info else {
        return (cri::ContainerState::ContainerUnknown, 0, "Unknown", "the runtime has no state for this container".into(), 0);
    };
    match (info.status, &info.exit) {
        (Status::Created, _) => (cri::ContainerState::ContainerCreated, 0, "", String::new(), 0),
        (Status::Running, _) => (cri::ContainerState::ContainerRunning, 0, "", String::new(), 0),
        (Status::Stopped, Some(exit)) => {
            let finished = rfc3339_nanos(&exit.finished_at);
            let (reason, message) = if exit.oom_killed {
                ("OOMKilled", String::new())
            } else if let Some(why) = &exit.reason {
                ("ContainerCannotRun", why.clone())
            } else if exit.code == 0 {
                ("Completed", String::new())
            } else {
                ("Error", String::new())
            };
            (cri::ContainerState::ContainerExited, exit.code, reason, message, finished)
        }
        (Status::Stopped, None) => {
            (cri::ContainerState::ContainerExited, 255, "Error", "the container's shim died without recording an exit".into(), 0)
        }
    }
}

pub fn container(record: &ContainerRecord, info: Option<&Live>) -> cri::Container {
    cri::Container {
        id: record.id.clone(),
        pod_sandbox_id: record.sandbox_id.clone(),
        metadata: record.config.metadata.clone(),
        image: record.config.image.clone(),
        image_ref: record.image_ref.clone(),
        state: state(info).0 as i32,
        created_at: record.created_at,
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        image_id: record.image_ref.clone(),
    }
}

pub fn container_status(record: &ContainerRecord, info: Option<&Live>) -> cri::ContainerStatus {
    let (state, exit_code, reason, message, finished_at) = state(info);
    cri::ContainerStatus {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state: state as i32,
        created_at: record.created_at,
        started_at: record.started_at.unwrap_or(0),
        finished_at,
        exit_code,
        image: record.config.image.clone(),
        image_ref: record.image_ref.clone(),
        reason: reason.into(),
        message,
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        mounts: record.config.mounts.clone(),
        log_path: record.log_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        resources: record.config.linux.as_ref().and_then(|l| l.resources.clone()).map(|linux| cri::ContainerResources { linux: Some(linux), windows: None }),
        image_id: record.image_ref.clone(),
        user: None,
    }
}

fn cpu(stats: &Stats, now: i64) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: Some(cri::UInt64Value { value: stats.cpu_usage_nanos }),
        usage_nano_cores: None,
    }
}

fn memory(stats: &Stats, now: i64) -> cri::MemoryUsage {
    let usage = Some(cri::UInt64Value { value: stats.memory_usage_bytes });
    cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: usage,
        usage_bytes: usage,
        available_bytes: stats.memory_limit_bytes.map(|limit| cri::UInt64Value { value: limit.saturating_sub(stats.memory_usage_bytes) }),
        ..Default::default()
    }
}

pub fn container_stats(record: &ContainerRecord, stats: &Stats) -> cri::ContainerStats {
    let now = now_nanos();
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: record.id.clone(),
            metadata: record.config.metadata.clone(),
            labels: record.config.labels.clone(),
            annotations: record.config.annotations.clone(),
        }),
        cpu: Some(cpu(stats, now)),
        memory: Some(memory(stats, now)),
        ..Default::default()
    }
}

pub fn sandbox_stats(record: &SandboxRecord, pod: &Stats, containers: &[(ContainerRecord, Stats)]) -> cri::PodSandboxStats {
    let now = now_nanos();
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: record.id.clone(),
            metadata: record.config.metadata.clone(),
            labels: record.config.labels.clone(),
            annotations: record.config.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu(pod, now)),
            memory: Some(memory(pod, now)),
            process: Some(cri::ProcessUsage { timestamp: now, process_count: Some(cri::UInt64Value { value: pod.pids_current }) }),
            containers: containers.iter().map(|(r, s)| container_stats(r, s)).collect(),
            ..Default::default()
        }),
        windows: None,
    }
}

/// A PullImage's AuthConfig as registry credentials: username and password,
/// else the docker config `auth` field (base64 `user:password`), plus tokens.
pub fn credentials(auth: Option<cri::AuthConfig>) -> Result<Credentials, BadAuth> {
    let Some(auth) = auth else { return Ok(Credentials::default()) };
    let mut credentials = if auth.username.is_empty() && !auth.auth.is_empty() {
        Credentials::from_auth_field(&auth.auth)?
    } else {
        Credentials::basic(auth.username, auth.password)
    };
    credentials.identity_token = auth.identity_token;
    credentials.registry_token = auth.registry_token;
    Ok(credentials)
}
