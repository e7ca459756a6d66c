//! The object model from the `api` crate, as the server uses it: the served
//! resource types, unknown fields, defaulting with validation, schemas and
//! label selectors. The one place that knows the `api` crate's shapes.

use std::collections::BTreeMap;

use api::k8s_openapi::api::autoscaling::v1::Scale;
use api::k8s_openapi::api::core::v1::{Binding, Pod};
use api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use api::registry::RESOURCES;
use api::validation::FieldError;
use api::{strategy, Object};
use serde::Deserialize;
use serde_json::Value;

use crate::resources::{Registry, ResourceType, Subresource};
use crate::status::{ApiError, ApiResult, Cause};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every resource type r8s serves, from the `api` crate's table.
pub fn registry() -> Registry {
    Registry::new(
        RESOURCES
            .iter()
            .map(|info| ResourceType {
                group: info.group.to_string(),
                version: info.version.to_string(),
                kind: info.kind.to_string(),
                plural: info.plural.to_string(),
                singular: info.singular.to_string(),
                namespaced: info.namespaced,
                short_names: strings(info.short_names),
                categories: strings(info.categories),
                verbs: strings(info.verbs),
                subresources: info
                    .subresources
                    .iter()
                    .map(|sub| Subresource {
                        name: sub.name.to_string(),
                        group: sub.group.to_string(),
                        version: sub.version.to_string(),
                        kind: sub.kind.to_string(),
                        verbs: strings(sub.verbs),
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// Fields of an object its kind's schema does not have, as `spec.foo` paths.
pub fn unknown_fields(resource: &ResourceType, object: &Value) -> Vec<String> {
    api::decode::unknown_fields(&resource.group, &resource.version, &resource.kind, object).unwrap_or_default()
}

/// Which write an object goes through; each has its own Kubernetes strategy.
#[derive(Clone, Copy, Debug)]
pub enum Write<'a> {
    Create,
    /// An update of the main resource, from the stored object.
    Update(&'a Value),
    /// An update through `/status`: only the status changes.
    Status(&'a Value),
    /// An update through a namespace's `/finalize`: only `spec.finalizers` changes.
    Finalize(&'a Value),
    /// A change the server makes itself (a binding, a scale, deletion marks):
    /// defaulted, not checked as a client's update.
    System,
}

fn typed(object: &Value) -> ApiResult<Object> {
    Object::from_value(object.clone()).map_err(|error| ApiError::bad_request(error.to_string()))
}

/// Runs an object through what Kubernetes does before storing it: defaulting,
/// the kind's write strategy (fresh status on create, status kept on spec
/// updates, generation) and validation. The object comes back in its typed
/// form: fields its kind does not have are dropped.
pub fn admit(resource: &ResourceType, object: &mut Value, write: Write) -> ApiResult<()> {
    let mut new = typed(object)?;
    new.apply_defaults();
    let errors = match write {
        Write::Create => {
            strategy::prepare_for_create(&mut new);
            new.validate()
        }
        Write::Update(old) => {
            let old = typed(old)?;
            strategy::prepare_for_update(&mut new, &old);
            new.validate_update(&old)
        }
        Write::Status(old) => {
            let old = typed(old)?;
            strategy::prepare_for_status_update(&mut new, &old);
            new.validate_update(&old)
        }
        Write::Finalize(old) => {
            let old = typed(old)?;
            strategy::prepare_for_finalize(&mut new, &old);
            new.validate_update(&old)
        }
        Write::System => Vec::new(),
    };
    if !errors.is_empty() {
        let name = new.metadata().name.clone().unwrap_or_default();
        return Err(invalid(&resource.group, &resource.kind, &name, &errors));
    }
    *object = new.to_value().map_err(ApiError::internal)?;
    Ok(())
}

/// Kubernetes' 422 for validation errors.
pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> ApiError {
    let causes = errors
        .iter()
        .map(|error| Cause {
            reason: error.kind.cause_type().to_string(),
            message: error.body(),
            field: error.path.to_string(),
        })
        .collect();
    ApiError::invalid(group, kind, name, causes)
}

/// Binds a pod (a JSON object) to the node a `Binding` names.
pub fn bind(pod: &mut Value, binding: &Value) -> ApiResult<()> {
    let binding = Binding::deserialize(binding).map_err(|error| ApiError::bad_request(format!("invalid Binding: {error}")))?;
    let name = binding.metadata.name.clone().unwrap_or_default();
    let errors = strategy::validate_binding(&binding);
    if !errors.is_empty() {
        return Err(invalid("", "Binding", &name, &errors));
    }
    let mut typed_pod = Pod::deserialize(&*pod).map_err(ApiError::internal)?;
    use api::k8s_openapi::jiff::Timestamp;
    let now = Time(Timestamp::from_second(chrono::Utc::now().timestamp()).unwrap_or(Timestamp::UNIX_EPOCH));
    strategy::bind_pod(&mut typed_pod, &binding, now).map_err(|error| {
        ApiError::conflict(&crate::status::QualifiedResource::new("", "pods/binding"), &name, error)
    })?;
    *pod = serde_json::to_value(&typed_pod).map_err(ApiError::internal)?;
    Ok(())
}

/// The autoscaling/v1 `Scale` of a Deployment or ReplicaSet.
pub fn scale_of(object: &Value) -> ApiResult<Value> {
    let scale = api::scale::scale_of(&typed(object)?)
        .ok_or_else(|| ApiError::bad_request("this kind has no scale subresource"))?;
    serde_json::to_value(&scale).map_err(ApiError::internal)
}

/// Sets the replicas of a Deployment or ReplicaSet from a client's `Scale`.
pub fn apply_scale(object: &mut Value, scale: &Value) -> ApiResult<()> {
    let scale: Scale =
        serde_json::from_value(scale.clone()).map_err(|error| ApiError::bad_request(format!("invalid Scale: {error}")))?;
    let name = scale.metadata.name.clone().unwrap_or_default();
    let replicas = api::scale::requested_replicas(&scale)
        .map_err(|error| invalid("autoscaling", "Scale", &name, &[error]))?;
    let mut target = typed(object)?;
    if !api::scale::set_replicas(&mut target, replicas) {
        return Err(ApiError::bad_request("this kind has no scale subresource"));
    }
    *object = target.to_value().map_err(ApiError::internal)?;
    Ok(())
}

/// The component schemas of one group-version's OpenAPI document, each kind's
/// carrying `x-kubernetes-group-version-kind`.
pub fn schemas(group: &str, version: &str) -> serde_json::Map<String, Value> {
    api::schema::Schemas::get().components_for(group, version)
}

/// A YAML body as JSON.
pub fn decode_yaml(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("invalid YAML: {e}"))?;
    let mut documents = api::decode::parse_yaml_documents(text).map_err(|e| e.to_string())?;
    match documents.len() {
        1 => Ok(documents.remove(0)),
        count => Err(format!("expected one YAML document, found {count}")),
    }
}

/// A parsed `labelSelector`.
#[derive(Clone, Debug, Default)]
pub struct LabelSelector(api::selector::Selector);

impl LabelSelector {
    pub fn parse(selector: &str) -> Result<Self, String> {
        api::selector::Selector::parse(selector).map(Self).map_err(|e| e.to_string())
    }

    /// True when the selector requires nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &serde_json::Map<String, Value>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(key, value)| (key.clone(), value.as_str().unwrap_or("").to_string()))
            .collect();
        self.0.matches(&labels)
    }
}
