//! The object model the server relies on: which resource types exist, decoding,
//! defaulting, validation, schemas and label selectors.
//!
//! BRIDGE: until the `api` crate lands this holds a minimal stand-in; every use
//! of the object model goes through this one module so that swapping in the
//! `api` crate touches nothing else.

use serde_json::Value;

use crate::resources::{Registry, ResourceType};
use crate::status::Cause;

const STANDARD_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

#[allow(clippy::too_many_arguments)]
fn resource(
    group: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short_names: &[&str],
    in_all: bool,
    subresources: &[&str],
) -> ResourceType {
    ResourceType {
        group: group.to_string(),
        version: "v1".to_string(),
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular: kind.to_ascii_lowercase(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        categories: if in_all { vec!["all".to_string()] } else { Vec::new() },
        verbs: STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
        subresources: subresources.iter().map(|s| s.to_string()).collect(),
    }
}

/// Every resource type r8s serves.
pub fn registry() -> Registry {
    Registry::new(vec![
        resource("", "Pod", "pods", true, &["po"], true, &["status", "binding"]),
        resource("", "Service", "services", true, &["svc"], true, &["status"]),
        resource("", "Namespace", "namespaces", false, &["ns"], false, &["status"]),
        resource("", "Node", "nodes", false, &["no"], false, &["status"]),
        resource("", "ConfigMap", "configmaps", true, &["cm"], false, &[]),
        resource("", "Secret", "secrets", true, &[], false, &[]),
        resource("", "Event", "events", true, &["ev"], false, &[]),
        resource("", "ServiceAccount", "serviceaccounts", true, &["sa"], false, &[]),
        resource("", "Endpoints", "endpoints", true, &["ep"], false, &[]),
        resource("apps", "Deployment", "deployments", true, &["deploy"], true, &["status", "scale"]),
        resource("apps", "ReplicaSet", "replicasets", true, &["rs"], true, &["status", "scale"]),
        resource("coordination.k8s.io", "Lease", "leases", true, &[], false, &[]),
    ])
}

/// Unknown fields of an object, as `.spec.foo` paths.
pub fn unknown_fields(_resource: &ResourceType, _object: &Value) -> Vec<String> {
    Vec::new()
}

/// Fills in the defaults Kubernetes gives omitted fields.
pub fn apply_defaults(_resource: &ResourceType, _object: &mut Value) {}

/// Validation errors, one cause per field path.
pub fn validate(_resource: &ResourceType, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = crate::objects::name(object);
    if name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: name or generateName is required".into(),
            field: "metadata.name".into(),
        });
    }
    causes
}

/// The OpenAPI v3 schema of a resource type's objects, if known.
pub fn schema(_resource: &ResourceType) -> Option<Value> {
    None
}

/// A parsed label selector.
#[derive(Clone, Debug, Default)]
pub struct LabelSelector {
    requirements: Vec<(String, String)>,
}

impl LabelSelector {
    pub fn parse(selector: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, value) = term.split_once('=').ok_or_else(|| format!("unsupported selector {term:?}"))?;
            requirements.push((key.to_string(), value.trim_start_matches('=').to_string()));
        }
        Ok(Self { requirements })
    }

    pub fn matches(&self, labels: &serde_json::Map<String, Value>) -> bool {
        self.requirements
            .iter()
            .all(|(key, value)| labels.get(key).and_then(Value::as_str) == Some(value.as_str()))
    }
}

/// A YAML body as JSON.
pub fn decode_yaml(bytes: &[u8]) -> Result<Value, String> {
    serde_yaml_ng::from_slice(bytes).map_err(|e| format!("invalid YAML: {e}"))
}
