//! r8s's controllers. Each one is a pure plan (what should change, computed from
//! cached objects, unit-tested without a server) and a driver that runs the plan
//! through the Kubernetes API on the shared reconcile loop of the `client` crate.

pub mod context;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod manager;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podcontrol;
pub mod pods;
pub mod replicaset;

pub use context::{Context, SharedContext};

/// What can go wrong in a reconcile; every error makes the key retry with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
