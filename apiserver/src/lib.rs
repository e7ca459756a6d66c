//! r8s's Kubernetes API server: the REST API over the r8s store.
//!
//! [`serve`] runs it on a listener; [`router`] builds the routes for callers that
//! run their own server (tests, `r8s server`), after [`bootstrap`].

pub mod allocator;
pub mod discovery;
pub mod health;
pub mod metrics;
pub mod model;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod priority;
pub mod resources;
pub mod rest;
pub mod selectors;
pub mod server;
pub mod status;
pub mod system_services;
pub mod table;

pub use server::{bootstrap, router, serve, Config};
