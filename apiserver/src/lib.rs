//! r8s's Kubernetes API server: the REST API over the r8s store.

pub mod patch;
pub mod status;
