//! What r8s's scheduler, controllers and node agents share. They are all plain
//! Kubernetes clients: they list and watch through the HTTP API into a local cache
//! ([`informer`]), turn changes into keys on a work queue ([`queue`]) and reconcile
//! one key at a time. Around that: client construction ([`connect`]), Kubernetes
//! events ([`events`]), leader election through a Lease ([`leader`]) and
//! create/delete expectations ([`expectations`]).

pub mod connect;
pub mod events;
pub mod expectations;
pub mod informer;
pub mod leader;
pub mod queue;
pub mod time;

pub use k8s_openapi;
pub use kube;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid API server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("lost the lease {0}")]
    LostLease(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `namespace/name` (or `name` for cluster-scoped objects), as client-go keys objects.
pub fn object_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a key made by [`object_key`] into namespace and name.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

/// Whether a kube error is the API's 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Whether a kube error is the API's 409 (conflict or already exists).
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Background tasks that end when this guard is dropped, so a component's
/// watches stop with the component (also when its future is cancelled).
#[derive(Default)]
pub struct AbortOnDrop(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}
