//! One behaviour for every runtime behind the traits: the error codes,
//! idempotence and events the node agent relies on, checked against r8s's
//! runtime (as root, in `r8s/tests/cri_events.rs`) and against the fake
//! (here), so that the fake stays a faithful stand-in.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tonic::Code;

use crate::{api, Cri};

/// What a runtime under test needs from its caller.
pub struct Fixture {
    /// An image the runtime has, with `sleep`.
    pub image: String,
    /// A prefix that keeps this run's pod names apart from others'.
    pub prefix: String,
}

fn pod(fixture: &Fixture, name: &str) -> api::PodSandboxConfig {
    let name = format!("{}{name}", fixture.prefix);
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata { name: name.clone(), uid: format!("uid-{name}"), namespace: "conformance".into(), attempt: 0 }),
        hostname: name,
        labels: HashMap::from([("suite".to_string(), "conformance".to_string())]),
        ..Default::default()
    }
}

fn sleeper(fixture: &Fixture, name: &str) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(api::ImageSpec { image: fixture.image.clone(), ..Default::default() }),
        command: vec!["sleep".into(), "60".into()],
        labels: HashMap::from([("role".to_string(), name.to_string())]),
        ..Default::default()
    }
}

fn state(status: &api::ContainerStatusResponse) -> api::ContainerState {
    api::ContainerState::try_from(status.status.as_ref().map_or(-1, |s| s.state)).unwrap_or(api::ContainerState::ContainerUnknown)
}

/// Runs every check; panics with what differs.
pub async fn run(cri: &Cri, fixture: &Fixture) {
    let runtime = &cri.runtime;
    let mut events = runtime.get_container_events().await.expect("GetContainerEvents");

    let sandbox = runtime.run_pod_sandbox(pod(fixture, "a"), "").await.expect("RunPodSandbox");
    assert_eq!(runtime.run_pod_sandbox(pod(fixture, "a"), "").await.expect_err("the same pod twice").code(), Code::AlreadyExists);
    let id = runtime.create_container(&sandbox, sleeper(fixture, "main"), None).await.expect("CreateContainer");
    assert_eq!(runtime.create_container(&sandbox, sleeper(fixture, "main"), None).await.expect_err("the same name twice").code(), Code::AlreadyExists);
    assert_eq!(state(&runtime.container_status(&id, false).await.expect("ContainerStatus")), api::ContainerState::ContainerCreated);
    runtime.start_container(&id).await.expect("StartContainer");
    assert_eq!(state(&runtime.container_status(&id, false).await.unwrap()), api::ContainerState::ContainerRunning, "running once StartContainer returns");

    let by_label = api::ContainerFilter { label_selector: HashMap::from([("role".to_string(), "main".to_string())]), pod_sandbox_id: sandbox.clone(), ..Default::default() };
    assert_eq!(runtime.list_containers(Some(by_label)).await.unwrap().iter().map(|c| c.id.clone()).collect::<Vec<_>>(), [id.clone()]);
    let ready = api::PodSandboxFilter { id: sandbox.clone(), state: Some(api::PodSandboxStateValue { state: api::PodSandboxState::SandboxReady as i32 }), ..Default::default() };
    assert_eq!(runtime.list_pod_sandbox(Some(ready)).await.unwrap().len(), 1);

    runtime.stop_container(&id, 0).await.expect("StopContainer");
    assert_eq!(state(&runtime.container_status(&id, false).await.unwrap()), api::ContainerState::ContainerExited, "exited once StopContainer returns");
    runtime.stop_container(&id, 0).await.expect("stopping a stopped container is fine");

    // Each change was an event for the container, each with its sandbox's snapshot, in order.
    let mut seen = Vec::new();
    let mut last_stamp = 0;
    while seen.len() < 5 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next()).await.expect("an event within 10 s").expect("the stream goes on").expect("an event");
        assert!(event.created_at > last_stamp, "events in order");
        last_stamp = event.created_at;
        assert_eq!(event.pod_sandbox_status.as_ref().map(|s| s.id.as_str()), Some(sandbox.as_str()), "a snapshot of the sandbox");
        seen.push((event.container_id == sandbox, api::ContainerEventType::try_from(event.container_event_type).expect("a known type")));
    }
    use api::ContainerEventType::*;
    assert_eq!(seen, [(true, ContainerCreatedEvent), (true, ContainerStartedEvent), (false, ContainerCreatedEvent), (false, ContainerStartedEvent), (false, ContainerStoppedEvent)]);

    runtime.remove_container(&id).await.expect("RemoveContainer");
    runtime.remove_container(&id).await.expect("removing a removed container is fine");
    assert_eq!(runtime.container_status(&id, false).await.expect_err("a removed container").code(), Code::NotFound);
    assert_eq!(runtime.start_container("nosuch").await.expect_err("an unknown container").code(), Code::NotFound);

    runtime.stop_pod_sandbox(&sandbox).await.expect("StopPodSandbox");
    assert_eq!(runtime.create_container(&sandbox, sleeper(fixture, "late"), None).await.expect_err("a stopped sandbox").code(), Code::FailedPrecondition);
    runtime.remove_pod_sandbox(&sandbox).await.expect("RemovePodSandbox");
    runtime.remove_pod_sandbox(&sandbox).await.expect("removing a removed sandbox is fine");
    runtime.stop_pod_sandbox(&sandbox).await.expect("stopping a removed sandbox is fine");
    assert_eq!(runtime.pod_sandbox_status(&sandbox, false).await.expect_err("a removed sandbox").code(), Code::NotFound);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeConfig, FakeRuntime};

    #[tokio::test]
    async fn the_fake_runtime_conforms() {
        let cri = Cri::new(FakeRuntime::new(FakeConfig::default()));
        run(&cri, &Fixture { image: "busybox".into(), prefix: String::new() }).await;
    }
}
