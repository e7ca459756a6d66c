//! Defaulting as Kubernetes does it when it decodes an object
//! (`SetDefaults_*` of `pkg/apis/*/v1`). Defaults fill only what is unset,
//! so they can run on every create and update.

mod pod;
mod workloads;

use k8s_openapi::api::core::v1::{
    Endpoints, Namespace, NamespaceStatus, Node, Secret, Service, ServiceSpec,
    SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub(crate) use pod::volume_sources;
pub use pod::{default_pod, default_pod_spec, pull_policy_for};
pub use workloads::{
    default_daemon_set, default_deployment, default_job, default_replica_set, generate_job_selector,
};

/// `SetDefaults_PriorityClass`: classes preempt lower priorities unless told not to.
pub fn default_priority_class(class: &mut k8s_openapi::api::scheduling::v1::PriorityClass) {
    class.preemption_policy.get_or_insert_with(|| "PreemptLowerPriority".to_string());
}

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// `metadata.namespace` of a namespaced object sent without one.
pub fn default_namespace_field(meta: &mut ObjectMeta) {
    if meta.namespace.as_deref().unwrap_or("").is_empty() {
        meta.namespace = Some("default".to_string());
    }
}

pub fn default_service(service: &mut Service) {
    let spec = service.spec.get_or_insert_with(ServiceSpec::default);
    if spec.session_affinity.as_deref().unwrap_or("").is_empty() {
        spec.session_affinity = Some("None".into());
    }
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let config = spec
                .session_affinity_config
                .get_or_insert_with(SessionAffinityConfig::default);
            let client_ip = config.client_ip.get_or_insert_with(Default::default);
            client_ip.timeout_seconds.get_or_insert(10800);
        }
        _ => {}
    }
    if spec.type_.as_deref().unwrap_or("").is_empty() {
        spec.type_ = Some("ClusterIP".into());
    }
    for port in spec.ports.iter_mut().flatten() {
        if port.protocol.as_deref().unwrap_or("").is_empty() {
            port.protocol = Some("TCP".into());
        }
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let service_type = spec.type_.clone().unwrap_or_default();
    if matches!(service_type.as_str(), "NodePort" | "LoadBalancer")
        && spec
            .external_traffic_policy
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        spec.external_traffic_policy = Some("Cluster".into());
    }
    if service_type != "ExternalName" && spec.internal_traffic_policy.is_none() {
        spec.internal_traffic_policy = Some("Cluster".into());
    }
    if service_type == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }
}

pub fn default_namespace(namespace: &mut Namespace) {
    if let Some(name) = namespace.metadata.name.clone().filter(|n| !n.is_empty()) {
        namespace
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(NAMESPACE_NAME_LABEL.into(), name);
    }
    let status = namespace
        .status
        .get_or_insert_with(NamespaceStatus::default);
    if status.phase.as_deref().unwrap_or("").is_empty() {
        status.phase = Some("Active".into());
    }
}

pub fn default_secret(secret: &mut Secret) {
    if secret.type_.as_deref().unwrap_or("").is_empty() {
        secret.type_ = Some("Opaque".into());
    }
}

pub fn default_endpoints(endpoints: &mut Endpoints) {
    let ports = endpoints
        .subsets
        .iter_mut()
        .flatten()
        .flat_map(|s| s.ports.iter_mut().flatten());
    for port in ports {
        if port.protocol.as_deref().unwrap_or("").is_empty() {
            port.protocol = Some("TCP".into());
        }
    }
}

/// A node's allocatable resources start as its capacity.
pub fn default_node(node: &mut Node) {
    if let Some(status) = node.status.as_mut() {
        if status.allocatable.is_none() {
            status.allocatable.clone_from(&status.capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_defaults() {
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "TCP"}]}
        }))
        .unwrap();
        default_service(&mut svc);
        assert_eq!(
            serde_json::to_value(&svc.spec).unwrap(),
            json!({
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 443, "protocol": "TCP", "targetPort": "https"}],
                "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"
            })
        );
        let mut lb: Service = serde_json::from_value(json!({"metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}})).unwrap();
        default_service(&mut lb);
        let spec = lb.spec.unwrap();
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(spec.allocate_load_balancer_node_ports, Some(true));
        assert_eq!(
            spec.session_affinity_config
                .unwrap()
                .client_ip
                .unwrap()
                .timeout_seconds,
            Some(10800)
        );
    }

    #[test]
    fn namespace_secret_endpoints_defaults() {
        let mut ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
        default_namespace(&mut ns);
        assert_eq!(
            serde_json::to_value(&ns).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}}, "status": {"phase": "Active"}})
        );
        let mut secret = Secret::default();
        default_secret(&mut secret);
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        let mut ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}))
        .unwrap();
        default_endpoints(&mut ep);
        assert_eq!(
            ep.subsets.unwrap()[0].ports.as_ref().unwrap()[0]
                .protocol
                .as_deref(),
            Some("TCP")
        );
        let mut meta = ObjectMeta::default();
        default_namespace_field(&mut meta);
        assert_eq!(meta.namespace.as_deref(), Some("default"));
    }
}
