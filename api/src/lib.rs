//! Kubernetes object model for r8s. (Filled in by the api work.)
