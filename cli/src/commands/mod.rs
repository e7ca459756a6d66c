//! One module per group of r8sctl commands.

pub mod apply;
pub mod config;
pub mod delete;
pub mod describe;
pub mod exec;
pub mod get;
pub mod info;
pub mod modify;
pub mod wait;
