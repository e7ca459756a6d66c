//! The CRI client: the agent's only way to the container runtime (gRPC on a
//! unix socket, CRI v1).

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1 as api;

/// Why CRI could not be reached or answered.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("container runtime endpoint {0:?}: only unix:///path endpoints are supported")]
    Endpoint(String),
    #[error("connecting to the container runtime at {path}: {source}")]
    Connect { path: PathBuf, source: tonic::transport::Error },
    #[error("{0}")]
    Call(#[from] tonic::Status),
}

/// Both CRI services over one connection. Cheap to clone.
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

/// The socket path of `unix:///run/r8s/cri.sock` (a bare path is accepted too).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(CriError::Endpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

impl Cri {
    /// Connects lazily: calls fail (and are retried by their callers) while the
    /// runtime is not up, and the channel reconnects after a runtime restart.
    pub fn connect(endpoint: &str) -> Result<Self, CriError> {
        let path = socket_path(endpoint)?;
        let connector_path = path.clone();
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = connector_path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }));
        let max = 64 * 1024 * 1024;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(max),
            images: ImageServiceClient::new(channel).max_decoding_message_size(max),
        })
    }

    /// `"<runtime name>://<version>"` as a Node's `containerRuntimeVersion`.
    pub async fn version(&self) -> Result<String, CriError> {
        let reply = self.runtime.clone().version(api::VersionRequest { version: "v1".into() }).await?.into_inner();
        Ok(format!("{}://{}", reply.runtime_name, reply.runtime_version))
    }

    /// Whether the runtime reports itself ready (RuntimeReady and NetworkReady).
    pub async fn ready(&self) -> Result<bool, CriError> {
        let reply = self.runtime.clone().status(api::StatusRequest { verbose: false }).await?.into_inner();
        let conditions = reply.status.map(|s| s.conditions).unwrap_or_default();
        Ok(["RuntimeReady", "NetworkReady"].iter().all(|kind| conditions.iter().any(|c| c.r#type == *kind && c.status)))
    }
}
