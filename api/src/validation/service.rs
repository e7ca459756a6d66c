//! Services (`ValidateService`, `ValidateServiceUpdate`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::field::{go_quote, BadValue, FieldError, Path};
use super::meta::{self, invalid_each, Scope};
use super::names;
use super::pod::{validate_port_num_or_name, validate_protocol};

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: [&str; 2] = ["ClientIP", "None"];
const TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];

pub fn validate_service(service: &Service) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta(
        &service.metadata,
        Scope::Namespaced,
        names::name_is_dns1035_label,
        &Path::new("metadata"),
    );
    let spec_path = Path::new("spec");
    let Some(spec) = &service.spec else {
        errs.push(FieldError::required(&spec_path, ""));
        return errs;
    };
    let service_type = spec.type_.as_deref().unwrap_or("");
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    let headless = cluster_ip == "None";
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errs.push(FieldError::required(&spec_path.child("ports"), ""));
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = spec_path.child("ports").index(i);
        let name = port.name.as_deref().unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else if !name.is_empty() {
            errs.extend(invalid_each(
                &p.child("name"),
                name,
                names::is_dns1123_label(name),
            ));
            if !port_names.insert(name) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        for msg in names::is_valid_port_num(port.port.into()) {
            errs.push(FieldError::invalid(&p.child("port"), port.port, &msg));
        }
        errs.extend(validate_protocol(
            port.protocol.as_deref(),
            &p.child("protocol"),
        ));
        if let Some(target) = &port.target_port {
            errs.extend(validate_port_num_or_name(target, &p.child("targetPort")));
        }
        let node_port = port.node_port.unwrap_or(0);
        if node_port != 0 && !matches!(service_type, "NodePort" | "LoadBalancer") {
            errs.push(FieldError::forbidden(
                &p.child("nodePort"),
                &format!("may not be used when `type` is '{service_type}'"),
            ));
        } else if node_port != 0 {
            for msg in names::is_valid_port_num(node_port.into()) {
                errs.push(FieldError::invalid(&p.child("nodePort"), node_port, &msg));
            }
        }
    }
    match service_type {
        "" => errs.push(FieldError::required(&spec_path.child("type"), "")),
        t if !SERVICE_TYPES.contains(&t) => errs.push(FieldError::not_supported(
            &spec_path.child("type"),
            t,
            &SERVICE_TYPES,
        )),
        "ExternalName" => {
            let external = spec.external_name.as_deref().unwrap_or("");
            let p = spec_path.child("externalName");
            if external.is_empty() {
                errs.push(FieldError::required(&p, ""));
            } else {
                errs.extend(invalid_each(
                    &p,
                    external,
                    names::is_dns1123_subdomain(external.trim_end_matches('.')),
                ));
            }
        }
        _ => {}
    }
    if let Some(affinity) = spec.session_affinity.as_deref() {
        if !SESSION_AFFINITIES.contains(&affinity) {
            errs.push(FieldError::not_supported(
                &spec_path.child("sessionAffinity"),
                affinity,
                &SESSION_AFFINITIES,
            ));
        }
    }
    for (field, value) in [
        ("internalTrafficPolicy", &spec.internal_traffic_policy),
        ("externalTrafficPolicy", &spec.external_traffic_policy),
    ] {
        if let Some(policy) = value.as_deref().filter(|p| !TRAFFIC_POLICIES.contains(p)) {
            errs.push(FieldError::not_supported(
                &spec_path.child(field),
                policy,
                &TRAFFIC_POLICIES,
            ));
        }
    }
    errs.extend(meta::validate_labels(
        spec.selector.as_ref(),
        &spec_path.child("selector"),
    ));
    if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<IpAddr>().is_err() {
        errs.push(FieldError::invalid(
            &spec_path.child("clusterIPs").index(0),
            cluster_ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    errs
}

/// The cluster IP is fixed once set (except to or from ExternalName).
pub fn validate_service_update(new: &Service, old: &Service) -> Vec<FieldError> {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    errs.extend(validate_service(new));
    let (Some(new_spec), Some(old_spec)) = (&new.spec, &old.spec) else {
        return errs;
    };
    let involves_external_name = new_spec.type_.as_deref() == Some("ExternalName")
        || old_spec.type_.as_deref() == Some("ExternalName");
    let old_ip = old_spec.cluster_ip.as_deref().unwrap_or("");
    let new_ip = new_spec.cluster_ip.as_deref().unwrap_or("");
    if !involves_external_name && !old_ip.is_empty() && new_ip != old_ip {
        let new_ips = new_spec
            .cluster_ips
            .clone()
            .unwrap_or_else(|| vec![new_ip.to_string()]);
        let quoted: Vec<String> = new_ips.iter().map(|ip| go_quote(ip)).collect();
        errs.push(FieldError::invalid(
            &Path::new("spec").child("clusterIPs").index(0),
            BadValue::Raw(format!("[]string{{{}}}", quoted.join(", "))),
            "may not change once set",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::default_service;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        let mut svc: Service = serde_json::from_value(value).unwrap();
        default_service(&mut svc);
        svc
    }

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn table_of_services() {
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}), vec![]),
            (
                json!({"metadata": {"name": "1web", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}),
                vec!["metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"],
            ),
            (
                json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {}}),
                vec!["spec.ports: Required value"],
            ),
            (
                json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"type": "Magic", "sessionAffinity": "Sticky", "ports": [
                    {"port": 80, "name": "http"}, {"port": 0, "name": "http", "targetPort": "Http_1"}, {"port": 81, "nodePort": 30000}]}}),
                vec![
                    "spec.ports[1].name: Duplicate value: \"http\"",
                    "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.ports[1].targetPort: Invalid value: \"Http_1\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                    "spec.ports[2].name: Required value",
                    "spec.ports[2].nodePort: Forbidden: may not be used when `type` is 'Magic'",
                    "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                    "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
                ],
            ),
            (json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {"clusterIP": "None"}}), vec![]),
        ];
        for (input, want) in cases {
            assert_eq!(
                messages(validate_service(&service(input.clone()))),
                want,
                "for {input}"
            );
        }
    }

    #[test]
    fn cluster_ip_is_immutable() {
        let old = service(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}),
        );
        let mut new = old.clone();
        new.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.11".into());
        assert_eq!(
            messages(validate_service_update(&new, &old)),
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"]
        );
        assert!(validate_service_update(&old, &old).is_empty());
    }
}
