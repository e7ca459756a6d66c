//! What the API server does to an object around a write besides defaulting
//! and validation (Kubernetes' REST strategies): a fresh status on create,
//! the stored status kept on spec updates, the stored spec kept on status
//! updates, and `metadata.generation` following spec changes.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Binding, LoadBalancerStatus, Pod, PodCondition, PodStatus, Service, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::defaults::generate_job_selector;
use crate::resources::{add_into, parse_resource_list, ResourceList};
use crate::validation::{FieldError, Path};
use crate::Object;

/// Copies one field between two objects of the same kind, for the listed kinds.
macro_rules! keep_old {
    ($new:expr, $old:expr, $field:ident, [$($variant:ident),*]) => {
        match ($new, $old) {
            $((Object::$variant(new), Object::$variant(old)) => new.$field.clone_from(&old.$field),)*
            _ => {}
        }
    };
}

/// Whether the kind counts spec changes in `metadata.generation`.
fn tracks_generation(object: &Object) -> bool {
    matches!(
        object,
        Object::Deployment(_) | Object::ReplicaSet(_) | Object::DaemonSet(_) | Object::Job(_)
    )
}

/// Before a create (after defaulting, with `metadata.uid` set): status starts over.
pub fn prepare_for_create(object: &mut Object) {
    if tracks_generation(object) {
        object.metadata_mut().generation = Some(1);
    }
    match object {
        Object::Pod(pod) => {
            let qos = qos_class(pod).to_string();
            pod.status = Some(PodStatus {
                phase: Some("Pending".into()),
                qos_class: Some(qos),
                ..Default::default()
            });
        }
        Object::Service(service) => {
            service.status = Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus::default()),
                ..Default::default()
            })
        }
        Object::Namespace(namespace) => {
            let spec = namespace.spec.get_or_insert_with(Default::default);
            spec.finalizers
                .get_or_insert_with(|| vec!["kubernetes".into()]);
        }
        Object::Deployment(d) => d.status = Some(Default::default()),
        Object::ReplicaSet(rs) => rs.status = Some(Default::default()),
        Object::DaemonSet(ds) => ds.status = Some(Default::default()),
        Object::Job(job) => {
            job.status = Some(Default::default());
            generate_job_selector(job);
        }
        _ => {}
    }
}

/// Before an update of the main resource: status only changes through `/status`,
/// a namespace's finalizers only through `/finalize`, and the generation counts
/// spec changes.
pub fn prepare_for_update(new: &mut Object, old: &Object) {
    keep_old!(
        &mut *new,
        old,
        status,
        [Pod, Service, Namespace, Node, Deployment, ReplicaSet, DaemonSet, Job]
    );
    if let (Object::Namespace(new), Object::Namespace(old)) = (&mut *new, old) {
        let old_finalizers = old.spec.as_ref().and_then(|s| s.finalizers.clone());
        new.spec.get_or_insert_with(Default::default).finalizers = old_finalizers;
    }
    if tracks_generation(new) {
        let old_generation = old.metadata().generation.unwrap_or(1);
        let spec_changed = match (&*new, old) {
            (Object::Deployment(n), Object::Deployment(o)) => n.spec != o.spec,
            (Object::ReplicaSet(n), Object::ReplicaSet(o)) => n.spec != o.spec,
            (Object::DaemonSet(n), Object::DaemonSet(o)) => n.spec != o.spec,
            (Object::Job(n), Object::Job(o)) => n.spec != o.spec,
            _ => false,
        };
        new.metadata_mut().generation = Some(old_generation + i64::from(spec_changed));
    }
}

/// Before an update through `/status`: everything but the status stays as stored.
pub fn prepare_for_status_update(new: &mut Object, old: &Object) {
    keep_old!(
        &mut *new,
        old,
        spec,
        [Pod, Service, Namespace, Node, Deployment, ReplicaSet, DaemonSet, Job]
    );
    let (new_meta, old_meta) = (new.metadata_mut(), old.metadata());
    new_meta.generation = old_meta.generation;
    new_meta.labels.clone_from(&old_meta.labels);
    new_meta.annotations.clone_from(&old_meta.annotations);
    new_meta.finalizers.clone_from(&old_meta.finalizers);
    new_meta
        .owner_references
        .clone_from(&old_meta.owner_references);
}

/// Before `/finalize` on a namespace: only `spec.finalizers` changes.
pub fn prepare_for_finalize(new: &mut Object, old: &Object) {
    if let (Object::Namespace(new), Object::Namespace(old)) = (new, old) {
        let finalizers = new.spec.as_ref().and_then(|s| s.finalizers.clone());
        **new = (**old).clone();
        new.spec.get_or_insert_with(Default::default).finalizers = finalizers;
    }
}

/// The pod's QoS class (`Guaranteed`, `Burstable`, `BestEffort`), as `qos.GetPodQOS`:
/// only positive cpu and memory amounts count.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let compute = |list| {
        let mut parsed = parse_resource_list(list);
        parsed.retain(|name, q| matches!(name.as_str(), "cpu" | "memory") && q.nanos() > 0);
        parsed
    };
    let mut requests = ResourceList::new();
    let mut limits = ResourceList::new();
    let mut every_container_limited = true;
    for container in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let resources = container.resources.as_ref();
        let container_limits = compute(resources.and_then(|r| r.limits.as_ref()));
        every_container_limited &= container_limits.len() == 2;
        add_into(
            &mut requests,
            &compute(resources.and_then(|r| r.requests.as_ref())),
        );
        add_into(&mut limits, &container_limits);
    }
    if requests.is_empty() && limits.is_empty() {
        "BestEffort"
    } else if every_container_limited && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Why a pod cannot be bound to a node (`pods/binding`); the API server answers 409.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("pod {pod} is already assigned to node {node:?}")]
    AlreadyAssigned { pod: String, node: String },
    #[error("pod {0} is being deleted, cannot be assigned to a host")]
    BeingDeleted(String),
}

/// A `Binding` as Kubernetes' `ValidatePodBinding` checks it.
pub fn validate_binding(binding: &Binding) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let target = Path::new("target");
    let kind = binding.target.kind.as_deref().unwrap_or("");
    if !kind.is_empty() && kind != "Node" {
        errs.push(FieldError::not_supported(
            &target.child("kind"),
            kind,
            &["Node", "<empty>"],
        ));
    }
    if binding.target.name.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::required(&target.child("name"), ""));
    }
    errs
}

/// Binds a pod to the binding's node as Kubernetes does: sets `spec.nodeName`,
/// copies the binding's annotations and marks the pod `PodScheduled`.
pub fn bind_pod(pod: &mut Pod, binding: &Binding, now: Time) -> Result<(), BindError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(BindError::BeingDeleted(name));
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Err(BindError::AlreadyAssigned {
            pod: name,
            node: node.to_string(),
        });
    }
    spec.node_name.clone_from(&binding.target.name);
    if let Some(annotations) = &binding.metadata.annotations {
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .extend(annotations.clone());
    }
    let conditions = pod
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    let scheduled = PodCondition {
        type_: "PodScheduled".into(),
        status: "True".into(),
        last_transition_time: Some(now),
        ..Default::default()
    };
    match conditions.iter_mut().find(|c| c.type_ == "PodScheduled") {
        Some(existing) if existing.status == "True" => {}
        Some(existing) => *existing = scheduled,
        None => conditions.push(scheduled),
    }
    Ok(())
}

/// Whether the API server must allocate a cluster IP for this Service
/// (not ExternalName, not headless, none set yet).
pub fn needs_cluster_ip(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.type_.as_deref() != Some("ExternalName")
        && spec.cluster_ip.as_deref().unwrap_or("").is_empty()
}

/// Records an allocated (or, for `None`, headless) cluster IP the way Kubernetes
/// shows it: `clusterIP`, `clusterIPs`, `ipFamilies`, `ipFamilyPolicy`.
pub fn set_cluster_ip(service: &mut Service, ip: Option<IpAddr>) {
    let spec = service.spec.get_or_insert_with(Default::default);
    let family = match ip {
        Some(IpAddr::V6(_)) => "IPv6",
        _ => "IPv4",
    };
    let text = ip.map_or_else(|| "None".to_string(), |ip| ip.to_string());
    spec.cluster_ip = Some(text.clone());
    spec.cluster_ips = Some(vec![text]);
    spec.ip_families.get_or_insert_with(|| vec![family.into()]);
    spec.ip_family_policy
        .get_or_insert_with(|| "SingleStack".into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: serde_json::Value) -> Object {
        let mut object = Object::from_value(value).unwrap();
        object.apply_defaults();
        object
    }

    fn pod_with(resources: serde_json::Value) -> Object {
        object(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]}}),
        )
    }

    #[test]
    fn qos_classes() {
        let cases = [
            (json!({}), "BestEffort"),
            (json!({"requests": {"cpu": "100m"}}), "Burstable"),
            (
                json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
                "Guaranteed",
            ),
            (
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}),
                "Burstable",
            ),
            (json!({"limits": {"cpu": "1"}}), "Burstable"),
            (json!({"requests": {"cpu": "0"}}), "BestEffort"),
        ];
        for (resources, want) in cases {
            let Object::Pod(pod) = pod_with(resources.clone()) else {
                unreachable!()
            };
            assert_eq!(qos_class(&pod), want, "{resources}");
        }
    }

    #[test]
    fn create_sets_fresh_status_and_generation() {
        let mut pod = pod_with(json!({}));
        prepare_for_create(&mut pod);
        assert_eq!(
            pod.to_value().unwrap()["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        let mut ns =
            object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}));
        prepare_for_create(&mut ns);
        assert_eq!(
            ns.to_value().unwrap()["spec"],
            json!({"finalizers": ["kubernetes"]})
        );
        let mut deployment = object(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {}, "template": {}}, "status": {"replicas": 9}}),
        );
        prepare_for_create(&mut deployment);
        let value = deployment.to_value().unwrap();
        assert_eq!(
            (
                value["status"].clone(),
                value["metadata"]["generation"].clone()
            ),
            (json!({}), json!(1))
        );
    }

    #[test]
    fn updates_keep_the_other_half() {
        let old = object(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "generation": 3},
            "spec": {"replicas": 1, "selector": {}, "template": {}}, "status": {"replicas": 1}}),
        );
        let mut scaled = old.clone();
        let Object::Deployment(d) = &mut scaled else {
            unreachable!()
        };
        d.spec.as_mut().unwrap().replicas = Some(5);
        d.status.as_mut().unwrap().replicas = Some(42);
        prepare_for_update(&mut scaled, &old);
        let value = scaled.to_value().unwrap();
        assert_eq!(
            (
                value["metadata"]["generation"].clone(),
                value["status"]["replicas"].clone()
            ),
            (json!(4), json!(1))
        );

        let mut same = old.clone();
        prepare_for_update(&mut same, &old);
        assert_eq!(same.metadata().generation, Some(3));

        let mut status_update = old.clone();
        let Object::Deployment(d) = &mut status_update else {
            unreachable!()
        };
        d.spec.as_mut().unwrap().replicas = Some(5);
        d.status.as_mut().unwrap().replicas = Some(2);
        prepare_for_status_update(&mut status_update, &old);
        let value = status_update.to_value().unwrap();
        assert_eq!(
            (
                value["spec"]["replicas"].clone(),
                value["status"]["replicas"].clone()
            ),
            (json!(1), json!(2))
        );
    }

    #[test]
    fn binding_pods() {
        let Object::Pod(mut pod) = pod_with(json!({})) else {
            unreachable!()
        };
        let binding: Binding =
            serde_json::from_value(json!({"metadata": {"name": "p", "annotations": {"a": "b"}},
            "target": {"kind": "Node", "name": "node-1"}}))
            .unwrap();
        assert!(validate_binding(&binding).is_empty());
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        bind_pod(&mut pod, &binding, now.clone()).unwrap();
        let value = serde_json::to_value(&*pod).unwrap();
        assert_eq!(value["spec"]["nodeName"], json!("node-1"));
        assert_eq!(value["metadata"]["annotations"], json!({"a": "b"}));
        assert_eq!(
            value["status"]["conditions"][0]["type"],
            json!("PodScheduled")
        );
        assert_eq!(
            bind_pod(&mut pod, &binding, now).unwrap_err().to_string(),
            "pod p is already assigned to node \"node-1\""
        );
        let bad: Binding =
            serde_json::from_value(json!({"metadata": {}, "target": {"kind": "Pod"}})).unwrap();
        let errs: Vec<String> = validate_binding(&bad)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\"",
                "target.name: Required value"
            ]
        );
    }

    #[test]
    fn cluster_ips() {
        let Object::Service(mut service) = object(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80}]}}),
        ) else {
            unreachable!()
        };
        assert!(needs_cluster_ip(&service));
        set_cluster_ip(&mut service, Some("10.96.0.10".parse().unwrap()));
        assert!(!needs_cluster_ip(&service));
        let spec = serde_json::to_value(&service.spec).unwrap();
        assert_eq!(
            (
                spec["clusterIP"].clone(),
                spec["clusterIPs"].clone(),
                spec["ipFamilies"].clone(),
                spec["ipFamilyPolicy"].clone()
            ),
            (
                json!("10.96.0.10"),
                json!(["10.96.0.10"]),
                json!(["IPv4"]),
                json!("SingleStack")
            )
        );
    }
}
