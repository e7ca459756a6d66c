//! The CRI v1 service (`runtime.v1` RuntimeService and ImageService) on a
//! unix socket, over the runtime, the image store, pod sandboxes and the pod
//! network.
//!
//! - [`service`]: the operations ([`CriService`]).
//! - [`grpc`]: the gRPC traits over it ([`CriServer`]).
//! - [`container_spec`]: a container's runtime spec from its CRI config.
//! - [`records`]: what is kept per container; [`convert`]: CRI messages.
//! - [`streaming`]: the HTTP/WebSocket server behind Exec's URL.

pub mod container_spec;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod records;
pub mod service;
pub mod streaming;

use std::future::Future;
use std::path::Path;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tonic::transport::{Channel, Endpoint, Uri};

pub use error::CriError;
pub use grpc::CriServer;
pub use k8s_cri::v1 as api;
pub use service::{CriConfig, CriService};

/// Where the service listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/r8s/cri.sock";

/// Serves CRI on the unix socket `socket` until `shutdown` completes. A stale
/// socket file is replaced; the file is removed at the end.
pub async fn serve(server: CriServer, socket: &Path, shutdown: impl Future<Output = ()>) -> Result<(), CriError> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(error::io(format!("creating {}", dir.display())))?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error::io(format!("removing {}", socket.display()))(e)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(socket).map_err(error::io(format!("binding {}", socket.display())))?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let result = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(server.clone()))
        .add_service(ImageServiceServer::new(server))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(socket);
    result.map_err(|e| CriError::Io { what: "serving CRI".into(), source: std::io::Error::other(e) })
}

/// A gRPC channel to a CRI service on the unix socket `socket` (r8s's, or
/// containerd's).
pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
}

/// Both CRI clients over one channel.
#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl CriClient {
    pub async fn connect(socket: &Path) -> Result<Self, tonic::transport::Error> {
        let channel = connect(socket).await?;
        Ok(Self { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) })
    }
}
