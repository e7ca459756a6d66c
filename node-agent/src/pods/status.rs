//! The pod's status as the kubelet writes it, computed from what CRI reports
//! and what the agent knows (why a container waits, probe results).

use client::k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use client::k8s_openapi::jiff::Timestamp;

/// The CRI `ContainerState`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One container instance as CRI reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub state: RunState,
    pub exit_code: i32,
    /// CRI's reason for an exit (`OOMKilled`, `Error`, `Completed`, ...).
    pub reason: String,
    pub message: String,
    /// Nanoseconds since the epoch (0: never).
    pub started_at: i64,
    pub finished_at: i64,
    pub image: String,
    pub image_ref: String,
    pub restart_count: i32,
    pub log_path: String,
}

impl Instance {
    pub fn succeeded(&self) -> bool {
        self.state == RunState::Exited && self.exit_code == 0
    }

    /// How long it ran (zero when it never started).
    pub fn ran_for(&self) -> std::time::Duration {
        if self.started_at == 0 || self.finished_at < self.started_at {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_nanos((self.finished_at - self.started_at) as u64)
    }
}

/// Why a container that is not running waits, in Kubernetes' words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

impl Waiting {
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        Self { reason: reason.to_string(), message: message.into() }
    }
}

/// All the agent knows about one container of the spec.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The newest instance, and the one before it (for `lastState`).
    pub current: Option<Instance>,
    pub previous: Option<Instance>,
    /// Set when the container is not running for a reason of the agent's.
    pub waiting: Option<Waiting>,
    /// Readiness and startup probe results (true without such probes).
    pub ready: bool,
    pub started: bool,
}

/// A CRI time (nanoseconds since the epoch, 0 for never) as the API keeps
/// times: whole seconds.
pub fn time_of(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Timestamp::from_second(nanos / 1_000_000_000).ok()).flatten().map(Time)
}

/// Now, in whole seconds, so that a status written and read back compares equal.
pub fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

fn terminated(instance: &Instance) -> ContainerStateTerminated {
    let reason = if instance.reason.is_empty() {
        if instance.exit_code == 0 { "Completed" } else { "Error" }.to_string()
    } else {
        instance.reason.clone()
    };
    ContainerStateTerminated {
        container_id: Some(container_id(&instance.id)),
        exit_code: instance.exit_code,
        reason: Some(reason),
        message: (!instance.message.is_empty()).then(|| instance.message.clone()),
        started_at: time_of(instance.started_at),
        finished_at: time_of(instance.finished_at),
        signal: None,
    }
}

/// `r8s://<id>`, as the kubelet writes `<runtime>://<id>`.
pub fn container_id(id: &str) -> String {
    format!("r8s://{id}")
}

/// The status of one container.
pub fn container_status(name: &str, image: &str, observed: &Observed) -> ContainerStatus {
    let current = observed.current.as_ref();
    let state = match (&observed.waiting, current) {
        (Some(waiting), current) if current.is_none_or(|c| c.state != RunState::Running) => ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(waiting.reason.clone()), message: (!waiting.message.is_empty()).then(|| waiting.message.clone()) }),
            ..Default::default()
        },
        (_, Some(instance)) if instance.state == RunState::Running => ContainerState {
            running: Some(ContainerStateRunning { started_at: time_of(instance.started_at) }),
            ..Default::default()
        },
        (_, Some(instance)) if instance.state == RunState::Exited => ContainerState { terminated: Some(terminated(instance)), ..Default::default() },
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some("ContainerCreating".into()), message: None }),
            ..Default::default()
        },
    };
    // While a new instance waits, the last exit is `lastState`; once it ran, the
    // exit before it.
    let last = if state.terminated.is_some() || state.running.is_some() { observed.previous.as_ref() } else { current.or(observed.previous.as_ref()) };
    let last_state = last.filter(|i| i.state == RunState::Exited).map(|i| ContainerState { terminated: Some(terminated(i)), ..Default::default() });
    let running = state.running.is_some();
    ContainerStatus {
        name: name.to_string(),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready: running && observed.ready,
        started: Some(running && observed.started),
        restart_count: current.map_or(0, |c| c.restart_count),
        image: image.to_string(),
        image_id: current.map(|c| c.image_ref.clone()).unwrap_or_default(),
        container_id: current.map(|c| container_id(&c.id)),
        ..Default::default()
    }
}

/// The pod's phase from its containers, as the kubelet's `getPhase`.
pub fn phase(restart_policy: &str, init: &[ContainerStatus], containers: &[ContainerStatus]) -> &'static str {
    let init_failed = init.iter().any(|s| terminated_with(s).is_some_and(|code| code != 0));
    if init_failed && restart_policy == "Never" {
        return "Failed";
    }
    let init_done = init.iter().all(|s| terminated_with(s) == Some(0));
    if !init_done {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in containers {
        let state = status.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(done) = state.terminated {
            stopped += 1;
            succeeded += usize::from(done.exit_code == 0);
        } else {
            let last = status.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            match last {
                Some(done) => {
                    stopped += 1;
                    succeeded += usize::from(done.exit_code == 0);
                }
                None => waiting += 1,
            }
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn terminated_with(status: &ContainerStatus) -> Option<i32> {
    status.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

/// Everything the pod status is computed from.
pub struct PodFacts<'a> {
    pub init: Vec<ContainerStatus>,
    pub containers: Vec<ContainerStatus>,
    pub sandbox_ready: bool,
    pub pod_ips: Vec<String>,
    pub host_ip: &'a str,
    pub qos_class: &'a str,
    pub message: Option<(String, String)>,
}

/// The whole status, keeping `startTime` and each condition's
/// `lastTransitionTime` from `old` while the condition does not change.
pub fn pod_status(pod: &Pod, facts: PodFacts, now: &Time) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let restart_policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
    let phase = phase(&restart_policy, &facts.init, &facts.containers);
    let terminal = phase == "Succeeded" || phase == "Failed";

    let not_ready: Vec<&str> = facts.containers.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let incomplete: Vec<&str> = facts.init.iter().filter(|s| terminated_with(s) != Some(0)).map(|s| s.name.as_str()).collect();
    let list = |names: &[&str]| format!("[{}]", names.join(" "));

    let mut conditions: Vec<PodCondition> = Vec::new();
    let mut condition = |kind: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let transition = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        conditions.push(PodCondition {
            type_: kind.to_string(),
            status: status.to_string(),
            last_transition_time: Some(transition),
            reason: if ok { None } else { reason.map(str::to_string) },
            message: if ok { None } else { message },
            ..Default::default()
        });
    };
    condition("PodReadyToStartContainers", facts.sandbox_ready, None, None);
    condition("Initialized", incomplete.is_empty(), Some("ContainersNotInitialized"), Some(format!("containers with incomplete status: {}", list(&incomplete))));
    let (ready_reason, ready_message) = if terminal {
        ("PodCompleted", None)
    } else {
        ("ContainersNotReady", Some(format!("containers with unready status: {}", list(&not_ready))))
    };
    let all_ready = not_ready.is_empty() && !terminal;
    condition("Ready", all_ready, Some(ready_reason), ready_message.clone());
    condition("ContainersReady", all_ready, Some(ready_reason), ready_message);
    condition("PodScheduled", true, None, None);

    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(facts.host_ip.to_string()),
        host_ips: Some(vec![HostIP { ip: facts.host_ip.to_string() }]),
        pod_ip: facts.pod_ips.first().cloned(),
        pod_ips: (!facts.pod_ips.is_empty()).then(|| facts.pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old.start_time.or_else(|| Some(now.clone())),
        qos_class: Some(facts.qos_class.to_string()),
        init_container_statuses: (!facts.init.is_empty()).then_some(facts.init),
        container_statuses: Some(facts.containers),
        reason: facts.message.as_ref().map(|(reason, _)| reason.clone()),
        message: facts.message.map(|(_, message)| message),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(state: RunState, exit_code: i32, restarts: i32) -> Instance {
        Instance {
            id: "abc".into(),
            state,
            exit_code,
            reason: String::new(),
            message: String::new(),
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == RunState::Exited { 1_700_000_001_000_000_000 } else { 0 },
            image: "busybox".into(),
            image_ref: "sha256:1".into(),
            restart_count: restarts,
            log_path: String::new(),
        }
    }

    fn status_of(observed: &Observed) -> ContainerStatus {
        container_status("web", "busybox:1.36", observed)
    }

    #[test]
    fn running_container() {
        let observed = Observed { current: Some(instance(RunState::Running, 0, 2)), ready: true, started: true, ..Default::default() };
        let status = status_of(&observed);
        assert!(status.state.as_ref().unwrap().running.is_some());
        assert!(status.ready);
        assert_eq!(status.restart_count, 2);
        assert_eq!(status.container_id.as_deref(), Some("r8s://abc"));
        assert_eq!(status.image, "busybox:1.36");
    }

    #[test]
    fn crash_loop_shows_the_last_exit() {
        let observed = Observed {
            current: Some(instance(RunState::Exited, 1, 3)),
            waiting: Some(Waiting::new("CrashLoopBackOff", "back-off 40s restarting failed container=web pod=web_default(u)")),
            ..Default::default()
        };
        let status = status_of(&observed);
        assert_eq!(status.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("CrashLoopBackOff"));
        let last = status.last_state.clone().unwrap().terminated.unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert!(!status.ready);
        assert_eq!(phase("Always", &[], &[status]), "Running");
    }

    #[test]
    fn phases() {
        let running = status_of(&Observed { current: Some(instance(RunState::Running, 0, 0)), ..Default::default() });
        let done = status_of(&Observed { current: Some(instance(RunState::Exited, 0, 0)), ..Default::default() });
        let failed = status_of(&Observed { current: Some(instance(RunState::Exited, 2, 0)), ..Default::default() });
        let creating = status_of(&Observed::default());
        assert_eq!(phase("Always", &[], std::slice::from_ref(&creating)), "Pending");
        assert_eq!(phase("Always", &[], &[running.clone(), done.clone()]), "Running");
        assert_eq!(phase("Never", &[], std::slice::from_ref(&done)), "Succeeded");
        assert_eq!(phase("Never", &[], &[done.clone(), failed.clone()]), "Failed");
        assert_eq!(phase("OnFailure", &[], std::slice::from_ref(&failed)), "Running");
        assert_eq!(phase("Always", std::slice::from_ref(&creating), std::slice::from_ref(&creating)), "Pending");
        assert_eq!(phase("Never", std::slice::from_ref(&failed), std::slice::from_ref(&creating)), "Failed");
        assert_eq!(phase("Always", std::slice::from_ref(&done), &[running]), "Running");
        let terminated = done.state.unwrap().terminated.unwrap();
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
    }

    #[test]
    fn conditions_and_transitions() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web"}]}})).unwrap();
        let first = now();
        let unready = status_of(&Observed { current: Some(instance(RunState::Running, 0, 0)), ready: false, started: true, ..Default::default() });
        let facts = |status: ContainerStatus| PodFacts {
            init: vec![],
            containers: vec![status],
            sandbox_ready: true,
            pod_ips: vec!["10.88.0.2".into()],
            host_ip: "192.168.0.1",
            qos_class: "BestEffort",
            message: None,
        };
        let status = pod_status(&pod, facts(unready), &first);
        let ready = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("ContainersNotReady")));
        assert_eq!(ready.message.as_deref(), Some("containers with unready status: [web]"));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.88.0.2"));

        let mut pod = pod;
        pod.status = Some(status.clone());
        let later = now();
        let same = Observed { current: Some(instance(RunState::Running, 0, 0)), ready: false, started: true, ..Default::default() };
        let again = pod_status(&pod, facts(status_of(&same)), &later);
        assert_eq!(again, status, "nothing changed, so the transition times stay");
    }
}
