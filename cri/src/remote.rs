//! CRI over gRPC on a unix socket: r8s's runtime (`r8s runtime serve`) or
//! any other (containerd).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{api, CriError, EventStream, ImageService, Result, RuntimeService};

/// The largest message accepted (lists of many containers, image configs).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Both CRI clients over one channel. Cheap to clone.
#[derive(Clone)]
pub struct Remote {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// The socket path of `unix:///run/r8s/cri.sock` (a bare path is accepted too).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(CriError::Endpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// The URI is required by tonic but unused: the connector dials the socket.
fn endpoint() -> Endpoint {
    Endpoint::from_static("http://[::]:50051").connect_timeout(Duration::from_secs(5))
}

fn dialer(socket: PathBuf) -> impl tower::Service<Uri, Response = TokioIo<tokio::net::UnixStream>, Error = std::io::Error, Future: Send> + Clone {
    tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
    })
}

impl Remote {
    fn over(channel: Channel) -> Self {
        Self {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
        }
    }

    /// Connects on first use, and again after the runtime restarts.
    pub fn connect_lazy(endpoint_url: &str) -> Result<Self, CriError> {
        let socket = socket_path(endpoint_url)?;
        Ok(Self::over(endpoint().connect_with_connector_lazy(dialer(socket))))
    }

    /// Connects now: fails if nothing serves on `socket`.
    pub async fn connect(socket: &Path) -> Result<Self, CriError> {
        let channel = endpoint()
            .connect_with_connector(dialer(socket.to_path_buf()))
            .await
            .map_err(|source| CriError::Connect { path: socket.to_path_buf(), source })?;
        Ok(Self::over(channel))
    }
}

#[async_trait]
impl RuntimeService for Remote {
    async fn version(&self) -> Result<api::VersionResponse> {
        Ok(self.runtime.clone().version(api::VersionRequest { version: "v1".into() }).await?.into_inner())
    }

    async fn status(&self, verbose: bool) -> Result<api::StatusResponse> {
        Ok(self.runtime.clone().status(api::StatusRequest { verbose }).await?.into_inner())
    }

    async fn run_pod_sandbox(&self, config: api::PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        let request = api::RunPodSandboxRequest { config: Some(config), runtime_handler: runtime_handler.to_string() };
        Ok(self.runtime.clone().run_pod_sandbox(request).await?.into_inner().pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.runtime.clone().stop_pod_sandbox(api::StopPodSandboxRequest { pod_sandbox_id: id.to_string() }).await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.runtime.clone().remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id.to_string() }).await?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str, verbose: bool) -> Result<api::PodSandboxStatusResponse> {
        let request = api::PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose };
        Ok(self.runtime.clone().pod_sandbox_status(request).await?.into_inner())
    }

    async fn list_pod_sandbox(&self, filter: Option<api::PodSandboxFilter>) -> Result<Vec<api::PodSandbox>> {
        Ok(self.runtime.clone().list_pod_sandbox(api::ListPodSandboxRequest { filter }).await?.into_inner().items)
    }

    async fn create_container(&self, sandbox_id: &str, config: api::ContainerConfig, sandbox_config: Option<api::PodSandboxConfig>) -> Result<String> {
        let request = api::CreateContainerRequest { pod_sandbox_id: sandbox_id.to_string(), config: Some(config), sandbox_config };
        Ok(self.runtime.clone().create_container(request).await?.into_inner().container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.runtime.clone().start_container(api::StartContainerRequest { container_id: id.to_string() }).await?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        self.runtime.clone().stop_container(api::StopContainerRequest { container_id: id.to_string(), timeout: timeout_seconds }).await?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.runtime.clone().remove_container(api::RemoveContainerRequest { container_id: id.to_string() }).await?;
        Ok(())
    }

    async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>> {
        Ok(self.runtime.clone().list_containers(api::ListContainersRequest { filter }).await?.into_inner().containers)
    }

    async fn container_status(&self, id: &str, verbose: bool) -> Result<api::ContainerStatusResponse> {
        let request = api::ContainerStatusRequest { container_id: id.to_string(), verbose };
        Ok(self.runtime.clone().container_status(request).await?.into_inner())
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.runtime.clone().reopen_container_log(api::ReopenContainerLogRequest { container_id: id.to_string() }).await?;
        Ok(())
    }

    async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout_seconds: i64) -> Result<api::ExecSyncResponse> {
        let request = api::ExecSyncRequest { container_id: id.to_string(), cmd, timeout: timeout_seconds };
        Ok(self.runtime.clone().exec_sync(request).await?.into_inner())
    }

    async fn exec(&self, request: api::ExecRequest) -> Result<String> {
        Ok(self.runtime.clone().exec(request).await?.into_inner().url)
    }

    async fn attach(&self, request: api::AttachRequest) -> Result<String> {
        Ok(self.runtime.clone().attach(request).await?.into_inner().url)
    }

    async fn container_stats(&self, id: &str) -> Result<api::ContainerStats> {
        let reply = self.runtime.clone().container_stats(api::ContainerStatsRequest { container_id: id.to_string() }).await?.into_inner();
        reply.stats.ok_or_else(|| tonic::Status::not_found(format!("no stats for container {id}")))
    }

    async fn pod_sandbox_stats(&self, id: &str) -> Result<api::PodSandboxStats> {
        let reply = self.runtime.clone().pod_sandbox_stats(api::PodSandboxStatsRequest { pod_sandbox_id: id.to_string() }).await?.into_inner();
        reply.stats.ok_or_else(|| tonic::Status::not_found(format!("no stats for pod sandbox {id}")))
    }

    async fn port_forward(&self, request: api::PortForwardRequest) -> Result<String> {
        Ok(self.runtime.clone().port_forward(request).await?.into_inner().url)
    }

    async fn get_container_events(&self) -> Result<EventStream> {
        let stream = self.runtime.clone().get_container_events(api::GetEventsRequest {}).await?.into_inner();
        Ok(stream.boxed())
    }
}

#[async_trait]
impl ImageService for Remote {
    async fn list_images(&self, filter: Option<api::ImageFilter>) -> Result<Vec<api::Image>> {
        Ok(self.images.clone().list_images(api::ListImagesRequest { filter }).await?.into_inner().images)
    }

    async fn image_status(&self, image: api::ImageSpec, verbose: bool) -> Result<api::ImageStatusResponse> {
        Ok(self.images.clone().image_status(api::ImageStatusRequest { image: Some(image), verbose }).await?.into_inner())
    }

    async fn pull_image(&self, image: api::ImageSpec, auth: Option<api::AuthConfig>, sandbox_config: Option<api::PodSandboxConfig>) -> Result<String> {
        let request = api::PullImageRequest { image: Some(image), auth, sandbox_config };
        Ok(self.images.clone().pull_image(request).await?.into_inner().image_ref)
    }

    async fn remove_image(&self, image: api::ImageSpec) -> Result<()> {
        self.images.clone().remove_image(api::RemoveImageRequest { image: Some(image) }).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_unix_paths() {
        assert_eq!(socket_path("unix:///run/r8s/cri.sock").unwrap(), PathBuf::from("/run/r8s/cri.sock"));
        assert_eq!(socket_path("/run/x.sock").unwrap(), PathBuf::from("/run/x.sock"));
        assert!(matches!(socket_path("tcp://1.2.3.4:5"), Err(CriError::Endpoint(_))));
    }
}
