//! The CRI v1 service (`runtime.v1` RuntimeService and ImageService) on a
//! unix socket, over the runtime, the image store, pod sandboxes and the pod
//! network.
//!
//! - [`service`]: the operations ([`CriService`]).
//! - [`grpc`]: the gRPC traits over it ([`CriServer`]).
//! - [`container_spec`]: a container's runtime spec from its CRI config.
//! - [`records`]: what is kept per container; [`live`]: their states in
//!   memory and the events of their changes; [`convert`]: CRI messages.
//! - [`streaming`]: the HTTP/WebSocket server behind Exec's URL.

pub mod container_spec;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod live;
pub mod records;
pub mod service;
pub mod streaming;

use std::future::Future;
use std::path::Path;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

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
