//! Field selectors (`fieldSelector=spec.nodeName=n1,status.phase!=Failed`):
//! which fields each resource can be selected by, and matching.

use serde_json::Value;

use crate::status::{ApiError, ApiResult};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<Requirement>,
}

/// The fields beyond `metadata.name` and `metadata.namespace` a resource can be
/// selected by, as Kubernetes declares them.
fn extra_fields(plural: &str) -> &'static [&'static str] {
    match plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "nodes" => &["spec.unschedulable"],
        "namespaces" => &["status.phase"],
        "secrets" => &["type"],
        "replicasets" | "replicationcontrollers" => &["status.replicas"],
        "jobs" => &["status.successful"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses `selector` for objects of the resource `plural`.
    pub fn parse(selector: &str, plural: &str) -> ApiResult<Self> {
        let mut requirements = Vec::new();
        for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, equal) = if let Some((field, value)) = term.split_once("!=") {
                (field, value, false)
            } else if let Some((field, value)) = term.split_once("==") {
                (field, value, true)
            } else if let Some((field, value)) = term.split_once('=') {
                (field, value, true)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector: {term:?}: expected field=value")));
            };
            let field = field.trim();
            let known = ["metadata.name", "metadata.namespace"].contains(&field) || extra_fields(plural).contains(&field);
            if !known {
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                )));
            }
            requirements.push(Requirement { field: field.to_string(), value: value.trim().to_string(), equal });
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The name `metadata.name=X` pins, letting a list read one key.
    pub fn exact_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.equal && r.field == "metadata.name")
            .map(|r| r.value.as_str())
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| (field_value(object, &r.field) == r.value) == r.equal)
    }
}

/// A field's value as a selector compares it: strings as they are, numbers and
/// booleans printed, absent fields empty. `source` of an event is its component.
fn field_value(object: &Value, field: &str) -> String {
    let path: Vec<&str> = match field {
        "source" => vec!["source", "component"],
        _ => field.split('.').collect(),
    };
    let mut value = object;
    for part in path {
        match value.get(part) {
            Some(inner) => value = inner,
            None => return String::new(),
        }
    }
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_by_pod_fields() {
        let pod = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(FieldSelector::parse("spec.nodeName=n1", "pods").unwrap().matches(&pod));
        assert!(FieldSelector::parse("spec.nodeName==n1,status.phase!=Failed", "pods").unwrap().matches(&pod));
        assert!(!FieldSelector::parse("metadata.name=b", "pods").unwrap().matches(&pod));
        assert!(FieldSelector::parse("spec.nodeName=", "pods").unwrap().matches(&json!({})));
        assert_eq!(FieldSelector::parse("metadata.name=a", "pods").unwrap().exact_name(), Some("a"));
    }

    #[test]
    fn selects_events_by_involved_object() {
        let event = json!({"involvedObject": {"name": "x", "namespace": "ns", "uid": "u"}, "source": {"component": "kubelet"}});
        let selector = FieldSelector::parse("involvedObject.name=x,involvedObject.namespace=ns,involvedObject.uid=u", "events").unwrap();
        assert!(selector.matches(&event));
        assert!(FieldSelector::parse("source=kubelet", "events").unwrap().matches(&event));
    }

    #[test]
    fn unknown_fields_and_garbage_are_rejected() {
        let error = FieldSelector::parse("spec.nodeName=n1", "configmaps").unwrap_err();
        assert_eq!(error.code, 400);
        assert!(error.message.contains("is not a known field selector"));
        assert!(FieldSelector::parse("nonsense", "pods").is_err());
    }
}
