//! `Object`: any served kind, typed, with its defaulting and validation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::decode::{decode_typed, type_meta, DecodeError};
use crate::defaults;
use crate::registry::{self, ResourceInfo};
use crate::types::*;
use crate::validation::{self as v, FieldError, Path};

/// Declares the enum and the per-kind dispatch from one table, so adding a
/// kind is one line here plus its registry entry.
macro_rules! objects {
    ($($variant:ident => default: $default:expr, validate: $validate:expr, update: $update:expr;)*) => {
        /// An object of one of the kinds r8s serves.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object {
            $($variant(Box<$variant>),)*
        }

        impl Object {
            /// Decodes a value by its `apiVersion` and `kind`.
            pub fn from_value(value: Value) -> Result<Object, DecodeError> {
                let (api_version, kind) = type_meta(&value)?;
                let (api_version, kind) = (api_version.to_string(), kind.to_string());
                let unknown = || DecodeError::UnknownKind { api_version: api_version.clone(), kind: kind.clone() };
                let info = registry::by_kind(&api_version, &kind).ok_or_else(unknown)?;
                match info.kind {
                    $(stringify!($variant) => Ok(Object::$variant(Box::new(decode_typed(value, &api_version, &kind)?))),)*
                    _ => Err(unknown()),
                }
            }

            pub fn kind(&self) -> &'static str {
                match self {
                    $(Object::$variant(_) => stringify!($variant),)*
                }
            }

            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(Object::$variant(o) => &o.metadata,)*
                }
            }

            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$variant(o) => &mut o.metadata,)*
                }
            }

            /// The JSON form, with `apiVersion` and `kind`.
            pub fn to_value(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Object::$variant(o) => serde_json::to_value(o),)*
                }
            }

            /// Kubernetes' defaults for the kind; namespaced objects without a
            /// namespace get `default`.
            pub fn apply_defaults(&mut self) {
                if self.info().namespaced {
                    defaults::default_namespace_field(self.metadata_mut());
                }
                match self {
                    $(Object::$variant(o) => ($default)(o.as_mut()),)*
                }
            }

            /// Validation of a new object (expects it defaulted).
            pub fn validate(&self) -> Vec<FieldError> {
                match self {
                    $(Object::$variant(o) => ($validate)(o.as_ref()),)*
                }
            }

            /// Validation of an update from `old`: the new object's own checks plus
            /// the fields that may not change.
            pub fn validate_update(&self, old: &Object) -> Vec<FieldError> {
                match (self, old) {
                    $((Object::$variant(new), Object::$variant(old)) => ($update)(new.as_ref(), old.as_ref()),)*
                    _ => vec![FieldError::invalid(&Path::new("kind"), self.kind(), "field is immutable")],
                }
            }
        }
    };
}

fn no_defaults<T>(_: &mut T) {}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

objects! {
    Namespace => default: defaults::default_namespace, validate: v::validate_namespace, update: v::validate_namespace_update;
    Node => default: defaults::default_node, validate: v::validate_node, update: v::validate_node_update;
    Pod => default: defaults::default_pod, validate: v::validate_pod, update: v::validate_pod_update;
    Service => default: defaults::default_service, validate: v::validate_service, update: v::validate_service_update;
    ServiceAccount => default: no_defaults, validate: v::validate_service_account, update: v::validate_service_account_update;
    Endpoints => default: defaults::default_endpoints, validate: v::validate_endpoints, update: v::validate_endpoints_update;
    ConfigMap => default: no_defaults, validate: v::validate_config_map, update: v::validate_config_map_update;
    Secret => default: defaults::default_secret, validate: v::validate_secret, update: v::validate_secret_update;
    Event => default: no_defaults, validate: v::validate_event, update: v::validate_event_update;
    Lease => default: no_defaults, validate: v::validate_lease, update: v::validate_lease_update;
    Deployment => default: defaults::default_deployment, validate: v::validate_deployment, update: v::validate_deployment_update;
    ReplicaSet => default: defaults::default_replica_set, validate: v::validate_replica_set, update: v::validate_replica_set_update;
    DaemonSet => default: defaults::default_daemon_set, validate: v::validate_daemon_set, update: v::validate_daemon_set_update;
    Job => default: defaults::default_job, validate: v::validate_job, update: v::validate_job_update;
    PriorityClass => default: defaults::default_priority_class, validate: v::validate_priority_class, update: v::validate_priority_class_update;
}

impl Object {
    /// Decodes a request body sent to `info`'s endpoint: a missing `apiVersion`
    /// or `kind` is taken from the endpoint, a different one is refused.
    pub fn from_value_for(info: &ResourceInfo, mut value: Value) -> Result<Object, DecodeError> {
        let Value::Object(map) = &mut value else {
            return Err(DecodeError::NotAnObject(json_type(&value)));
        };
        let expected = [
            ("apiVersion", info.api_version()),
            ("kind", info.kind.to_string()),
        ];
        for (field, expected) in expected {
            match map
                .get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                None => {
                    map.insert(field.to_string(), Value::String(expected));
                }
                Some(found) if found != expected => {
                    let found = found.to_string();
                    return Err(if field == "kind" {
                        DecodeError::KindMismatch { found, expected }
                    } else {
                        DecodeError::ApiVersionMismatch { found, expected }
                    });
                }
                Some(_) => {}
            }
        }
        Object::from_value(value)
    }

    /// The registry entry of the object's kind.
    pub fn info(&self) -> &'static ResourceInfo {
        let kind = self.kind();
        registry::by_kind_name(kind)
            .next()
            .unwrap_or_else(|| unreachable!("{kind} has no registry entry"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_registry_kind_decodes_defaults_and_validates() {
        for info in registry::RESOURCES {
            let value = json!({"apiVersion": info.api_version(), "kind": info.kind, "metadata": {"name": "x"}});
            let mut object =
                Object::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", info.kind));
            assert_eq!(object.kind(), info.kind);
            assert!(std::ptr::eq(object.info(), info));
            object.apply_defaults();
            assert_eq!(
                object.metadata().namespace.is_some(),
                info.namespaced,
                "{}",
                info.kind
            );
            // Validation must not panic on a bare object; its errors are the kind's business.
            let _ = object.validate();
            assert!(object.validate_update(&object.clone()).len() <= object.validate().len());
            let round = object.to_value().unwrap();
            assert_eq!(round["kind"], json!(info.kind));
            assert_eq!(round["apiVersion"], json!(info.api_version()));
        }
    }

    #[test]
    fn bodies_take_type_from_the_endpoint() {
        let pods = registry::by_resource("", "v1", "pods").unwrap();
        let pod = Object::from_value_for(pods, json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!(pod.kind(), "Pod");
        let cases = [
            (
                json!({"apiVersion": "v2", "kind": "Pod"}),
                "the API version in the data (v2) does not match the expected API version (v1)",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service"}),
                "the kind in the data (Service) does not match the expected kind (Pod)",
            ),
            (json!([1]), "the body must be a JSON object, not an array"),
        ];
        for (body, want) in cases {
            assert_eq!(
                Object::from_value_for(pods, body).unwrap_err().to_string(),
                want
            );
        }
    }

    #[test]
    fn a_defaulted_minimal_pod_is_valid() {
        let mut pod = Object::from_value(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}),
        )
        .unwrap();
        pod.apply_defaults();
        assert_eq!(pod.metadata().namespace.as_deref(), Some("default"));
        assert_eq!(pod.validate(), vec![]);
        let deployment = Object::from_value(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
        )
        .unwrap();
        assert_eq!(
            pod.validate_update(&deployment)[0].to_string(),
            "kind: Invalid value: \"Pod\": field is immutable"
        );
    }
}
