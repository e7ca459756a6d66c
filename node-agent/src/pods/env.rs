//! A container's environment: `envFrom`, then `env` (`value` with `$(VAR)`
//! expansion, `valueFrom` from the downward API, ConfigMaps, Secrets and resource
//! fields), in Kubernetes' order and with its error messages.

use std::collections::{BTreeMap, HashMap};

use api::Quantity;
use client::k8s_openapi::api::core::v1::{Container, Pod, Secret};

use super::sources::Sources;

/// Why a container's environment cannot be built (the pod shows
/// `CreateContainerConfigError` with this message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound { key: String, namespace: String, name: String },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound { key: String, namespace: String, name: String },
    #[error("unsupported fieldRef {0:?}")]
    UnsupportedField(String),
    #[error("unsupported resourceFieldRef {0:?}")]
    UnsupportedResource(String),
    #[error("invalid divisor for {resource}: {reason}")]
    InvalidDivisor { resource: String, reason: String },
}

/// Expands `$(VAR)` in `input` from `env` as Kubernetes does: `$$` is a literal
/// `$`, and a reference to an undefined variable stays as written.
pub fn expand(input: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if after.is_empty() {
            // A trailing `$` is kept.
            out.push('$');
            rest = after;
        } else if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(') {
            match reference.find(')') {
                Some(close) => {
                    let name = &reference[..close];
                    match env.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &reference[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = reference;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The environment of `container`, in order (later names override earlier ones).
pub fn container_env(pod: &Pod, container: &Container, sources: &Sources) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        match env.iter_mut().find(|(existing, _)| *existing == name) {
            Some(slot) => slot.1 = value,
            None => env.push((name, value)),
        }
    };

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(reference) = &from.config_map_ref {
            let optional = reference.optional.unwrap_or(false);
            match sources.config_maps.get(&reference.name).cloned().flatten() {
                Some(map) => {
                    for (key, value) in map.data.unwrap_or_default() {
                        set(&mut env, format!("{prefix}{key}"), value);
                    }
                }
                None if optional => {}
                None => return Err(EnvError::ConfigMapNotFound(reference.name.clone())),
            }
        }
        if let Some(reference) = &from.secret_ref {
            let optional = reference.optional.unwrap_or(false);
            match sources.secrets.get(&reference.name).cloned().flatten() {
                Some(secret) => {
                    for (key, value) in secret_data(&secret) {
                        set(&mut env, format!("{prefix}{key}"), value);
                    }
                }
                None if optional => {}
                None => return Err(EnvError::SecretNotFound(reference.name.clone())),
            }
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    Some(field_value(pod, &field.field_path)?)
                } else if let Some(selector) = &from.config_map_key_ref {
                    let map = sources.config_maps.get(&selector.name).cloned().flatten();
                    let value = map.as_ref().and_then(|m| m.data.as_ref()?.get(&selector.key).cloned());
                    match (map, value, selector.optional.unwrap_or(false)) {
                        (_, Some(value), _) => Some(value),
                        (_, None, true) => None,
                        (None, None, false) => return Err(EnvError::ConfigMapNotFound(selector.name.clone())),
                        (Some(_), None, false) => {
                            return Err(EnvError::ConfigMapKeyNotFound {
                                key: selector.key.clone(),
                                namespace: namespace.clone(),
                                name: selector.name.clone(),
                            })
                        }
                    }
                } else if let Some(selector) = &from.secret_key_ref {
                    let secret = sources.secrets.get(&selector.name).cloned().flatten();
                    let value = secret.as_ref().and_then(|s| secret_data(s).remove(&selector.key));
                    match (secret, value, selector.optional.unwrap_or(false)) {
                        (_, Some(value), _) => Some(value),
                        (_, None, true) => None,
                        (None, None, false) => return Err(EnvError::SecretNotFound(selector.name.clone())),
                        (Some(_), None, false) => {
                            return Err(EnvError::SecretKeyNotFound {
                                key: selector.key.clone(),
                                namespace: namespace.clone(),
                                name: selector.name.clone(),
                            })
                        }
                    }
                } else if let Some(resource) = &from.resource_field_ref {
                    let target = match resource.container_name.as_deref() {
                        Some(name) if !name.is_empty() => find_container(pod, name).unwrap_or(container),
                        _ => container,
                    };
                    Some(resource_value(target, &resource.resource, resource.divisor.as_ref().map(|d| d.0.as_str()), sources)?)
                } else {
                    None
                }
            }
            (Some(value), None) => {
                let defined: HashMap<String, String> = env.iter().cloned().collect();
                Some(expand(value, &defined))
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env)
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

/// A Secret's `data` (and `stringData`, which the API server folds in) as text.
pub fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    let mut data: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(key, bytes)| (key.clone(), String::from_utf8_lossy(&bytes.0).into_owned()))
        .collect();
    data.extend(secret.string_data.clone().unwrap_or_default());
    data
}

/// The downward API's `fieldRef` paths.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, EnvError> {
    let metadata = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let from_map = |map: &Option<BTreeMap<String, String>>, key: &str| map.as_ref().and_then(|m| m.get(key).cloned()).unwrap_or_default();
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(from_map(&metadata.labels, key));
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        return Ok(from_map(&metadata.annotations, key));
    }
    let format_map = |map: &Option<BTreeMap<String, String>>| {
        map.iter().flatten().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))).collect::<Vec<_>>().join("\n")
    };
    Ok(match path {
        "metadata.name" => metadata.name.clone().unwrap_or_default(),
        "metadata.namespace" => metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => metadata.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&metadata.labels),
        "metadata.annotations" => format_map(&metadata.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => status.and_then(|s| s.host_ips.as_ref()).into_iter().flatten().map(|ip| ip.ip.clone()).collect::<Vec<_>>().join(","),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().map(|ip| ip.ip.clone()).collect::<Vec<_>>().join(","),
        other => return Err(EnvError::UnsupportedField(other.to_string())),
    })
}

/// `metadata.labels['key']` → `key`.
fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    let inner = path.strip_prefix(field)?.strip_prefix("['")?.strip_suffix("']")?;
    Some(inner)
}

/// `resourceFieldRef`: a container's request or limit, divided by the divisor and
/// rounded up; a missing limit is the node's allocatable, as in Kubernetes.
pub fn resource_value(container: &Container, resource: &str, divisor: Option<&str>, sources: &Sources) -> Result<String, EnvError> {
    let (kind, name) = resource.split_once('.').ok_or_else(|| EnvError::UnsupportedResource(resource.to_string()))?;
    let resources = container.resources.as_ref();
    let list = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(EnvError::UnsupportedResource(resource.to_string())),
    };
    let invalid = |reason: String| EnvError::InvalidDivisor { resource: resource.to_string(), reason };
    let given = list.and_then(|l| l.get(name)).map(|q| Quantity::parse(&q.0)).transpose().map_err(|e| invalid(e.to_string()))?;
    let value = match given {
        Some(value) => value,
        None if kind == "limits" => sources.node_allocatable.get(name).cloned().unwrap_or_else(|| Quantity::from_units(0, api::quantity::Format::DecimalSI)),
        None => Quantity::from_units(0, api::quantity::Format::DecimalSI),
    };
    let divisor = Quantity::parse(divisor.unwrap_or("1")).map_err(|e| invalid(e.to_string()))?;
    if divisor.nanos() <= 0 {
        return Err(invalid("must be positive".into()));
    }
    let quotient = value.nanos() / divisor.nanos() + i128::from(value.nanos() % divisor.nanos() != 0);
    Ok(quotient.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector, ResourceFieldSelector,
        ResourceRequirements, SecretKeySelector,
    };
    use client::k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
    use client::k8s_openapi::ByteString;

    fn env_of(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let env = env_of(&[("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &env), "1-two");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(MISSING)", &env), "$(MISSING)");
        assert_eq!(expand("$(A", &env), "$(A");
        assert_eq!(expand("cost: $5 $", &env), "cost: $5 $");
        assert_eq!(expand("ünï$(A)ç", &env), "ünï1ç");
        assert_eq!(expand("$$$$", &env), "$$");
    }

    fn var(name: &str, value: Option<&str>, from: Option<EnvVarSource>) -> EnvVar {
        EnvVar { name: name.into(), value: value.map(Into::into), value_from: from }
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"podIP": "10.0.0.5", "hostIP": "192.168.1.2"}
        }))
        .unwrap()
    }

    #[test]
    fn builds_env_from_every_source() {
        let mut sources = Sources::default();
        let config: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "cfg"}, "data": {"MODE": "fast", "LEVEL": "3"}})).unwrap();
        sources.config_maps.insert("cfg".into(), Some(config));
        let secret = Secret { data: Some(BTreeMap::from([("password".to_string(), ByteString(b"s3cret".to_vec()))])), ..Default::default() };
        sources.secrets.insert("creds".into(), Some(secret));
        let container = Container {
            name: "c".into(),
            env_from: Some(vec![EnvFromSource {
                prefix: Some("CFG_".into()),
                config_map_ref: Some(ConfigMapEnvSource { name: "cfg".into(), optional: None }),
                ..Default::default()
            }]),
            env: Some(vec![
                var("NAME", None, Some(EnvVarSource { field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }), ..Default::default() })),
                var("APP", None, Some(EnvVarSource { field_ref: Some(ObjectFieldSelector { field_path: "metadata.labels['app']".into(), api_version: None }), ..Default::default() })),
                var("IP", None, Some(EnvVarSource { field_ref: Some(ObjectFieldSelector { field_path: "status.podIP".into(), api_version: None }), ..Default::default() })),
                var("GREETING", Some("hello $(NAME) at $(IP)"), None),
                var("PASSWORD", None, Some(EnvVarSource { secret_key_ref: Some(SecretKeySelector { name: "creds".into(), key: "password".into(), optional: None }), ..Default::default() })),
                var("CFG_MODE", None, Some(EnvVarSource { config_map_key_ref: Some(ConfigMapKeySelector { name: "cfg".into(), key: "LEVEL".into(), optional: None }), ..Default::default() })),
                var("MEM", None, Some(EnvVarSource { resource_field_ref: Some(ResourceFieldSelector { resource: "limits.memory".into(), divisor: Some(K8sQuantity("1Mi".into())), container_name: None }), ..Default::default() })),
            ]),
            resources: Some(ResourceRequirements { limits: Some(BTreeMap::from([("memory".to_string(), K8sQuantity("64Mi".into()))])), ..Default::default() }),
            ..Default::default()
        };
        let env: HashMap<String, String> = container_env(&pod(), &container, &sources).unwrap().into_iter().collect();
        assert_eq!(env["CFG_LEVEL"], "3");
        assert_eq!(env["CFG_MODE"], "3", "env overrides envFrom");
        assert_eq!(env["NAME"], "web");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["GREETING"], "hello web at 10.0.0.5");
        assert_eq!(env["PASSWORD"], "s3cret");
        assert_eq!(env["MEM"], "64");
    }

    #[test]
    fn missing_sources_are_errors_unless_optional() {
        let sources = Sources::default();
        let mut container = Container { name: "c".into(), ..Default::default() };
        container.env = Some(vec![var("X", None, Some(EnvVarSource { config_map_key_ref: Some(ConfigMapKeySelector { name: "nope".into(), key: "k".into(), optional: Some(true) }), ..Default::default() }))]);
        assert_eq!(container_env(&pod(), &container, &sources).unwrap(), vec![]);
        container.env = Some(vec![var("X", None, Some(EnvVarSource { config_map_key_ref: Some(ConfigMapKeySelector { name: "nope".into(), key: "k".into(), optional: None }), ..Default::default() }))]);
        assert_eq!(container_env(&pod(), &container, &sources).unwrap_err().to_string(), "configmap \"nope\" not found");
    }

    #[test]
    fn cpu_limits_round_up_to_the_divisor() {
        let container = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements { limits: Some(BTreeMap::from([("cpu".to_string(), K8sQuantity("250m".into()))])), ..Default::default() }),
            ..Default::default()
        };
        let sources = Sources::default();
        assert_eq!(resource_value(&container, "limits.cpu", None, &sources).unwrap(), "1");
        assert_eq!(resource_value(&container, "limits.cpu", Some("1m"), &sources).unwrap(), "250");
    }
}
