//! Finding fields a kind's schema does not have, for `fieldValidation=Strict|Warn`.

use serde_json::Value;

use crate::schema::Schemas;

/// The paths of fields in `value` that the kind's schema does not define,
/// e.g. `spec.containers[0].imagee`. None when the kind is not served.
pub fn unknown_fields(
    group: &str,
    version: &str,
    kind: &str,
    value: &Value,
) -> Option<Vec<String>> {
    let schemas = Schemas::get();
    let root = schemas.kind_schema(group, version, kind)?;
    let mut found = Vec::new();
    walk(schemas, root, value, "", &mut found);
    Some(found)
}

/// Kubernetes' message for a Strict rejection or a Warn warning:
/// `strict decoding error: unknown field "spec.x", unknown field "spec.y"`.
pub fn strict_decoding_message(paths: &[String]) -> String {
    let parts: Vec<String> = paths
        .iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
    format!("strict decoding error: {}", parts.join(", "))
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn walk(schemas: &Schemas, schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    let schema = schemas.resolve(schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (name, field_value) in fields {
                let child = join(path, name);
                match (properties.and_then(|p| p.get(name)), additional) {
                    (Some(field_schema), _) | (None, Some(field_schema)) => {
                        walk(schemas, field_schema, field_value, &child, found)
                    }
                    // A schema without properties (e.g. a free-form object) accepts anything.
                    (None, None) if properties.is_some() => found.push(child),
                    (None, None) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(schemas, item_schema, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_in_nested_lists() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any-key": "ok"}, "colour": "blue"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "a", "image": "nginx"},
                            {"name": "b", "imagee": "nginx", "ports": [{"containerPort": 80, "hostport": 80}],
                             "resources": {"limits": {"cpu": "1"}}}
                        ],
                        "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi", "speed": "fast"}}]
                    }
                },
                "strategy": {"rollingUpdate": {"maxSurge": "25%"}}
            },
            "status": {"replicas": 0, "bogus": true}
        });
        let mut found = unknown_fields("apps", "v1", "Deployment", &deployment).unwrap();
        found.sort();
        assert_eq!(
            found,
            [
                "metadata.colour",
                "spec.template.spec.containers[1].imagee",
                "spec.template.spec.containers[1].ports[0].hostport",
                "spec.template.spec.volumes[0].emptyDir.speed",
                "status.bogus",
            ]
        );
        assert_eq!(
            strict_decoding_message(&found[..2]),
            "strict decoding error: unknown field \"metadata.colour\", unknown field \"spec.template.spec.containers[1].imagee\""
        );
    }

    #[test]
    fn known_objects_have_none() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
                "livenessProbe": {"httpGet": {"port": "http"}}}]}});
        assert_eq!(unknown_fields("", "v1", "Pod", &pod), Some(vec![]));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"any": "thing"}, "extra": 1});
        assert_eq!(
            unknown_fields("", "v1", "ConfigMap", &cm),
            Some(vec!["extra".to_string()])
        );
        assert_eq!(unknown_fields("", "v1", "Pony", &cm), None);
    }
}
