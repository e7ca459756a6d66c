//! The executor: turns a `ContainerSpec` into a running container process.
//!
//! The shim (a re-executed, single-threaded r8s) calls [`launch`], which forks:
//!
//! ```text
//! shim ── fork ─► stage: joins the container's cgroup itself (cheap on v1,
//!   │                    see `CgroupManager::add_self`), setns / unshare
//!   │                    namespaces (user first, the shim writes its id
//!   │                    maps), time offsets
//!   │               └─ fork ─► init (PID 1 of a new PID namespace, born in
//!   │                          the cgroup): rootfs, pivot_root, hostname,
//!   │                          resolve the program, cgroup namespace, Ready,
//!   │                          wait on the start FIFO, drop privileges, execve
//!   └─ SetupMessage channel ◄── both
//! ```
//!
//! The stage exits once it reported the init's pid; the shim, a child
//! subreaper, inherits the init and reaps it.

pub mod fs;
mod init;
mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;

use serde::{Deserialize, Serialize};

pub use init::{launch, Launch, Launched};
pub use namespaces::{enter_existing, NamespaceError};

/// What went wrong while setting up a container, inside the container's
/// processes; it travels to the shim and the caller as text.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("invalid container spec: {0}")]
    Invalid(String),
    /// The program to run does not exist or cannot be executed.
    #[error("{0}")]
    NotFound(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("capabilities: {0}")]
    Capabilities(String),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Channel(#[from] crate::channel::ChannelError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("container setup failed: {0}")]
    InContainer(String),
}

/// Messages from the stage and init processes to the shim.
#[derive(Debug, Serialize, Deserialize)]
pub enum SetupMessage {
    /// The stage made a user namespace: write its uid and gid maps.
    NeedIdMaps,
    /// The stage forked the init; its pid in the shim's PID namespace.
    InitPid(i32),
    /// The init is set up and waits on the start FIFO.
    Ready,
    /// Setup or `execve` failed; the init exits.
    Failed { reason: String, not_found: bool },
}

/// The shim's answers to the stage.
#[derive(Debug, Serialize, Deserialize)]
pub enum ShimReply {
    /// The container's cgroup exists, with its limits: the stage may join it.
    CgroupReady,
    IdMapsWritten,
}
