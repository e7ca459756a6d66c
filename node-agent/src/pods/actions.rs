//! What to do for a pod, decided from its spec and what the runtime has for
//! it, without doing any of it: the kubelet's `computePodActions`, a pure
//! function tested like the controllers' plans. The worker carries the
//! actions out (see [`super::worker`]).

use std::collections::HashMap;

use client::k8s_openapi::api::core::v1::Pod;

use super::probe::Kind;
use super::status::{Instance, RunState};

/// One sandbox of the pod, as the runtime has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxView {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub ips: Vec<String>,
    pub created_at: i64,
}

/// What the runtime has for one pod (the kubelet's `kubecontainer.PodStatus`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodStatus {
    /// Newest first.
    pub sandboxes: Vec<SandboxView>,
    /// Each container name's instances, newest first.
    pub containers: HashMap<String, Vec<Instance>>,
}

impl PodStatus {
    /// The sandbox containers run in, when there is one.
    pub fn ready_sandbox(&self) -> Option<&SandboxView> {
        self.sandboxes.iter().find(|s| s.ready)
    }

    /// The newest instance of a container.
    pub fn current(&self, name: &str) -> Option<&Instance> {
        self.containers.get(name).and_then(|list| list.first())
    }

    /// The running instances, by id.
    pub fn running(&self) -> impl Iterator<Item = (&str, &Instance)> {
        self.containers.iter().flat_map(|(name, list)| list.iter().filter(|i| i.state == RunState::Running).map(move |i| (name.as_str(), i)))
    }
}

/// A container to create and start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartContainer {
    pub name: String,
    pub restart_count: i32,
    /// A restart after an exit at this time (ns): subject to back-off.
    pub after_exit: Option<i64>,
}

/// A running container to stop, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillContainer {
    pub id: String,
    pub name: String,
    pub reason: Kind,
}

/// What to do for a pod now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// A finished pod with a sandbox still up: stop everything at once, then the sandbox.
    pub kill_pod: bool,
    /// Sandboxes that are no longer ready, to remove before a new one is made.
    pub remove_sandboxes: Vec<String>,
    /// Make a sandbox with this attempt number.
    pub create_sandbox: Option<u32>,
    /// Start these (at most one init container, else the app containers), in order.
    pub start: Vec<StartContainer>,
    /// Containers created but never started (the agent stopped in between).
    pub start_created: Vec<String>,
    /// Running containers whose liveness or startup probe failed.
    pub kill: Vec<KillContainer>,
    /// Exited instances older than the newest two of their name (the kubelet's container GC).
    pub remove: Vec<String>,
}

impl PodActions {
    pub fn is_empty(&self) -> bool {
        *self == PodActions::default()
    }
}

/// Decides what to do for `pod` given what the runtime has (`status`) and
/// which running containers failed a liveness or startup probe (`unhealthy`, by id).
pub fn compute_pod_actions(pod: &Pod, status: &PodStatus, unhealthy: &HashMap<String, Kind>) -> PodActions {
    let mut actions = PodActions::default();
    let spec = pod.spec.clone().unwrap_or_default();
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
    let terminal = phase == "Succeeded" || phase == "Failed";
    for list in status.containers.values() {
        actions.remove.extend(list.iter().skip(2).filter(|i| i.state != RunState::Running).map(|i| i.id.clone()));
    }
    if terminal {
        // A finished pod runs nothing more; its sandbox goes.
        actions.kill_pod = status.ready_sandbox().is_some();
        return actions;
    }
    if status.ready_sandbox().is_none() {
        actions.remove_sandboxes = status.sandboxes.iter().map(|s| s.id.clone()).collect();
        actions.create_sandbox = Some(status.sandboxes.iter().map(|s| s.attempt + 1).max().unwrap_or(0));
    }
    let fresh = actions.create_sandbox.is_some();
    // In a new sandbox nothing of the old one counts but the restart counts.
    let current = |name: &str| if fresh { None } else { status.current(name) };
    let restart_count = |name: &str| status.current(name).map_or(0, |i| i.restart_count + 1);
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");

    for container in spec.init_containers.iter().flatten() {
        match current(&container.name) {
            Some(done) if done.succeeded() => continue,
            Some(created) if created.state == RunState::Created => actions.start_created.push(created.id.clone()),
            Some(running) if running.state == RunState::Running => {}
            Some(failed) => {
                if policy != "Never" {
                    let after_exit = Some(failed.finished_at);
                    actions.start.push(StartContainer { name: container.name.clone(), restart_count: failed.restart_count + 1, after_exit });
                }
            }
            None => actions.start.push(StartContainer { name: container.name.clone(), restart_count: restart_count(&container.name), after_exit: None }),
        }
        // One init container at a time, in order.
        return actions;
    }
    for container in &spec.containers {
        match current(&container.name) {
            None => actions.start.push(StartContainer { name: container.name.clone(), restart_count: restart_count(&container.name), after_exit: None }),
            Some(instance) if instance.state == RunState::Running => {
                if let Some(kind) = unhealthy.get(&instance.id) {
                    actions.kill.push(KillContainer { id: instance.id.clone(), name: container.name.clone(), reason: *kind });
                }
            }
            Some(instance) if instance.state == RunState::Created => actions.start_created.push(instance.id.clone()),
            Some(instance) => {
                let restart = policy == "Always" || (policy == "OnFailure" && instance.exit_code != 0);
                if restart {
                    actions.start.push(StartContainer { name: container.name.clone(), restart_count: instance.restart_count + 1, after_exit: Some(instance.finished_at) });
                }
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec})).unwrap()
    }

    fn app(names: &[&str], policy: &str) -> Pod {
        let containers: Vec<_> = names.iter().map(|n| json!({"name": n, "image": "busybox"})).collect();
        pod(json!({"restartPolicy": policy, "containers": containers}))
    }

    fn with_init(init: &[&str]) -> Pod {
        let init: Vec<_> = init.iter().map(|n| json!({"name": n, "image": "busybox"})).collect();
        pod(json!({"initContainers": init, "containers": [{"name": "main", "image": "busybox"}]}))
    }

    fn instance(id: &str, state: RunState, exit_code: i32, restart_count: i32) -> Instance {
        Instance {
            id: id.into(),
            state,
            exit_code,
            reason: String::new(),
            message: String::new(),
            started_at: 10 + restart_count as i64,
            finished_at: if state == RunState::Exited { 20 + restart_count as i64 } else { 0 },
            image: "busybox".into(),
            image_ref: "sha256:x".into(),
            restart_count,
            log_path: String::new(),
        }
    }

    fn sandbox(id: &str, attempt: u32, ready: bool) -> SandboxView {
        SandboxView { id: id.into(), attempt, ready, ips: vec!["10.0.0.2".into()], created_at: attempt as i64 }
    }

    fn status(sandboxes: Vec<SandboxView>, containers: &[(&str, Instance)]) -> PodStatus {
        let mut status = PodStatus { sandboxes, ..Default::default() };
        for (name, instance) in containers {
            status.containers.entry(name.to_string()).or_default().push(instance.clone());
        }
        status
    }

    fn start(name: &str, restart_count: i32, after_exit: Option<i64>) -> StartContainer {
        StartContainer { name: name.into(), restart_count, after_exit }
    }

    fn healthy() -> HashMap<String, Kind> {
        HashMap::new()
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_its_containers_in_spec_order() {
        let actions = compute_pod_actions(&app(&["a", "b"], "Always"), &PodStatus::default(), &healthy());
        assert_eq!(actions.create_sandbox, Some(0));
        assert_eq!(actions.start, vec![start("a", 0, None), start("b", 0, None)]);
    }

    #[test]
    fn init_containers_run_one_at_a_time_before_the_app() {
        let pod = with_init(&["first", "second"]);
        let ready = || vec![sandbox("s", 0, true)];
        assert_eq!(compute_pod_actions(&pod, &PodStatus::default(), &healthy()).start, vec![start("first", 0, None)]);
        let running = status(ready(), &[("first", instance("i1", RunState::Running, 0, 0))]);
        assert!(compute_pod_actions(&pod, &running, &healthy()).is_empty(), "waits for the running one");
        let done = status(ready(), &[("first", instance("i1", RunState::Exited, 0, 0))]);
        assert_eq!(compute_pod_actions(&pod, &done, &healthy()).start, vec![start("second", 0, None)]);
        let all_done = status(ready(), &[("first", instance("i1", RunState::Exited, 0, 0)), ("second", instance("i2", RunState::Exited, 0, 0))]);
        assert_eq!(compute_pod_actions(&pod, &all_done, &healthy()).start, vec![start("main", 0, None)]);
    }

    #[test]
    fn a_created_init_container_is_started_not_waited_for() {
        let pod = with_init(&["first"]);
        let created = status(vec![sandbox("s", 0, true)], &[("first", instance("i1", RunState::Created, 0, 0))]);
        assert_eq!(compute_pod_actions(&pod, &created, &healthy()).start_created, vec!["i1".to_string()]);
    }

    #[test]
    fn a_failed_init_container_restarts_unless_the_policy_is_never() {
        let failed = status(vec![sandbox("s", 0, true)], &[("first", instance("i1", RunState::Exited, 1, 0))]);
        assert_eq!(compute_pod_actions(&with_init(&["first"]), &failed, &healthy()).start, vec![start("first", 1, Some(20))]);
        let mut never = with_init(&["first"]);
        never.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        assert!(compute_pod_actions(&never, &failed, &healthy()).is_empty());
    }

    #[test]
    fn exited_containers_restart_by_policy() {
        let exited = |code| status(vec![sandbox("s", 0, true)], &[("main", instance("c", RunState::Exited, code, 2))]);
        for (policy, code, restarts) in [("Always", 0, true), ("Always", 1, true), ("OnFailure", 0, false), ("OnFailure", 1, true), ("Never", 0, false), ("Never", 1, false)] {
            let actions = compute_pod_actions(&app(&["main"], policy), &exited(code), &healthy());
            let expected = if restarts { vec![start("main", 3, Some(22))] } else { vec![] };
            assert_eq!(actions.start, expected, "{policy} after exit code {code}");
        }
    }

    #[test]
    fn unhealthy_containers_are_killed_and_healthy_ones_left_alone() {
        let running = status(vec![sandbox("s", 0, true)], &[("main", instance("c", RunState::Running, 0, 0))]);
        assert!(compute_pod_actions(&app(&["main"], "Always"), &running, &healthy()).is_empty());
        let unhealthy = HashMap::from([("c".to_string(), Kind::Liveness)]);
        let actions = compute_pod_actions(&app(&["main"], "Always"), &running, &unhealthy);
        assert_eq!(actions.kill, vec![KillContainer { id: "c".into(), name: "main".into(), reason: Kind::Liveness }]);
    }

    #[test]
    fn a_created_app_container_is_started() {
        let created = status(vec![sandbox("s", 0, true)], &[("main", instance("c", RunState::Created, 0, 0))]);
        assert_eq!(compute_pod_actions(&app(&["main"], "Always"), &created, &healthy()).start_created, vec!["c".to_string()]);
    }

    #[test]
    fn a_dead_sandbox_is_replaced_and_restart_counts_go_on() {
        let dead = status(vec![sandbox("old", 1, false)], &[("main", instance("c", RunState::Exited, 137, 4))]);
        let actions = compute_pod_actions(&app(&["main"], "Always"), &dead, &healthy());
        assert_eq!(actions.remove_sandboxes, vec!["old".to_string()]);
        assert_eq!(actions.create_sandbox, Some(2));
        assert_eq!(actions.start, vec![start("main", 5, None)], "a new sandbox starts at once");
    }

    #[test]
    fn a_finished_pod_is_stopped_and_never_restarted() {
        let mut finished = app(&["main"], "Always");
        finished.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        let up = status(vec![sandbox("s", 0, true)], &[("main", instance("c", RunState::Running, 0, 0))]);
        assert_eq!(compute_pod_actions(&finished, &up, &healthy()), PodActions { kill_pod: true, ..Default::default() });
        assert!(compute_pod_actions(&finished, &PodStatus::default(), &healthy()).is_empty(), "no new sandbox for a finished pod");
    }

    #[test]
    fn only_the_newest_two_instances_of_a_name_are_kept() {
        let mut many = status(vec![sandbox("s", 0, true)], &[]);
        many.containers.insert("main".into(), vec![instance("c3", RunState::Running, 0, 3), instance("c2", RunState::Exited, 1, 2), instance("c1", RunState::Exited, 1, 1), instance("c0", RunState::Exited, 1, 0)]);
        assert_eq!(compute_pod_actions(&app(&["main"], "Always"), &many, &healthy()).remove, vec!["c1".to_string(), "c0".to_string()]);
    }
}
