//! r8s's scheduler: places pods that have no node on one, like kube-scheduler.
//! A framework with Kubernetes' extension points ([`framework`]) runs one plugin per
//! file ([`plugins`]) over a cache of nodes and placed pods ([`cache`]); the
//! [`scheduler`] module watches the API, queues pending pods in priority order
//! ([`queue`]) and binds them through `pods/binding`.

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod queue;
pub mod resources;
pub mod scheduler;

pub use scheduler::{run, Settings};

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
