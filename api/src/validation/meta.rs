//! Object metadata, labels, annotations and label selectors
//! (`apimachinery/pkg/api/validation` and `metav1/validation`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use super::field::{go_quote, go_string_map, BadValue, FieldError, Path};
use super::names::{self, NameValidator};

/// Kubernetes' limit on the summed size of all annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

pub const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";
pub const FIELD_IMMUTABLE_ERROR_MSG: &str = "field is immutable";

/// Whether the kind's objects live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// Finalizers that need no domain prefix.
const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

pub fn validate_object_meta(
    meta: &ObjectMeta,
    scope: Scope,
    name_fn: NameValidator,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                &path.child("generateName"),
                generate_name,
                &msg,
            ));
        }
    }
    match meta.name.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        )),
        name => {
            for msg in name_fn(name, false) {
                errs.push(FieldError::invalid(&path.child("name"), name, &msg));
            }
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    match scope {
        Scope::Namespaced if namespace.is_empty() => {
            errs.push(FieldError::required(&path.child("namespace"), ""))
        }
        Scope::Namespaced => {
            for msg in names::name_is_dns_label(namespace, false) {
                errs.push(FieldError::invalid(
                    &path.child("namespace"),
                    namespace,
                    &msg,
                ));
            }
        }
        Scope::Cluster if !namespace.is_empty() => errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        )),
        Scope::Cluster => {}
    }
    if let Some(generation) = meta.generation {
        errs.extend(validate_nonnegative(generation, &path.child("generation")));
    }
    errs.extend(validate_labels(meta.labels.as_ref(), &path.child("labels")));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        meta,
        &path.child("ownerReferences"),
    ));
    errs.extend(validate_finalizers(
        meta.finalizers.as_deref().unwrap_or_default(),
        &path.child("finalizers"),
    ));
    errs
}

/// Fields that may not change once the object exists.
pub fn validate_object_meta_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let immutable = [
        ("name", &new.name, &old.name),
        ("namespace", &new.namespace, &old.namespace),
        ("uid", &new.uid, &old.uid),
    ];
    for (field, new_value, old_value) in immutable {
        errs.extend(validate_immutable_str(
            new_value.as_deref(),
            old_value.as_deref(),
            &path.child(field),
        ));
    }
    if new.creation_timestamp != old.creation_timestamp {
        let value = new.creation_timestamp.as_ref().map(|t| t.0.to_string());
        errs.push(FieldError::invalid(
            &path.child("creationTimestamp"),
            value,
            FIELD_IMMUTABLE_ERROR_MSG,
        ));
    }
    errs
}

/// "field is immutable" when an optional string changed (unset and empty are the same).
pub fn validate_immutable_str(
    new: Option<&str>,
    old: Option<&str>,
    path: &Path,
) -> Vec<FieldError> {
    let (new, old) = (new.unwrap_or(""), old.unwrap_or(""));
    if new == old {
        Vec::new()
    } else {
        vec![FieldError::invalid(path, new, FIELD_IMMUTABLE_ERROR_MSG)]
    }
}

pub fn validate_nonnegative(value: i64, path: &Path) -> Vec<FieldError> {
    if value < 0 {
        vec![FieldError::invalid(path, value, IS_NEGATIVE_ERROR_MSG)]
    } else {
        Vec::new()
    }
}

pub fn validate_positive(value: i64, path: &Path) -> Vec<FieldError> {
    if value <= 0 {
        vec![FieldError::invalid(path, value, "must be greater than 0")]
    } else {
        Vec::new()
    }
}

/// Each message of a string check as an Invalid error at `path`.
pub fn invalid_each(path: &Path, value: &str, messages: Vec<String>) -> Vec<FieldError> {
    messages
        .iter()
        .map(|msg| FieldError::invalid(path, value, msg))
        .collect()
}

pub fn validate_label_name(name: &str, path: &Path) -> Vec<FieldError> {
    invalid_each(path, name, names::is_qualified_name(name))
}

pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels.into_iter().flatten() {
        errs.extend(validate_label_name(key, path));
        errs.extend(invalid_each(
            path,
            value,
            names::is_valid_label_value(value),
        ));
    }
    errs
}

pub fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (key, value) in annotations.into_iter().flatten() {
        // Annotation keys are qualified names in any case.
        errs.extend(invalid_each(
            path,
            key,
            names::is_qualified_name(&key.to_lowercase()),
        ));
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

fn validate_owner_references(meta: &ObjectMeta, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    for (i, owner) in refs.iter().enumerate() {
        let p = path.index(i);
        if owner.api_version.is_empty() {
            errs.push(FieldError::invalid(
                &p.child("apiVersion"),
                owner.api_version.as_str(),
                "version must not be empty",
            ));
        }
        if owner.kind.is_empty() {
            errs.push(FieldError::invalid(
                &p.child("kind"),
                owner.kind.as_str(),
                "must not be empty",
            ));
        }
        if owner.name.is_empty() {
            errs.push(FieldError::invalid(
                &p.child("name"),
                owner.name.as_str(),
                "must not be empty",
            ));
        }
        if owner.uid.is_empty() {
            errs.push(FieldError::invalid(
                &p.child("uid"),
                owner.uid.as_str(),
                "must not be empty",
            ));
        }
    }
    let controllers: Vec<String> = refs
        .iter()
        .filter(|r| r.controller == Some(true))
        .map(|r| format!("{}/{}", r.kind, r.name))
        .collect();
    if controllers.len() > 1 {
        errs.push(FieldError::invalid(
            path,
            BadValue::Raw(format!("[{}]", controllers.join(" "))),
            &format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        ));
    }
    errs
}

fn validate_finalizers(finalizers: &[String], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for finalizer in finalizers {
        let msgs = names::is_qualified_name(finalizer);
        if !msgs.is_empty() {
            errs.extend(invalid_each(path, finalizer, msgs));
        } else if !STANDARD_FINALIZERS.contains(&finalizer.as_str()) && !finalizer.contains('/') {
            errs.push(FieldError::invalid(
                path,
                finalizer,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

const SELECTOR_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

pub fn validate_label_selector(selector: &LabelSelector, path: &Path) -> Vec<FieldError> {
    let mut errs = validate_labels(selector.match_labels.as_ref(), &path.child("matchLabels"));
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        errs.extend(validate_selector_requirement(
            req,
            &path.child("matchExpressions").index(i),
        ));
    }
    errs
}

fn validate_selector_requirement(req: &LabelSelectorRequirement, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
            &path.child("values"),
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
            &path.child("values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        op if SELECTOR_OPERATORS.contains(&op) => {}
        op => errs.push(FieldError::invalid(
            &path.child("operator"),
            op,
            "not a valid selector operator",
        )),
    }
    errs.extend(validate_label_name(&req.key, &path.child("key")));
    for (i, value) in values.iter().enumerate() {
        errs.extend(invalid_each(
            &path.child("values").index(i),
            value,
            names::is_valid_label_value(value),
        ));
    }
    errs
}

/// Go's `%#v` of a `v1.LabelSelector`, as Kubernetes prints it in "field is immutable" errors.
pub fn go_label_selector(selector: &LabelSelector) -> String {
    let labels = match &selector.match_labels {
        Some(map) => go_string_map(map),
        None => "map[string]string(nil)".to_string(),
    };
    let expressions = match &selector.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(reqs) => {
            let items: Vec<String> = reqs
                .iter()
                .map(|r| {
                    let values = match &r.values {
                        None => "[]string(nil)".to_string(),
                        Some(v) => format!(
                            "[]string{{{}}}",
                            v.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(", ")
                        ),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        go_quote(&r.key),
                        go_quote(&r.operator)
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(Into::into),
            ..Default::default()
        }
    }

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn object_meta() {
        let root = Path::new("metadata");
        let v = |m: &ObjectMeta, scope| {
            messages(validate_object_meta(
                m,
                scope,
                names::name_is_dns_subdomain,
                &root,
            ))
        };
        assert!(v(&meta("web", Some("default")), Scope::Namespaced).is_empty());
        assert_eq!(
            v(&meta("Foo", Some("default")), Scope::Namespaced),
            vec!["metadata.name: Invalid value: \"Foo\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
        );
        assert_eq!(
            v(
                &ObjectMeta {
                    namespace: Some("default".into()),
                    ..Default::default()
                },
                Scope::Namespaced
            ),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        assert_eq!(
            v(&meta("web", None), Scope::Namespaced),
            vec!["metadata.namespace: Required value"]
        );
        assert_eq!(
            v(&meta("web", Some("x")), Scope::Cluster),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let generated = ObjectMeta {
            name: Some("web-abcde".into()),
            generate_name: Some("web-".into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        assert!(v(&generated, Scope::Namespaced).is_empty());
        let bad_generate = ObjectMeta {
            generate_name: Some("Web-".into()),
            ..generated
        };
        assert!(v(&bad_generate, Scope::Namespaced)[0]
            .starts_with("metadata.generateName: Invalid value: \"Web-\""));
    }

    #[test]
    fn labels_and_annotations() {
        let mut m = meta("web", Some("default"));
        m.labels = Some(BTreeMap::from([
            ("-bad".into(), "ok".into()),
            ("good".into(), "-bad".into()),
        ]));
        let errs = messages(validate_object_meta(
            &m,
            Scope::Namespaced,
            names::name_is_dns_subdomain,
            &Path::new("metadata"),
        ));
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].starts_with("metadata.labels: Invalid value: \"-bad\": name part must consist")
        );
        assert!(
            errs[1].starts_with("metadata.labels: Invalid value: \"-bad\": a valid label must be")
        );
        let big = BTreeMap::from([("a".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT))]);
        assert_eq!(
            messages(validate_annotations(
                Some(&big),
                &Path::new("metadata").child("annotations")
            )),
            vec!["metadata.annotations: Too long: must have at most 262144 bytes"]
        );
        let upper = BTreeMap::from([("Example.com/Key".to_string(), "x".to_string())]);
        assert!(validate_annotations(Some(&upper), &Path::new("a")).is_empty());
    }

    #[test]
    fn meta_update_immutables() {
        let old = meta("web", Some("default"));
        let renamed = meta("web2", Some("default"));
        assert_eq!(
            messages(validate_object_meta_update(
                &renamed,
                &old,
                &Path::new("metadata")
            )),
            vec!["metadata.name: Invalid value: \"web2\": field is immutable"]
        );
    }

    #[test]
    fn selectors() {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "x".into(),
                    operator: "Exists".into(),
                    values: Some(vec!["a".into()]),
                },
                LabelSelectorRequirement {
                    key: "y".into(),
                    operator: "Near".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            messages(validate_label_selector(&selector, &Path::new("spec").child("selector"))),
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator",
            ]
        );
        let simple = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            match_expressions: None,
        };
        assert_eq!(
            go_label_selector(&simple),
            "v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
    }
}
