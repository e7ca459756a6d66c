//! The CRI service's errors and the gRPC status each becomes.

use tonic::{Code, Status};

use crate::cgroups::CgroupError;
use crate::image::registry::PullError;
use crate::image::ImageError;
use crate::network::{IpamError, NetworkError};
use crate::runtime::RuntimeError;
use crate::sandbox::SandboxError;

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Worded as containerd words it, so users find the same messages.
    #[error("failed to pull image {reference:?}: {source}")]
    Pull { reference: String, source: PullError },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CriError {
    let what = what.into();
    move |source| CriError::Io { what, source }
}

impl CriError {
    fn code(&self) -> Code {
        match self {
            CriError::InvalidArgument(_) => Code::InvalidArgument,
            CriError::NotFound(_) => Code::NotFound,
            CriError::AlreadyExists(_) => Code::AlreadyExists,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::Unimplemented(_) => Code::Unimplemented,
            CriError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CriError::Runtime(RuntimeError::NotFound(_)) => Code::NotFound,
            CriError::Runtime(RuntimeError::AlreadyExists(_)) => Code::AlreadyExists,
            CriError::Runtime(RuntimeError::WrongState { .. }) => Code::FailedPrecondition,
            CriError::Runtime(RuntimeError::InvalidId(_)) => Code::InvalidArgument,
            CriError::Runtime(RuntimeError::Create { not_found: true, .. }) => Code::InvalidArgument,
            CriError::Image(ImageError::NotFound(_)) => Code::NotFound,
            CriError::Image(ImageError::BadName(_)) => Code::InvalidArgument,
            CriError::Pull { source, .. } => match source {
                PullError::BadReference(_) => Code::InvalidArgument,
                PullError::Unauthenticated { .. } => Code::Unauthenticated,
                PullError::Denied { .. } => Code::PermissionDenied,
                PullError::NotFound { .. } => Code::NotFound,
                PullError::Registry { .. } => Code::Unavailable,
                PullError::Image(_) | PullError::Task(_) => Code::Internal,
            },
            CriError::Sandbox(SandboxError::NotFound(_)) => Code::NotFound,
            CriError::Sandbox(SandboxError::Invalid(_)) => Code::InvalidArgument,
            CriError::Sandbox(SandboxError::Network(NetworkError::Ipam(IpamError::Exhausted { .. }))) => Code::ResourceExhausted,
            CriError::Sandbox(SandboxError::Network(NetworkError::InvalidRequest(_))) => Code::InvalidArgument,
            _ => Code::Internal,
        }
    }
}

impl From<CriError> for Status {
    fn from(error: CriError) -> Status {
        Status::new(error.code(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_get_the_grpc_code_clients_expect() {
        let exhausted = CriError::Sandbox(SandboxError::Network(NetworkError::Ipam(IpamError::Exhausted {
            subnet: "10.0.0.0/30".parse().unwrap(),
            capacity: 1,
        })));
        let status = Status::from(exhausted);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("exhausted"));
        assert_eq!(Status::from(CriError::Runtime(RuntimeError::NotFound("x".into()))).code(), Code::NotFound);
    }
}
