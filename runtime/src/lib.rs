//! r8s's container runtime.
//!
//! - [`runtime`]: the public API ([`Runtime`]): create, start, wait, stop,
//!   delete, list, exec; state found again after a restart.
//! - [`executor`]: namespaces, root filesystem, capabilities, seccomp, run in
//!   processes forked from the shim.
//! - [`shim`]: the per-container supervisor (`r8s runtime shim`).
//! - [`exec`]: the process that enters a running container (`r8s runtime exec-init`).
//! - [`attach`]: the container's stdio served by the shim to attach clients.
//! - [`cgroups`]: v1 and v2 cgroupfs.
//! - [`logs`]: the CRI log format.

pub mod attach;
pub mod cgroups;
pub mod channel;
pub mod config;
pub mod cri;
pub mod exec;
pub mod executor;
pub mod image;
pub mod logs;
pub mod network;
mod record_cache;
pub mod runtime;
pub mod sandbox;
pub mod shim;
pub mod state;
pub mod syscall;

pub use config::{default_spec, ContainerSpec, Output, Rootfs, SeccompPolicy, StdinMode};
pub use runtime::{ContainerInfo, ExecSpec, Runtime, RuntimeConfig, RuntimeError, Status};
pub use state::{ExitStatus, Pids};
pub use nix::sys::signal::Signal;
