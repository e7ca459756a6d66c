//! The smaller kinds: Namespace, Node, ConfigMap, Secret, Endpoints, Event, Lease.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::field::{FieldError, Path};
use super::meta::{self, invalid_each, validate_nonnegative, Scope, FIELD_IMMUTABLE_ERROR_MSG};
use super::names::{self, NameValidator};
use super::pod::{validate_protocol, validate_taint_effect};

/// Kubernetes' limit on the total size of a ConfigMap's or Secret's data.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;
const IMMUTABLE_DATA_MSG: &str = "field is immutable when `immutable` is set";

fn metadata(meta: &ObjectMeta, scope: Scope, name_fn: NameValidator) -> Vec<FieldError> {
    meta::validate_object_meta(meta, scope, name_fn, &Path::new("metadata"))
}

fn metadata_update(new: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    meta::validate_object_meta_update(new, old, &Path::new("metadata"))
}

pub fn validate_namespace(namespace: &Namespace) -> Vec<FieldError> {
    let mut errs = metadata(
        &namespace.metadata,
        Scope::Cluster,
        names::name_is_dns_label,
    );
    let finalizers = namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_deref())
        .unwrap_or_default();
    for (i, finalizer) in finalizers.iter().enumerate() {
        errs.extend(invalid_each(
            &Path::new("spec").child("finalizers").index(i),
            finalizer,
            names::is_qualified_name(finalizer),
        ));
    }
    if let Some(phase) = namespace.status.as_ref().and_then(|s| s.phase.as_deref()) {
        if !matches!(phase, "Active" | "Terminating") {
            errs.push(FieldError::not_supported(
                &Path::new("status").child("phase"),
                phase,
                &["Active", "Terminating"],
            ));
        }
    }
    errs
}

pub fn validate_namespace_update(new: &Namespace, old: &Namespace) -> Vec<FieldError> {
    let mut errs = metadata_update(&new.metadata, &old.metadata);
    errs.extend(validate_namespace(new));
    errs
}

pub fn validate_node(node: &Node) -> Vec<FieldError> {
    let mut errs = metadata(&node.metadata, Scope::Cluster, names::name_is_dns_subdomain);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, taint) in taints.iter().enumerate() {
        let p = Path::new("spec").child("taints").index(i);
        errs.extend(meta::validate_label_name(&taint.key, &p.child("key")));
        if let Some(value) = taint.value.as_deref() {
            errs.extend(invalid_each(
                &p.child("value"),
                value,
                names::is_valid_label_value(value),
            ));
        }
        errs.extend(validate_taint_effect(&taint.effect, &p.child("effect")));
        if !seen.insert((taint.key.as_str(), taint.effect.as_str())) {
            errs.push(FieldError::duplicate(
                &p,
                format!("{}:{}", taint.key, taint.effect),
            ));
        }
    }
    errs
}

pub fn validate_node_update(new: &Node, old: &Node) -> Vec<FieldError> {
    let mut errs = metadata_update(&new.metadata, &old.metadata);
    errs.extend(validate_node(new));
    let cidr = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .unwrap_or_default()
    };
    if !cidr(old).is_empty() && cidr(new) != cidr(old) {
        errs.push(FieldError::forbidden(
            &Path::new("spec").child("podCIDR"),
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    errs
}

/// Keys are config keys, unique across both maps, and the total size is bounded.
fn validate_data_keys(maps: [(&str, Vec<(&str, usize)>); 2]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for (field, entries) in maps {
        for (key, size) in entries {
            let p = Path::new(field).key(key);
            errs.extend(invalid_each(&p, key, names::is_config_map_key(key)));
            if !seen.insert(key) {
                errs.push(FieldError::invalid(
                    &p,
                    key,
                    "duplicate of key present in data",
                ));
            }
            total += size;
        }
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long(&Path::new(""), MAX_DATA_SIZE));
    }
    errs
}

pub fn validate_config_map(cm: &ConfigMap) -> Vec<FieldError> {
    let mut errs = metadata(
        &cm.metadata,
        Scope::Namespaced,
        names::name_is_dns_subdomain,
    );
    let data = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.len()))
        .collect();
    let binary = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.len()))
        .collect();
    errs.extend(validate_data_keys([("data", data), ("binaryData", binary)]));
    errs
}

/// An immutable object's data may not change, and it may not become mutable again.
fn validate_immutable_data(
    old_immutable: Option<bool>,
    new_immutable: Option<bool>,
    data_changed: bool,
    data_fields: &[&str],
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old_immutable != Some(true) {
        return errs;
    }
    if new_immutable != Some(true) {
        errs.push(FieldError::forbidden(
            &Path::new("immutable"),
            IMMUTABLE_DATA_MSG,
        ));
    }
    if data_changed {
        for field in data_fields {
            errs.push(FieldError::forbidden(&Path::new(field), IMMUTABLE_DATA_MSG));
        }
    }
    errs
}

pub fn validate_config_map_update(new: &ConfigMap, old: &ConfigMap) -> Vec<FieldError> {
    let mut errs = metadata_update(&new.metadata, &old.metadata);
    errs.extend(validate_config_map(new));
    let changed = new.data != old.data || new.binary_data != old.binary_data;
    errs.extend(validate_immutable_data(
        old.immutable,
        new.immutable,
        changed,
        &["data"],
    ));
    errs
}

pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let mut errs = metadata(
        &secret.metadata,
        Scope::Namespaced,
        names::name_is_dns_subdomain,
    );
    let data = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.len()))
        .collect();
    errs.extend(validate_data_keys([
        ("data", data),
        ("stringData", Vec::new()),
    ]));
    let has_key = |key: &str| secret.data.as_ref().is_some_and(|d| d.contains_key(key));
    let required_keys: &[&str] = match secret.type_.as_deref().unwrap_or("") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for key in required_keys.iter().filter(|k| !has_key(k)) {
        errs.push(FieldError::required(&Path::new("data").key(key), ""));
    }
    errs
}

pub fn validate_secret_update(new: &Secret, old: &Secret) -> Vec<FieldError> {
    let mut errs = metadata_update(&new.metadata, &old.metadata);
    errs.extend(validate_secret(new));
    errs.extend(meta::validate_immutable_str(
        new.type_.as_deref(),
        old.type_.as_deref(),
        &Path::new("type"),
    ));
    errs.extend(validate_immutable_data(
        old.immutable,
        new.immutable,
        new.data != old.data,
        &["data"],
    ));
    errs
}

pub fn validate_endpoints(endpoints: &Endpoints) -> Vec<FieldError> {
    let mut errs = metadata(
        &endpoints.metadata,
        Scope::Namespaced,
        names::name_is_dns_subdomain,
    );
    for (i, subset) in endpoints.subsets.iter().flatten().enumerate() {
        let p = Path::new("subsets").index(i);
        let addresses = [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ];
        for (field, list) in addresses {
            for (j, address) in list.iter().flatten().enumerate() {
                let ap = p.child(field).index(j).child("ip");
                if address.ip.parse::<IpAddr>().is_err() {
                    errs.push(FieldError::invalid(
                        &ap,
                        address.ip.as_str(),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    ));
                }
            }
        }
        let ports = subset.ports.as_deref().unwrap_or_default();
        let mut port_names = BTreeSet::new();
        for (j, port) in ports.iter().enumerate() {
            let pp = p.child("ports").index(j);
            let name = port.name.as_deref().unwrap_or("");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(&pp.child("name"), ""));
            } else if !name.is_empty() {
                errs.extend(invalid_each(
                    &pp.child("name"),
                    name,
                    names::is_dns1123_label(name),
                ));
                if !port_names.insert(name) {
                    errs.push(FieldError::duplicate(&pp.child("name"), name));
                }
            }
            for msg in names::is_valid_port_num(port.port.into()) {
                errs.push(FieldError::invalid(&pp.child("port"), port.port, &msg));
            }
            errs.extend(validate_protocol(
                port.protocol.as_deref(),
                &pp.child("protocol"),
            ));
        }
    }
    errs
}

pub fn validate_service_account(account: &ServiceAccount) -> Vec<FieldError> {
    metadata(
        &account.metadata,
        Scope::Namespaced,
        names::name_is_dns_subdomain,
    )
}

pub fn validate_service_account_update(
    new: &ServiceAccount,
    old: &ServiceAccount,
) -> Vec<FieldError> {
    let mut errs = metadata_update(&new.metadata, &old.metadata);
    errs.extend(validate_service_account(new));
    errs
}

pub fn validate_endpoints_update(new: &Endpoints, old: &Endpoints) -> Vec<FieldError> {
    let mut errs = metadata_update(&new.metadata, &old.metadata);
    errs.extend(validate_endpoints(new));
    errs
}

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// core/v1 Events as Kubernetes' `legacyValidateEvent` checks them.
pub fn validate_event(event: &Event) -> Vec<FieldError> {
    let mut errs = metadata(
        &event.metadata,
        Scope::Namespaced,
        names::name_is_dns_subdomain,
    );
    let namespace = event.metadata.namespace.as_deref().unwrap_or("");
    let involved_namespace = event.involved_object.namespace.as_deref().unwrap_or("");
    let involved_path = Path::new("involvedObject").child("namespace");
    let mismatch = || {
        FieldError::invalid(
            &involved_path,
            involved_namespace,
            "does not match event.namespace",
        )
    };
    if event.event_time.is_none() {
        let ok = if involved_namespace.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == involved_namespace
        };
        if !ok {
            errs.push(mismatch());
        }
    } else {
        if involved_namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(mismatch());
        }
        let controller = event.reporting_component.as_deref().unwrap_or("");
        let controller_path = Path::new("reportingController");
        if controller.is_empty() {
            errs.push(FieldError::required(&controller_path, ""));
        }
        errs.extend(invalid_each(
            &controller_path,
            controller,
            names::is_qualified_name(controller),
        ));
        let limited = [
            (
                "reportingInstance",
                event.reporting_instance.as_deref(),
                REPORTING_INSTANCE_LIMIT,
                true,
            ),
            ("action", event.action.as_deref(), ACTION_LIMIT, true),
            ("reason", event.reason.as_deref(), REASON_LIMIT, true),
            ("message", event.message.as_deref(), NOTE_LIMIT, false),
        ];
        for (field, value, limit, required) in limited {
            let value = value.unwrap_or("");
            if required && value.is_empty() {
                errs.push(FieldError::required(&Path::new(field), ""));
            }
            if value.len() > limit {
                errs.push(FieldError::invalid(
                    &Path::new(field),
                    "",
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
    }
    if let Some(t) = event
        .type_
        .as_deref()
        .filter(|t| !t.is_empty() && !matches!(*t, "Normal" | "Warning"))
    {
        errs.push(FieldError::not_supported(
            &Path::new("type"),
            t,
            &["Normal", "Warning"],
        ));
    }
    errs
}

pub fn validate_event_update(new: &Event, old: &Event) -> Vec<FieldError> {
    let mut errs = metadata_update(&new.metadata, &old.metadata);
    errs.extend(validate_event(new));
    if new.involved_object != old.involved_object {
        errs.push(FieldError::invalid(
            &Path::new("involvedObject"),
            new.involved_object.name.clone(),
            FIELD_IMMUTABLE_ERROR_MSG,
        ));
    }
    errs
}

pub fn validate_lease(lease: &Lease) -> Vec<FieldError> {
    let mut errs = metadata(
        &lease.metadata,
        Scope::Namespaced,
        names::name_is_dns_subdomain,
    );
    let Some(spec) = &lease.spec else { return errs };
    let p = Path::new("spec");
    if let Some(duration) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
        errs.push(FieldError::invalid(
            &p.child("leaseDurationSeconds"),
            duration,
            "must be greater than 0",
        ));
    }
    if let Some(transitions) = spec.lease_transitions {
        errs.extend(validate_nonnegative(
            transitions.into(),
            &p.child("leaseTransitions"),
        ));
    }
    if let Some(strategy) = spec.strategy.as_deref() {
        if strategy != "OldestEmulationVersion" {
            errs.push(FieldError::not_supported(
                &p.child("strategy"),
                strategy,
                &["OldestEmulationVersion"],
            ));
        }
    }
    if spec.preferred_holder.is_some() && spec.strategy.is_none() {
        errs.push(FieldError::forbidden(
            &p.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

pub fn validate_lease_update(new: &Lease, old: &Lease) -> Vec<FieldError> {
    let mut errs = metadata_update(&new.metadata, &old.metadata);
    errs.extend(validate_lease(new));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn namespaces_are_dns_labels_without_namespace() {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "a.b"}})).unwrap();
        let errs = messages(validate_namespace(&ns));
        assert_eq!(errs.len(), 1);
        assert!(errs[0]
            .starts_with("metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label"));
    }

    #[test]
    fn config_maps_and_secrets() {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "default"},
            "data": {"ok.conf": "x", "bad/key": "y"}, "binaryData": {"ok.conf": "eA=="}}))
            .unwrap();
        assert_eq!(
            messages(validate_config_map(&cm)),
            vec![
                "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "binaryData[ok.conf]: Invalid value: \"ok.conf\": duplicate of key present in data",
            ]
        );
        let mut immutable = cm.clone();
        immutable.immutable = Some(true);
        immutable.data = None;
        immutable.binary_data = None;
        let mut changed = immutable.clone();
        changed.data = Some([("k".to_string(), "v".to_string())].into());
        assert_eq!(
            messages(validate_config_map_update(&changed, &immutable)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let tls: Secret =
            serde_json::from_value(json!({"metadata": {"name": "t", "namespace": "default"},
            "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}))
            .unwrap();
        assert_eq!(
            messages(validate_secret(&tls)),
            vec!["data[tls.key]: Required value"]
        );
    }

    #[test]
    fn leases_events_nodes_endpoints() {
        let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 0, "leaseTransitions": -1}})).unwrap();
        assert_eq!(
            messages(validate_lease(&lease)),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
        let event: Event = serde_json::from_value(json!({"metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "other"}, "reason": "Started", "type": "Info"})).unwrap();
        assert_eq!(
            messages(validate_event(&event)),
            vec![
                "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace",
                "type: Unsupported value: \"Info\": supported values: \"Normal\", \"Warning\"",
            ]
        );
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "node-1"},
            "spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}, {"key": "gpu", "effect": "NoSchedule"}, {"key": "x", "effect": "Sometimes"}]}})).unwrap();
        assert_eq!(
            messages(validate_node(&node)),
            vec![
                "spec.taints[1]: Duplicate value: \"gpu:NoSchedule\"",
                "spec.taints[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            ]
        );
        let ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.0.0.300"}], "ports": [{"port": 80, "protocol": "TCP"}]}]})).unwrap();
        assert_eq!(
            messages(validate_endpoints(&ep)),
            vec!["subsets[0].addresses[0].ip: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
        );
    }
}
