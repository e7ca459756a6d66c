//! The Kubernetes object model of r8s: the types (from k8s-openapi, Kubernetes
//! 1.33), the table of served resources, their OpenAPI schemas, decoding,
//! defaulting and validation as Kubernetes does them. No I/O.
//!
//! - [`types`]: re-exported Kubernetes types (`Pod`, `Deployment`, `ObjectMeta`, ...).
//! - [`registry`]: every served resource: group, version, kind, plural, scope, short names, verbs, subresources.
//! - [`schema`]: OpenAPI v3 component schemas per kind.
//! - [`decode`]: JSON / multi-document YAML parsing with positions, unknown-field detection, typed decoding.
//! - [`Object`]: any served kind, with `apply_defaults`, `validate`, `validate_update`.
//! - [`defaults`], [`validation`]: the per-kind functions behind `Object`.
//! - [`strategy`]: what the API server does around writes (fresh status on create, status kept on
//!   spec updates, generation, QoS class).
//! - [`scale`]: the autoscaling/v1 `Scale` view of Deployments and ReplicaSets.
//! - [`quantity`], [`resources`], [`selector`], [`owner`]: resource quantities, a pod's effective
//!   requests and limits, label/field selectors, owner references.

pub mod decode;
pub mod defaults;
pub mod node;
mod object;
pub mod owner;
pub mod quantity;
pub mod registry;
pub mod resources;
pub mod scale;
pub mod schema;
pub mod selector;
pub mod strategy;
pub mod types;
pub mod validation;

pub use k8s_openapi;
pub use object::Object;
pub use quantity::Quantity;
