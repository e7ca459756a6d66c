//! Kubernetes' strategic merge patch, on JSON values.
//!
//! Maps merge key by key, as in a JSON merge patch, with `null` deleting. Lists
//! differ by field: those Kubernetes declares with `patchStrategy: merge` merge
//! their elements by a merge key (containers by `name`, ports by `containerPort`,
//! ...), primitive lists with that strategy (`finalizers`) are merged as sets, and
//! every other list is replaced. Directives steer the rest:
//! `$patch: replace|merge|delete`, `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>`, which `kubectl apply` sends.

use serde_json::{Map, Value};

use super::PatchError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// How a list field is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    /// The patch's list replaces the original.
    Replace,
    /// Map elements are matched by this key and merged.
    MergeByKey(&'static str),
    /// Primitive elements are added to the original's unless already there.
    MergeSet,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The strategy Kubernetes' types declare for the list at `path` (field names
/// from the object's root, list indices left out). The last field name decides,
/// with its parent where one name means different things.
fn list_strategy(path: &[String]) -> ListStrategy {
    let field = path.last().map(String::as_str).unwrap_or("");
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str()).unwrap_or("");
    match field {
        "containers" | "initContainers" | "ephemeralContainers" => ListStrategy::MergeByKey("name"),
        "ports" if CONTAINER_LISTS.contains(&parent) => ListStrategy::MergeByKey("containerPort"),
        // ServiceSpec.ports.
        "ports" if parent == "spec" => ListStrategy::MergeByKey("port"),
        "env" | "volumes" | "imagePullSecrets" | "schedulingGates" | "secrets" => ListStrategy::MergeByKey("name"),
        "resourceClaims" if parent == "spec" => ListStrategy::MergeByKey("name"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "hostAliases" | "podIPs" | "hostIPs" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "conditions" => ListStrategy::MergeByKey("type"),
        // NodeStatus.addresses.
        "addresses" if parent == "status" => ListStrategy::MergeByKey("type"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        "finalizers" if parent == "metadata" => ListStrategy::MergeSet,
        "podCIDRs" => ListStrategy::MergeSet,
        _ => ListStrategy::Replace,
    }
}

/// The `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key` Kubernetes
/// declares for the list `field` of an object held in the field `parent`
/// (`containers`, `spec`, `status`, `metadata`); None for lists replaced whole.
pub fn declared_patch_meta(parent: &str, field: &str) -> Option<(&'static str, Option<&'static str>)> {
    match list_strategy(&[parent.to_string(), field.to_string()]) {
        ListStrategy::Replace => None,
        ListStrategy::MergeSet => Some(("merge", None)),
        ListStrategy::MergeByKey(key) => Some(("merge", Some(key))),
    }
}

/// Applies a strategic merge `patch` (a JSON object) to `original`.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed("a strategic merge patch must be a JSON object".into()));
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let merged = merge_map(original, patch, &mut Vec::new())?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// Merges a patch map into an original one. `None` means `$patch: delete`.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(DIRECTIVE) {
        None => {}
        Some(Value::String(directive)) if directive == "merge" => {}
        Some(Value::String(directive)) if directive == "delete" => return Ok(None),
        // The patch's map, without its directives, replaces the original.
        Some(Value::String(directive)) if directive == "replace" => original = Map::new(),
        Some(other) => return Err(PatchError::Malformed(format!("unknown patch type: {other} in map"))),
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys = string_list(retain, RETAIN_KEYS)?;
        original.retain(|key, _| keys.contains(&key.as_str()));
    }

    for (key, values) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(values) = values else {
                return Err(PatchError::Malformed(format!("{key} must be a list")));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|item| !values.contains(item));
            }
        }
    }

    for (key, patch_value) in patch {
        if key.starts_with('$') {
            continue;
        }
        if patch_value.is_null() {
            original.remove(key);
            continue;
        }
        path.push(key.clone());
        let merged = merge_value(original.remove(key), patch_value, path);
        path.pop();
        if let Some(value) = merged? {
            original.insert(key.clone(), value);
        }
    }

    for (key, order) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let Value::Array(order) = order else {
                return Err(PatchError::Malformed(format!("{key} must be a list")));
            };
            path.push(field.to_string());
            let strategy = list_strategy(path);
            path.pop();
            if let Some(Value::Array(list)) = original.get_mut(field) {
                reorder(list, order, strategy);
            }
        }
    }
    Ok(Some(original))
}

/// Merges one patch value into the original value of the same field (absent if
/// the original has no such field). `None` means the field goes.
fn merge_value(original: Option<Value>, patch: &Value, path: &mut Vec<String>) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(patch_map) => {
            let original_map = match original {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            Ok(merge_map(original_map, patch_map, path)?.map(Value::Object))
        }
        Value::Array(patch_list) => {
            let original_list = match original {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            };
            merge_list(original_list, patch_list, path).map(|list| Some(Value::Array(list)))
        }
        primitive => Ok(Some(primitive.clone())),
    }
}

fn merge_list(mut original: Vec<Value>, patch: &[Value], path: &mut Vec<String>) -> Result<Vec<Value>, PatchError> {
    let replaces = patch.iter().any(|item| item.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    let strategy = if replaces { ListStrategy::Replace } else { list_strategy(path) };
    match strategy {
        ListStrategy::Replace => without_directives(patch, path),
        ListStrategy::MergeSet => {
            for item in patch {
                if !original.contains(item) {
                    original.push(item.clone());
                }
            }
            Ok(original)
        }
        ListStrategy::MergeByKey(merge_key) => {
            for item in patch {
                let Value::Object(item) = item else {
                    return Err(PatchError::Malformed(format!(
                        "{}: expected a map with merge key {merge_key:?}, got {item}",
                        path.join(".")
                    )));
                };
                let Some(key_value) = item.get(merge_key) else {
                    return Err(PatchError::Malformed(format!(
                        "map: {} does not contain declared merge key: {merge_key}",
                        Value::Object(item.clone())
                    )));
                };
                let position = original.iter().position(|element| element.get(merge_key) == Some(key_value));
                match position {
                    Some(index) => {
                        let element = match original.remove(index) {
                            Value::Object(map) => map,
                            _ => Map::new(),
                        };
                        if let Some(merged) = merge_map(element, item, path)? {
                            original.insert(index, Value::Object(merged));
                        }
                    }
                    None => {
                        if let Some(added) = merge_map(Map::new(), item, path)? {
                            original.push(Value::Object(added));
                        }
                    }
                }
            }
            Ok(original)
        }
    }
}

/// The patch list as a value of its own: directive elements dropped, nested
/// directives applied to nothing.
fn without_directives(patch: &[Value], path: &mut Vec<String>) -> Result<Vec<Value>, PatchError> {
    let mut list = Vec::with_capacity(patch.len());
    for item in patch {
        let is_directive_only = matches!(item, Value::Object(map) if map.len() == 1 && map.contains_key(DIRECTIVE));
        if is_directive_only {
            continue;
        }
        if let Some(value) = merge_value(None, item, path)? {
            list.push(value);
        }
    }
    Ok(list)
}

/// Orders a merged list as `$setElementOrder` says: the elements it names in its
/// order, and the ones only the original had (which it cannot name) where they
/// were relative to those.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let identity = |element: &Value| -> Value {
        match strategy {
            ListStrategy::MergeByKey(key) => element.get(key).cloned().unwrap_or(Value::Null),
            _ => element.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(identity).collect();
    let rank = |element: &Value| wanted.iter().position(|w| *w == identity(element));

    let mut named: Vec<(usize, usize, Value)> = Vec::new();
    let mut others: Vec<(usize, Value)> = Vec::new();
    for (position, element) in std::mem::take(list).into_iter().enumerate() {
        match rank(&element) {
            Some(rank) => named.push((rank, position, element)),
            None => others.push((position, element)),
        }
    }
    named.sort_by_key(|(rank, _, _)| *rank);

    let mut named = named.into_iter().peekable();
    let mut others = others.into_iter().peekable();
    loop {
        let take_other = match (named.peek(), others.peek()) {
            (Some((_, named_position, _)), Some((other_position, _))) => other_position < named_position,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => break,
        };
        if take_other {
            list.extend(others.next().map(|(_, element)| element));
        } else {
            list.extend(named.next().map(|(_, _, element)| element));
        }
    }
}

fn string_list<'a>(value: &'a Value, what: &str) -> Result<Vec<&'a str>, PatchError> {
    let Value::Array(items) = value else {
        return Err(PatchError::Malformed(format!("{what} must be a list of strings")));
    };
    items
        .iter()
        .map(|item| item.as_str().ok_or_else(|| PatchError::Malformed(format!("{what} must be a list of strings"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merge(original: Value, patch: Value) -> Value {
        strategic_merge(&original, &patch).unwrap()
    }

    fn deployment(containers: Value, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels, "finalizers": ["a"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": containers}}}
        })
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let merged = merge(json!({"a": {"b": 1, "c": 2}, "d": 3}), json!({"a": {"b": null, "e": 4}, "d": null}));
        assert_eq!(merged, json!({"a": {"c": 2, "e": 4}}));
    }

    #[test]
    fn containers_merge_by_name() {
        let original = deployment(
            json!([{"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}, {"name": "side", "image": "busybox"}]),
            json!({"app": "web"}),
        );
        let patched = merge(original, json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "nginx:1.26"},
            {"name": "new", "image": "redis"}
        ]}}}}));
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "app", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
                {"name": "side", "image": "busybox"},
                {"name": "new", "image": "redis"}
            ])
        );
    }

    #[test]
    fn container_ports_merge_by_container_port_and_service_ports_by_port() {
        let pod = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]}});
        let patched = merge(pod, json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]}]}}));
        assert_eq!(
            patched["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}])
        );

        let service = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let patched = merge(service, json!({"spec": {"ports": [{"port": 80, "name": "web"}]}}));
        assert_eq!(patched["spec"]["ports"], json!([{"port": 80, "targetPort": 8080, "name": "web"}]));
    }

    #[test]
    fn lists_without_merge_key_are_replaced() {
        let original = json!({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}], "tolerations": [{"key": "k"}]}});
        let patched = merge(original, json!({"spec": {"containers": [{"name": "a", "args": ["z"]}], "tolerations": [{"key": "j"}]}}));
        assert_eq!(patched["spec"]["containers"][0]["args"], json!(["z"]));
        assert_eq!(patched["spec"]["tolerations"], json!([{"key": "j"}]));
    }

    #[test]
    fn merge_keys_of_other_lists() {
        let original = json!({
            "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]},
            "spec": {
                "volumes": [{"name": "v", "emptyDir": {}}],
                "imagePullSecrets": [{"name": "s1"}],
                "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]}],
                "containers": [{"name": "c", "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"mountPath": "/a", "name": "v"}], "volumeDevices": [{"devicePath": "/dev/x", "name": "d"}]}]
            },
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}]}
        });
        let patch = json!({
            "metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
            "spec": {
                "volumes": [{"name": "w", "emptyDir": {}}],
                "imagePullSecrets": [{"name": "s2"}],
                "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["b"]}],
                "containers": [{"name": "c", "env": [{"name": "B", "value": "2"}], "volumeMounts": [{"mountPath": "/a", "readOnly": true}], "volumeDevices": [{"devicePath": "/dev/y", "name": "e"}]}]
            },
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        });
        let patched = merge(original, patch);
        assert_eq!(patched["metadata"]["ownerReferences"].as_array().unwrap().len(), 2);
        assert_eq!(patched["spec"]["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(patched["spec"]["imagePullSecrets"], json!([{"name": "s1"}, {"name": "s2"}]));
        assert_eq!(patched["spec"]["hostAliases"], json!([{"ip": "1.2.3.4", "hostnames": ["b"]}]));
        let container = &patched["spec"]["containers"][0];
        assert_eq!(container["env"], json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
        assert_eq!(container["volumeMounts"], json!([{"mountPath": "/a", "name": "v", "readOnly": true}]));
        assert_eq!(container["volumeDevices"].as_array().unwrap().len(), 2);
        assert_eq!(
            patched["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Scheduled", "status": "True"}])
        );
    }

    #[test]
    fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        assert_eq!(merge(original.clone(), json!({"metadata": {"finalizers": ["b", "c"]}}))["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let patched = merge(original, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["d"]}}));
        assert_eq!(patched["metadata"]["finalizers"], json!(["b", "d"]));
    }

    #[test]
    fn patch_directives() {
        let original = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}], "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        // Delete one element by merge key.
        let patched = merge(original.clone(), json!({"spec": {"containers": [{"$patch": "delete", "name": "a"}]}}));
        assert_eq!(patched["spec"]["containers"], json!([{"name": "b", "image": "y"}]));
        // Replace a whole list.
        let patched = merge(original.clone(), json!({"spec": {"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}}));
        assert_eq!(patched["spec"]["containers"], json!([{"name": "c", "image": "z"}]));
        // Replace a map.
        let patched = merge(original.clone(), json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}));
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
        // Delete a map.
        let patched = merge(original.clone(), json!({"spec": {"strategy": {"$patch": "delete"}}}));
        assert!(patched["spec"].get("strategy").is_none());
        // Merge is the default.
        let patched = merge(original.clone(), json!({"spec": {"strategy": {"$patch": "merge", "rollingUpdate": {"maxUnavailable": 0}}}}));
        assert_eq!(patched["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": 1, "maxUnavailable": 0}));
        // Retain keys.
        let patched = merge(original.clone(), json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}));
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
        // Unknown directives are errors.
        assert!(strategic_merge(&original, &json!({"spec": {"$patch": "explode"}})).is_err());
        // A merge-keyed element without its key is an error.
        assert!(strategic_merge(&original, &json!({"spec": {"containers": [{"image": "x"}]}})).is_err());
    }

    #[test]
    fn set_element_order() {
        let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patched = merge(original.clone(), json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}));
        assert_eq!(patched["spec"]["containers"], json!([{"name": "c"}, {"name": "a"}, {"name": "b"}]));
        // Elements only on the server go before the first named element that came
        // after them on the server, as Kubernetes' mergeSortedSlice places them.
        let patched = merge(
            original,
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "d"}], "containers": [{"name": "d"}]}}),
        );
        assert_eq!(patched["spec"]["containers"], json!([{"name": "b"}, {"name": "c"}, {"name": "a"}, {"name": "d"}]));
        // Primitive lists too.
        let patched = merge(json!({"metadata": {"finalizers": ["a", "b"]}}), json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}));
        assert_eq!(patched["metadata"]["finalizers"], json!(["b", "a"]));
    }

    #[test]
    fn new_fields_are_added_without_their_directives() {
        let patched = merge(json!({}), json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"$patch": "delete", "name": "Y"}]}], "$setElementOrder/containers": [{"name": "a"}]}}));
        assert_eq!(patched, json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}}));
    }

    /// The patch kubectl 1.32 sends for a second `apply` after the container
    /// image changed, env var B was removed and a label was added.
    #[test]
    fn kubectl_apply_second_time() {
        let live = deployment(
            json!([{"name": "app", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"}]),
            json!({"app": "web"}),
        );
        let patch = json!({
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}\n"},
                "labels": {"tier": "frontend"}
            },
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"$patch": "delete", "name": "B"}],
                    "image": "nginx:1.26",
                    "name": "app"
                }]
            }}}
        });
        let patched = merge(live, patch);
        assert_eq!(patched["metadata"]["labels"], json!({"app": "web", "tier": "frontend"}));
        assert_eq!(patched["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"], "{...}\n");
        assert_eq!(patched["metadata"]["finalizers"], json!(["a"]));
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "image": "nginx:1.26", "env": [{"name": "A", "value": "1"}],
                    "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"}])
        );
        assert_eq!(patched["spec"]["replicas"], 2);
    }
}
