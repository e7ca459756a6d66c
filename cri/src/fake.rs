//! An in-memory CRI runtime: sandboxes and containers that exist only as
//! records, with CRI's states, error codes and events. The node agent runs
//! over it unchanged for tests and hollow nodes (as kubemark runs the real
//! kubelet over a fake runtime).
//!
//! A container runs from StartContainer until it is stopped, unless its
//! pod carries the annotation [`EXIT_CODE_ANNOTATION`]: then it exits with
//! that code after [`FakeConfig::run_for`] (so Jobs can complete). Images
//! are always present; exec answers exit code 0; streaming (exec, attach,
//! port-forward) is not offered.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tonic::Status;

use crate::events::{now_nanos, EventHub};
use crate::{api, filter, EventStream, ImageService, Result, RuntimeService};

/// A pod annotation: its containers exit with this code after running for [`FakeConfig::run_for`].
pub const EXIT_CODE_ANNOTATION: &str = "hollow.r8s.io/exit-code";

#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// `containerRuntimeVersion` is `<name>://<version>`.
    pub name: String,
    pub version: String,
    /// Where pod addresses come from, one after the other.
    pub pod_network: Ipv4Addr,
    /// How long StartContainer takes.
    pub start_delay: Duration,
    /// How long an annotated container runs before it exits.
    pub run_for: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self { name: "fake".into(), version: "0".into(), pod_network: Ipv4Addr::new(100, 64, 0, 0), start_delay: Duration::ZERO, run_for: Duration::from_millis(100) }
    }
}

struct Sandbox {
    status: api::PodSandboxStatus,
    /// Where its containers' logs would go.
    log_directory: String,
}

struct Container {
    status: api::ContainerStatus,
    sandbox_id: String,
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, Container>,
    next_id: u64,
    next_address: u32,
}

/// The fake runtime. Share it behind an `Arc`.
pub struct FakeRuntime {
    config: FakeConfig,
    state: Mutex<State>,
    events: EventHub,
    me: Weak<FakeRuntime>,
}

fn not_found(what: &str, id: &str) -> Status {
    Status::not_found(format!("no {what} {id:?}"))
}

fn state_name(state: i32) -> api::ContainerState {
    api::ContainerState::try_from(state).unwrap_or(api::ContainerState::ContainerUnknown)
}

impl FakeRuntime {
    pub fn new(config: FakeConfig) -> Arc<Self> {
        Arc::new_cyclic(|me| Self { config, state: Mutex::new(State::default()), events: EventHub::default(), me: me.clone() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes a change of `id` with a snapshot of its sandbox.
    fn publish(&self, state: &State, id: &str, kind: api::ContainerEventType, sandbox_id: &str) {
        let Some(sandbox) = state.sandboxes.get(sandbox_id) else { return };
        let containers_statuses = state.containers.values().filter(|c| c.sandbox_id == sandbox_id).map(|c| c.status.clone()).collect();
        self.events.publish(api::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: 0,
            pod_sandbox_status: Some(sandbox.status.clone()),
            containers_statuses,
        });
    }

    /// Ends a running container with `code` (a crash, a finished program, an OOM kill with reason `OOMKilled`).
    pub fn exit(&self, id: &str, code: i32, reason: &str) {
        let mut state = self.lock();
        let Some(container) = state.containers.get_mut(id) else { return };
        if container.status.state != api::ContainerState::ContainerRunning as i32 {
            return;
        }
        container.status.state = api::ContainerState::ContainerExited as i32;
        container.status.exit_code = code;
        container.status.reason = reason.to_string();
        container.status.finished_at = now_nanos();
        let sandbox_id = container.sandbox_id.clone();
        self.publish(&state, id, api::ContainerEventType::ContainerStoppedEvent, &sandbox_id);
    }

    fn new_id(state: &mut State) -> String {
        state.next_id += 1;
        format!("{:064x}", state.next_id)
    }

    fn sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        self.lock().sandboxes.get(id).map(|s| s.status.clone()).ok_or_else(|| not_found("pod sandbox", id))
    }
}

#[async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(&self) -> Result<api::VersionResponse> {
        Ok(api::VersionResponse { version: "0.1.0".into(), runtime_name: self.config.name.clone(), runtime_version: self.config.version.clone(), runtime_api_version: "v1".into() })
    }

    async fn status(&self, _verbose: bool) -> Result<api::StatusResponse> {
        let ready = |kind: &str| api::RuntimeCondition { r#type: kind.into(), status: true, ..Default::default() };
        Ok(api::StatusResponse { status: Some(api::RuntimeStatus { conditions: vec![ready("RuntimeReady"), ready("NetworkReady")] }), ..Default::default() })
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig, _runtime_handler: &str) -> Result<String> {
        let metadata = config.metadata.clone().ok_or_else(|| Status::invalid_argument("pod sandbox metadata is missing"))?;
        let mut state = self.lock();
        let taken = state.sandboxes.values().any(|s| s.status.metadata.as_ref() == Some(&metadata) && s.status.state == api::PodSandboxState::SandboxReady as i32);
        if taken {
            return Err(Status::already_exists(format!("pod sandbox {}/{} (attempt {}) exists", metadata.namespace, metadata.name, metadata.attempt)));
        }
        let id = Self::new_id(&mut state);
        state.next_address += 1;
        let address = Ipv4Addr::from(u32::from(self.config.pod_network) + state.next_address);
        let status = api::PodSandboxStatus {
            id: id.clone(),
            metadata: Some(metadata),
            state: api::PodSandboxState::SandboxReady as i32,
            created_at: now_nanos(),
            network: Some(api::PodSandboxNetworkStatus { ip: address.to_string(), additional_ips: Vec::new() }),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            ..Default::default()
        };
        state.sandboxes.insert(id.clone(), Sandbox { status, log_directory: config.log_directory });
        self.publish(&state, &id, api::ContainerEventType::ContainerCreatedEvent, &id);
        self.publish(&state, &id, api::ContainerEventType::ContainerStartedEvent, &id);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let Some(sandbox) = state.sandboxes.get_mut(id) else { return Ok(()) };
        sandbox.status.state = api::PodSandboxState::SandboxNotready as i32;
        let now = now_nanos();
        for container in state.containers.values_mut().filter(|c| c.sandbox_id == id) {
            if container.status.state == api::ContainerState::ContainerRunning as i32 {
                container.status.state = api::ContainerState::ContainerExited as i32;
                container.status.exit_code = 137;
                container.status.reason = "Error".into();
                container.status.finished_at = now;
            }
        }
        self.publish(&state, id, api::ContainerEventType::ContainerStoppedEvent, id);
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        if !state.sandboxes.contains_key(id) {
            return Ok(());
        }
        state.containers.retain(|_, c| c.sandbox_id != id);
        self.publish(&state, id, api::ContainerEventType::ContainerDeletedEvent, id);
        state.sandboxes.remove(id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str, _verbose: bool) -> Result<api::PodSandboxStatusResponse> {
        let status = self.sandbox_status(id)?;
        let containers_statuses = self.lock().containers.values().filter(|c| c.sandbox_id == id).map(|c| c.status.clone()).collect();
        Ok(api::PodSandboxStatusResponse { status: Some(status), containers_statuses, timestamp: now_nanos(), ..Default::default() })
    }

    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>> {
        let filter = filter.unwrap_or_default();
        let state = self.lock();
        let sandboxes = state.sandboxes.values().map(|s| api::PodSandbox {
            id: s.status.id.clone(),
            metadata: s.status.metadata.clone(),
            state: s.status.state,
            created_at: s.status.created_at,
            labels: s.status.labels.clone(),
            annotations: s.status.annotations.clone(),
            runtime_handler: String::new(),
        });
        Ok(sandboxes.filter(|s| filter::sandbox_matches(s, &filter)).collect())
    }

    async fn create_container(&self, sandbox_id: &str, config: api::ContainerConfig, _sandbox_config: Option<api::PodSandboxConfig>) -> Result<String> {
        let metadata = config.metadata.clone().ok_or_else(|| Status::invalid_argument("container metadata is missing"))?;
        let mut state = self.lock();
        let sandbox = state.sandboxes.get(sandbox_id).ok_or_else(|| not_found("pod sandbox", sandbox_id))?;
        if sandbox.status.state != api::PodSandboxState::SandboxReady as i32 {
            return Err(Status::failed_precondition(format!("pod sandbox {sandbox_id} is not ready")));
        }
        let log_path = if sandbox.log_directory.is_empty() { String::new() } else { format!("{}/{}", sandbox.log_directory, config.log_path) };
        if state.containers.values().any(|c| c.sandbox_id == sandbox_id && c.status.metadata.as_ref() == Some(&metadata)) {
            return Err(Status::already_exists(format!("container name {:?} (attempt {}) is in use", metadata.name, metadata.attempt)));
        }
        let id = Self::new_id(&mut state);
        let image = config.image.clone().unwrap_or_default();
        let status = api::ContainerStatus {
            id: id.clone(),
            metadata: Some(metadata),
            state: api::ContainerState::ContainerCreated as i32,
            created_at: now_nanos(),
            image_ref: format!("fake://{}", image.image),
            image: Some(image),
            labels: config.labels,
            annotations: config.annotations,
            log_path,
            ..Default::default()
        };
        state.containers.insert(id.clone(), Container { status, sandbox_id: sandbox_id.to_string() });
        self.publish(&state, &id, api::ContainerEventType::ContainerCreatedEvent, sandbox_id);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        if !self.config.start_delay.is_zero() {
            tokio::time::sleep(self.config.start_delay).await;
        }
        let mut state = self.lock();
        let container = state.containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
        if container.status.state != api::ContainerState::ContainerCreated as i32 {
            return Err(Status::failed_precondition(format!("container {id} is {:?}, not created", state_name(container.status.state))));
        }
        container.status.state = api::ContainerState::ContainerRunning as i32;
        container.status.started_at = now_nanos();
        let sandbox_id = container.sandbox_id.clone();
        let exit_code = state.sandboxes.get(&sandbox_id).and_then(|s| s.status.annotations.get(EXIT_CODE_ANNOTATION)).and_then(|c| c.parse::<i32>().ok());
        self.publish(&state, id, api::ContainerEventType::ContainerStartedEvent, &sandbox_id);
        if let (Some(code), Some(me)) = (exit_code, self.me.upgrade()) {
            let (id, run_for) = (id.to_string(), self.config.run_for);
            tokio::spawn(async move {
                tokio::time::sleep(run_for).await;
                me.exit(&id, code, if code == 0 { "Completed" } else { "Error" });
            });
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, _timeout_seconds: i64) -> Result<()> {
        let running = {
            let state = self.lock();
            let container = state.containers.get(id).ok_or_else(|| not_found("container", id))?;
            container.status.state == api::ContainerState::ContainerRunning as i32
        };
        if running {
            // As a program that ends on SIGTERM.
            self.exit(id, 143, "Error");
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let Some(container) = state.containers.remove(id) else { return Ok(()) };
        self.publish(&state, id, api::ContainerEventType::ContainerDeletedEvent, &container.sandbox_id);
        Ok(())
    }

    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>> {
        let filter = filter.unwrap_or_default();
        let state = self.lock();
        let containers = state.containers.values().map(|c| api::Container {
            id: c.status.id.clone(),
            pod_sandbox_id: c.sandbox_id.clone(),
            metadata: c.status.metadata.clone(),
            image: c.status.image.clone(),
            image_ref: c.status.image_ref.clone(),
            state: c.status.state,
            created_at: c.status.created_at,
            labels: c.status.labels.clone(),
            annotations: c.status.annotations.clone(),
            image_id: c.status.image_ref.clone(),
        });
        Ok(containers.filter(|c| filter::container_matches(c, &filter)).collect())
    }

    async fn container_status(&self, id: &str, _verbose: bool) -> Result<api::ContainerStatusResponse> {
        let status = self.lock().containers.get(id).map(|c| c.status.clone()).ok_or_else(|| not_found("container", id))?;
        Ok(api::ContainerStatusResponse { status: Some(status), info: Default::default() })
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.container_status(id, false).await.map(drop)
    }

    async fn exec_sync(&self, id: &str, _cmd: Vec<String>, _timeout_seconds: i64) -> Result<api::ExecSyncResponse> {
        self.container_status(id, false).await?;
        Ok(api::ExecSyncResponse { stdout: Vec::new(), stderr: Vec::new(), exit_code: 0 })
    }

    async fn exec(&self, _request: api::ExecRequest) -> Result<String> {
        Err(Status::unimplemented("the fake runtime has no streaming server (exec)"))
    }

    async fn attach(&self, _request: api::AttachRequest) -> Result<String> {
        Err(Status::unimplemented("the fake runtime has no streaming server (attach)"))
    }

    async fn get_container_events(&self) -> Result<EventStream> {
        use futures::StreamExt;
        Ok(self.events.stream().boxed())
    }
}

#[async_trait]
impl ImageService for FakeRuntime {
    async fn list_images(&self, _filter: Option<api::ImageFilter>) -> Result<Vec<api::Image>> {
        Ok(Vec::new())
    }

    /// Every image is present.
    async fn image_status(&self, image: api::ImageSpec, _verbose: bool) -> Result<api::ImageStatusResponse> {
        let found = api::Image { id: format!("fake://{}", image.image), repo_tags: vec![image.image.clone()], spec: Some(image), ..Default::default() };
        Ok(api::ImageStatusResponse { image: Some(found), info: Default::default() })
    }

    async fn pull_image(&self, image: api::ImageSpec, _auth: Option<api::AuthConfig>, _sandbox_config: Option<api::PodSandboxConfig>) -> Result<String> {
        Ok(format!("fake://{}", image.image))
    }

    async fn remove_image(&self, _image: api::ImageSpec) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn pod(name: &str, annotations: &[(&str, &str)]) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "default".into(), attempt: 0 }),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    fn container(name: &str) -> api::ContainerConfig {
        api::ContainerConfig { metadata: Some(api::ContainerMetadata { name: name.into(), attempt: 0 }), image: Some(api::ImageSpec { image: "busybox".into(), ..Default::default() }), ..Default::default() }
    }

    fn kind(event: &api::ContainerEventResponse) -> api::ContainerEventType {
        api::ContainerEventType::try_from(event.container_event_type).unwrap()
    }

    #[tokio::test]
    async fn a_container_lives_through_its_states_with_an_event_each() {
        let fake = FakeRuntime::new(FakeConfig::default());
        let mut events = fake.get_container_events().await.unwrap();
        let sandbox = fake.run_pod_sandbox(pod("web", &[]), "").await.unwrap();
        let id = fake.create_container(&sandbox, container("main"), None).await.unwrap();
        fake.start_container(&id).await.unwrap();
        let status = fake.container_status(&id, false).await.unwrap().status.unwrap();
        assert_eq!(status.state, api::ContainerState::ContainerRunning as i32);
        fake.stop_container(&id, 1).await.unwrap();
        let status = fake.container_status(&id, false).await.unwrap().status.unwrap();
        assert_eq!((status.state, status.exit_code), (api::ContainerState::ContainerExited as i32, 143));
        fake.remove_container(&id).await.unwrap();
        assert_eq!(fake.container_status(&id, false).await.unwrap_err().code(), tonic::Code::NotFound);
        let mut kinds = Vec::new();
        for _ in 0..6 {
            kinds.push(kind(&events.next().await.unwrap().unwrap()));
        }
        use api::ContainerEventType::*;
        assert_eq!(kinds, [ContainerCreatedEvent, ContainerStartedEvent, ContainerCreatedEvent, ContainerStartedEvent, ContainerStoppedEvent, ContainerDeletedEvent]);
    }

    #[tokio::test]
    async fn annotated_pods_exit_with_their_code_and_names_are_unique() {
        let fake = FakeRuntime::new(FakeConfig { run_for: Duration::from_millis(10), ..Default::default() });
        let sandbox = fake.run_pod_sandbox(pod("job", &[(EXIT_CODE_ANNOTATION, "3")]), "").await.unwrap();
        assert_eq!(fake.run_pod_sandbox(pod("job", &[]), "").await.unwrap_err().code(), tonic::Code::AlreadyExists);
        let id = fake.create_container(&sandbox, container("main"), None).await.unwrap();
        assert_eq!(fake.create_container(&sandbox, container("main"), None).await.unwrap_err().code(), tonic::Code::AlreadyExists);
        fake.start_container(&id).await.unwrap();
        assert_eq!(fake.start_container(&id).await.unwrap_err().code(), tonic::Code::FailedPrecondition);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = fake.container_status(&id, false).await.unwrap().status.unwrap();
        assert_eq!((status.state, status.exit_code, status.reason.as_str()), (api::ContainerState::ContainerExited as i32, 3, "Error"));
        let running = api::ContainerFilter { state: Some(api::ContainerStateValue { state: api::ContainerState::ContainerRunning as i32 }), ..Default::default() };
        assert!(fake.list_containers(Some(running)).await.unwrap().is_empty());
        fake.stop_pod_sandbox(&sandbox).await.unwrap();
        assert_eq!(fake.create_container(&sandbox, container("again"), None).await.unwrap_err().code(), tonic::Code::FailedPrecondition);
        fake.remove_pod_sandbox(&sandbox).await.unwrap();
        assert!(fake.list_pod_sandbox(None).await.unwrap().is_empty());
        assert!(fake.list_containers(None).await.unwrap().is_empty(), "the sandbox's containers go with it");
    }
}
