//! The seam between the node agent and a container runtime: CRI's two
//! services as traits, shaped as Kubernetes' `cri-api` interfaces
//! (`RuntimeService`, `ImageService`), with one gRPC implementation
//! ([`remote::Remote`], for r8s's runtime or containerd on a unix socket)
//! and, for tests and hollow nodes, an in-memory one ([`fake::FakeRuntime`]).
//!
//! Callers pass plain arguments and get CRI's messages back; errors are
//! gRPC `Status`es, whose codes (NotFound, AlreadyExists, ...) callers
//! branch on, as the kubelet does.

pub mod conformance;
pub mod events;
pub mod fake;
pub mod filter;
pub mod remote;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use k8s_cri::v1 as api;
pub use remote::Remote;

pub type Result<T, E = tonic::Status> = std::result::Result<T, E>;

/// The runtime's container events (CRI `GetContainerEvents`); the stream
/// ends when the runtime goes away.
pub type EventStream = BoxStream<'static, Result<api::ContainerEventResponse>>;

/// Why a runtime could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("container runtime endpoint {0:?}: only unix:///path endpoints are supported")]
    Endpoint(String),
    #[error("connecting to the container runtime at {path}: {source}")]
    Connect { path: std::path::PathBuf, source: tonic::transport::Error },
    #[error("{0}")]
    Call(#[from] tonic::Status),
}

fn unimplemented<T>(what: &str) -> Result<T> {
    Err(tonic::Status::unimplemented(format!("{what} is not implemented by this runtime")))
}

/// CRI's RuntimeService: pod sandboxes, containers, exec, events.
#[async_trait]
pub trait RuntimeService: Send + Sync + 'static {
    async fn version(&self) -> Result<api::VersionResponse>;
    async fn status(&self, verbose: bool) -> Result<api::StatusResponse>;
    /// Creates and starts a pod sandbox; its id.
    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig, runtime_handler: &str) -> Result<String>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str, verbose: bool) -> Result<api::PodSandboxStatusResponse>;
    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>>;
    /// Creates a container in a sandbox; its id.
    async fn create_container(&self, sandbox_id: &str, config: api::ContainerConfig, sandbox_config: Option<api::PodSandboxConfig>) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops a container: SIGTERM (or its stop signal), SIGKILL after `timeout_seconds`.
    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>>;
    async fn container_status(&self, id: &str, verbose: bool) -> Result<api::ContainerStatusResponse>;
    /// Asks the runtime to write a container's log to a new file at its path
    /// (the agent renamed the old one away).
    async fn reopen_container_log(&self, id: &str) -> Result<()>;
    async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout_seconds: i64) -> Result<api::ExecSyncResponse>;
    /// The URL that serves the exec's streams.
    async fn exec(&self, request: api::ExecRequest) -> Result<String>;
    /// The URL that serves the attach's streams.
    async fn attach(&self, request: api::AttachRequest) -> Result<String>;
    async fn container_stats(&self, id: &str) -> Result<api::ContainerStats> {
        let _ = id;
        unimplemented("ContainerStats")
    }
    async fn pod_sandbox_stats(&self, id: &str) -> Result<api::PodSandboxStats> {
        let _ = id;
        unimplemented("PodSandboxStats")
    }
    async fn port_forward(&self, request: api::PortForwardRequest) -> Result<String> {
        let _ = request;
        unimplemented("PortForward")
    }
    /// CRI `GetContainerEvents`.
    async fn get_container_events(&self) -> Result<EventStream> {
        unimplemented("GetContainerEvents")
    }
}

/// CRI's ImageService.
#[async_trait]
pub trait ImageService: Send + Sync + 'static {
    async fn list_images(&self, filter: Option<api::ImageFilter>) -> Result<Vec<api::Image>>;
    /// `verbose` fills `info` (the image's config, for Entrypoint and Cmd).
    async fn image_status(&self, image: api::ImageSpec, verbose: bool) -> Result<api::ImageStatusResponse>;
    /// Pulls an image; its reference.
    async fn pull_image(&self, image: api::ImageSpec, auth: Option<api::AuthConfig>, sandbox_config: Option<api::PodSandboxConfig>) -> Result<String>;
    async fn remove_image(&self, image: api::ImageSpec) -> Result<()>;
}

/// Both services of one runtime. Cheap to clone.
#[derive(Clone)]
pub struct Cri {
    pub runtime: Arc<dyn RuntimeService>,
    pub images: Arc<dyn ImageService>,
}

impl Cri {
    /// Both services of one implementation.
    pub fn new<T: RuntimeService + ImageService>(both: Arc<T>) -> Self {
        Self { runtime: both.clone(), images: both }
    }

    /// The runtime at `endpoint` (`unix:///run/r8s/cri.sock`), connected
    /// lazily: calls fail (and are retried by their callers) while it is not
    /// up, and the connection comes back after a runtime restart.
    pub fn connect(endpoint: &str) -> Result<Self, CriError> {
        Ok(Self::new(Arc::new(Remote::connect_lazy(endpoint)?)))
    }

    /// `"<runtime name>://<version>"`, as a Node's `containerRuntimeVersion`.
    pub async fn version(&self) -> Result<String, CriError> {
        let reply = self.runtime.version().await?;
        Ok(format!("{}://{}", reply.runtime_name, reply.runtime_version))
    }

    /// Whether the runtime reports itself ready (RuntimeReady and NetworkReady).
    pub async fn ready(&self) -> Result<bool, CriError> {
        let reply = self.runtime.status(false).await?;
        let conditions = reply.status.map(|s| s.conditions).unwrap_or_default();
        Ok(["RuntimeReady", "NetworkReady"].iter().all(|kind| conditions.iter().any(|c| c.r#type == *kind && c.status)))
    }
}
