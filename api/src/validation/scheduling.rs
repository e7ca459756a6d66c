//! scheduling.k8s.io/v1 PriorityClass (`pkg/apis/scheduling/validation`).

use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::field::{FieldError, Path};
use super::meta::{self, Scope, FIELD_IMMUTABLE_ERROR_MSG};
use super::names;

/// The highest priority a class not reserved for the system may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// Class names with this prefix are reserved for the built-in classes.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";
/// The built-in classes Kubernetes creates (and r8s's API server bootstraps).
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i32, &str); 2] = [
    ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
    ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
];
pub const PREEMPTION_POLICIES: [&str; 2] = ["Never", "PreemptLowerPriority"];

/// Kubernetes' `IsKnownSystemPriorityClass`.
fn known_system_class(class: &PriorityClass) -> Result<(), String> {
    let name = class.metadata.name.as_deref().unwrap_or_default();
    let (_, value, _) = SYSTEM_PRIORITY_CLASSES
        .iter()
        .find(|(known, _, _)| *known == name)
        .ok_or_else(|| format!("{name} is not a known system priority class"))?;
    if class.value != *value {
        return Err(format!("value of {name} PriorityClass must be {value}"));
    }
    if class.global_default == Some(true) {
        return Err(format!("globalDefault of {name} PriorityClass must be false"));
    }
    Ok(())
}

pub fn validate_priority_class(class: &PriorityClass) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta(&class.metadata, Scope::Cluster, names::name_is_dns_subdomain, &Path::new("metadata"));
    let name = class.metadata.name.as_deref().unwrap_or_default();
    if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
        if let Err(error) = known_system_class(class) {
            let detail = format!("priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {error}");
            errs.push(FieldError::forbidden(&Path::new("metadata").child("name"), &detail));
        }
    } else if class.value > HIGHEST_USER_DEFINABLE_PRIORITY {
        let detail = format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}");
        errs.push(FieldError::forbidden(&Path::new("value"), &detail));
    }
    if let Some(policy) = class.preemption_policy.as_deref() {
        if !PREEMPTION_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(&Path::new("preemptionPolicy"), policy, &PREEMPTION_POLICIES));
        }
    }
    errs
}

pub fn validate_priority_class_update(new: &PriorityClass, old: &PriorityClass) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    errs.extend(validate_priority_class(new));
    if new.value != old.value {
        errs.push(FieldError::forbidden(&Path::new("value"), "may not be changed in an update."));
    }
    if new.preemption_policy != old.preemption_policy {
        errs.push(FieldError::invalid(&Path::new("preemptionPolicy"), new.preemption_policy.as_deref(), FIELD_IMMUTABLE_ERROR_MSG));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, value: i32) -> PriorityClass {
        serde_json::from_value(json!({ "metadata": { "name": name }, "value": value })).unwrap()
    }

    #[test]
    fn user_classes_stay_below_the_system_range() {
        assert!(validate_priority_class(&class("high", 1_000_000_000)).is_empty());
        let errs = validate_priority_class(&class("higher", 1_000_000_001));
        assert_eq!(errs[0].to_string(), "value: Forbidden: maximum allowed value of a user defined priority is 1000000000");
    }

    #[test]
    fn system_names_are_reserved() {
        assert!(validate_priority_class(&class("system-node-critical", 2_000_001_000)).is_empty());
        let errs = validate_priority_class(&class("system-mine", 5));
        assert!(errs[0].to_string().contains("reserved for system use only. error: system-mine is not a known system priority class"));
    }

    #[test]
    fn value_and_policy_are_immutable() {
        let mut changed = class("high", 10);
        changed.preemption_policy = Some("Never".into());
        let mut old = class("high", 5);
        old.preemption_policy = Some("PreemptLowerPriority".into());
        let errs: Vec<String> = validate_priority_class_update(&changed, &old).iter().map(|e| e.to_string()).collect();
        assert!(errs.iter().any(|e| e == "value: Forbidden: may not be changed in an update."), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("preemptionPolicy: Invalid value")), "{errs:?}");
    }
}
