//! CRI's list filters, as every runtime must apply them: an id prefix, a
//! state, labels that must all match (and, for containers, a sandbox id prefix).

use crate::api;

pub fn sandbox_matches(sandbox: &api::PodSandbox, filter: &api::PodSandboxFilter) -> bool {
    (filter.id.is_empty() || sandbox.id.starts_with(&filter.id))
        && filter.state.as_ref().is_none_or(|s| s.state == sandbox.state)
        && filter.label_selector.iter().all(|(k, v)| sandbox.labels.get(k) == Some(v))
}

pub fn container_matches(container: &api::Container, filter: &api::ContainerFilter) -> bool {
    (filter.id.is_empty() || container.id.starts_with(&filter.id))
        && (filter.pod_sandbox_id.is_empty() || container.pod_sandbox_id.starts_with(&filter.pod_sandbox_id))
        && filter.state.as_ref().is_none_or(|s| s.state == container.state)
        && filter.label_selector.iter().all(|(k, v)| container.labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_by_prefix_state_and_every_label() {
        let container = api::Container {
            id: "abc123".into(),
            pod_sandbox_id: "pod9".into(),
            state: api::ContainerState::ContainerRunning as i32,
            labels: [("app".to_string(), "web".to_string()), ("tier".to_string(), "front".to_string())].into(),
            ..Default::default()
        };
        let running = Some(api::ContainerStateValue { state: api::ContainerState::ContainerRunning as i32 });
        let exited = Some(api::ContainerStateValue { state: api::ContainerState::ContainerExited as i32 });
        assert!(container_matches(&container, &api::ContainerFilter::default()));
        assert!(container_matches(&container, &api::ContainerFilter { id: "abc".into(), pod_sandbox_id: "pod".into(), state: running, ..Default::default() }));
        assert!(!container_matches(&container, &api::ContainerFilter { state: exited, ..Default::default() }));
        assert!(!container_matches(&container, &api::ContainerFilter { id: "abd".into(), ..Default::default() }));
        let selector = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(container_matches(&container, &api::ContainerFilter { label_selector: selector(&[("app", "web")]), ..Default::default() }));
        assert!(!container_matches(&container, &api::ContainerFilter { label_selector: selector(&[("app", "web"), ("x", "y")]), ..Default::default() }));
    }
}
