//! The object model from the `api` crate, as the server uses it: the served
//! resource types, unknown fields, defaulting with validation, schemas and
//! label selectors. The one place that knows the `api` crate's shapes.

use std::collections::BTreeMap;

use api::registry::RESOURCES;
use api::Object;
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

/// Defaults an object and validates it (as an update of `old`, if given), as
/// Kubernetes does before every write. The object comes back in its typed
/// form: fields its kind does not have are dropped.
pub fn admit(resource: &ResourceType, object: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let mut typed = match Object::from_value(object.clone()) {
        Ok(typed) => typed,
        // A served kind without a typed form: stored as sent.
        Err(api::decode::DecodeError::UnknownKind { .. }) => return Ok(()),
        Err(error) => return Err(ApiError::bad_request(error.to_string())),
    };
    typed.apply_defaults();
    let errors = match old.map(|old| Object::from_value(old.clone())) {
        Some(Ok(old)) => typed.validate_update(&old),
        _ => typed.validate(),
    };
    if !errors.is_empty() {
        let causes = errors
            .iter()
            .map(|error| Cause {
                reason: error.kind.cause_type().to_string(),
                message: error.body(),
                field: error.path.to_string(),
            })
            .collect();
        let name = typed.metadata().name.clone().unwrap_or_default();
        return Err(ApiError::invalid(&resource.group, &resource.kind, &name, causes));
    }
    *object = typed.to_value().map_err(ApiError::internal)?;
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
